"""Falco's JSON output (one alert object a line) mapped into the normalized Event.

A Falco record is an alert its rules raised on one syscall: ``rule``, ``priority``, ``time``, ``source``,
``tags``, ``hostname`` and ``output_fields``, the values of the fields its output template names
(``evt.type``, ``proc.cmdline``, ``fd.name``, ``k8s.pod.name``, …; ``null`` or ``<NA>`` when unknown).
The event is that syscall: its kind comes from ``evt.type`` (an ``openat`` with write flags is a
``file.write``), so vigil's detections and sequences see Falco's events the same way as Tetragon's or its
own sensor's, while the rule that fired stays in ``raw``. A record without ``evt.type`` (older rule
outputs do not name it) or with a syscall vigil has no kind for is a ``process.syscall`` event.

The process fields beyond the basic ones come from the fields Falco prints when a rule's output names them:
``user.loginuid`` (login uid), ``proc.tty``, ``proc.vpid`` (pid in the container), ``evt.arg.flags`` of an
execve (``EXE_WRITABLE|EXE_UPPER_LAYER|EXE_FROM_MEMFD``…, and ``proc.is_exe_*``), ``proc.pcmdline`` and the
grandparent's ``proc.aexepath[2]``/``proc.aname[2]``/``proc.acmdline[2]``. The container is ``container.*``
(``container.type`` its runtime), also on a node without Kubernetes metadata. Files take their access from the
open flags (``evt.arg.flags``, else ``evt.is_open_read``/``evt.is_open_write``), their mode from ``evt.arg.mode``
and a rename's or link's new name from ``fs.path.target``; sockets their ends from ``fd.lip``/``fd.rip`` (else
client and server, by the call's direction) and their family from ``fd.type``.

Only syscall alerts are events of a process; alerts of Falco's plugin sources (``k8s_audit``,
``aws_cloudtrail``, …) are refused as ``wrong_kind``: audit logs belong to ``--source k8s-audit``.
"""

from __future__ import annotations

from typing import Any

from vigil.event import (
    Actor,
    Container,
    Event,
    File,
    K8sContext,
    Network,
    Outcome,
    Target,
    correlation_key_for,
    event_id,
    now_ns,
    selected_env,
)
from vigil.sources.host_sensors import KIND_RESOURCES, OPEN_SYSCALLS, SYSCALL_KINDS, shown
from vigil.sources.parts import named_open_access, network
from vigil.sources.source import RecordRejected
from vigil.sources.tetragon.normalize import bare_container_id
from vigil.sources.timestamps import parse_timestamp_ns

SOURCE = "falco"

#: The kind of an alert whose syscall vigil has no kind for, or that does not name its syscall.
SYSCALL_KIND = "process.syscall"

_SYSCALL_SOURCES = frozenset({"syscall", ""})
#: Open flags, as Falco renders ``evt.arg.flags``, that make an open a write.
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
#: What Falco prints for a field it could not resolve.
_UNKNOWN = frozenset({"<NA>", "N/A", ""})
#: ``(uid_t)-1``, the login uid of a process no login started, as some Falco versions print it.
_UNSET_ID = 4294967295
#: Falco's ``proc.is_exe_*`` fields → the executable flag each says (``evt.arg.flags`` of execve says them too).
_EXE_FIELDS = {"proc.is_exe_writable": "writable", "proc.is_exe_upper_layer": "upper_layer",
               "proc.is_exe_from_memfd": "from_memfd"}
#: What the other file syscalls do to the file they name.
_SYSCALL_ACCESS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("read", "pread", "pread64", "readv", "preadv"), ("read",)),
    **dict.fromkeys(("write", "pwrite", "pwrite64", "writev", "pwritev"), ("write",)),
    **dict.fromkeys(("truncate", "ftruncate"), ("truncate",)),
    **dict.fromkeys(("creat",), ("write", "create", "truncate")),
    **dict.fromkeys(("link", "linkat", "symlink", "symlinkat"), ("create",)),
}
_NET_KINDS = frozenset({"net.connect", "net.accept", "net.listen", "net.close"})

_NOTHING: dict[str, Any] = {}


def check_record(record: dict[str, Any]) -> None:
    """Refuse a record that is not a Falco syscall alert (used by ``split`` at the edge)."""
    fields = _fields(record)
    _time_ns(record, fields)


