"""The runtime parts of the envelope (file access, network endpoints, container identity) as every source builds them.

Each sensor spells these facts its own way (open flags as a number or as ``O_RDWR|O_CREAT``, a socket family as
``AF_INET``, ``inet`` or ``ipv4``, a container id with or without ``containerd://``); the sources turn their
spelling into the arguments here, so every source fills a part the same way and detections read one shape.
"""

from __future__ import annotations

from vigil.addresses import address_class
from vigil.event import Network

#: Event kind → the direction of its connection, from the acting process's side.
DIRECTIONS = {"net.connect": "outbound", "net.accept": "inbound", "net.listen": "listen"}

_O_ACCMODE, _O_WRONLY, _O_RDWR = 0o3, 0o1, 0o2
_O_CREAT, _O_TRUNC, _O_APPEND = 0o100, 0o1000, 0o2000
#: Socket families as the sensors name them → the envelope's names (``inet``, ``inet6``, ``unix``).
_FAMILIES = {"af_inet": "inet", "inet": "inet", "ipv4": "inet", "af_inet6": "inet6", "inet6": "inet6", "ipv6": "inet6",
             "af_unix": "unix", "unix": "unix", "af_local": "unix"}
#: Open flags as Falco prints them → the access they ask for.
_FLAG_NAMES = {"O_CREAT": "create", "O_TRUNC": "truncate", "O_APPEND": "append"}


def open_access(flags: int) -> list[str]:
    """What an open(2) with ``flags`` asks for, in :data:`vigil.event.FILE_ACCESS` order."""
    mode = flags & _O_ACCMODE
    access = ["read"] if mode != _O_WRONLY else []
    if mode in (_O_WRONLY, _O_RDWR):
        access.append("write")
    access.extend(name for bit, name in ((_O_CREAT, "create"), (_O_TRUNC, "truncate"), (_O_APPEND, "append"))
                  if flags & bit)
    return access


def named_open_access(flags: str) -> list[str]:
    """The access of open flags spelled ``O_WRONLY|O_CREAT|O_TRUNC`` (Falco's ``evt.arg.flags``); [] for none."""
    names = {name.strip() for name in flags.split("|")}
    if not names & {"O_RDONLY", "O_WRONLY", "O_RDWR", *_FLAG_NAMES}:
        return []
    access = [] if "O_WRONLY" in names else ["read"]
    if names & {"O_WRONLY", "O_RDWR"}:
        access.append("write")
    access.extend(access_name for flag, access_name in _FLAG_NAMES.items() if flag in names)
    return access


def family_name(family: str, address: str = "") -> str:
    """``inet``/``inet6``/``unix`` for a family as a sensor spells it, else guessed from the address's form."""
    name = _FAMILIES.get(family.lower(), "")
    if name or not address:
        return name
    return "inet6" if ":" in address else "inet" if "." in address else ""


def network(kind: str, *, family: str = "", protocol: str = "", local: tuple[str, int] = ("", 0),
            remote: tuple[str, int] = ("", 0)) -> Network:
    """The network part of an event of ``kind`` with its (address, port) ends; the remote address is classed."""
    return Network(family=family_name(family, remote[0] or local[0]), protocol=protocol,
                   direction=DIRECTIONS.get(kind, ""), local_address=local[0], local_port=local[1],
                   remote_address=remote[0], remote_port=remote[1], remote_class=address_class(remote[0]))


def runtime_and_id(container_id: str) -> tuple[str, str]:
    """(``containerd``, ``19a0…``) for ``containerd://19a0…`` as CRI and Kubernetes spell a container's id; the
    runtime is "" when the id does not say it."""
    runtime, separator, bare = container_id.partition("://")
    return (runtime, bare) if separator else ("", container_id)
