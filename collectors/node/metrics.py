"""Prometheus metrics of the node collector, beside the shared ones of :mod:`vigil.metrics`.

The shipper already exports Kafka errors, spool and queue bytes and per-topic Kafka acknowledgements, and the
eBPF sensor its records and kernel ring-buffer losses (``vigil.collectors.ebpf.metrics``); these add what only the
node collector knows: records per source and kind at each step, whether each source is running, and how
well the k8s context cache serves lookups.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CAPTURED = Counter("vigil_node_records_captured_total", "Records read from a node source", ["source", "kind"])
SHIPPED = Counter("vigil_node_records_shipped_total", "Records made durable (acknowledged by Kafka or spooled)",
                  ["source", "kind"])
DROPPED = Counter("vigil_node_records_dropped_total", "Records lost for good by the node collector",
                  ["source", "kind", "reason"])
SOURCE_UP = Gauge("vigil_node_source_up", "1 while a node source runs, 0 when it is unavailable", ["source"])
ENRICHMENT_LOOKUPS = Counter("vigil_enrichment_lookups_total",
                             "k8s context lookups by container id: hit, miss (resolved through CRI), unknown",
                             ["result"])
ENRICHMENT_HIT_RATIO = Gauge("vigil_enrichment_cache_hit_ratio", "Share of container lookups the cache answered")
ENRICHMENT_ENTRIES = Gauge("vigil_enrichment_cache_entries", "Containers in the k8s context cache")
