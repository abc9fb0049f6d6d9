"""Reading the kernel's audit records live, from the audit netlink socket's read-only multicast group.

Two ways exist to read audit records from the kernel. Registering as *the* audit daemon (``AUDIT_SET`` with
our pid) takes the one unicast slot: it fails while auditd runs and, when none runs, makes vigil the only
reader (the kernel stops printing records to its log), a registration that outlived the closed socket when
measured here. Joining the multicast group ``AUDIT_NLGRP_READLOG`` (Linux >= 3.16, needs CAP_AUDIT_READ) is
read-only: every listener gets every record, auditd keeps working, and no audit setting changes. Measured
on this project's kernel (6.18, audit compiled in, ``audit_enabled=0``, no auditd): the group delivers
SECCOMP records without anything enabling audit. The group exists in the initial network namespace only,
so in a pod the collector needs ``hostNetwork`` (and CAP_AUDIT_READ).

Nothing is lost silently. Multicast delivery drops records when this socket's receive buffer is full, and
the next read says ENOBUFS (before the records still queued, which precede the loss); every audit event
carries a serial number that increases by one per event, so the first gap in the serials after an
overflow is the number of events it lost (``socket_overflow``), counted when the next record arrives (or
as one, if none does before the reader stops). Events of different CPUs can reach the queue slightly out
of serial order, so the count is an estimate within a few events. When the kernel itself drops records
(its backlog is full), its ``lost`` counter grows; it is read with ``AUDIT_GET`` where the collector may
(CAP_AUDIT_CONTROL), as ``kernel_backlog``.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import struct
import time

from vigil.collectors.kernel_audit import metrics
from vigil.sources.kernel_audit.records import TYPES

log = logging.getLogger(__name__)

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1
AUDIT_GET = 1000
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 1
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
_STATUS = struct.Struct("=8I")  # struct audit_status up to ``backlog``: mask ... lost (index 6)
_SO_RCVBUFFORCE = 33
_MAX_MESSAGE = 65536
_STATUS_INTERVAL_S = 5.0


class AuditNetlinkReader:
    """A member of the audit multicast group; :meth:`read` returns ``(type, body)`` pairs, :meth:`take_losses`
    what was lost since it was last called. Used from one thread."""

    def __init__(self, receive_buffer_bytes: int = 8 << 20) -> None:
        self.receive_buffer_bytes = receive_buffer_bytes
        self._socket: socket.socket | None = None
        self._control: socket.socket | None = None
        self._last_serial = -1
        self._overflowed = False
        self._losses: dict[str, int] = {}
        self._kernel_lost = -1
        self._next_status = 0.0
        self._read = {type_id: metrics.READ.labels(name) for type_id, name in TYPES.items()}
        self._read_other = metrics.READ.labels("other")

    def open(self) -> None:
        """Join the multicast group; raises OSError (EPERM without CAP_AUDIT_READ, EPROTONOSUPPORT on a kernel
        without audit, ENOTSUP in another network namespace than the host's, where the group stays silent)."""
        if not in_host_network_namespace():
            raise OSError(errno.ENOTSUP, "the kernel multicasts audit records in the host's network namespace "
                                         "only: run with the host network (hostNetwork: true)")
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        try:
            sock.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
            try:  # as root, past net.core.rmem_max: a burst of denials must fit while the consumer catches up
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, self.receive_buffer_bytes)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer_bytes)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._socket = sock
        self._control = _control_socket()

    def close(self) -> None:
        for sock in (self._socket, self._control):
            if sock is not None:
                sock.close()
        self._socket = self._control = None

    def read(self, timeout_s: float, max_messages: int = 4096) -> list[tuple[int, bytes]]:
        """Records of the types vigil maps that arrived, waiting up to ``timeout_s`` for the first."""
        assert self._socket is not None, "open() first"
        self._poll_kernel_losses()
        if not select.select([self._socket], [], [], timeout_s)[0]:
            return []
        messages: list[tuple[int, bytes]] = []
        for _ in range(max_messages):
            try:
                data = self._socket.recv(_MAX_MESSAGE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self._overflowed = True
                continue
            if len(data) < _HEADER.size:
                continue
            length, message_type = _HEADER.unpack_from(data)[:2]
            body = data[_HEADER.size:length]
            self._count_serial(body)
            counter = self._read.get(message_type)
            if counter is None:
                self._read_other.inc()
                continue
            counter.inc()
            messages.append((message_type, body))
        return messages

    def take_losses(self, *, final: bool = False) -> dict[str, int]:
        """Records lost since the last call, by reason (``socket_overflow``, ``kernel_backlog``). With
        ``final`` (the reader stops), an overflow whose gap no record has shown yet counts as one."""
        if final and self._overflowed:
            self._overflowed = False
            self._lose("socket_overflow", 1)
        losses, self._losses = self._losses, {}
        return losses

    def _count_serial(self, body: bytes) -> None:
        """Every audit event has the next serial: after an overflow, the first gap is what it lost."""
        end = body.find(b")", 0, 40)
        colon = body.rfind(b":", 0, end)
        if end < 0 or colon < 0 or not body[colon + 1:end].isdigit():
            return
        serial = int(body[colon + 1:end])
        if self._overflowed and self._last_serial >= 0 and serial > self._last_serial + 1:
            self._overflowed = False
            self._lose("socket_overflow", serial - self._last_serial - 1)
        self._last_serial = max(self._last_serial, serial)

    def _poll_kernel_losses(self) -> None:
        """The kernel's own ``lost`` counter, every few seconds, where ``AUDIT_GET`` is allowed."""
        if self._control is None or time.monotonic() < self._next_status:
            return
        self._next_status = time.monotonic() + _STATUS_INTERVAL_S
        lost = _kernel_lost(self._control)
        if lost is None:
            log.info("the kernel's audit loss counter is not readable (AUDIT_GET needs CAP_AUDIT_CONTROL)")
            self._control.close()
            self._control = None
            return
        if self._kernel_lost >= 0 and lost > self._kernel_lost:
            self._lose("kernel_backlog", lost - self._kernel_lost)
        self._kernel_lost = lost

    def _lose(self, reason: str, count: int) -> None:
        self._losses[reason] = self._losses.get(reason, 0) + count
        metrics.LOST.labels(reason).inc(count)


def in_host_network_namespace(own: str = "/proc/self/ns/net", host: str = "/proc/1/ns/net") -> bool:
    """Whether this process shares pid 1's network namespace (the host's, with the host pid namespace the node
    collector needs anyway); assumed when pid 1's cannot be read."""
    try:
        return os.stat(own).st_ino == os.stat(host).st_ino
    except OSError:
        return True


def _control_socket() -> socket.socket | None:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
    except OSError:
        return None
    sock.bind((0, 0))
    return sock


def _kernel_lost(sock: socket.socket, timeout_s: float = 1.0) -> int | None:
    """``audit_status.lost`` from AUDIT_GET; None when refused. The kernel acknowledges first and sends the
    status from another thread, so both are awaited."""
    sequence = int.from_bytes(os.urandom(4), "little")
    sock.send(_HEADER.pack(_HEADER.size, AUDIT_GET, _NLM_F_REQUEST, sequence, 0))
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], remaining)[0]:
            break
        data = sock.recv(_MAX_MESSAGE)
        length, message_type, _, seq, _ = _HEADER.unpack_from(data)
        if seq != sequence:
            continue
        if message_type == _NLMSG_ERROR and struct.unpack_from("=i", data, _HEADER.size)[0] < 0:
            return None
        if message_type == AUDIT_GET and length >= _HEADER.size + _STATUS.size:
            return _STATUS.unpack_from(data, _HEADER.size)[6]
    return None