def normalize_record(record: dict[str, Any], cluster: str, node: str) -> Event:
    """The Event for one Falco alert; raises RecordRejected when it is not a syscall alert or has no time."""
    fields = _fields(record)
    time_ns = _time_ns(record, fields)
    syscall = _text(fields, "evt.type")
    kind = SYSCALL_KINDS.get(syscall, SYSCALL_KIND)
    if kind == "file.open" and syscall in OPEN_SYSCALLS and _opens_for_writing(fields):
        kind = "file.write"
    action = syscall
    if kind == "process.ptrace":  # the request, as the eBPF sensor names it: PTRACE_ATTACH is attach
        action = _text(fields, "evt.arg.request").removeprefix("PTRACE_").lower() or syscall
    target = _target(kind, fields)
    k8s = _k8s(fields)
    uuid = _text(record, "uuid")
    identity = event_id(SOURCE, uuid) if uuid else _identity(record, fields)
    return Event(
        id=identity,
        time_ns=time_ns,
        source=SOURCE,
        kind=kind,
        action=action,
        original_id=uuid or identity,
        ingest_ns=now_ns(),
        cluster=cluster,
        node=_text(record, "hostname") or _text(fields, "evt.hostname") or node,
        k8s=k8s,
        actor=_actor(fields, kind),
        target=target,
        outcome=_outcome(fields),
        container=_container(fields, k8s),
        raw=_without_environment(record, fields),
        **_parts(kind, syscall, fields, target),
    )


def _identity(record: dict[str, Any], fields: dict[str, Any]) -> str:
    """Falco writes no id of its own (falcosidekick adds ``uuid``): an alert is its rule on one syscall, at a
    nanosecond, on one host; the rendered output tells apart alerts that still coincide."""
    return event_id(SOURCE, _text(record, "hostname"), str(record.get("time") or fields.get("evt.time")),
                    record["rule"], _text(fields, "evt.type"), str(record.get("output")))


def correlation_key(record: dict[str, Any], cluster: str) -> str:
    """``normalize_record(record, cluster, node).correlation_key``, computed without building the Event."""
    fields = _mapping(record.get("output_fields"))
    namespace, pod = _text(fields, "k8s.ns.name"), _text(fields, "k8s.pod.name")
    return correlation_key_for(cluster, namespace, pod)


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    source = record.get("source", "")
    if type(source) is not str or source not in _SYSCALL_SOURCES:
        raise RecordRejected("wrong_kind", f"a Falco alert of source {shown(source)}, not a syscall alert")
    if type(record.get("rule")) is not str:
        raise RecordRejected("missing_field", "rule is missing or not a string")
    fields = record.get("output_fields")
    if type(fields) is not dict:
        raise RecordRejected("missing_field", "output_fields is missing or not an object")
    return fields


def _time_ns(record: dict[str, Any], fields: dict[str, Any]) -> int:
    """The alert's RFC 3339 ``time``, else ``evt.time`` (Unix ns as Falco writes it in output_fields)."""
    text = record.get("time")
    if type(text) is str:
        try:
            return parse_timestamp_ns(text)
        except ValueError as exc:
            raise RecordRejected("missing_field", str(exc)) from None
    nanos = fields.get("evt.time")
    if type(nanos) is int and nanos > 0:
        return nanos
    raise RecordRejected("missing_field", "no time: neither time nor output_fields.evt.time")


def _opens_for_writing(fields: dict[str, Any]) -> bool:
    is_write = fields.get("evt.is_open_write")
    if is_write is not None:
        return is_write is True or is_write == "true"
    flags = _text(fields, "evt.arg.flags")
    return any(flag in flags for flag in _WRITE_FLAGS)


def _k8s(fields: dict[str, Any]) -> K8sContext:
    container_id = _text(fields, "container.full_id") or _text(fields, "container.id")
    if container_id == "host":
        container_id = ""
    image = _text(fields, "container.image")
    if not image:
        repository, tag = _text(fields, "container.image.repository"), _text(fields, "container.image.tag")
        image = f"{repository}:{tag}" if repository and tag else repository
    return K8sContext(
        namespace=_text(fields, "k8s.ns.name"),
        pod=_text(fields, "k8s.pod.name"),
        pod_uid=_text(fields, "k8s.pod.uid"),
        container_id=bare_container_id(container_id),
        container_name=_text(fields, "container.name") if container_id else "",
        image=image,
        labels=_labels(fields.get("k8s.pod.labels")),
    )


def _labels(value: Any) -> dict[str, str]:
    """Pod labels as Falco renders ``k8s.pod.labels``: ``foo:bar,app:web`` (libs), ``(app:web, tier:front)``, a list
    of ``key:value`` (the k8smeta plugin's list field) or an object."""
    if type(value) is dict:
        return {k: v for k, v in value.items() if type(v) is str}
    if type(value) is list:
        items = [item for item in value if type(item) is str]
    elif type(value) is str and value not in _UNKNOWN:
        items = value.strip("()[]").split(",")
    else:
        return {}
    pairs = (item.strip().partition(":") for item in items)
    return {key: label for key, _, label in pairs if key}


