"""Seccomp profiles: the least-privilege profile of a workload, reading a profile, and what ran outside one.

The profile written is the subset of the format that every consumer reads alike: the kubelet hands a
``localhost/`` profile to the runtime, containerd loads it as the OCI runtime spec's ``linux.seccomp`` and
CRI-O as Docker's profile format, and both take ``defaultAction``, ``defaultErrnoRet``, ``architectures`` and
``syscalls[].names/action`` (each tool ignores the ``comment`` it does not know). Profiles read back (``vigil
advise diff``, :func:`to_oci`) may use Docker's extensions too: ``archMap``, a rule's single ``name``, and
``includes``/``excludes`` by architecture and capability.

A profile denies with EPERM (``SCMP_ACT_ERRNO`` with ``defaultErrnoRet`` 1) rather than killing: a program
meets a denied call as an error it can report, which shows in the kernel's audit log and in vigil as a
``kernel.seccomp`` event, instead of vanishing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson

from vigil.storage.profiles.observed import Activity

#: The sensor's architecture names → the seccomp architectures a container on that node may run. 32-bit
#: binaries run on a 64-bit kernel, so their architectures are listed too (as Docker's default profile does);
#: the calls are allowed by name, and libseccomp maps each name to each architecture's number.
#: The sensor reports the calls of 32-bit tasks under their own architecture (``i386``, ``arm``).
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "i386": ("SCMP_ARCH_X86",),
    "arm": ("SCMP_ARCH_ARM",),
}

#: What runc's init process calls after it installed the filter and before execve(2) replaces it with the
#: workload, measured with runc 1.1.5 under a profile whose default action is SCMP_ACT_LOG (every call shows
#: in the audit log with the calling task's comm, ``runc:[2:INIT]``). runc installs the filter as late as it
#: can when the container has no_new_privs (``allowPrivilegeEscalation: false``); without it, which is
#: Kubernetes' default, it must do so before it changes credentials, and more calls follow.
RUNC_LATE_SYSCALLS = ("close", "execve", "fstatfs", "getdents64", "getpid", "openat", "write", "epoll_ctl",
                      "futex")
RUNC_EARLY_SYSCALLS = ("capget", "capset", "chdir", "faccessat2", "fcntl", "fstat", "getcwd", "getppid",
                       "newfstatat", "prctl", "read", "setgid", "setgroups", "setuid")
#: runc's init is a Go program: its runtime may take a preemption signal (SIGURG, returning through
#: rt_sigreturn), yield, sleep, or grow and return memory at any moment, also between filter and execve.
GO_RUNTIME_SYSCALLS = ("exit_group", "gettid", "madvise", "mmap", "munmap", "nanosleep", "rt_sigprocmask",
                       "rt_sigreturn", "sched_yield", "sigaltstack", "tgkill")
RUNTIME_SYSCALLS = tuple(sorted(set(RUNC_LATE_SYSCALLS + RUNC_EARLY_SYSCALLS + GO_RUNTIME_SYSCALLS)))

#: Actions under which a call runs (LOG runs it and writes an audit record).
RUNNING_ACTIONS = frozenset({"SCMP_ACT_ALLOW", "SCMP_ACT_LOG"})

#: A name the sensor gives a syscall number it has no name for; no profile format can name it.
UNNAMED_PREFIX = "syscall_"


class ProfileError(ValueError):
    """A profile that cannot be read or written; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Advice:
    """A profile and how it was made: what was observed, what was added for the runtime, what was left out
    (numbers the sensor could not name, which no profile can name either)."""

    profile: dict[str, Any]
    observed: list[str]
    runtime_added: list[str]
    unnamed: list[str]


def advise(activity: Activity) -> Advice:
    """The least-privilege profile of ``activity``'s syscalls.

    Two rules, each with a comment: what the workload was seen calling, and what only the runtime needs.
    """
    arches = activity.values("arch") or ["x86_64"]
    unknown = sorted(set(arches) - set(ARCHITECTURES))
    if unknown:
        raise ProfileError(f"no seccomp architectures known for {', '.join(unknown)}")
    observed = activity.values("syscall")
    unnamed = sorted(name for name in observed if name.startswith(UNNAMED_PREFIX))
    named = sorted(set(observed) - set(unnamed))
    runtime_only = sorted(set(RUNTIME_SYSCALLS) - set(named))
    rules = [{"names": named, "action": "SCMP_ACT_ALLOW",
              "comment": f"observed by vigil for {activity.workload.describe()} ("
                         f"{activity.summary()})"}]
    if runtime_only:
        rules.append({"names": runtime_only, "action": "SCMP_ACT_ALLOW",
                      "comment": "called by the container runtime (runc) between installing the filter and "
                                 "starting the workload, or by its Go runtime meanwhile"})
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": list(dict.fromkeys(a for arch in ARCHITECTURES if arch in arches
                                            for a in ARCHITECTURES[arch])),
        "syscalls": rules,
    }
    return Advice(profile, named, runtime_only, unnamed)


def render(profile: dict[str, Any]) -> bytes:
    return orjson.dumps(profile, option=orjson.OPT_INDENT_2) + b"\n"


