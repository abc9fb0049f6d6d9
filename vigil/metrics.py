"""Prometheus metrics shared by vigil's components.

Every long-running component counts what came in, what went out, and every record it did not pass on,
labelled with the reason: nothing is dropped without a counter moving. Components call
:func:`serve` once to expose ``/metrics`` (the webhook serves it on its own HTTP port instead).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from vigil.config import Settings

RECEIVED = Counter("vigil_records_received_total", "Records read from a source", ["component", "source"])
REJECTED = Counter(
    "vigil_records_rejected_total",
    "Records refused as bad input (they go to the dead-letter topic/file)",
    ["component", "source", "reason"],
)
DROPPED = Counter(
    "vigil_records_dropped_total",
    "Records lost for good (e.g. spool full): every loss is counted here",
    ["component", "reason"],
)
SHIPPED = Counter("vigil_records_shipped_total", "Records acknowledged by Kafka", ["component", "topic"])
DEADLETTERED = Counter("vigil_deadletter_total", "Records written to the dead-letter topic/file", ["component"])
KAFKA_ERRORS = Counter("vigil_kafka_errors_total", "Kafka send/commit failures", ["component", "error"])
QUEUE_BYTES = Gauge("vigil_queue_bytes", "Bytes in memory awaiting Kafka acknowledgement", ["component"])
SPOOL_BYTES = Gauge("vigil_spool_bytes", "Bytes waiting in the on-disk spool", ["component"])
CONSUMER_LAG = Gauge("vigil_consumer_lag_records", "Records behind the end of the topic", ["component", "topic"])
LATENCY = Histogram(
    "vigil_event_latency_seconds",
    "Event time to processing, per stage",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
EVENTS_PROCESSED = Counter("vigil_events_processed_total", "Events through the detection engine", ["kind"])
ALERTS = Counter("vigil_alerts_total", "Alerts raised", ["detection", "severity"])
ROWS_WRITTEN = Counter("vigil_clickhouse_rows_total", "Rows acknowledged by ClickHouse", ["table"])


def serve(settings: Settings) -> None:
    """Expose /metrics on ``metrics_host:metrics_port`` in a background thread (port 0 disables it)."""
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
