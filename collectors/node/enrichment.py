"""The container id → Kubernetes context cache that enriches every node record, and process → container.

Lookups happen for every eBPF record, so they are one dict access; resolving a container the cache does
not know (a CRI round trip) happens once per container, in batches, off that path. The cache is bounded
(least recently used entries go first) and forgets a container only a grace period after it exited, so
records that arrive late (the kernel's last exits, the runtime's exit and delete events) still get their
pod. Ids the runtime does not know (containers of another runtime, host cgroups) are remembered as
unknown for a while, so they are not asked about again for every record.

Entries come from CRI (``origin="cri"``) and from the Kubernetes API (``"api"``), which knows more (the
service account) and therefore wins: CRI never overwrites an API entry.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.collectors.ebpf.cgroups import container_id_of_path
from vigil.collectors.node import metrics
from vigil.collectors.runtime.cri import k8s_context

#: The context of a record from outside any container (a host process).
NO_CONTAINER = k8s_context()


@dataclass(slots=True)
class _Entry:
    context: dict[str, Any]
    origin: str
    expires: float = math.inf  # monotonic time; finite once the container exited or for unknown ids


class ContextCache:
    """Bounded LRU cache of k8s contexts by container id, with an exit grace period and negative entries."""

    def __init__(self, max_entries: int = 16_384, exited_grace_s: float = 300.0, unknown_ttl_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.exited_grace_s = exited_grace_s
        self.unknown_ttl_s = unknown_ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._hits = 0
        self._lookups = 0
        self._counted = {result: metrics.ENRICHMENT_LOOKUPS.labels(result) for result in ("hit", "miss", "unknown")}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, container_id: object) -> bool:
        """Whether the container's context is known (not merely remembered as unknown, and not expired)."""
        entry = self._entries.get(container_id) if isinstance(container_id, str) else None
        return entry is not None and entry.origin != "unknown" and entry.expires > self._clock()

    def lookup(self, container_id: str) -> dict[str, Any] | None:
        """The context for ``container_id``; ``None`` when it has to be resolved (never seen, or expired)."""
        if not container_id:
            return NO_CONTAINER
        entry = self._entries.get(container_id)
        if entry is not None and entry.expires <= self._clock():
            del self._entries[container_id]
            entry = None
        self._lookups += 1
        if entry is None:
            self._counted["miss"].inc()
        elif entry.origin == "unknown":
            self._counted["unknown"].inc()
        else:
            self._hits += 1
            self._counted["hit"].inc()
            self._entries.move_to_end(container_id)
        metrics.ENRICHMENT_HIT_RATIO.set(self._hits / self._lookups)
        return entry.context if entry is not None else None

    def peek(self, container_id: str) -> dict[str, Any]:
        """The context just resolved for ``container_id`` (not counted as a lookup; empty if none)."""
        entry = self._entries.get(container_id)
        return entry.context if entry is not None else k8s_context(container_id=container_id)

    def put(self, container_id: str, context: dict[str, Any], origin: str) -> None:
        """Remember a container's context (``origin`` "cri" or "api"); an API entry is never replaced by CRI."""
        current = self._entries.get(container_id)
        if current is not None and current.origin == "api" and origin != "api":
            return
        expires = current.expires if current is not None and current.origin != "unknown" else math.inf
        self._store(container_id, _Entry(context, origin, expires))

    def put_unknown(self, container_id: str) -> None:
        """Remember that the runtime does not know this id (for ``unknown_ttl_s``)."""
        if container_id not in self._entries:
            context = k8s_context(container_id=container_id)
            self._store(container_id, _Entry(context, "unknown", self._clock() + self.unknown_ttl_s))

    def exited(self, container_id: str) -> None:
        """The container is gone: keep its context for ``exited_grace_s`` more, for late records."""
        entry = self._entries.get(container_id)
        if entry is not None and entry.origin != "unknown":
            entry.expires = min(entry.expires, self._clock() + self.exited_grace_s)

    def _store(self, container_id: str, entry: _Entry) -> None:
        self._entries[container_id] = entry
        self._entries.move_to_end(container_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        metrics.ENRICHMENT_ENTRIES.set(len(self._entries))


def container_of_pid(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The container id of a running process ("" for a host process), from its cgroup paths; ``None`` when
    the process is gone (its record must be resolved another way, see :class:`PidContainers`)."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "0::<path>" is the cgroup v2 path; on hybrid hosts the v1 controllers' paths name the container too.
    for line in sorted(lines, key=lambda line: not line.startswith("0::")):
        found = container_id_of_path(line.partition(":")[2].partition(":")[2])
        if found:
            return found
    return ""


class PidContainers:
    """The container of processes that may be gone by the time a record about them is read: a process
    killed by its seccomp filter has exited before its audit record reaches user space.

    Fed with the pids the node's other sources announce (containerd's task start: a container's first
    process; the eBPF sensor's exec records: every program started), bounded, oldest first out. A pid the
    kernel has since reused is answered from ``/proc`` first, so only the dead can get a stale answer.
    """

    def __init__(self, max_entries: int = 65_536) -> None:
        self.max_entries = max_entries
        self._containers: OrderedDict[int, str] = OrderedDict()

    def remember(self, pid: int, container_id: str) -> None:
        self._containers[pid] = container_id
        self._containers.move_to_end(pid)
        if len(self._containers) > self.max_entries:
            self._containers.popitem(last=False)

    def lookup(self, pid: int) -> str:
        return self._containers.get(pid, "")
