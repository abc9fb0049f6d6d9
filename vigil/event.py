"""The one normalized event envelope every source maps into.

Every collector and adapter (Kubernetes audit, eBPF sensor, containerd, Tetragon, Falco) produces an
:class:`Event`. Detections, storage and SIEM outputs only ever see this shape, so a detection written
against ``process.exec`` works the same whether the record came from vigil's own sensor or from
Tetragon. The source's original record is kept verbatim in ``raw`` for forensics; detections never read it:
everything a detection needs has a field here (the container as its runtime knows it, the process with its
credentials and lineage, the file and how it was accessed, the network endpoints, the API request's objects),
so a detection is written once for every source that fills the field.

Fields are only ever added: a part or field an older writer did not know reads as its default, so events
written before an addition still load, and the existing fields keep their meaning.

The envelope is versioned (``schema``): a consumer that meets a newer major version than it knows
refuses the record into the dead-letter path instead of guessing. The schema is documented as a table
in the README ("Event schema"); keep both in step.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable
from typing import Any

import msgspec

SCHEMA_VERSION = 1

#: Kinds of event. Sources may add kinds, but these names are the contract detections rely on.
KINDS = frozenset(
    {
        "k8s.api",
        "process.exec",
        "process.exit",
        "file.open",
        "net.connect",
        "net.accept",
        "net.listen",
        "container.create",
        "container.start",
        "container.exit",
        "container.delete",
        "container.oom",
        "process.ptrace",
        "process.setid",
        "process.ns_change",
        "fs.mount",
        "kernel.module_load",
        "bpf.program",
        "memfd.create",
        "file.write",
        "net.close",
        "process.hook",
        "process.syscall",
        "collector.health",
        "kernel.seccomp",
        "kernel.lsm",
        "container.syscalls",
        "net.socket",
        "net.stdio_redirect",
    }
)

#: Outcome results: what happened to the action the event describes.
RESULTS = frozenset({"success", "failure", "denied", "unknown"})

#: How a process's executable got there (``actor.exe_flags``), as the sensor saw it at exec: ``writable`` (the
#: process could write it), ``upper_layer`` (in the container's writable overlay layer: written after the
#: container started, in no image layer), ``lower_layer`` (from an image layer), ``from_memfd`` (an anonymous
#: memory file), ``deleted`` (unlinked, or only in memory, without the source saying which).
EXE_FLAGS = ("writable", "upper_layer", "lower_layer", "from_memfd", "deleted")
#: The only environment variables the model carries (``actor.env``, at exec): the dynamic loader's injection points
#: and the proxy variables download tools obey. Environments hold secrets, so sources keep these and drop the rest
#: (the eBPF sensor's kernel side matches the same names in this order).
ENV_NAMES = ("LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
             "https_proxy", "all_proxy")

#: A proxy URL's password (``http://user:secret@proxy:3128``): the part of a proxy variable the model never carries.
_PROXY_PASSWORD = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?[^/@:]*):[^/@]*@")


def selected_env(variables: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The :data:`ENV_NAMES` among ``variables`` (name, value), first occurrence of each as getenv finds it, with
    a proxy URL's password replaced by ``***``: a source maps a process's environment through this, never whole."""
    selected: dict[str, str] = {}
    for name, value in variables:
        if name in ENV_NAMES and name not in selected:
            selected[name] = value if name.startswith("LD_") else _PROXY_PASSWORD.sub(r"\1:***@", value)
    return selected


#: How a file was accessed (``file.access``).
FILE_ACCESS = ("read", "write", "create", "truncate", "append")

#: Classes of a network peer's address (``network.remote_class``); ``service`` and ``pod`` are the cluster's
#: ranges when they are configured (``VIGIL_SERVICE_CIDRS``, ``VIGIL_POD_CIDRS``).
ADDRESS_CLASSES = ("loopback", "link_local", "multicast", "unspecified", "service", "pod", "private", "reserved",
                   "public")


# The envelope's parts are msgspec Structs: building one costs about a fortieth of a dataclass with default
# factories (the stream worker builds ten per event it normalizes), and msgspec encodes them, and decodes JSON
# straight into them (``Event.from_json``), without an intermediate dict. A part's field this version does not
# know refuses the event (as the dataclasses did): it would be lost on the way to storage.
class K8sContext(msgspec.Struct, forbid_unknown_fields=True):
    """Where in Kubernetes the event happened (the pod that ran it, or the object an API call touched)."""

    namespace: str = ""
    pod: str = ""
    pod_uid: str = ""
    container_id: str = ""
    container_name: str = ""
    image: str = ""
    service_account: str = ""
    labels: dict[str, str] = {}


