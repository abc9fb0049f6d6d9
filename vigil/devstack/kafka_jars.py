"""Apache Kafka's jars, fetched once from Maven Central into a cache outside the repository.

Kafka is packaged nowhere this project can reach except Maven Central (FACTS.md), so the dev broker is
the real ``kafka.Kafka`` main class on a classpath that Maven assembles from ``pom.xml``. The fetch takes
about a minute and happens once per Kafka version; every later start reuses the cached ``lib/``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

from vigil.devstack.errors import DevStackError

log = logging.getLogger(__name__)

INSTALL_HINT = "install a JDK (17 or newer) and Maven: apt-get install -y default-jdk-headless maven"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def cache_dir() -> Path:
    """``$VIGIL_CACHE_DIR``, else ``~/.cache/vigil``: shared by every checkout and run dir on the machine."""
    return Path(os.environ.get("VIGIL_CACHE_DIR") or Path.home() / ".cache" / "vigil")


def kafka_version() -> str:
    """The Kafka version the bundled pom.xml pins (the pom is the one place it is written down)."""
    root = ET.fromstring(_pom_text())
    return root.findtext("m:properties/m:kafka.version", namespaces=_POM_NS) or ""


def require(tool: str) -> str:
    """The path of ``tool`` on PATH, or a DevStackError that says what to install."""
    path = shutil.which(tool)
    if path is None:
        raise DevStackError(f"`{tool}` is not on PATH; the dev Kafka broker needs it: {INSTALL_HINT}")
    return path


def kafka_lib(cache: Path | None = None) -> Path:
    """The directory of Kafka's jars, fetched with Maven on first use (concurrent callers wait for one fetch)."""
    home = (cache or cache_dir()) / f"kafka-{kafka_version()}"
    lib = home / "lib"
    if lib.is_dir():
        return lib
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not lib.is_dir():
            _fetch(home, lib)
    return lib


def _fetch(home: Path, lib: Path) -> None:
    mvn = require("mvn")
    pom = home / "pom.xml"
    pom.write_text(_pom_text())
    staging = home / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    mvn_log = home / "mvn.log"
    log.info("fetching Kafka jars from Maven Central (once per version)",
             extra={"kafka_version": kafka_version(), "into": str(lib)})
    with mvn_log.open("w") as out:
        result = subprocess.run(
            [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
            cwd=home, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, check=False,
        )
    if result.returncode != 0:
        tail = "\n".join(mvn_log.read_text(errors="replace").splitlines()[-30:])
        raise DevStackError(f"fetching Kafka's jars with Maven failed (exit {result.returncode}); "
                            f"full output in {mvn_log}:\n{tail}")
    staging.rename(lib)


def _pom_text() -> str:
    return resources.files("vigil.devstack").joinpath("pom.xml").read_text()
