"""Inserting into a two-shard ClickHouse cluster, the two ways the writer could keep exactly-once, next to a raw
baseline: ``python -m vigil.benchmarks.store_cluster [--rows N] [--rounds R]``.

1. Raw baseline: the same Arrow batches into one server's plain ``events`` table (no cluster).
2. Distributed: each batch into the cluster's ``events`` Distributed table with ``insert_distributed_sync = 1`` and
   the batch's deduplication token: what the writer does. The node taking the insert splits it by the pod key and
   forwards each part to its shard over native TCP, and answers once every shard stored its part.
3. Per shard: the writer splits each batch itself (a hash of the pod key per row, in Python) and inserts each part
   straight into its shard's ``events_local`` with the token. A real writer would need ClickHouse's own
   ``cityHash64`` in Python to agree with the Distributed table's placement; ``zlib.crc32`` stands in for its cost.

Two chdb servers run for the purpose (the dev stack's own server code) on free ports in a temporary run dir, and
are stopped at the end. Rounds alternate between the three so that a busier moment on a shared machine hits all of
them alike; each prints rows per second.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from vigil.config import ClickHouseSettings, Settings
from vigil.devstack.clickhouse import ClickHouseServer, clickhouse_servers
from vigil.devstack.ports import is_listening
from vigil.devstack.stack import wait_healthy
from vigil.event import Actor, Event, K8sContext
from vigil.storage.clickhouse import (
    CLUSTER_INSERT_SETTINGS,
    INSERT_SETTINGS,
    STORED_EVENT_COLUMNS,
    arrow_table,
    connect,
)
from vigil.storage.schema import migrate

BATCH_ROWS = 5000
SHARDS = 2


def events(count: int) -> pa.Table:
    """Process starts in 200 pods of 8 namespaces, as the writer would insert them."""
    now = time.time_ns()
    records = [Event(id=f"b{n}-{uuid.uuid4().hex[:8]}", time_ns=now + n, source="ebpf", kind="process.exec",
                     action="exec", cluster="bench",
                     k8s=K8sContext(namespace=f"ns{n % 8}", pod=f"pod-{n % 200}", image="img:1"),
                     actor=Actor(exe=f"/bin/tool{n % 30}", pid=100 + n % 30000, args=["tool", "--flag", str(n)]))
               for n in range(count)]
    return arrow_table(STORED_EVENT_COLUMNS, records)


def insert(client: Client, table: str, batch: pa.Table, token: str, settings: dict[str, Any]) -> None:
    """One batch, with the settings and the kind of token the writer's store sends. The dev servers close a
    connection idle for a second, which a pooled one may have been: then it is sent once more, as the writer's
    retry would (the token makes that safe)."""
    settings = INSERT_SETTINGS | settings | {"insert_deduplication_token": token}
    try:
        client.insert_arrow(table, batch, settings=settings)
    except OperationalError:
        client.insert_arrow(table, batch, settings=settings)


def raw(client: Client, table: pa.Table, tag: str) -> None:
    for start in range(0, table.num_rows, BATCH_ROWS):
        insert(client, "events", table.slice(start, BATCH_ROWS), f"{tag}-{start}", {})


def distributed(client: Client, table: pa.Table, tag: str) -> None:
    for start in range(0, table.num_rows, BATCH_ROWS):
        insert(client, "events", table.slice(start, BATCH_ROWS), f"{tag}-{start}", CLUSTER_INSERT_SETTINGS)


def per_shard(shards: list[Client], table: pa.Table, tag: str) -> None:
    for start in range(0, table.num_rows, BATCH_ROWS):
        batch = table.slice(start, BATCH_ROWS)
        keys = zip(batch["cluster"].to_pylist(), batch["namespace"].to_pylist(), batch["pod"].to_pylist(),
                   strict=True)
        shard_of = pa.array([zlib.crc32("\0".join(key).encode()) % len(shards) for key in keys])
        for index, client in enumerate(shards):
            insert(client, "events_local", batch.filter(pc.equal(shard_of, index)), f"{tag}-{start}", {})


def _free_ports(start: int) -> int:
    port = start
    while any(is_listening("127.0.0.1", port + k) for k in range(SHARDS)):
        port += SHARDS
    return port


def _servers(run_dir: Path) -> list[ClickHouseServer]:
    os.environ["VIGIL_DEV_CLICKHOUSE_TCP_PORT"] = str(_free_ports(33900))
    settings = Settings(clickhouse=ClickHouseSettings(url=f"http://127.0.0.1:{_free_ports(33123)}",
                                                      cluster="bench"))
    return clickhouse_servers(settings, run_dir, SHARDS)


def run(rows: int, rounds: int) -> dict[str, list[float]]:
    """Rows per second of each way, one figure per round."""
    table = events(rows)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-cluster-") as run_dir:
        servers = _servers(Path(run_dir))
        for server in servers:
            server.start()
        try:
            for server in servers:
                wait_healthy(server, time.monotonic() + 120, 120)
            return _measure(servers, table, rounds)
        finally:
            for server in servers:
                pid = server.process.terminate() if server.process else None
                if pid is not None:
                    server.process.wait_gone(pid, 30)


def _measure(servers: list[ClickHouseServer], table: pa.Table, rounds: int) -> dict[str, list[float]]:
    base = ClickHouseSettings(url=servers[0].url, database="bench_raw")
    cluster = dataclasses.replace(base, database="bench_cluster", cluster=servers[0].cluster,
                                  cluster_nodes=",".join(s.url for s in servers))
    for settings in (base, cluster):
        store = connect(settings)
        migrate(store)
        store.close()
    single = _client(servers[0], "bench_raw")
    shards = [_client(server, "bench_cluster") for server in servers]
    ways = {"raw (one server)": lambda tag: raw(single, table, tag),
            "distributed, synchronous": lambda tag: distributed(shards[0], table, tag),
            "per shard, split by the writer": lambda tag: per_shard(shards, table, tag)}
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for round_number in range(rounds):
        for name, insert in ways.items():
            started = time.perf_counter()
            insert(f"r{round_number}")
            rates[name].append(table.num_rows / (time.perf_counter() - started))
    for client in (single, *shards):
        client.close()
    return rates


def _client(server: ClickHouseServer, database: str) -> Client:
    url = urlsplit(server.url)
    return clickhouse_connect.get_client(host=url.hostname, port=url.port, database=database)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m vigil.benchmarks.store_cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rates = run(args.rows, args.rounds)
    baseline = sorted(rates["raw (one server)"])
    for name, found in rates.items():
        found.sort()
        print(f"{name:<32} {found[0]:>9,.0f} to {found[-1]:>9,.0f} rows/s (median {found[len(found) // 2]:,.0f}; "
              f"ratio to raw {found[len(found) // 2] / baseline[len(baseline) // 2]:.2f})")


if __name__ == "__main__":
    main()
