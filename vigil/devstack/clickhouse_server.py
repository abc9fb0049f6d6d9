"""The dev ClickHouse server process: the real ClickHouse engine inside PyPI's chdb, serving HTTP and native TCP.

No ClickHouse server recent enough is packaged where this project can reach (FACTS.md), but chdb embeds
the full engine, and its one-shot query path can open the server's listeners: ``SYSTEM START LISTEN``
serves for as long as that query call runs. So this process runs one query that starts the listeners
and then idles forever, and clients talk to it exactly as to any ClickHouse server.

Run as ``python -m vigil.devstack.clickhouse_server --dir DIR --http-port P --tcp-port T``;
:class:`vigil.devstack.clickhouse.ClickHouseServer` does that for ``vigil dev up``. With ``--cluster NAME
--shard-tcp-ports P1,P2,…`` the server knows a cluster of one-replica shards at those native TCP ports (its
``<remote_servers>``), so ``Distributed`` tables spread rows over the servers for real. ``--zookeeper HOST:PORT``
and ``--macros shard=…,replica=…`` are there to check that replicated tables are accepted: chdb's server opens a
ZooKeeper session, but its replicated tables stay read-only (FACTS.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chdb import _chdb

from vigil import logs

log = logging.getLogger("vigil.devstack.clickhouse_server")  # not __name__, which is "__main__" here

HOST = "127.0.0.1"
#: chdb's legacy path allows one query call per process, so the listeners and the idle query share it.
#: sleepEachRow may sleep at most 3 s per block, hence one row per block; the result is discarded.
SERVE_QUERY = (
    "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
    "SELECT sleepEachRow(1) FROM system.numbers SETTINGS max_block_size = 1 FORMAT Null"
)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """The cluster this server belongs to: its name, each shard's native TCP port (one replica each, on
    127.0.0.1), and optionally a ZooKeeper and this server's macros."""

    name: str
    shard_tcp_ports: tuple[int, ...]
    zookeeper: str = ""  # HOST:PORT
    macros: tuple[tuple[str, str], ...] = ()


def write_config(path: Path, http_port: int, tcp_port: int, cluster: ClusterConfig | None = None) -> None:
    """The server settings chdb reads from ``config.xml`` in the working directory.

    A short keep-alive, or the server's shutdown waits on connections pooled by clients.
    """
    root = ET.Element("clickhouse")
    for tag, value in (("listen_host", HOST), ("http_port", http_port), ("tcp_port", tcp_port),
                       ("keep_alive_timeout", 1)):
        ET.SubElement(root, tag).text = str(value)
    if cluster is not None:
        _add_cluster(root, cluster)
    ET.ElementTree(root).write(path, encoding="unicode")


def _add_cluster(root: ET.Element, cluster: ClusterConfig) -> None:
    shards = ET.SubElement(ET.SubElement(root, "remote_servers"), cluster.name)
    for port in cluster.shard_tcp_ports:
        replica = ET.SubElement(ET.SubElement(shards, "shard"), "replica")
        ET.SubElement(replica, "host").text = HOST
        ET.SubElement(replica, "port").text = str(port)
    if cluster.zookeeper:
        host, _, port = cluster.zookeeper.rpartition(":")
        node = ET.SubElement(ET.SubElement(root, "zookeeper"), "node")
        ET.SubElement(node, "host").text = host
        ET.SubElement(node, "port").text = port
    if cluster.macros:
        macros = ET.SubElement(root, "macros")
        for name, value in cluster.macros:
            ET.SubElement(macros, name).text = value


def serve(directory: Path, http_port: int, tcp_port: int, cluster: ClusterConfig | None = None) -> int:
    """Serve until killed; returns (exit code 1) only if the server could not start or stopped serving."""
    directory.mkdir(parents=True, exist_ok=True)
    write_config(directory / "config.xml", http_port, tcp_port, cluster)
    os.chdir(directory)
    log.info("serving ClickHouse", extra={"http": f"{HOST}:{http_port}", "tcp": f"{HOST}:{tcp_port}",
                                          "data": str(directory / "data")})
    # The host query's output format becomes the server's default one: clickhouse-connect needs
    # TabSeparated (CSV breaks its version handshake).
    _chdb.query(SERVE_QUERY, "TabSeparated", path=str(directory / "data"))
    log.error("ClickHouse stopped serving; the engine printed the reason above")  # it reports on stderr
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vigil.devstack.clickhouse_server", description=__doc__)
    parser.add_argument("--dir", required=True, type=Path, help="config.xml and data/ go here")
    parser.add_argument("--http-port", required=True, type=int)
    parser.add_argument("--tcp-port", required=True, type=int)
    parser.add_argument("--cluster", default="", help="the cluster's name in <remote_servers>")
    parser.add_argument("--shard-tcp-ports", default="", help="each shard's native TCP port, comma-separated")
    parser.add_argument("--zookeeper", default="", help="HOST:PORT of a ZooKeeper")
    parser.add_argument("--macros", default="", help="NAME=VALUE,… substituted in replicated tables' paths")
    args = parser.parse_args(argv)
    logs.configure()
    cluster = None
    if args.cluster:
        macros = tuple((name, value) for name, _, value in (m.partition("=") for m in args.macros.split(",") if m))
        cluster = ClusterConfig(args.cluster, tuple(int(p) for p in args.shard_tcp_ports.split(",") if p),
                                args.zookeeper, macros)
    return serve(args.dir.resolve(), args.http_port, args.tcp_port, cluster)


if __name__ == "__main__":
    sys.exit(main())
