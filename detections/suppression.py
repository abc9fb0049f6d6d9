"""Alert suppression: the open alert per (detection, dedup key), kept in a store so that it survives a worker.

A hit with the same detection and dedup key as an alert raised less than the detection's ``dedup_period_s``
earlier (event time) updates that alert instead of raising another; the same evidence seen twice (an audit
request logged at several stages, a Kafka batch read again after a crash) is ignored. Both facts must outlive
the process that learned them: when a stream worker dies, the worker its partitions move to must fold the next
repeats into the same alert id, and must recognise the hits the dead worker had already counted but whose
offsets it never committed. So, like the state of windows and sequences, suppression goes through a
:class:`~vigil.detections.state.StateStore`: a dict in replay and tests, a Faust table with a changelog in the
stream workers.

One store entry per (detection, dedup key), JSON-able:
``{"route": key, "until_ns": end of the dedup period, "alert": {...}, "hits": [recent hit ids]}``.
``route`` is the Kafka key of the events that opened the alert (the pod's correlation key, or the state key of
the window or sequence that raised it): a worker's store writes the entry to the changelog partition that pairs
with the raw partition of those events, so the worker that receives the pod's next events after a rebalance
restores its open alerts with them. An entry keeps its route for as long as it lives, so a key is only ever in
one changelog partition.

Costs: an entry is read (decoded) at most once and written (encoded, one changelog message) at most once per
:meth:`AlertSuppression.commit`, which the stream processor calls once per batch of Kafka messages; a noisy
workload costs one write per batch, not one per hit. ``hits`` keeps the :data:`MAX_HITS` most recent hit ids
(truncated to 64 bits): enough for an audit request's stages and for the few batches a crashed worker leaves
uncommitted, at ~2 KB per entry.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from vigil.alert import Alert, alert_id
from vigil.detections.state import DictStore, StateStore
from vigil.event import Event

#: An alert keeps at most this many evidence ids; its count keeps counting beyond.
MAX_EVIDENCE = 50
#: Recent hit ids an entry remembers, to ignore the same evidence seen again.
MAX_HITS = 100
#: Characters of a hit id kept (64 bits: a collision within one entry's hits is not a concern).
HIT_ID_CHARS = 16

_ALERT_FIELDS = tuple(Alert.__dataclass_fields__)


@dataclass(slots=True)
class _Entry:
    """A decoded store entry: the open alert, the key of the partition it lives on, and recent hit ids."""

    alert: Alert
    route: str
    until_ns: int
    hits: list[str]

    @classmethod
    def decode(cls, value: dict[str, Any]) -> _Entry:
        doc = value["alert"]
        alert = Alert(**{**doc, "evidence": list(doc["evidence"]), "event_ids": list(doc["event_ids"]),
                         "context": dict(doc["context"])})
        return cls(alert, value["route"], value["until_ns"], list(value["hits"]))

    def encode(self) -> dict[str, Any]:
        alert = self.alert
        return {"route": self.route, "until_ns": self.until_ns, "hits": list(self.hits),
                "alert": {name: getattr(alert, name) for name in _ALERT_FIELDS}}

    def first_sighting(self, hit_id: str) -> bool:
        """Remember ``hit_id``; ``False`` if it is among the recent hits already."""
        short = hit_id[:HIT_ID_CHARS]
        if short in self.hits:
            return False
        self.hits.append(short)
        if len(self.hits) > MAX_HITS:
            del self.hits[0]
        return True


class AlertSuppression:
    """Open alerts and recent hits in ``store``, bounded to ``capacity`` entries (least recently written go
    first) and dropped once their dedup period is behind the watermark. Hits that update an open alert are
    folded into it and the alert is reported once by :meth:`changed`, however many hits came."""

    def __init__(self, store: StateStore | None = None, capacity: int = 50_000) -> None:
        self._store: StateStore = store if store is not None else DictStore()
        self._capacity = capacity
        #: Entries read or changed since the last commit, by store key (``None``: the store has none).
        self._read: dict[str, _Entry | None] = {}
        self._dirty: set[str] = set()
        #: Store key -> end of its dedup period, in least-recently-written order.
        self._until: OrderedDict[str, int] = OrderedDict()
        #: Open alerts updated since :meth:`changed` was last called, by alert id.
        self._changed: dict[str, Alert] = {}

    def open_alert(self, detection: str, dedup_key: str, time_ns: int, period_s: float) -> Alert | None:
        """The open alert a hit at ``time_ns`` would update, ``None`` when the hit raises a new one."""
        entry = self._entry(f"{detection}\x1f{dedup_key}")
        if entry is None or abs(time_ns - entry.alert.first_seen_ns) >= period_s * 1e9:
            return None
        return entry.alert

    def open(self, alert: Alert, route: str, period_s: float) -> Alert | None:
        """Hold ``alert`` open for its key, its entry routed by ``route`` (see the module doc); what to emit,
        ``None`` if this evidence already raised it."""
        key = f"{alert.detection}\x1f{alert.dedup_key}"
        previous = self._entry(key)
        if previous is not None and not previous.first_sighting(alert.id):
            return None
        entry = _Entry(alert, previous.route if previous else route, alert.first_seen_ns + int(period_s * 1e9),
                       previous.hits if previous else [alert.id[:HIT_ID_CHARS]])
        self._read[key] = entry
        self._dirty.add(key)
        return _snapshot(alert)

    def update(self, held: Alert, alert: Alert) -> bool:
        """Fold a hit into the open alert; ``False`` if this evidence already raised it."""
        entry = self._held_entry(held)
        if not entry.first_sighting(alert.id):
            return False
        self._merge(entry, alert.count, alert.first_seen_ns, alert.last_seen_ns, alert.evidence, alert.event_ids)
        return True

    def repeat(self, held: Alert, event: Event) -> bool:
        """Fold a single-event hit into the open alert without building the alert the hit would raise;
        ``False`` if this evidence already raised it."""
        evidence = event.original_id or event.id
        entry = self._held_entry(held)
        if not entry.first_sighting(alert_id(held.detection, held.dedup_key, [evidence])):
            return False
        self._merge(entry, 1, event.time_ns, event.time_ns, [evidence], [event.id])
        return True

    def changed(self) -> list[Alert]:
        """The open alerts updated since the last call, as they are now."""
        changed, self._changed = self._changed, {}
        return [_snapshot(alert) for alert in changed.values()]

    def commit(self) -> None:
        """Write the entries changed since the last commit, once each; evict beyond the capacity."""
        for key in self._dirty:
            entry = self._read[key]
            assert entry is not None
            self._store.set(key, entry.encode())
            self._until[key] = entry.until_ns
            self._until.move_to_end(key)
        self._dirty.clear()
        self._read.clear()
        while len(self._until) > self._capacity:
            evicted, _ = self._until.popitem(last=False)
            self._store.delete(evicted)

    def expire(self, watermark_ns: int) -> None:
        """Drop the entries whose dedup period the watermark has passed (a later hit raises a new alert anyway).
        Entries the store holds but this object did not write (a Faust table restored from its changelog after a
        restart or rebalance) are indexed first."""
        self.commit()
        if len(self._store) != len(self._until):
            self._reindex()
        for key in [key for key, until in self._until.items() if until <= watermark_ns]:
            del self._until[key]
            self._store.delete(key)

    def _entry(self, key: str) -> _Entry | None:
        if key in self._read:
            return self._read[key]
        if len(self._read) >= self._capacity:  # a long batch (a replay) keeps memory flat too
            self.commit()
        value = self._store.get(key)
        entry = self._read[key] = None if value is None else _Entry.decode(value)
        return entry

    def _held_entry(self, held: Alert) -> _Entry:
        entry = self._entry(f"{held.detection}\x1f{held.dedup_key}")
        assert entry is not None and entry.alert is held, "an open alert is updated within the batch it was read in"
        return entry

    def _merge(self, entry: _Entry, count: int, first_seen_ns: int, last_seen_ns: int, evidence: list[str],
               event_ids: list[str]) -> None:
        held = entry.alert
        held.count += count
        held.first_seen_ns = min(held.first_seen_ns, first_seen_ns)
        held.last_seen_ns = max(held.last_seen_ns, last_seen_ns)
        room = MAX_EVIDENCE - len(held.evidence)
        held.evidence.extend(evidence[:room])
        held.event_ids.extend(event_ids[:room])
        self._dirty.add(f"{held.detection}\x1f{held.dedup_key}")
        self._changed[held.id] = held

    def _reindex(self) -> None:
        keys = set(self._store.keys())
        for key in [key for key in self._until if key not in keys]:
            del self._until[key]
        for key in keys - self._until.keys():
            value = self._store.get(key)
            if value is not None:
                self._until[key] = value["until_ns"]


def _snapshot(alert: Alert) -> Alert:
    """A copy for the caller: the held alert keeps changing with later hits, what was emitted must not."""
    return replace(alert, evidence=list(alert.evidence), event_ids=list(alert.event_ids), context=dict(alert.context))