def _container(fields: dict[str, Any], k8s: K8sContext) -> Container:
    """The container Falco's container plugin (or libs) resolved (``k8s`` holds its id, name and image), whether or
    not Kubernetes metadata came with it; nothing for a process on the host (``container.id`` ``host``)."""
    if not k8s.container_id:
        return Container()
    return Container(id=k8s.container_id, runtime=_text(fields, "container.type"), name=k8s.container_name,
                     image=k8s.image, image_id=_text(fields, "container.image.digest"))


def _actor(fields: dict[str, Any], kind: str) -> Actor:
    arguments = _text(fields, "proc.args")
    program, _, rest = _text(fields, "proc.cmdline").partition(" ")  # the cmdline starts with the process name
    argv0 = _text(fields, "proc.exe") or program
    login = _int(fields, "user.loginuid", -1)
    return Actor(
        pid=_int(fields, "proc.pid", 0),
        ppid=_int(fields, "proc.ppid", 0),
        uid=_int(fields, "user.uid", -1),
        gid=_int(fields, "group.gid", -1),
        exe=_text(fields, "proc.exepath") or _text(fields, "proc.exe") or _text(fields, "proc.name"),
        args=[argv0, *(word for word in (arguments or rest).split(" ") if word)] if argv0 else [],
        cwd=_text(fields, "proc.cwd"),
        parent_exe=_text(fields, "proc.pexepath") or _text(fields, "proc.pname"),
        auid=-1 if login in (_UNSET_ID, -1) else login,
        tty=max(0, _int(fields, "proc.tty", 0)),
        container_pid=_int(fields, "proc.vpid", 0),
        exe_flags=_exe_flags(fields) if kind == "process.exec" else [],
        parent_args=_words(_text(fields, "proc.pcmdline")),
        grandparent_exe=_text(fields, "proc.aexepath[2]") or _text(fields, "proc.aname[2]"),
        grandparent_args=_words(_text(fields, "proc.acmdline[2]")),
        env=_env(_text(fields, "proc.env")) if kind == "process.exec" else {},
    )


