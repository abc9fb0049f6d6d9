"""Local TCP ports: whether something already listens, so `up` can tell a free port from a taken one."""

from __future__ import annotations

import socket

from vigil.devstack.errors import DevStackError

#: Host names the dev stack serves: it listens on 127.0.0.1 only.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})


def is_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connection to ``host:port`` is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def loopback_port(address: str, setting: str) -> int:
    """The port of a ``127.0.0.1:PORT`` address, or a DevStackError naming ``setting`` if it is not local."""
    host, sep, port = address.rpartition(":")
    if not sep or host not in LOOPBACK_HOSTS or not port.isdigit():
        raise DevStackError(f"{setting}={address!r}: the dev stack serves only 127.0.0.1:PORT")
    return int(port)
