"""The analyst's side of alerts: listing them with their triage status, showing one with its evidence,
and moving it through its lifecycle (new → acknowledged → closed).

Detections own an alert's content (the writer stores each re-emission, ``alerts`` keeps the latest); analysts
own its status, recorded separately in ``alert_status`` so that a re-emitted alert never undoes a triage
decision. The ``alert_triage`` view joins both.
"""

from __future__ import annotations

from typing import Any

from vigil.storage.clickhouse import ClickHouseStore, StoreError

#: The lifecycle an analyst moves an alert through.
STATUSES = ("new", "acknowledged", "closed")

#: Evidence is looked for this far around the alert's first and last sighting: event times are the
#: sources' clocks, and bounding the search lets ClickHouse skip every other day's partition.
EVIDENCE_MARGIN_HOURS = 24

LIST_SQL = """
SELECT id, first_seen, last_seen, count, severity, detection, namespace, pod, user, status
FROM alert_triage
WHERE last_seen >= {since:DateTime64(9, 'UTC')}
  AND ({status:String} = '' OR status = {status:String})
  AND ({severity:String} = '' OR severity = {severity:String})
ORDER BY last_seen DESC, id
LIMIT {limit:UInt32}
"""

SHOW_SQL = "SELECT * FROM alert_triage WHERE id = {id:String}"

EVIDENCE_SQL = """
SELECT time, source, kind, action, namespace, pod, actor_user AS user, actor_exe AS exe,
       target_resource AS resource, target_subresource AS subresource, target_name AS name,
       target_path AS path, target_address AS address, outcome_result AS result, original_id, event_id
FROM events
WHERE time BETWEEN {first_seen:DateTime64(9, 'UTC')} - toIntervalHour({margin:UInt32})
               AND {last_seen:DateTime64(9, 'UTC')} + toIntervalHour({margin:UInt32})
  AND (original_id IN {evidence:Array(String)} OR event_id IN {event_ids:Array(String)})
ORDER BY time, event_id
LIMIT 1 BY event_id
"""


def list_params(since: str, status: str = "", severity: str = "", limit: int = 100) -> dict[str, Any]:
    """Parameters for :data:`LIST_SQL`; ``since`` is a UTC time as text."""
    if status and status not in STATUSES:
        raise StoreError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    return {"since": since, "status": status, "severity": severity, "limit": limit}


def get_alert(store: ClickHouseStore, alert_id: str) -> dict[str, Any]:
    """The alert in its latest state with its triage status; StoreError if there is none with this id."""
    result = store.query(SHOW_SQL, {"id": alert_id})
    if not result.result_rows:
        raise StoreError(f"no alert with id {alert_id!r}")
    return dict(zip(result.column_names, result.result_rows[0], strict=True))


def evidence_params(alert: dict[str, Any]) -> dict[str, Any]:
    """Parameters for :data:`EVIDENCE_SQL`: the alert's evidence ids around its time."""
    return {"first_seen": alert["first_seen"].strftime("%Y-%m-%d %H:%M:%S.%f"),
            "last_seen": alert["last_seen"].strftime("%Y-%m-%d %H:%M:%S.%f"),
            "margin": EVIDENCE_MARGIN_HOURS, "evidence": list(alert["evidence"]), "event_ids": list(alert["event_ids"])}


def set_status(store: ClickHouseStore, alert_id: str, status: str, changed_by: str, note: str = "") -> None:
    """Record a triage decision; the alert must exist. History is kept: nothing is overwritten."""
    if status not in STATUSES:
        raise StoreError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    if not store.query("SELECT count() FROM alerts WHERE id = {id:String}", {"id": alert_id}).result_rows[0][0]:
        raise StoreError(f"no alert with id {alert_id!r}")
    store.command(
        "INSERT INTO alert_status (alert_id, status, changed_by, note) "
        "VALUES ({id:String}, {status:String}, {by:String}, {note:String})",
        {"id": alert_id, "status": status, "by": changed_by, "note": note},
    )


def status_history(store: ClickHouseStore, alert_id: str) -> list[tuple[Any, ...]]:
    """Every triage decision on the alert, oldest first: (changed_at, status, changed_by, note)."""
    return store.query(
        "SELECT changed_at, status, changed_by, note FROM alert_status WHERE alert_id = {id:String} "
        "ORDER BY changed_at", {"id": alert_id}).result_rows