def _without_environment(record: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The alert as stored, its printed environment (``proc.env``, also in ``output``) cut to the selected
    variables: an environment holds secrets, and the stored record is as readable as the event."""
    printed = fields.get("proc.env")
    if type(printed) is not str or not printed:
        return record
    kept = " ".join(f"{name}={value}" for name, value in _env(printed).items())
    output = record.get("output")
    return {**record, "output_fields": {**fields, "proc.env": kept},
            **({"output": output.replace(printed, kept)} if type(output) is str else {})}


def _env(printed: str) -> dict[str, str]:
    """The selected variables of ``proc.env`` (the environment as Falco prints it: ``NAME=value`` words joined by
    spaces, in a rule's output only when the rule asks for it); every other variable is dropped here."""
    return selected_env(word.partition("=")[::2] for word in printed.split(" ") if "=" in word)


def _words(cmdline: str) -> list[str]:
    """argv of a command line as Falco prints it: the process name, then the arguments joined by spaces."""
    return [word for word in cmdline.split(" ") if word]


def _exe_flags(fields: dict[str, Any]) -> list[str]:
    """``EXE_WRITABLE|EXE_UPPER_LAYER`` of an execve's ``evt.arg.flags`` as ``writable``, ``upper_layer`` (in
    Falco's order), and what ``proc.is_exe_*`` adds."""
    flags = [name.strip().removeprefix("EXE_").lower() for name in _text(fields, "evt.arg.flags").split("|")
             if name.strip().startswith("EXE_")]
    for field_name, flag in _EXE_FIELDS.items():
        value = fields.get(field_name)
        if (value is True or value == "true") and flag not in flags:
            flags.append(flag)
    return flags


def _parts(kind: str, syscall: str, fields: dict[str, Any], target: Target) -> dict[str, Any]:
    """The ``file`` or ``network`` part of the event, as Event fields."""
    if kind in ("file.open", "file.write"):
        return {"file": _file(syscall, fields, target)}
    if kind in _NET_KINDS:
        return {"network": _network(kind, fields)}
    return {}


def _file(syscall: str, fields: dict[str, Any], target: Target) -> File:
    if syscall in OPEN_SYSCALLS:
        access = named_open_access(_text(fields, "evt.arg.flags"))
        if not access:
            access = [name for name, field_name in (("read", "evt.is_open_read"), ("write", "evt.is_open_write"))
                      if fields.get(field_name) is True or fields.get(field_name) == "true"]
    else:
        access = list(_SYSCALL_ACCESS.get(syscall, ()))
    mode = _text(fields, "evt.arg.mode")
    other = _text(fields, "fs.path.target") or _text(fields, "evt.arg.newpath") or _text(fields, "evt.arg.linkpath")
    return File(path=target.path, access=access, other_path=other,
                mode=int(mode, 8) if mode.isdigit() and set(mode) <= set("01234567") else -1,
                traversal=".." in _text(fields, "fd.nameraw").split("/"))  # the path as spelled, when printed


def _network(kind: str, fields: dict[str, Any]) -> Network:
    """Local and remote from ``fd.lip``/``fd.rip`` when printed, else from client and server by direction (a
    connect's client is this process, an accept's server is)."""
    client, server = _end(fields, "fd.cip", "fd.cport"), _end(fields, "fd.sip", "fd.sport")
    local, remote = _end(fields, "fd.lip", "fd.lport"), _end(fields, "fd.rip", "fd.rport")
    if kind == "net.accept":
        local, remote = local if local[0] else server, remote if remote[0] else client
    elif kind == "net.listen":
        local, remote = local if local[0] else server, ("", 0)
    else:
        local, remote = local if local[0] else client, remote if remote[0] else server
    return network(kind, family=_text(fields, "fd.type"), protocol=_text(fields, "fd.l4proto"), local=local,
                   remote=remote)


def _end(fields: dict[str, Any], address_field: str, port_field: str) -> tuple[str, int]:
    return _text(fields, address_field), _int(fields, port_field, 0)


def _target(kind: str, fields: dict[str, Any]) -> Target:
    if kind == "net.connect":
        return _peer(fields, "fd.rip", "fd.rport") or _peer(fields, "fd.sip", "fd.sport") or Target()
    if kind == "net.accept":
        return _peer(fields, "fd.cip", "fd.cport") or _peer(fields, "fd.rip", "fd.rport") or Target()
    if kind == "net.listen":
        return _peer(fields, "fd.lip", "fd.lport") or _peer(fields, "fd.sip", "fd.sport") or Target()
    if kind == "process.exec":
        return Target(path=_text(fields, "proc.exepath"))
    if kind == "fs.mount":
        return Target(path=_text(fields, "evt.arg.dir"), name=_text(fields, "evt.arg.dev"),
                      resource=_text(fields, "evt.arg.type"))
    if kind == "process.ptrace":
        return Target(resource="processes", name=_text(fields, "evt.arg.pid"))
    if kind in ("memfd.create", "kernel.module_load", "bpf.program"):
        return Target(name=_text(fields, "evt.arg.name"), resource=KIND_RESOURCES.get(kind, ""))
    if kind in KIND_RESOURCES:
        return Target(resource=KIND_RESOURCES[kind])
    return Target(path=_text(fields, "fs.path.name") or _text(fields, "fd.name") or _text(fields, "evt.arg.path"))


def _peer(fields: dict[str, Any], address_field: str, port_field: str) -> Target | None:
    address = _text(fields, address_field)
    if not address:
        return None
    return Target(address=address, port=_int(fields, port_field, 0), resource=_text(fields, "fd.l4proto"))


def _outcome(fields: dict[str, Any]) -> Outcome:
    """``evt.res`` is ``SUCCESS`` or an errno name (``EPERM``); a numeric ``evt.rawres`` below 0 failed."""
    result = _text(fields, "evt.res")
    if result == "SUCCESS":
        return Outcome("success")
    if result in ("EPERM", "EACCES"):
        return Outcome("denied", 0, result)
    if result.startswith("E"):
        return Outcome("failure", 0, result)
    raw_result = fields.get("evt.rawres")
    if type(raw_result) is int:
        return Outcome("failure", -raw_result, "") if raw_result < 0 else Outcome("success", raw_result, "")
    return Outcome()


def _mapping(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else _NOTHING


def _text(mapping: dict[str, Any], key: str) -> str:
    value = mapping.get(key)
    if type(value) is str:
        return "" if value in _UNKNOWN else value
    if type(value) is int:
        return str(value)  # ports and ids some Falco versions print as numbers
    return ""


def _int(mapping: dict[str, Any], key: str, default: int) -> int:
    value = mapping.get(key)
    if type(value) is int:
        return value
    if type(value) is str and value.lstrip("-").isdigit():
        return int(value)
    return default