class Container(msgspec.Struct, forbid_unknown_fields=True):
    """The container a process ran in, as its runtime names it: filled whenever the source knows the container,
    with or without the pod it belongs to (a container started outside Kubernetes is still a container).

    ``id`` is the bare id (``19a0…``, without ``containerd://``); a source that carries only a prefix of it
    (Tetragon's ``docker``, Falco's 12-character ``container.id``) leaves that prefix. ``runtime`` is the engine
    that runs it (``containerd``, ``cri-o``, ``docker``, ``podman``), ``image_id`` the image's digest reference.

    What it was started with, where the source knows (the runtime's record of its creation): ``privileged``,
    its effective ``capabilities`` (``CAP_SYS_ADMIN``, …), the ``uid`` its first process runs as (-1: not
    known), the ``host_namespaces`` it shares with the node (``pid``, ``network``, ``ipc``, ``uts``, ``mount``)
    and the host paths bind-mounted into it (``host_mounts``).
    """

    id: str = ""
    runtime: str = ""
    name: str = ""
    image: str = ""
    image_id: str = ""
    privileged: bool = False
    capabilities: list[str] = []
    uid: int = -1
    host_namespaces: list[str] = []
    host_mounts: list[str] = []


class Actor(msgspec.Struct, forbid_unknown_fields=True):
    """Who acted: an API identity for API calls, a process for runtime events (unused fields stay empty).

    For a process: ``uid``/``gid`` are the real ids and ``euid``/``egid`` the effective ones (-1: not known),
    ``auid`` the login uid (-1: not known or never set), ``tty`` the controlling terminal's device number (0: none
    or not known), ``container_pid`` its pid inside its container (1 is the entrypoint; 0: not known),
    ``exe_flags`` how the executable got there (:data:`EXE_FLAGS`), and the lineage the parent's and
    grandparent's executable and argv. For an API identity: ``extra`` is its ``user.extra``, and ``token_pod``
    (``token_pod_uid``) the pod the service-account token that authenticated the request was bound to.
    ``env`` holds the variables of :data:`ENV_NAMES` the process was started with (values truncated by the source;
    a proxy URL's password removed), only on exec events of sources that record them.
    """

    user: str = ""
    user_uid: str = ""
    groups: list[str] = []
    source_ips: list[str] = []
    user_agent: str = ""
    impersonated_by: str = ""
    pid: int = 0
    ppid: int = 0
    uid: int = -1
    gid: int = -1
    exe: str = ""
    args: list[str] = []
    cwd: str = ""
    parent_exe: str = ""
    euid: int = -1
    egid: int = -1
    auid: int = -1
    tty: int = 0
    container_pid: int = 0
    exe_flags: list[str] = []
    parent_args: list[str] = []
    grandparent_exe: str = ""
    grandparent_args: list[str] = []
    extra: dict[str, list[str]] = {}
    token_pod: str = ""
    token_pod_uid: str = ""
    env: dict[str, str] = {}


class Target(msgspec.Struct, forbid_unknown_fields=True):
    """What was acted on: an API object, a file path, or a network peer."""

    resource: str = ""
    subresource: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    name: str = ""
    uri: str = ""
    path: str = ""
    address: str = ""
    port: int = 0


class Outcome(msgspec.Struct, forbid_unknown_fields=True):
    """The result of the action: ``result`` is one of :data:`RESULTS`; ``code`` is e.g. the HTTP status."""

    result: str = "unknown"
    code: int = 0
    reason: str = ""


class File(msgspec.Struct, forbid_unknown_fields=True):
    """The file a file event is about: ``path`` (also in ``target.path``), how it was accessed (``access``, of
    :data:`FILE_ACCESS`), the ``mode`` the call gave (creation or chmod; -1 when none or not known),
    ``other_path``, the second path of a rename, link or symlink (the new name), and ``traversal``: the program
    spelled the path with ``..`` components (``/var/www/../../etc/passwd``), as a path traversal attack does."""

    path: str = ""
    access: list[str] = []
    mode: int = -1
    other_path: str = ""
    traversal: bool = False


class Network(msgspec.Struct, forbid_unknown_fields=True):
    """The endpoints of a network event, from the acting process's side: ``direction`` is ``outbound``
    (connect), ``inbound`` (accept) or ``listen``; ``remote_class`` is what kind of address the remote end is
    (:data:`ADDRESS_CLASSES`, see :mod:`vigil.addresses`; "" when there is no remote address)."""

    family: str = ""
    protocol: str = ""
    direction: str = ""
    local_address: str = ""
    local_port: int = 0
    remote_address: str = ""
    remote_port: int = 0
    remote_class: str = ""


