"""The soak benchmark's pure parts: the growth fit, the metrics read, the latency intervals, the report's shape."""

from __future__ import annotations

import pytest

from vigil.benchmarks.e2e import Load
from vigil.benchmarks.soak import (
    COMPONENTS,
    MIB,
    Observed,
    Sample,
    Soak,
    build_report,
    growth_per_10min,
    latency_by_interval,
    read_metrics,
)


def test_growth_is_the_fitted_slope_not_end_minus_start() -> None:
    steady = [(t, 100.0 + 0.01 * t) for t in range(0, 1200, 5)]  # 0.01 MiB/s
    assert growth_per_10min(steady) == pytest.approx(6.0)
    # One collection at the very end drops the last sample: end - start would say it shrank.
    collected = [*steady[:-1], (1195.0, 90.0)]
    assert collected[-1][1] < collected[0][1]
    assert growth_per_10min(collected) > 5.0


def test_flat_memory_with_noise_has_no_growth() -> None:
    noisy = [(float(t), 200.0 + (3.0 if t % 10 else -3.0)) for t in range(0, 1200, 5)]
    assert abs(growth_per_10min(noisy)) < 0.1


def test_growth_needs_two_distinct_times() -> None:
    assert growth_per_10min([]) == 0.0
    assert growth_per_10min([(5.0, 1.0), (5.0, 9.0)]) == 0.0


def test_lag_and_kafka_errors_are_summed_over_their_series() -> None:
    page = """# HELP vigil_consumer_lag_records Records behind the end of the topic
# TYPE vigil_consumer_lag_records gauge
vigil_consumer_lag_records{component="storage-writer",topic="p.events"} 120.0
vigil_consumer_lag_records{component="storage-writer",topic="p.alerts"} 3.0
# HELP vigil_queue_bytes Bytes in memory awaiting Kafka acknowledgement
# TYPE vigil_queue_bytes gauge
vigil_queue_bytes{component="storage-writer"} 999.0
# HELP vigil_kafka_errors_total Kafka send/commit failures
# TYPE vigil_kafka_errors_total counter
vigil_kafka_errors_total{component="storage-writer",error="CommitFailedError"} 2.0
vigil_kafka_errors_total{component="storage-writer",error="KafkaTimeoutError"} 1.0
vigil_kafka_errors_created{component="storage-writer",error="KafkaTimeoutError"} 1.7e9
"""
    assert read_metrics(page) == (123, 3)
    assert read_metrics("") == (0, 0)


def test_latency_intervals_bucket_by_arrival_and_drain_counts_in_the_last() -> None:
    arrivals = [(5.0, 9.9),  # during the warm-up: left out
                (10.0, 0.1), (20.0, 0.3), (75.0, 1.0), (130.0, 2.0),
                (200.0, 4.0)]  # after the load ended, while draining
    rows = latency_by_interval(arrivals, start=10.0, interval_s=60.0, end=130.0)
    assert [(r["from_s"], r["alerts"]) for r in rows] == [(10, 2), (70, 3)]
    assert rows[1]["p99_ms"] > rows[1]["p50_ms"] >= 1000
    assert latency_by_interval([], start=0.0, interval_s=60.0, end=60.0) == [
        {"from_s": 0, "alerts": 0, "p50_ms": 0, "p99_ms": 0}]


def _observed() -> Observed:
    observed = Observed()
    for at in range(0, 130, 5):
        rss = {name: (100 + at // 10) * MIB if name == "stream worker" else 80 * MIB for name in COMPONENTS}
        lag = {name: at % 7 for name in COMPONENTS if name != "webhook"}
        errors = dict.fromkeys(COMPONENTS, at // 50)
        observed.samples.append(Sample(float(at), rss, dict.fromkeys(COMPONENTS, at / 2), lag, errors, 1.5))
    observed.arrivals = {"alerts": [(40.0, 0.2)], "alerts.ocsf": [(41.0, 0.3)]}
    observed.post_seconds = [0.01, 0.02]
    observed.posted_events, observed.stored_events, observed.expected_alerts = 260, 240, 2
    return observed


def test_report_has_one_entry_per_component_and_interval() -> None:
    soak = Soak(Load(rate=2, seconds=130.0, attack_share=0.01), warmup_s=10.0, sample_s=5.0, interval_s=60.0)
    report = build_report(soak, _observed())
    assert list(report["components"]) == list(COMPONENTS)
    worker, writer = report["components"]["stream worker"], report["components"]["writer"]
    assert worker["rss_start_mib"] == 101.0 and worker["rss_end_mib"] == 112.0
    assert worker["rss_growth_mib_per_10min"] == pytest.approx(60.0, rel=0.05)
    assert writer["rss_growth_mib_per_10min"] == 0.0
    assert writer["lag_max"] == 6 and writer["lag_end"] == 125 % 7
    assert report["components"]["webhook"]["lag_max"] is None  # a producer: no consumer lag
    assert worker["cpu_share"] == 0.5
    assert writer["kafka_errors"] == 2  # 0 at 10 s, 2 from 100 s on: errors during the window only
    assert [len(rows) for rows in report["latency"].values()] == [2, 2]
    assert report["alerts_received"] == {"alerts": 1, "alerts.ocsf": 1}
    assert report["alerts_expected"] == 2
    assert report["samples_in_window"] == 24 and (report["events_posted"], report["events_stored"]) == (260, 240)
