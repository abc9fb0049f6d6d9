"""Which container a cgroup id belongs to.

Every sensor record carries ``bpf_get_current_cgroup_id()``: the inode number of the process's cgroup v2
directory. The kernel turns that number back into the directory through a file handle (cgroupfs exports
kernfs handles whose payload is the id), so one ``open_by_handle_at`` and one ``readlink`` resolve an id
without walking the hierarchy. Runtimes name container cgroups after the 64-hex container id, whatever the
layout: ``k8s.io/<id>`` (containerd, cgroupfs driver), ``kubepods/.../<id>``, ``docker/<id>``,
``docker-<id>.scope``, ``cri-containerd-<id>.scope``, ``crio-<id>.scope`` (systemd driver). Host processes
live in cgroups without such a name and get "".

Results are cached in a bounded dict (oldest entry evicted first): there are few cgroups and many records.
The record decoder reads :attr:`CgroupResolver.known` directly and calls :meth:`CgroupResolver.container_id`
only on a miss, which is what the miss count counts.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from pathlib import Path

_CONTAINER_ID = re.compile(r"(?:^|[-/:])([0-9a-f]{64})(?:\.scope)?$")
_FILEID_KERNFS = 0xFE


class _FileHandle(ctypes.Structure):
    """``struct file_handle`` with kernfs's payload: the 64-bit node id, in the kernel's byte order. (A ``c_char``
    array payload is set like a C string, cut at the first zero byte: every id with a zero byte went wrong, e.g.
    0x6600 became 0, a vanished cgroup, and 0x10066 became 0x66, another cgroup.)"""

    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_uint64)]


def cgroup2_mount(mountinfo: Path = Path("/proc/self/mountinfo")) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` or, on hybrid hosts, ``.../unified``)."""
    for line in mountinfo.read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        if tail.split(" ", 1)[0] == "cgroup2":
            return Path(fields.split(" ")[4])
    return None


def pids_mount(mountinfo: Path = Path("/proc/self/mountinfo")) -> Path | None:
    """Where the cgroup v1 ``pids`` controller is mounted on a hybrid host (its groups mirror the v2 paths of
    container runtimes), None when it is not."""
    for line in mountinfo.read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _, options = tail.split(" ")[:3]
        if fstype == "cgroup" and "pids" in options.split(","):
            return Path(fields.split(" ")[4])
    return None


def container_id_of_path(path: str) -> str:
    """The container id a cgroup path names (the innermost component that is one), else ""."""
    for component in reversed(path.split("/")):
        match = _CONTAINER_ID.search(component)
        if match:
            return match.group(1)
    return ""


class CgroupResolver:
    """cgroup id → container id, with a bounded cache (``known``) and a count of lookups it missed."""

    def __init__(self, root: Path | None = None, capacity: int = 4096) -> None:
        self.root = root or cgroup2_mount()
        self.capacity = capacity
        self.misses = 0
        self.known: dict[int, str] = {}
        self._mount_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY) if self.root else -1
        self._pids_root = pids_mount()
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.POINTER(_FileHandle), ctypes.c_int]

    def container_id(self, cgroup_id: int) -> str:
        """Resolve (and cache) an id that is not in ``known``."""
        self.misses += 1
        path = self.path_of(cgroup_id)
        if path is None:
            return ""  # not cached: a cgroup that cannot be opened now may be one that is being created
        return self.learn(cgroup_id, path)

    def learn(self, cgroup_id: int, path: str) -> str:
        """Cache the container id of the cgroup at ``path`` (absolute, or below the v2 root as the sensor's
        cgroup records name it), and return it."""
        found = container_id_of_path(path)
        if len(self.known) >= self.capacity:
            del self.known[next(iter(self.known))]
        self.known[cgroup_id] = found
        return found

    def path_of(self, cgroup_id: int) -> str | None:
        """The cgroup directory of ``cgroup_id`` ("" for a vanished cgroup), None when it cannot be resolved."""
        if self._mount_fd < 0:
            return None
        handle = _FileHandle(8, _FILEID_KERNFS, cgroup_id)
        fd = self._libc.open_by_handle_at(self._mount_fd, ctypes.byref(handle), os.O_RDONLY | os.O_DIRECTORY)
        if fd < 0:
            return "" if ctypes.get_errno() == errno.ESTALE else None
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)

    def pids_current(self, path: str) -> int:
        """Tasks in the cgroup at ``path`` (relative to the v2 root) and below, from its ``pids.current``: in
        the v2 group when the pids controller is enabled there, else in the v1 pids group of the same path;
        -1 when neither has one."""
        relative = path.strip("/")
        candidates = [root / relative / "pids.current" for root in (self.root, self._pids_root) if root]
        for candidate in candidates:
            try:
                return int(candidate.read_text())
            except (OSError, ValueError):
                continue
        return -1

    def relative_path(self, cgroup_id: int) -> str | None:
        """The cgroup's path below the v2 root ("/k8s.io/<id>"), as cgroup tracepoints name it; None when it
        cannot be resolved (or has vanished)."""
        path = self.path_of(cgroup_id)
        if not path or self.root is None:
            return None
        root = str(self.root)
        return path[len(root) :] or "/" if path.startswith(root) else None

    def close(self) -> None:
        if self._mount_fd >= 0:
            os.close(self._mount_fd)
            self._mount_fd = -1
