"""Apache ZooKeeper 3.9.5 from Maven Central's jars, for the test that creates vigil's replicated tables.

ZooKeeper is packaged nowhere this project can reach except Maven Central (FACTS.md). Its jars are fetched once
into vigil's cache directory (beside Kafka's), and a standalone server runs from them on a port and in a directory
of the test's own.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from vigil.devstack.kafka_jars import cache_dir, require
from vigil.devstack.ports import is_listening

VERSION = "3.9.5"
#: The server with the metrics and compression libraries it loads, and a logging binding (its POM has none).
POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>vigil.test</groupId>
  <artifactId>zookeeper-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.zookeeper</groupId><artifactId>zookeeper</artifactId>
      <version>{VERSION}</version></dependency>
    <dependency><groupId>io.dropwizard.metrics</groupId><artifactId>metrics-core</artifactId>
      <version>4.1.12.1</version></dependency>
    <dependency><groupId>org.xerial.snappy</groupId><artifactId>snappy-java</artifactId>
      <version>1.1.10.5</version></dependency>
    <dependency><groupId>ch.qos.logback</groupId><artifactId>logback-classic</artifactId>
      <version>1.3.15</version></dependency>
  </dependencies>
</project>
"""


def zookeeper_lib() -> Path:
    """The jars' directory, fetched with Maven on first use."""
    home = cache_dir() / f"zookeeper-{VERSION}"
    lib = home / "lib"
    if lib.is_dir():
        return lib
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(POM)
    staging = home / "lib.partial"
    subprocess.run([require("mvn"), "-B", "-q", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
                    f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
                   cwd=home, stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=600)
    staging.rename(lib)
    return lib


@contextlib.contextmanager
def running_zookeeper(directory: Path, port: int) -> Iterator[str]:
    """A standalone ZooKeeper on 127.0.0.1:``port`` with its data in ``directory``; yields ``HOST:PORT``."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "zookeeper.log").open("wb") as log:
        server = subprocess.Popen(
            [require("java"), "-cp", f"{zookeeper_lib()}/*", "org.apache.zookeeper.server.ZooKeeperServerMain",
             str(port), str(directory / "data")], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not is_listening("127.0.0.1", port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"ZooKeeper did not start; see {directory / 'zookeeper.log'}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
