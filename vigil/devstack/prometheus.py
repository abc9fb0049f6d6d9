"""The dev Prometheus (``vigil dev up --monitoring``): Debian's ``prometheus`` binary on 127.0.0.1, its data under
``<run dir>/prometheus``, scraping the vigil components that run on this machine and evaluating vigil's alert
rules (``deploy/prometheus/alerts.yml``, when vigil runs from a checkout).

What it scrapes comes from the settings, as the components themselves read them: the audit webhook's address
(``VIGIL_COLLECTOR_WEBHOOK_HOST``/``_PORT``), the metrics listener (``VIGIL_METRICS_HOST``/``_PORT``) when one is
set, and ``VIGIL_DEV_PROMETHEUS_TARGETS`` (``job=host:port,...``) for components started with ports of their own.
Of these, each ``up --monitoring`` keeps those that listen at that moment, so every target is a running component
and a target going down later is news (``VigilComponentDown``). The targets live in a file-discovery file that
Prometheus re-reads by itself, so ``up`` never restarts it to change them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from vigil.config import Settings
from vigil.devstack.errors import DevStackError
from vigil.devstack.ports import is_listening
from vigil.devstack.process import DetachedProcess

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 9090
#: Short intervals: a developer (or a test) sees a component's metrics seconds after starting it.
SCRAPE_INTERVAL = "5s"
#: vigil's alert rules, when vigil runs from a checkout (an installed wheel has no deploy/).
RULES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
TARGETS_FILE = "vigil-targets.json"


def scrape_targets(settings: Settings) -> dict[str, list[str]]:
    """Job name → ``host:port`` of each vigil component as configured (running or not)."""
    collector = settings.collector
    jobs: dict[str, list[str]] = {"audit-webhook": [f"{_scrape_host(collector.webhook_host)}:{collector.webhook_port}"]}
    if settings.metrics_port:
        jobs.setdefault("vigil", []).append(f"{_scrape_host(settings.metrics_host)}:{settings.metrics_port}")
    for entry in filter(None, (e.strip() for e in os.environ.get("VIGIL_DEV_PROMETHEUS_TARGETS", "").split(","))):
        job, sep, address = entry.partition("=")
        if not sep or ":" not in address:
            raise DevStackError(f"VIGIL_DEV_PROMETHEUS_TARGETS: {entry!r} is not job=host:port")
        jobs.setdefault(job.strip(), []).append(address.strip())
    return jobs


def _scrape_host(listen_host: str) -> str:
    """A listener on every address is scraped on the loopback one."""
    return HOST if listen_host in ("", "0.0.0.0", "::") else listen_host


class PrometheusServer:
    """Start, find, probe and re-target the dev Prometheus whose files live in ``<run dir>/prometheus``."""

    name = "prometheus"

    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.settings = settings
        self.port = int(os.environ.get("VIGIL_DEV_PROMETHEUS_PORT") or DEFAULT_PORT)
        self.ports: tuple[int, ...] = (self.port,)
        self.home = run_dir / "prometheus"
        self.config_file = self.home / "prometheus.yml"
        self.targets_file = self.home / TARGETS_FILE
        self.process = DetachedProcess(
            run_dir / "prometheus.pid", run_dir / "prometheus.log", marker=f"--config.file={self.config_file}")

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise DevStackError("prometheus is not installed (Debian package 'prometheus'; scripts/setup.sh "
                                "installs it)")
        self.home.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.write_targets()
        self.process.start(
            [binary, f"--config.file={self.config_file}", f"--storage.tsdb.path={self.home / 'data'}",
             f"--web.listen-address={HOST}:{self.port}", "--web.enable-lifecycle",
             "--storage.tsdb.retention.time=2d"],
            cwd=self.home,
        )

    def write_config(self) -> None:
        """Scrape itself and the targets file; evaluate vigil's rules when they are at hand."""
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [
                {"job_name": "prometheus", "static_configs": [{"targets": [f"{HOST}:{self.port}"]}]},
                {"job_name": "vigil-components",
                 "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "5s"}]},
            ],
        }
        if RULES_FILE.is_file():
            config["rule_files"] = [str(RULES_FILE)]
        _replace(self.config_file, yaml.safe_dump(config, sort_keys=False))

    def write_targets(self) -> list[str]:
        """Point Prometheus at the configured components that listen now; returns their addresses. The job label
        is the component's, so dashboards and alerts see the job names they see elsewhere."""
        groups, listening = [], []
        for job, addresses in scrape_targets(self.settings).items():
            live = [a for a in addresses if is_listening(*_host_port(a))]
            skipped = sorted(set(addresses) - set(live))
            if skipped:
                log.info("not scraped: nothing listens", extra={"job": job, "targets": skipped})
            if live:
                groups.append({"targets": live, "labels": {"job": job}})
                listening += live
        _replace(self.targets_file, json.dumps(groups, indent=2))
        return listening

    def check(self, timeout: float) -> None:
        """Raise DevStackError unless Prometheus says it is ready (``/-/ready``) within ``timeout`` seconds."""
        try:
            with urllib.request.urlopen(f"{self.address}/-/ready", timeout=timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise DevStackError(f"{self.address} is not ready: HTTP {exc.code}") from exc
        except OSError as exc:
            raise DevStackError(f"{self.address} does not answer: {exc}") from exc

    def reload(self) -> None:
        """Make a running Prometheus read its configuration again (the targets file it re-reads by itself)."""
        request = urllib.request.Request(f"{self.address}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except OSError as exc:
            raise DevStackError(f"{self.address} refused to reload its configuration: {exc}") from exc


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _replace(path: Path, text: str) -> None:
    """Write ``path`` atomically: Prometheus may read it at any moment."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)
