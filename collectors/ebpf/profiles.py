"""Per-container syscall profiles: what the kernel aggregated per cgroup, turned into ``syscalls`` records.

The sensor's ``on_sys_enter`` program sets, per cgroup and per CPU, one bit per syscall number a task of the
cgroup made and counts its syscalls by class (forks, execs, opens, connects). It does so in a slot per CPU for
the cgroup that last made a syscall there, and adds the slot into the cgroup's entry of the kernel's map when a
task of another cgroup makes one on that CPU (a map lookup on every syscall cost more than the rest of the
profile's work). This module first makes the kernel add the slots that hold what it is about to take: its
thread makes a syscall on each of those CPUs (:meth:`SyscallProfiles.flush_slots`). Then it takes each
cgroup's entry out of the map in one step (lookup-and-delete: what the kernel adds afterwards starts a fresh
entry) every flush interval, and at once when the cgroup is removed (its container exited), so each record
says what one container did during one interval. A CPU the collector may not run on (a cpuset that leaves it
out) keeps its slot until a task of another cgroup runs there: those syscalls are reported in a later
interval, and a removed cgroup's are reported only if the collector still knows its path then. The records
leave with the sensor's other records (``raw.ebpf``, normalized to ``container.syscalls``); a least-privilege
seccomp profile is the union of a workload's records.

What runc's init does in the container's cgroup before it executes the workload (mount, pivot_root,
sethostname, seccomp, ...: the container's set-up) is not counted: the kernel program knows the init by its
name (``runc:[...]``, ``is_runc_init`` in sensor.bpf.c). The execve of the workload is the init's too, so
it is missing from a container's first record unless the workload executes again; a profile must allow it
anyway (``vigil.storage.profiles.seccomp`` adds it with the other calls the runtime needs). crun names its init
nothing recognisable (its copy of itself, executed from a memfd, is called after the descriptor, e.g. "3"),
so under crun the set-up calls are still counted. Under runc the calls its init makes before it names
itself are counted too: measured on runc 1.1, a busybox container's record is exactly what the kernel's
audit log saw busybox call, plus socketpair.

Host cgroups (whose path names no container) are taken and dropped unless ``include_host``: vigil profiles
workloads, and the host's services would only add records nobody turns into a profile. Syscalls of 32-bit
tasks on a 64-bit kernel are kept apart (their numbers are another table's) and reported under their own
architecture (``i386`` on x86-64).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Collection
from typing import Any

from vigil.collectors.ebpf.cgroups import CgroupResolver, container_id_of_path
from vigil.collectors.ebpf.libbpf import BpfObject
from vigil.collectors.ebpf.syscall_table import CLASSES, COMPAT_ARCH, SYSCALL_SLOTS, node_arch
from vigil.sources.host_sensors import syscall_by_number

MAP = "cgroup_syscalls"
SLOTS = "profile_slots"
_CLASS_SLOTS = 8  # counters per architecture (CLASS_SLOTS in sensor.bpf.c), of which CLASSES are used
_WORDS = SYSCALL_SLOTS // 64
_VALUE = struct.Struct(f"<{_WORDS}Q{2 * _CLASS_SLOTS}Q")  # struct cgroup_syscalls: used[], counts[2][]
_KEY = struct.Struct("<Q")
_SLOT_KEY = struct.pack("<I", 0)
_SLOT_CGROUP = struct.Struct("<Q")  # struct profile_slot: the cgroup id, then a struct cgroup_syscalls
_SLOT_SIZE = _SLOT_CGROUP.size + _VALUE.size


def profile_records(cgroup_id: int, values: list[bytes], arch: str) -> list[dict[str, Any]]:
    """The ``syscalls`` records of one cgroup's per-CPU entries: one per architecture its tasks used (the
    caller adds time, container and pids)."""
    used = [0] * _WORDS
    counts = [0] * (2 * _CLASS_SLOTS)
    for value in values:
        fields = _VALUE.unpack(value)
        used = [have | more for have, more in zip(used, fields[:_WORDS], strict=True)]
        counts = [have + more for have, more in zip(counts, fields[_WORDS:], strict=True)]
    records = []
    half = _WORDS // 2  # words of native numbers, then of compat ones
    for first_word, record_arch in ((0, arch), (half, COMPAT_ARCH.get(arch, f"{arch}-compat"))):
        numbers = [(word - first_word) * 64 + bit for word in range(first_word, first_word + half)
                   for bit in range(64) if used[word] >> bit & 1]
        if not numbers:
            continue
        first_count = _CLASS_SLOTS if first_word else 0
        class_counts = counts[first_count : first_count + len(CLASSES)]
        records.append({
            "type": "syscalls",
            "cgroup_id": cgroup_id,
            "arch": record_arch,
            "syscalls": sorted(syscall_by_number(record_arch, number) for number in numbers),
            "counts": dict(zip(CLASSES, class_counts, strict=True)),
        })
    return records


class SyscallProfiles:
    """Takes the kernel's per-cgroup entries every ``interval_s`` (see the module docstring)."""

    def __init__(self, bpf: BpfObject, cgroups: CgroupResolver, interval_s: float, include_host: bool) -> None:
        self.bpf = bpf
        self.cgroups = cgroups
        self.interval_s = interval_s
        self.include_host = include_host
        self.arch = node_arch()
        self._interval_start = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._interval_start >= self.interval_s

    def flush_slots(self, cgroup_ids: Collection[int] | None = None) -> None:
        """Make the kernel add what each CPU's slot holds into the map, for the slots that hold one of
        ``cgroup_ids`` (any cgroup when None): this thread makes a syscall on each such CPU it may run on
        (moving there is itself one), then returns to the CPUs it ran on."""
        slots = self.bpf.lookup_per_cpu(SLOTS, _SLOT_KEY, _SLOT_SIZE)
        allowed = os.sched_getaffinity(0)
        cpus = [cpu for cpu, value in enumerate(slots) if cpu in allowed
                and (held := _SLOT_CGROUP.unpack_from(value)[0]) and (cgroup_ids is None or held in cgroup_ids)]
        if not cpus:
            return
        for cpu in cpus:
            os.sched_setaffinity(0, {cpu})  # returns on ``cpu``: the next call enters the kernel there
        os.sched_setaffinity(0, allowed)

    def take_all(self) -> list[dict[str, Any]]:
        """Every cgroup's records for the interval that ends now (the next interval starts empty)."""
        self.flush_slots()
        records = []
        for key in self.bpf.keys(MAP, _KEY.size):
            cgroup_id = _KEY.unpack(key)[0]
            path = self.cgroups.relative_path(cgroup_id)
            records += self._take(cgroup_id, path)
        self._interval_start = time.monotonic()
        return records

    def take_removed(self, removed: list[tuple[int, str]]) -> list[dict[str, Any]]:
        """The records of cgroups that were just removed: (id, path as the kernel named it) of each. The kernel
        reports every removed cgroup; those that made no syscalls since the last interval have none."""
        if not removed:
            return []
        self.flush_slots({cgroup_id for cgroup_id, _ in removed})
        return [record for cgroup_id, path in removed for record in self._take(cgroup_id, path)]

    def _take(self, cgroup_id: int, path: str | None) -> list[dict[str, Any]]:
        values = self.bpf.take_per_cpu(MAP, _KEY.pack(cgroup_id), _VALUE.size)
        if values is None:
            return []
        container_id = container_id_of_path(path) if path else ""
        if not container_id and not self.include_host:
            return []
        end_ns = time.time_ns()
        interval_s = round(time.monotonic() - self._interval_start, 3)
        pids = self.cgroups.pids_current(path) if path else -1
        records = profile_records(cgroup_id, values, self.arch)
        for record in records:
            record.update(time_ns=end_ns, container_id=container_id, interval_s=interval_s, pids=pids)
        return records
