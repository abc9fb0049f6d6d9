"""A workload's observed activity, read from ``workload_activity`` and ``workload_observations``.

A workload is a controller's name in a namespace (how it is derived from pods:
:data:`vigil.storage.schema.WORKLOAD_SQL`), optionally narrowed to one container name and one cluster.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from vigil.storage.clickhouse import ClickHouseStore

#: The rows of one workload since a moment; '' in cluster or container matches every value.
_SCOPE = """namespace = {namespace:String} AND workload = {workload:String}
  AND ({container:String} = '' OR container_name = {container:String})
  AND ({cluster:String} = '' OR cluster = {cluster:String})
  AND day >= toDate({since:DateTime64(9, 'UTC')})"""

ACTIVITY_SQL = f"""
SELECT facet, value, sum(count) AS count, min(first_seen) AS first, max(last_seen) AS last
FROM workload_activity
WHERE {_SCOPE} AND last_seen >= {{since:DateTime64(9, 'UTC')}}
GROUP BY facet, value
ORDER BY facet, value
"""

OBSERVATIONS_SQL = f"""
SELECT sum(intervals), sum(observed_seconds), uniqMerge(pods), min(first_seen), max(last_seen),
       groupUniqArray(container_name)
FROM workload_observations
WHERE {_SCOPE} AND last_seen >= {{since:DateTime64(9, 'UTC')}}
"""


@dataclass(frozen=True, slots=True)
class Seen:
    """One observed value: how many events (or flush intervals) it appeared in, and when."""

    value: str
    count: int
    first: datetime
    last: datetime


@dataclass(slots=True)
class Workload:
    """Who is being advised on."""

    namespace: str
    name: str
    container: str = ""
    cluster: str = ""

    def describe(self) -> str:
        where = f"{self.namespace}/{self.name}"
        return where + (f" container {self.container}" if self.container else "") + \
            (f" in cluster {self.cluster}" if self.cluster else "")


@dataclass(slots=True)
class Activity:
    """What a workload did in a period, by facet (see ``vigil.storage.schema``: syscall, exec, file_read …)."""

    workload: Workload
    facets: dict[str, list[Seen]] = field(default_factory=lambda: defaultdict(list))
    intervals: int = 0
    observed_seconds: float = 0.0
    pods: int = 0
    containers: list[str] = field(default_factory=list)
    first: datetime | None = None
    last: datetime | None = None

    def values(self, facet: str) -> list[str]:
        return [seen.value for seen in self.facets.get(facet, [])]

    def is_empty(self) -> bool:
        return not self.facets

    def summary(self) -> str:
        """When and how much was observed, for the comments of a profile."""
        period = f"{self.first:%Y-%m-%d %H:%M} to {self.last:%Y-%m-%d %H:%M} UTC" if self.first else "no syscall data"
        pods = f"{self.pods} pod{'' if self.pods == 1 else 's'}"
        return f"{period}, {pods}, {self.observed_seconds / 3600:.2f} container-hours"


def load_activity(store: ClickHouseStore, workload: Workload, since: datetime) -> Activity:
    """Everything the rollups hold about ``workload`` since ``since`` (rows of a day are kept whole, and
    filtered by when each value was last seen)."""
    parameters = {"namespace": workload.namespace, "workload": workload.name, "container": workload.container,
                  "cluster": workload.cluster, "since": since.strftime("%Y-%m-%d %H:%M:%S.%f")}
    activity = Activity(workload)
    for facet, value, count, first, last in store.query(ACTIVITY_SQL, parameters).result_rows:
        activity.facets[facet].append(Seen(value, count, first, last))
    intervals, seconds, pods, first, last, containers = store.query(OBSERVATIONS_SQL, parameters).result_rows[0]
    if intervals:
        activity.intervals, activity.observed_seconds, activity.pods = intervals, seconds, pods
        activity.first, activity.last, activity.containers = first, last, sorted(containers)
    return activity


def known_workloads(store: ClickHouseStore, namespace: str, since: datetime) -> list[str]:
    """Workloads of ``namespace`` with syscall data since ``since``: what to suggest after a miss."""
    return [row[0] for row in store.query(
        "SELECT DISTINCT workload FROM workload_observations WHERE namespace = {namespace:String} "
        "AND last_seen >= {since:DateTime64(9, 'UTC')} ORDER BY workload LIMIT 20",
        {"namespace": namespace, "since": since.strftime("%Y-%m-%d %H:%M:%S.%f")}).result_rows]