class Request(msgspec.Struct, forbid_unknown_fields=True):
    """What an API request carried besides who made it (``actor``) and what it named (``target``): its audit
    ``stage``, the authorizer's ``decision`` (``allow``/``forbid``) and reason, and the request and response
    objects as the audit policy logged them (``None`` when it did not)."""

    stage: str = ""
    decision: str = ""
    decision_reason: str = ""
    object: Any = None
    response: Any = None


class Activity(msgspec.Struct, forbid_unknown_fields=True):
    """A container's activity over one interval (``container.syscalls``): the sensor's counters (``syscalls``,
    ``fork``, ``exec``, ``open``, ``connect``), the names of the syscalls it made, and its process count at the
    end (``pids.current``; -1 when not known)."""

    interval_s: float = 0.0
    counts: dict[str, int] = {}
    syscalls: list[str] = []
    processes: int = -1


class Event(msgspec.Struct):
    """One normalized security event. Times are Unix epoch nanoseconds."""

    id: str
    time_ns: int
    source: str
    kind: str
    action: str = ""
    original_id: str = ""
    ingest_ns: int = 0
    cluster: str = ""
    node: str = ""
    k8s: K8sContext = msgspec.field(default_factory=K8sContext)
    actor: Actor = msgspec.field(default_factory=Actor)
    target: Target = msgspec.field(default_factory=Target)
    outcome: Outcome = msgspec.field(default_factory=Outcome)
    container: Container = msgspec.field(default_factory=Container)
    file: File = msgspec.field(default_factory=File)
    network: Network = msgspec.field(default_factory=Network)
    request: Request = msgspec.field(default_factory=Request)
    activity: Activity = msgspec.field(default_factory=Activity)
    raw: Any = None
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)

    def to_json(self) -> bytes:
        return ENCODER.encode(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Rebuild an event from its JSON form; raises :class:`SchemaError` for a foreign or broken one."""
        if not isinstance(data, dict):
            raise SchemaError("event is not a JSON object")
        _check_schema(data.get("schema", SCHEMA_VERSION))
        try:
            return msgspec.convert(data, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SchemaError(f"malformed event: {exc}") from exc

    @classmethod
    def from_json(cls, payload: bytes) -> Event:
        """Decode an event's JSON straight into the envelope (no intermediate dict)."""
        return decode_event(_DECODER, payload)

    @property
    def correlation_key(self) -> str:
        return correlation_key_for(self.cluster, self.k8s.namespace, self.k8s.pod, self.actor.user)


class SchemaError(ValueError):
    """A record that does not fit the envelope; carries the reason used for the dead-letter record."""


#: Encodes events (and anything holding them: lists, dicts, ``msgspec.Raw`` for JSON kept as bytes).
ENCODER = msgspec.json.Encoder()
# Not strict: a number sent as a string (``"time_ns": "17…"``) loads as before the envelope was typed.
_DECODER = msgspec.json.Decoder(Event, strict=False)


def decode_event(decoder: msgspec.json.Decoder, payload: bytes) -> Any:
    """One event's JSON decoded by ``decoder``, into the envelope or a shape of it with the same fields (the storage
    writer's, which parses only what it stores); raises :class:`SchemaError` for a foreign or broken event."""
    try:
        event = decoder.decode(payload)
    except msgspec.ValidationError as exc:
        _check_schema(_schema_of(payload))  # a newer schema may change a field: say so, not "malformed"
        raise SchemaError(f"malformed event: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise SchemaError(f"event is not JSON: {exc}") from exc
    _check_schema(event.schema)
    return event


class _Versioned(msgspec.Struct):
    schema: Any = SCHEMA_VERSION


def _schema_of(payload: bytes) -> Any:
    try:
        return msgspec.json.decode(payload, type=_Versioned).schema
    except msgspec.DecodeError:  # ValidationError is one: not an object
        return SCHEMA_VERSION


def _check_schema(schema: Any) -> None:
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise SchemaError(f"unsupported event schema version {schema!r}")


def correlation_key_for(cluster: str, namespace: str = "", pod: str = "", user: str = "") -> str:
    """The key that keeps everything about one pod (or, failing that, one namespace or identity) together.

    Used as the Kafka record key and by cross-source sequences: an audit ``pods/exec`` on pod P and a process
    running in P share ``cluster/namespace/pod``, so they land on the same partition. Sources compute it from
    their raw records with this function, so the key of a record and of its Event always agree.
    """
    if pod:
        return f"{cluster}/{namespace}/{pod}"
    if namespace:
        return f"{cluster}/{namespace}"
    return f"{cluster}/~{user}"


def event_id(source: str, *parts: str) -> str:
    """A deterministic id, so the same original record always yields the same event (dedup on retry)."""
    digest = hashlib.blake2b("\x1f".join((source, *parts)).encode(), digest_size=16)
    return digest.hexdigest()


def now_ns() -> int:
    return time.time_ns()
