"""The one record runner's error policy, and the one dead-letter builder: refusals carry a stable reason and the
original bytes, an unexpected normalizer failure never stops the records after it, and nothing is lost."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from vigil import kafka
from vigil.config import Settings
from vigil.detections.engine import Engine
from vigil.detections.library import exec_into_pod
from vigil.detections.runner import RecordRunner
from vigil.event import Event
from vigil.sources.audit import AUDIT_SOURCE
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.source import Rejected

EXEC = audit_record("create", "pods", name="web", subresource="exec", code=101)


def _runner(**kwargs: Any) -> RecordRunner:
    return RecordRunner(Engine([exec_into_pod.DETECTION]), cluster="c", node="n", max_record_bytes=1 << 20, **kwargs)


def _failing_on(marker: str):
    def normalize(record: dict[str, Any], cluster: str, node: str) -> Event:
        if marker in record:
            raise KeyError(marker)
        return AUDIT_SOURCE.normalize(record, cluster, node)

    return dataclasses.replace(AUDIT_SOURCE, normalize_record=normalize)


def test_a_normalizer_that_raises_refuses_its_record_and_the_next_ones_are_detected_on() -> None:
    source = _failing_on("boom")
    broken = {**EXEC, "boom": 1}
    result = _runner().run_records(source, [broken, EXEC], ingest_ns=7)
    assert [r.reason for r in result.refused] == ["normalize_failed"]
    assert result.refused[0].detail == "KeyError: 'boom'" and orjson.loads(result.refused[0].raw) == broken
    assert [e.ingest_ns for e in result.events] == [7] and [a.detection for a in result.alerts] == ["k8s.exec_into_pod"]
    assert result.records == 2


def test_records_that_are_not_objects_or_that_the_source_refuses_keep_their_reason() -> None:
    result = _runner().run_records(AUDIT_SOURCE, [["a list"], {"kind": "Event"}, EXEC])
    assert [r.reason for r in result.refused] == ["wrong_kind", "missing_field"]
    assert result.refused[0].raw == b'["a list"]' and len(result.events) == 1


def test_a_payload_is_split_and_its_refusals_come_with_its_records() -> None:
    payload = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [EXEC, {"verb": 5}]})
    result = _runner().run_payload(AUDIT_SOURCE, payload)
    assert len(result.events) == 1 and len(result.refused) == 1 and result.records == 2
    assert _runner().run_payload(AUDIT_SOURCE, b"{not json").refused[0].reason == "not_json"


def test_a_splitter_that_raises_refuses_the_payload() -> None:
    def split(payload: bytes, max_bytes: int):
        raise ValueError("splitter bug")
        yield  # a generator, as sources' splitters are

    source = dataclasses.replace(AUDIT_SOURCE, split_payload=split)
    [refused] = _runner().run_payload(source, b"{}").refused
    assert refused == Rejected("split_failed", "ValueError: splitter bug", b"{}")


def test_the_hook_sees_each_event_before_the_engine() -> None:
    seen: list[str] = []
    _runner(before_detect=lambda event: seen.append(event.kind)).run_records(AUDIT_SOURCE, [EXEC])
    assert seen == ["k8s.api"]


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_dead_letter_keeps_the_original_bytes_and_counts_the_refusal() -> None:
    dead_letters = kafka.DeadLetters(Settings(), "unit-test")
    before = _count("vigil_records_rejected_total", component="unit-test", source="s", reason="r")
    text = orjson.loads(dead_letters.build("s", "r", "why", b'{"a": 1}'))
    binary = orjson.loads(dead_letters.build("s", "r", "why", b"\xff\x00"))
    assert {k: text[k] for k in ("component", "source", "reason", "detail", "raw")} == {
        "component": "unit-test", "source": "s", "reason": "r", "detail": "why", "raw": '{"a": 1}'}
    assert base64.b64decode(binary["raw_base64"]) == b"\xff\x00" and "raw" not in binary
    assert _count("vigil_records_rejected_total", component="unit-test", source="s", reason="r") == before + 2


@pytest.mark.parametrize("size", [10, 600_000])
def test_a_dead_letter_always_fits_one_kafka_message_and_says_when_it_was_cut(size: int) -> None:
    settings = Settings()
    settings.kafka.max_message_bytes = 100_000
    value = kafka.DeadLetters(settings, "unit-test").build("s", "too_large", "big", b"x" * size)
    assert len(value) <= settings.kafka.max_message_bytes
    assert ("first" in orjson.loads(value)["detail"]) == (size > 100_000)
