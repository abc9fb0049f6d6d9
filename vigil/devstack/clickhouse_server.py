"""The dev ClickHouse server process: the real ClickHouse engine inside PyPI's chdb, serving HTTP and native TCP.

No ClickHouse server recent enough is packaged where this project can reach (FACTS.md), but chdb embeds
the full engine, and its one-shot query path can open the server's listeners: ``SYSTEM START LISTEN``
serves for as long as that query call runs. So this process runs one query that starts the listeners
and then idles forever, and clients talk to it exactly as to any ClickHouse server.

Run as ``python -m vigil.devstack.clickhouse_server --dir DIR --http-port P --tcp-port T``;
:class:`vigil.devstack.clickhouse.ClickHouseServer` does that for ``vigil dev up``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
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


def write_config(path: Path, http_port: int, tcp_port: int) -> None:
    """The server settings chdb reads from ``config.xml`` in the working directory.

    A short keep-alive, or the server's shutdown waits on connections pooled by clients.
    """
    root = ET.Element("clickhouse")
    for tag, value in (("listen_host", HOST), ("http_port", http_port), ("tcp_port", tcp_port),
                       ("keep_alive_timeout", 1)):
        ET.SubElement(root, tag).text = str(value)
    ET.ElementTree(root).write(path, encoding="unicode")


def serve(directory: Path, http_port: int, tcp_port: int) -> int:
    """Serve until killed; returns (exit code 1) only if the server could not start or stopped serving."""
    directory.mkdir(parents=True, exist_ok=True)
    write_config(directory / "config.xml", http_port, tcp_port)
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
    args = parser.parse_args(argv)
    logs.configure()
    return serve(args.dir.resolve(), args.http_port, args.tcp_port)


if __name__ == "__main__":
    sys.exit(main())
