"""Alerts in the three shapes SIEMs ingest: OCSF Detection Finding, Elastic Common Schema, and ArcSight CEF.

An alert's lifecycle travels with it. vigil's ``alerts`` topic carries every update of an alert under the
same id, with a growing ``count`` and a later ``last_seen``; the first version has ``count == 1`` (the
engine's convention, see :mod:`vigil.detections.engine`). Every format says which one a document is (OCSF
``activity_id`` Create/Update, ECS ``event.action`` alert-created/alert-updated, CEF ``cs5`` lifecycle)
and carries the alert id, so a SIEM updates its finding instead of opening a second one. Telling the two apart from the
alert alone keeps the publisher stateless: a restart or a re-read batch renders the same documents.

An alert raised while a source it depends on was losing records carries
``context["coverage_degraded"] = {source: lost}``; each format states it where an analyst sees it without
opening the context (OCSF ``metadata.labels``, ECS ``labels.coverage_degraded``, CEF ``flexString1``),
because silence from a blind sensor is not the same as silence from a quiet pod.

Times: OCSF and CEF take Unix milliseconds, ECS RFC 3339 strings.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from vigil import __version__
from vigil.alert import Alert
from vigil.siem import mitre

#: The OCSF schema version the Detection Finding documents follow (``metadata.version``). The tests validate
#: them against the schema's own sources (1.9.0-dev, a superset): no deprecated attribute is used, so a 1.8
#: consumer and a newer one read the same document.
OCSF_VERSION = "1.8.0"
#: The ECS version the ECS documents follow (``ecs.version``); every field they use is defined there and
#: in the 9.x field list the tests validate them against.
ECS_VERSION = "8.11.0"

OCSF_CLASS_UID = 2004  # Detection Finding
OCSF_CATEGORY_UID = 2  # Findings
OCSF_CREATE, OCSF_UPDATE = 1, 2
OCSF_SEVERITY_IDS = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
#: ECS ``event.severity`` and ``event.risk_score``: the scale Elastic's own detection rules use.
ECS_SEVERITY = {"informational": 1, "low": 21, "medium": 47, "high": 73, "critical": 99}
#: CEF severity, 0-10 (0-3 low, 4-6 medium, 7-8 high, 9-10 very high).
CEF_SEVERITY = {"informational": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}


def is_update(alert: Alert) -> bool:
    """True for a later version of an alert already sent (the engine folded more hits into it)."""
    return alert.count > 1


def coverage_degraded(alert: Alert) -> str:
    """``source:lost`` pairs (``tetragon:12,ebpf:3``) of the sources that dropped records, or ``""``."""
    lost = alert.context.get("coverage_degraded") or {}
    return ",".join(f"{source}:{count}" for source, count in lost.items()) if isinstance(lost, dict) else ""


def _ms(ns: int) -> int:
    return ns // 1_000_000


def _rfc3339(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- OCSF ---------------------------------------------------------------------------------------------

def to_ocsf(alert: Alert) -> dict[str, Any]:
    """The alert as an OCSF Detection Finding (class 2004)."""
    activity, activity_name = (OCSF_UPDATE, "Update") if is_update(alert) else (OCSF_CREATE, "Create")
    first, last = _ms(alert.first_seen_ns), _ms(alert.last_seen_ns)
    degraded = coverage_degraded(alert)
    doc: dict[str, Any] = {
        "class_uid": OCSF_CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": OCSF_CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity,
        "activity_name": activity_name,
        "type_uid": OCSF_CLASS_UID * 100 + activity,
        "type_name": f"Detection Finding: {activity_name}",
        "time": last,
        "start_time": first,
        "end_time": last,
        "count": alert.count,
        "severity_id": OCSF_SEVERITY_IDS[alert.severity],
        "severity": alert.severity.capitalize(),
        "status_id": 1,
        "status": "New",
        "is_alert": True,
        "message": alert.title,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": f"{alert.id}:{alert.count}",  # this document; the finding itself is finding_info.uid
            "correlation_uid": alert.id,
            "product": {"name": "vigil", "vendor_name": "vigil", "version": __version__},
            "labels": [*alert.tags, *([f"coverage_degraded:{degraded}"] if degraded else [])],
        },
        "finding_info": _ocsf_finding_info(alert, first, last),
        "resources": _ocsf_resources(alert),
        "unmapped": {"vigil": {"dedup_key": alert.dedup_key, "context": alert.context}},
    }
    evidences = _ocsf_evidences(alert)
    if evidences:
        doc["evidences"] = evidences
    return doc


def _ocsf_finding_info(alert: Alert, first: int, last: int) -> dict[str, Any]:
    info: dict[str, Any] = {
        "uid": alert.id,
        "title": alert.title,
        "desc": alert.description,
        "types": list(alert.tags) or [alert.detection],
        "analytic": {"uid": alert.detection, "name": alert.detection, "type_id": 1, "type": "Rule"},
        "created_time": first,
        "first_seen_time": first,
        "last_seen_time": last,
        "modified_time": last,
        "product": {"name": "vigil", "uid": "vigil", "vendor_name": "vigil", "version": __version__},
    }
    attacks = [attack for t in alert.mitre for attack in _ocsf_attacks(mitre.technique(t))]
    if attacks:
        info["attacks"] = attacks
    if alert.event_ids:
        info["related_events"] = [{"uid": event_id} for event_id in alert.event_ids]
    return info


def _ocsf_attacks(technique: mitre.Technique) -> list[dict[str, Any]]:
    """One ATT&CK object per tactic the technique serves: OCSF's ``attack`` names one ``tactic`` (its list form
    ``tactics`` is deprecated since 1.1), so a technique of two tactics is two attacks."""
    attack: dict[str, Any] = {"version": mitre.ATTACK_VERSION}
    named = {"uid": technique.id} | ({"name": technique.name} if technique.name else {})
    if technique.is_sub_technique:
        attack["sub_technique"] = named
        parent = mitre.technique(technique.parent)
        attack["technique"] = {"uid": parent.id} | ({"name": parent.name} if parent.name else {})
    else:
        attack["technique"] = named
    if not technique.tactics:
        return [attack]
    return [attack | {"tactic": {"uid": uid, "name": name}} for uid, name in technique.tactics]


def _ocsf_resources(alert: Alert) -> list[dict[str, Any]]:
    """The pod, its namespace and its cluster, each named as far as the alert knows it."""
    resources = []
    if alert.pod:
        resources.append({"type": "kubernetes.pod", "name": alert.pod,
                          "uid": f"{alert.cluster}/{alert.namespace}/{alert.pod}",
                          "group": {"name": alert.namespace}, "labels": [f"cluster:{alert.cluster}"]})
    if alert.namespace:
        resources.append({"type": "kubernetes.namespace", "name": alert.namespace,
                          "uid": f"{alert.cluster}/{alert.namespace}", "labels": [f"cluster:{alert.cluster}"]})
    if alert.cluster:
        resources.append({"type": "kubernetes.cluster", "name": alert.cluster, "uid": alert.cluster})
    return resources


def _ocsf_evidences(alert: Alert) -> list[dict[str, Any]]:
    """One evidence per source record the alert points at (audit ``auditID``…), with the acting user."""
    actor = {"actor": {"user": {"name": alert.user}}} if alert.user else {}
    return [{"uid": original_id, "data": {"original_id": original_id}} | actor for original_id in alert.evidence]


# --- ECS ----------------------------------------------------------------------------------------------

def to_ecs(alert: Alert) -> dict[str, Any]:
    """The alert as an ECS document (``event.kind: alert``), with only fields ECS defines.

    The Kubernetes context goes where ECS puts it (``orchestrator.*``); vigil's own details that ECS has no field
    for are keywords under ``labels`` (count, dedup key, evidence ids), and the whole alert as vigil emitted it
    is ``event.original``, so nothing is lost (its context included) and no custom field can clash with an
    ECS index template. Fields the alert has no value for are left out rather than sent empty, as Beats do.
    """
    labels = {"severity": alert.severity, "cluster": alert.cluster, "lifecycle": _lifecycle(alert),
              "coverage_degraded": coverage_degraded(alert), "count": str(alert.count),
              "dedup_key": alert.dedup_key, "evidence": ",".join(alert.evidence)}
    doc: dict[str, Any] = {
        "@timestamp": _rfc3339(alert.last_seen_ns),
        "ecs": {"version": ECS_VERSION},
        "message": alert.title,
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection"],
            "type": ["info"],  # the only ECS type that fits intrusion_detection and says nothing more
            "action": "alert-updated" if is_update(alert) else "alert-created",
            "id": alert.id,
            "code": alert.detection,
            "severity": ECS_SEVERITY[alert.severity],
            "risk_score": float(ECS_SEVERITY[alert.severity]),
            "created": _rfc3339(alert.first_seen_ns),
            "start": _rfc3339(alert.first_seen_ns),
            "end": _rfc3339(alert.last_seen_ns),
            "provider": "vigil",
            "dataset": "vigil.alert",
            "module": "vigil",
            "original": alert.to_json().decode(),
        },
        "rule": {"id": alert.detection, "name": alert.title, "description": alert.description, "ruleset": "vigil"},
        "threat": _ecs_threat([mitre.technique(t) for t in alert.mitre]),
        "orchestrator": {"type": "kubernetes", "cluster": {"name": alert.cluster}, "namespace": alert.namespace,
                         "resource": {"type": "pod", "name": alert.pod} if alert.pod else {}},
        "user": {"name": alert.user},
        "related": {"user": [alert.user] if alert.user else []},
        "labels": labels,
        "tags": list(alert.tags),
    }
    return _without_empty(doc)


def _ecs_threat(techniques: list[mitre.Technique]) -> dict[str, Any]:
    """ECS ``threat.*``: techniques by their top-level id, sub-techniques beside them, tactics once each."""
    tactics = dict(pair for t in techniques for pair in t.tactics)
    parents = [mitre.technique(t.parent) if t.parent else t for t in techniques]
    subtechniques = [t for t in techniques if t.parent]
    threat: dict[str, Any] = {
        "framework": "MITRE ATT&CK",
        "technique": {"id": [t.id for t in parents], "name": [t.name or t.id for t in parents]},
        "tactic": {"id": list(tactics), "name": list(tactics.values())},
    }
    if subtechniques:
        threat["technique"]["subtechnique"] = {"id": [t.id for t in subtechniques],
                                               "name": [t.name or t.id for t in subtechniques]}
    return threat if techniques else {}


def _without_empty(value: Any) -> Any:
    """``value`` without the empty strings, lists and objects nested in it (numbers and booleans stay)."""
    if isinstance(value, dict):
        pruned = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ("", [], {}, None)}
    if isinstance(value, list):
        return [v for v in (_without_empty(v) for v in value) if v not in ("", [], {}, None)]
    return value


def _lifecycle(alert: Alert) -> str:
    return "update" if is_update(alert) else "create"


# --- CEF ----------------------------------------------------------------------------------------------

def cef_header_escape(value: str) -> str:
    """CEF header fields: ``\\`` and ``|`` escaped with a backslash; line breaks cannot appear, so they
    become spaces (a header spans exactly one line)."""
    escaped = value.replace("\\", "\\\\").replace("|", "\\|")
    return escaped.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def cef_extension_escape(value: str) -> str:
    """CEF extension values: ``\\`` and ``=`` escaped; line breaks written as ``\\n`` / ``\\r``."""
    escaped = value.replace("\\", "\\\\").replace("=", "\\=")
    return escaped.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def to_cef(alert: Alert) -> str:
    """The alert as one ArcSight CEF line: ``CEF:0|vigil|vigil|<version>|<detection>|<title>|<0-10>|ext``."""
    degraded = coverage_degraded(alert)
    header = "|".join(cef_header_escape(v) for v in ("vigil", "vigil", __version__, alert.detection, alert.title,
                                                      str(CEF_SEVERITY[alert.severity])))
    extension = {
        "rt": _ms(alert.last_seen_ns),
        "start": _ms(alert.first_seen_ns),
        "end": _ms(alert.last_seen_ns),
        "externalId": alert.id,
        "msg": alert.description,
        "suser": alert.user,
        "cs1Label": "namespace", "cs1": alert.namespace,
        "cs2Label": "pod", "cs2": alert.pod,
        "cs3Label": "cluster", "cs3": alert.cluster,
        "cs4Label": "mitre", "cs4": ",".join(alert.mitre),
        "cs5Label": "lifecycle", "cs5": _lifecycle(alert),
        "cs6Label": "evidence", "cs6": ",".join(alert.evidence),
        "cn1Label": "count", "cn1": alert.count,
        "flexString1Label": "coverage_degraded" if degraded else "",
        "flexString1": degraded,
    }
    pairs = " ".join(f"{key}={cef_extension_escape(str(value))}" for key, value in extension.items() if value != "")
    return f"CEF:0|{header}|{pairs}"


#: Format name → renderer of one alert into the bytes a topic or forwarder carries.
RENDERERS: dict[str, Callable[[Alert], bytes]] = {
    "ocsf": lambda alert: orjson.dumps(to_ocsf(alert)),
    "ecs": lambda alert: orjson.dumps(to_ecs(alert)),
    "cef": lambda alert: to_cef(alert).encode(),
}
