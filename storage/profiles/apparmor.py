"""An AppArmor profile draft from a workload's observed programs, files, network and capabilities.

A draft, to review before enforcing: vigil's sensor records every exec, connect, accept and listen, but file
opens only of watched paths (credentials, host control files, ...). Programs, network families and (when
the sensor reports them) capabilities are therefore confined to what was seen, while file access beyond the
observed paths is granted by one broad rule unless ``strict_files`` drops it; then only observed paths and
what every dynamically linked program reads remain, which suits a workload whose files the sensor watches.

Per-instance parts of paths are globbed, so the profile holds for the next pod too: numeric /proc entries
(``/proc/1234/status``), container ids and UUIDs anywhere, and random-looking names under the temporary
directories (``/tmp/tmpa8k2x9q1/out``, ``/tmp/tmp.Xa8k2L``).
"""

from __future__ import annotations

import re
from collections import defaultdict

from vigil.storage.profiles.observed import Activity

#: Directories whose entries are created per run, with names that are random by design.
TEMPORARY_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/", "/var/run/")

_CONTAINER_ID_OR_UUID = re.compile(r"\b(?:[0-9a-f]{64}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b")
#: A run of letters and digits that is random-looking: at least 6 long with at least one digit.
_RANDOM_RUN = re.compile(r"(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{6,}")

#: What the runtime and any dynamically linked program touch, granted also with strict files.
BASELINE_FILES = (
    ("/{,usr/}lib{,32,64,x32}/**", "mr"),
    ("/etc/ld.so.cache", "r"),
    ("/dev/null", "rw"),
    ("/dev/{u,}random", "r"),
    ("/proc/[0-9]*/**", "r"),
)

#: AppArmor's network protocol keywords; other protocols are granted by family only.
_PROTOCOLS = {"tcp", "udp", "icmp"}

_PROFILE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def profile_name(activity: Activity) -> str:
    workload = activity.workload
    parts = ["vigil", workload.namespace, workload.name] + ([workload.container] if workload.container else [])
    return _PROFILE_NAME.sub("-", "-".join(parts))


def glob_path(path: str) -> str:
    """``path`` with its per-instance parts replaced by AppArmor globs."""
    path = _CONTAINER_ID_OR_UUID.sub("*", path)
    if path.startswith("/proc/"):
        return "/".join("[0-9]*" if part.isdigit() else part for part in path.split("/"))
    for directory in TEMPORARY_DIRS:
        if path.startswith(directory):
            return directory + _RANDOM_RUN.sub("*", path[len(directory):])
    return path


def draft(activity: Activity, name: str = "", strict_files: bool = False) -> str:
    """The profile text (AppArmor 3 syntax, standalone: no includes, so any parser reads it as it is)."""
    name = name or profile_name(activity)
    files: dict[str, set[str]] = defaultdict(set)
    for facet, mode in (("file_read", "r"), ("file_write", "rw")):
        for path in activity.values(facet):
            files[glob_path(path)].update(mode)
    lines = [
        f"# AppArmor profile draft for {activity.workload.describe()}, written by vigil advise apparmor",
        f"# from what vigil observed: {activity.summary()}.",
        "# Review before enforcing. Load with apparmor_parser -r FILE; in a pod: securityContext.appArmorProfile",
        f"# {{type: Localhost, localhostProfile: {name}}}.",
        "",
        f"profile {name} flags=(attach_disconnected,mediate_deleted) {{",
    ]
    lines += _section("capabilities used", [f"capability {_capability(c)}," for c in activity.values("capability")])
    lines += _section("network used", sorted({_network(v) for v in activity.values("network")}))
    lines += _section("programs run", [f"{_quoted(exe)} rix," for exe in sorted(set(activity.values("exec")))])
    lines += _section("files opened (globbed)", [f"{_quoted(p)} {_modes(m)}," for p, m in sorted(files.items())])
    lines += _section("what the runtime and dynamically linked programs need",
                      [f"{path} {mode}," for path, mode in BASELINE_FILES])
    if not strict_files:
        lines += _section("file access the sensor does not observe (opens of unwatched paths): narrow by hand",
                          ["/** rwlk,"])
    lines += _section("signals from the runtime, and within the workload",
                      ["signal (receive) peer=unconfined,", f"signal (send,receive) peer={name},"])
    return "\n".join([*lines[:-1], "}"]) + "\n"  # the last section's blank line makes way for the brace


def _section(title: str, rules: list[str]) -> list[str]:
    return [f"  # {title}", *(f"  {rule}" for rule in rules), ""] if rules else []


def _capability(name: str) -> str:
    name = name.lower()
    return name[4:] if name.startswith("cap_") else name


def _network(value: str) -> str:
    family, _, protocol = value.partition(" ")
    return f"network {family} {protocol}," if protocol in _PROTOCOLS else f"network {family},"


def _modes(modes: set[str]) -> str:
    return "".join(m for m in "rw" if m in modes)


def _quoted(path: str) -> str:
    """Paths with spaces or other characters AppArmor treats specially are quoted."""
    return f'"{path}"' if re.search(r'[\s",]', path) else path