@dataclass(frozen=True, slots=True)
class Rule:
    names: tuple[str, ...]
    action: str
    errno: int | None
    args: tuple[Any, ...]  # conditions on argument values: the rule holds only for some calls

    @property
    def conditional(self) -> bool:
        return bool(self.args)


@dataclass(frozen=True, slots=True)
class Profile:
    """A seccomp profile as one architecture and one set of capabilities see it (rules for others dropped)."""

    default_action: str
    default_errno: int | None
    architectures: tuple[str, ...]
    rules: tuple[Rule, ...]

    def allowed(self) -> set[str] | None:
        """The syscalls that run under this profile; None when the default action lets anything run."""
        if self.default_action in RUNNING_ACTIONS:
            return None
        return {name for rule in self.rules if rule.action in RUNNING_ACTIONS for name in rule.names}

    def denied_by_rule(self) -> set[str]:
        """Calls a rule explicitly stops, with a default action that would let them run."""
        return {name for rule in self.rules if rule.action not in RUNNING_ACTIONS and not rule.conditional
                for name in rule.names}

    def runs(self, syscall: str) -> bool:
        allowed = self.allowed()
        if allowed is None:
            return syscall not in self.denied_by_rule()
        return syscall in allowed


def parse(text: bytes | str, arch: str = "x86_64", capabilities: Collection[str] = ()) -> Profile:
    """Read a profile (OCI or Docker format) as a container of ``arch`` with ``capabilities`` sees it.

    Docker's conditional rules are resolved the way Docker and CRI-O do: a rule included only for other
    architectures, or only with a capability the container lacks, does not apply.
    """
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProfileError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("defaultAction"), str):
        raise ProfileError("not a seccomp profile: no defaultAction")
    if arch not in ARCHITECTURES:
        raise ProfileError(f"no seccomp architectures known for {arch}")
    scmp_arch = ARCHITECTURES[arch][0]
    caps = {c.upper() if c.upper().startswith("CAP_") else f"CAP_{c.upper()}" for c in capabilities}
    rules = []
    for index, rule in enumerate(doc.get("syscalls") or []):
        if not isinstance(rule, dict) or not isinstance(rule.get("action"), str):
            raise ProfileError(f"syscalls[{index}]: a rule needs an action")
        if not _applies(rule, scmp_arch, arch, caps):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ProfileError(f"syscalls[{index}]: names must be a list of syscall names")
        errno = rule.get("errnoRet")
        rules.append(Rule(tuple(names), rule["action"], errno if isinstance(errno, int) else None,
                          tuple(rule.get("args") or ())))
    errno = doc.get("defaultErrnoRet")
    return Profile(doc["defaultAction"], errno if isinstance(errno, int) else None,
                   _architectures(doc, scmp_arch), tuple(rules))


def _applies(rule: dict[str, Any], scmp_arch: str, arch: str, caps: set[str]) -> bool:
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    arches = {scmp_arch, arch, {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)}
    if includes.get("arches") and not arches & set(includes["arches"]):
        return False
    if excludes.get("arches") and arches & set(excludes["arches"]):
        return False
    if includes.get("caps") and not set(includes["caps"]) <= caps:
        return False
    return not (excludes.get("caps") and set(excludes["caps"]) & caps)


def _architectures(doc: dict[str, Any], scmp_arch: str) -> tuple[str, ...]:
    """``architectures``, or the entry of Docker's ``archMap`` for the architecture with its sub-architectures."""
    if doc.get("architectures"):
        return tuple(doc["architectures"])
    for entry in doc.get("archMap") or []:
        if entry.get("architecture") == scmp_arch:
            return (scmp_arch, *entry.get("subArchitectures", []))
    return ()


def to_oci(profile: Profile) -> dict[str, Any]:
    """The OCI runtime spec's ``linux.seccomp`` for a profile: what runc reads from a bundle's config.json.

    The OCI form has no comments, no single ``name`` and no conditions on architecture or capabilities:
    those were resolved when the profile was parsed; argument conditions and errno values carry over.
    """
    if not profile.architectures:
        raise ProfileError("the profile names no architecture for this machine")
    oci: dict[str, Any] = {"defaultAction": profile.default_action, "architectures": list(profile.architectures)}
    if profile.default_errno is not None:
        oci["defaultErrnoRet"] = profile.default_errno
    syscalls = []
    for rule in profile.rules:
        converted: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
        if rule.errno is not None:
            converted["errnoRet"] = rule.errno
        if rule.args:
            converted["args"] = list(rule.args)
        syscalls.append(converted)
    oci["syscalls"] = syscalls
    return oci


@dataclass(frozen=True, slots=True)
class Outside:
    """A syscall the workload made that its profile would not let run, or that a filter denied."""

    syscall: str
    reason: str  # "not allowed by the profile" | "denied by seccomp"
    count: int
    first: str
    last: str


def outside(profile: Profile, activity: Activity) -> list[Outside]:
    """What ``activity`` did outside ``profile``: observed calls it would stop, then recorded denials."""
    found = [Outside(seen.value, "not allowed by the profile", seen.count, f"{seen.first}", f"{seen.last}")
             for seen in activity.facets.get("syscall", []) if not profile.runs(seen.value)]
    found += [Outside(seen.value, "denied by seccomp", seen.count, f"{seen.first}", f"{seen.last}")
              for seen in activity.facets.get("seccomp_denied", [])]
    return found
