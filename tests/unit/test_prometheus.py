"""vigil's Prometheus files checked by Prometheus's own tool (``promtool``, Debian's ``prometheus`` package, which
scripts/setup.sh installs): the docker-compose configuration, the alert rules, and their unit tests
(``deploy/prometheus/alerts_test.yml``), which must make every alert both fire and stay quiet. The Helm chart's
PrometheusRule must carry exactly those rules, and the Grafana dashboard only metrics vigil's code defines.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import unknown_metrics
from vigil.config import load_settings
from vigil.devstack.prometheus import PrometheusServer, scrape_targets

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "vigil.json"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: scripts/setup.sh installs Debian's 'prometheus' package, which brings it")
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=120)


def test_compose_configuration_passes_promtool_as_the_container_sees_it(promtool, tmp_path):
    """``promtool check config`` resolves rule files: the container's paths are mapped to the files
    docker-compose.yml mounts there, so the check reads what the container would."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = {target: ROOT / source for source, target, *_ in
              (volume.split(":") for volume in compose["services"]["prometheus"]["volumes"])
              if source.startswith("./")}
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["rule_files"] = [str(mounts[path]) for path in config["rule_files"]]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    result = _run(promtool, "check", "config", str(checked))
    assert result.returncode == 0, result.stdout + result.stderr
    assert mounts["/etc/prometheus/alerts.yml"] == RULES


def test_rules_pass_promtool_check(promtool):
    result = _run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool):
    result = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet():
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts == fires == quiet


def test_rule_unit_tests_can_fail(promtool, tmp_path):
    """A rule that no longer fires when it should fails its unit test (the tests are not vacuous)."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["expr"] = f"({rule['expr']}) and on() vector(0) > 1"  # never true
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yml")
    result = _run(promtool, "test", "rules", str(tmp_path / "alerts_test.yml"))
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).splitlines()
    failed = {line.split(",")[0].split(":")[1].strip() for line in lines if line.strip().startswith("alertname:")}
    assert failed == {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


def test_chart_prometheus_rule_is_the_rules_file():
    """The chart reads the one rules file through its files/ link; rendered, its groups are the file's groups."""
    link = ROOT / "helm" / "files" / "prometheus-alerts.yml"
    assert link.is_symlink() and link.resolve() == RULES.resolve()
    helm = subprocess.run(["bash", str(ROOT / "scripts" / "helm.sh"), "--path"], capture_output=True, text=True,
                          check=False)
    if helm.returncode != 0:
        pytest.skip(f"no helm binary: {helm.stderr.strip()[-200:]}")
    rendered = _run(helm.stdout.strip(), "template", "vigil", str(ROOT / "helm"), "--namespace", "vigil",
                    "--set", "metrics.prometheusRule.enabled=true", "--show-only", "templates/metrics.yaml")
    assert rendered.returncode == 0, rendered.stderr
    (rule,) = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc and doc["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_dashboard_uses_only_metrics_vigil_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs
    assert {name for expr in exprs for name in unknown_metrics(expr)} == set()


def test_dev_prometheus_targets_follow_the_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("VIGIL_DEV_PROMETHEUS_TARGETS", "stream-worker=127.0.0.1:9101, storage-writer=127.0.0.1:9102")
    settings = load_settings()
    settings.collector.webhook_port, settings.metrics_host, settings.metrics_port = 18765, "0.0.0.0", 19100
    assert scrape_targets(settings) == {"audit-webhook": ["127.0.0.1:18765"], "vigil": ["127.0.0.1:19100"],
                                        "stream-worker": ["127.0.0.1:9101"], "storage-writer": ["127.0.0.1:9102"]}


def test_dev_prometheus_configuration_passes_promtool(promtool, tmp_path):
    server = PrometheusServer(load_settings(), tmp_path)
    server.home.mkdir()
    server.write_config()
    server.write_targets()
    result = _run(promtool, "check", "config", str(server.config_file))
    assert result.returncode == 0, result.stdout + result.stderr
