"""Examples synthesized from a Sigma rule, so an imported detection arrives testable.

Sigma rules carry no test events. The importer builds them: a positive is an ordinary audit record (a
``get`` of a pod) with the fields a few of the rule's search identifiers test set to values those
identifiers accept, tried from the fewest identifiers up until the rule's real condition fires on the
normalized event (so ``not`` filters and ``1 of`` selections are respected); a negative is the ordinary
record, or the positive with one of its fields set to a value nothing in the rule accepts. Both go through
the real audit source, as ``vigil detections test`` runs them. What cannot be synthesized (a field matched
only by a regular expression) is reported, and the rule's author adds an example by hand.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from vigil.detections.runner import RecordRunner
from vigil.detections.sigma.fields import WRITTEN_LAST, write_field
from vigil.detections.sigma.matching import (
    AllOf,
    AnyOf,
    Boolean,
    Cidr,
    Compare,
    Exists,
    FieldMatch,
    Keywords,
    Null,
    Number,
    Search,
    Text,
    Value,
    sigma_literal,
)
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.source import get_source

Condition = Callable[[Event], bool]
SOURCE = "k8s-audit"
#: A value no Sigma rule about Kubernetes audit events plausibly accepts, for negatives.
UNMATCHED = "vigil-example-unmatched"
#: Subsets of search identifiers tried for a positive, at most (rules have a handful of identifiers).
MAX_ATTEMPTS = 4096
#: Normalizes example records as the pipeline would (no detections: the rule's condition is the judge).
_NORMALIZER = RecordRunner(None, cluster="example-cluster", node="example-node", max_record_bytes=1 << 24)
_NOTHING = object()  # no value can be synthesized
_ABSENT = object()  # the value is "the field is absent": write nothing


def base_record() -> dict[str, Any]:
    """The ordinary request every example starts from: a person reading a pod."""
    return audit_record("get", "pods", name="example-pod", namespace="default")


def fires(condition: Condition, record: dict[str, Any]) -> bool:
    """Whether the condition matches the record once split and normalized by the real audit source."""
    result = _NORMALIZER.run_payload(get_source(SOURCE), orjson.dumps(record))
    return not result.refused and any(condition(event) for event in result.events)


def renumbered(record: dict[str, Any], salt: str = "") -> dict[str, Any]:
    """The record with an auditID derived from its content (and ``salt``), as :func:`audit_record` does."""
    record = {key: value for key, value in record.items() if key != "auditID"}
    content = orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode() + salt
    record["auditID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, content))
    return record


def positive(condition: Condition, searches: dict[str, Search]) -> dict[str, Any] | None:
    """A record the condition fires on, built from as few search identifiers as possible."""
    names = list(searches)
    attempts = itertools.islice(
        (chosen for size in range(len(names) + 1) for chosen in itertools.combinations(names, size)), MAX_ATTEMPTS
    )
    for chosen in attempts:
        writes: list[tuple[str, Any]] = []
        if not all(_satisfy(searches[name], writes) for name in chosen):
            continue
        record = _apply(base_record(), writes)
        if fires(condition, record):
            return record
    return None


def negative(condition: Condition, positive_record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record the condition stays quiet on: the ordinary one, else the positive with one field spoiled."""
    for candidate in _negative_candidates(positive_record):
        if not fires(condition, candidate):
            return candidate
    return None


def _negative_candidates(positive_record: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    yield base_record()
    if positive_record is None:
        return
    for key in ("verb", "objectRef", "requestURI", "userAgent", "user", "responseStatus", "requestObject"):
        spoiled = copy.deepcopy(positive_record)
        if key == "verb":
            spoiled["verb"] = "watch"
        elif key == "objectRef" and isinstance(spoiled.get("objectRef"), dict):
            spoiled["objectRef"] = {**spoiled["objectRef"], "resource": UNMATCHED, "subresource": UNMATCHED}
        elif key == "responseStatus":
            spoiled["responseStatus"] = {"metadata": {}, "code": 500}
        elif key == "user":
            spoiled["user"] = {"username": UNMATCHED, "groups": []}
        elif key in spoiled:
            spoiled[key] = {} if key == "requestObject" else UNMATCHED
        yield renumbered(spoiled)


def _apply(record: dict[str, Any], writes: list[tuple[str, Any]]) -> dict[str, Any]:
    """The record with the writes applied, abstract (request-body) fields last, and a fresh auditID."""
    for field_name, value in sorted(writes, key=lambda write: write[0] in WRITTEN_LAST):
        write_field(record, field_name, value)
    if "requestObject" in record:
        record["level"] = "Request"
    if all(field_name != "requestURI" for field_name, _ in writes):
        record["requestURI"] = _request_uri(record)
    return renumbered(record)


def _request_uri(record: dict[str, Any]) -> str:
    """The request URI the record's objectRef stands for, so a synthesized record reads consistently."""
    ref = record.get("objectRef") if isinstance(record.get("objectRef"), dict) else {}
    group, version = ref.get("apiGroup") or "", ref.get("apiVersion") or "v1"
    parts = [f"/apis/{group}/{version}" if group else f"/api/{version}"]
    parts += ["namespaces", ref["namespace"]] if ref.get("namespace") else []
    parts += [p for p in (ref.get("resource"), ref.get("name"), ref.get("subresource")) if p]
    return "/".join(str(p) for p in parts)


def _satisfy(search: Search, writes: list[tuple[str, Any]]) -> bool:
    """Add the field values that make ``search`` match; False when no value can be synthesized."""
    if isinstance(search, AllOf):
        return all(_satisfy(item, writes) for item in search.items)
    if isinstance(search, AnyOf):
        return any(_satisfy(item, writes) for item in search.items)
    if isinstance(search, FieldMatch | Keywords):
        samples = [s for value in search.values if (s := sample(value)) is not _NOTHING]
        if not samples or (search.every and len(samples) < len(search.values)):
            return False
        value = "".join(map(str, samples)) if search.every and len(samples) > 1 else samples[0]
        if value is _ABSENT:
            return True
        writes.append((search.field if isinstance(search, FieldMatch) else "userAgent", value))
        return True
    return False


def sample(value: Value) -> Any:
    """A field value ``value`` accepts, ``_ABSENT`` for null/not-exists, ``_NOTHING`` when none is known."""
    if isinstance(value, Text):
        text = value.pattern.replace("\\*", "\x00").replace("\\?", "\x01")
        text = text.replace("*", "").replace("?", "x")
        text = sigma_literal(text.replace("\x00", "\\*").replace("\x01", "\\?"))
        return text or "example"
    if isinstance(value, Number):
        return value.number
    if isinstance(value, Boolean):
        return value.value
    if isinstance(value, Exists):
        return "example" if value.exists else _ABSENT
    if isinstance(value, Cidr):
        network = ipaddress.ip_network(value.network, strict=False)
        return str(next(iter(network.hosts()), network.network_address))
    if isinstance(value, Compare):
        return value.number + {"gt": 1, "lt": -1}.get(value.op, 0)
    if isinstance(value, Null):
        return _ABSENT
    return _NOTHING
