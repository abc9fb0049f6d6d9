"""The Helm chart, checked with the real helm (built from source by scripts/helm.sh) and against the Kubernetes
API's schemas (the kubernetes client's models): `helm lint` is clean, the chart renders with its defaults and
with an external Kafka (SASL over TLS) and a ClickHouse password from Secrets, every object is one the API
server would accept, and the security properties a platform team reviews hold: the node collector's host
access without full privilege, TLS on the audit webhook, read-only RBAC on pods/namespaces/nodes only,
NetworkPolicies for every workload, resources and securityContext everywhere."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    ROOT,
    known_variables,
    object_problems,
    parse_vigil_command,
    unknown_metrics,
    vigil_command_error,
)
from vigil.detections.tuning import Tuning

CHART = ROOT / "helm"
HELM_SCRIPT = ROOT / "scripts" / "helm.sh"
HELM_UNBUILDABLE = 3  # scripts/helm.sh's exit code when Go is missing
EXTERNAL = CHART / "examples" / "external-kafka-clickhouse.yaml"
#: Custom resources of the Prometheus operator: not in the Kubernetes API, checked by shape instead.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
WORKLOAD_KINDS = {"Deployment", "DaemonSet"}
NODE_HOST_PATHS = {"/sys/kernel/btf", "/sys/fs/cgroup", "/sys/kernel/tracing", "/run/containerd/containerd.sock"}
COMPONENT_COMMANDS = {
    "audit-webhook": ["collect", "audit"],
    "node-collector": ["collect", "node"],
    "stream-worker": ["stream", "worker"],
    "storage-writer": ["store"],
    "siem-publisher": ["siem", "publish"],
}


@pytest.fixture(scope="module")
def helm() -> str:
    """The helm binary; the first run on a machine builds it (minutes), later runs find it cached."""
    result = subprocess.run(["bash", str(HELM_SCRIPT), "--path"], capture_output=True, text=True, check=False)
    if result.returncode == HELM_UNBUILDABLE:
        pytest.skip(result.stderr.strip())
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def render(helm: str, *args: str) -> list[dict[str, Any]]:
    result = _template(helm, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _template(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, "template", "vigil", str(CHART), "--namespace", "vigil", *args],
                          capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def default(helm) -> list[dict[str, Any]]:
    return render(helm)


@pytest.fixture(scope="module")
def external(helm) -> list[dict[str, Any]]:
    return render(helm, "-f", str(EXTERNAL))


@pytest.fixture(scope="module")
def external_values() -> dict[str, Any]:
    return yaml.safe_load(EXTERNAL.read_text())


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def component(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(obj for obj in objects if obj["kind"] == kind
                and obj["metadata"]["labels"]["app.kubernetes.io/component"] == name)


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


def env_of(workload: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(workload)["env"]}


def mounts_of(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> the volume mounted there."""
    volumes = {volume["name"]: volume for volume in workload["spec"]["template"]["spec"]["volumes"]}
    return {mount["mountPath"]: volumes[mount["name"]] for mount in container(workload)["volumeMounts"]}


@pytest.mark.parametrize("values", [[], ["-f", str(EXTERNAL)]], ids=["defaults", "external"])
def test_lint_is_clean(helm, values):
    result = subprocess.run([helm, "lint", "--strict", str(CHART), *values], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_every_rendered_object_is_valid_for_the_kubernetes_api(default, external):
    for objects in (default, external):
        for obj in objects:
            if obj["kind"] in OPERATOR_KINDS:
                assert obj["apiVersion"] == "monitoring.coreos.com/v1" and obj["spec"], obj["kind"]
                continue
            assert object_problems(obj) == [], f"{obj['kind']} {obj['metadata']['name']}"


def test_the_schema_check_refuses_what_the_api_server_would(default):
    daemonset = next(iter(by_kind(default, "DaemonSet").values()))
    broken = yaml.safe_load(yaml.safe_dump(daemonset))
    container(broken)["securityContext"]["privilegedd"] = True
    container(broken)["ports"][0]["containerPort"] = "9100"
    problems = object_problems(broken)
    assert any("privilegedd: unknown field" in problem for problem in problems)
    assert any("containerPort" in problem for problem in problems)


def test_defaults_render_every_component_without_the_operator_objects(default):
    kinds = {obj["kind"] for obj in default}
    assert not kinds & OPERATOR_KINDS
    assert set(by_kind(default, "DaemonSet")) == {"vigil-node-collector"}
    assert set(by_kind(default, "Deployment")) == {"vigil-audit-webhook", "vigil-stream-worker",
                                                   "vigil-storage-writer", "vigil-siem-publisher"}


def test_components_run_real_vigil_commands(default, external):
    for objects in (default, external):
        for obj in objects:
            if obj["kind"] in WORKLOAD_KINDS:
                command = container(obj)["command"]
                assert vigil_command_error(command) is None, vigil_command_error(command)
                name = obj["metadata"]["labels"]["app.kubernetes.io/component"]
                assert command[1:1 + len(COMPONENT_COMMANDS[name])] == COMPONENT_COMMANDS[name]


def test_components_set_only_variables_vigil_reads(default, external):
    for objects in (default, external):
        for obj in objects:
            if obj["kind"] in WORKLOAD_KINDS:
                unknown = {name for name in env_of(obj) if name.startswith("VIGIL_")} - known_variables()
                assert not unknown, f"{obj['metadata']['name']} sets variables vigil does not read: {unknown}"


def test_the_node_collector_has_its_host_mounts_and_capabilities_but_no_privilege(default):
    daemonset = by_kind(default, "DaemonSet")["vigil-node-collector"]
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    host_paths = {path: volume["hostPath"]["path"] for path, volume in mounts_of(daemonset).items()
                  if "hostPath" in volume}
    assert {path: host_paths.get(path) for path in NODE_HOST_PATHS} == {path: path for path in NODE_HOST_PATHS}
    security = container(daemonset)["securityContext"]
    assert security.get("privileged") is not True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"BPF", "PERFMON", "SYS_RESOURCE"} <= set(security["capabilities"]["add"])
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert {"operator": "Exists"} in pod["tolerations"]
    args = parse_vigil_command(container(daemonset)["command"])
    assert args.containerd_address in host_paths and args.kube_api and args.ebpf and args.runtime
    assert env_of(daemonset)["VIGIL_NODE"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}  # the pod watch's filter
    state = mounts_of(daemonset)["/var/lib/vigil"]["hostPath"]
    assert env_of(daemonset)["VIGIL_CACHE_DIR"].startswith("/var/lib/vigil/") and state["type"] == "DirectoryOrCreate"


def test_privileged_mode_is_an_explicit_choice(helm):
    objects = render(helm, "--set", "nodeCollector.privileged=true")
    security = container(by_kind(objects, "DaemonSet")["vigil-node-collector"])["securityContext"]
    assert security["privileged"] is True and "capabilities" not in security


def test_the_audit_webhook_serves_tls_on_its_service(default):
    deployment = by_kind(default, "Deployment")["vigil-audit-webhook"]
    service = by_kind(default, "Service")["vigil-audit-webhook"]
    env = env_of(deployment)
    (port,) = service["spec"]["ports"]
    assert port["name"] == "https" and port["appProtocol"] == "https"
    assert port["port"] == int(env["VIGIL_COLLECTOR_WEBHOOK_PORT"]) and env["VIGIL_COLLECTOR_WEBHOOK_HOST"] == "0.0.0.0"
    tls = mounts_of(deployment)["/etc/vigil/webhook-tls"]["secret"]["secretName"]
    assert Path(env["VIGIL_COLLECTOR_TLS_CERTFILE"]).parent == Path(env["VIGIL_COLLECTOR_TLS_KEYFILE"]).parent
    secret = by_kind(default, "Secret")[tls]
    assert secret["type"] == "kubernetes.io/tls" and {"tls.crt", "tls.key", "ca.crt"} <= set(secret["data"])
    assert container(deployment)["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_a_host_network_webhook_listens_on_the_node_loopback_only(helm):
    objects = render(helm, "--set", "auditWebhook.hostNetwork=true", "--set", "auditWebhook.port=18765")
    deployment = by_kind(objects, "Deployment")["vigil-audit-webhook"]
    env = env_of(deployment)
    assert deployment["spec"]["template"]["spec"]["hostNetwork"] is True
    assert (env["VIGIL_COLLECTOR_WEBHOOK_HOST"], env["VIGIL_COLLECTOR_WEBHOOK_PORT"]) == ("127.0.0.1", "18765")
    assert "VIGIL_COLLECTOR_TLS_CERTFILE" not in env and "/etc/vigil/webhook-tls" not in mounts_of(deployment)
    probe = container(deployment)["readinessProbe"]["httpGet"]
    assert probe["host"] == "127.0.0.1" and "scheme" not in probe  # HTTP, on the loopback the kubelet shares
    assert "vigil-audit-webhook" not in by_kind(objects, "Service")
    assert "vigil-audit-webhook-tls" not in by_kind(objects, "Secret")
    refused = _template(helm, "--set", "auditWebhook.hostNetwork=true", "--set", "auditWebhook.tls.clientCA=x")
    assert refused.returncode != 0 and "plain HTTP on the node's loopback" in refused.stderr


def test_the_generated_certificate_names_the_service(default, tmp_path):
    secret = by_kind(default, "Secret")["vigil-audit-webhook-tls"]
    (tmp_path / "tls.crt").write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    (tmp_path / "ca.crt").write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    names = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "tls.crt")],
                           capture_output=True, text=True, check=True).stdout
    assert "DNS:vigil-audit-webhook.vigil.svc" in names and "DNS:vigil-audit-webhook.vigil.svc.cluster.local" in names


def test_rbac_is_read_only_on_pods_namespaces_and_nodes_for_the_node_collector_only(default):
    roles = by_kind(default, "ClusterRole") | by_kind(default, "Role")
    assert set(roles) == {"vigil-node-collector"}
    assert roles["vigil-node-collector"]["rules"] == [
        {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"], "verbs": ["get", "list", "watch"]}]
    bindings = by_kind(default, "ClusterRoleBinding") | by_kind(default, "RoleBinding")
    assert [(b["roleRef"]["name"], b["subjects"]) for b in bindings.values()] == [
        ("vigil-node-collector", [{"kind": "ServiceAccount", "name": "vigil-node-collector", "namespace": "vigil"}])]
    for name, account in by_kind(default, "ServiceAccount").items():
        assert account["automountServiceAccountToken"] is (name == "vigil-node-collector"), name
    for obj in default:
        if obj["kind"] in WORKLOAD_KINDS:
            pod = obj["spec"]["template"]["spec"]
            assert pod["automountServiceAccountToken"] is (obj["kind"] == "DaemonSet"), obj["metadata"]["name"]


def test_without_the_kubernetes_api_source_there_is_no_rbac(helm):
    objects = render(helm, "--set", "nodeCollector.sources.kubeApi=false")
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    daemonset = by_kind(objects, "DaemonSet")["vigil-node-collector"]
    assert "--no-kube-api" in container(daemonset)["command"]
    assert daemonset["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_every_workload_is_covered_by_a_network_policy(default, external):
    for objects in (default, external):
        policies = by_kind(objects, "NetworkPolicy").values()
        for obj in objects:
            if obj["kind"] not in WORKLOAD_KINDS:
                continue
            labels = obj["spec"]["template"]["metadata"]["labels"]
            covering = [p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
            assert covering, f"no NetworkPolicy selects {obj['metadata']['name']}"
            assert all(set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} for p in covering)


def test_every_workload_has_resources_and_a_restrictive_security_context(default, external):
    for objects in (default, external):
        for obj in objects:
            if obj["kind"] not in WORKLOAD_KINDS:
                continue
            name = obj["metadata"]["name"]
            spec = container(obj)
            assert spec["resources"]["requests"] and spec["resources"]["limits"], name
            security = spec["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            if obj["kind"] == "Deployment":
                pod = obj["spec"]["template"]["spec"]["securityContext"]
                assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001, name
                assert pod["seccompProfile"] == {"type": "RuntimeDefault"} and "add" not in security["capabilities"]
            assert "/var/lib/vigil" in mounts_of(obj) and "/tmp" in mounts_of(obj), name  # root fs is read-only


def test_external_kafka_and_clickhouse_credentials_come_from_secret_files(external, external_values):
    kafka, clickhouse = external_values["kafka"], external_values["clickhouse"]
    for obj in external:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        env, mounts = env_of(obj), mounts_of(obj)
        assert env["VIGIL_KAFKA_BOOTSTRAP"] == kafka["bootstrap"]
        assert (env["VIGIL_KAFKA_REPLICATION_FACTOR"], env["VIGIL_KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
        assert env["VIGIL_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["VIGIL_KAFKA_SASL_MECHANISM"] == kafka["sasl"]["mechanism"]
        assert _secret_behind(mounts, env["VIGIL_KAFKA_SASL_PASSWORD_FILE"]) == kafka["sasl"]["existingSecret"]
        assert _secret_behind(mounts, env["VIGIL_KAFKA_SSL_CAFILE"]) == kafka["tls"]["existingSecret"]
        assert not any("PASSWORD" in name and not name.endswith("_FILE") for name in env), obj["metadata"]["name"]
    writer = by_kind(external, "Deployment")["vigil-storage-writer"]
    env = env_of(writer)
    assert env["VIGIL_CLICKHOUSE_URL"] == clickhouse["url"]
    assert env["VIGIL_CLICKHOUSE_USERNAME"] == clickhouse["username"]
    assert _secret_behind(mounts_of(writer), env["VIGIL_CLICKHOUSE_PASSWORD_FILE"]) == clickhouse["existingSecret"]
    assert (env["VIGIL_CLICKHOUSE_CLUSTER"], env["VIGIL_CLICKHOUSE_CLUSTER_NODES"],
            env["VIGIL_CLICKHOUSE_REPLICATION"]) == (clickhouse["cluster"], "", "true")
    webhook = by_kind(external, "Deployment")["vigil-audit-webhook"]
    token_file = env_of(webhook)["VIGIL_COLLECTOR_BEARER_TOKEN_FILE"]
    token_secret = external_values["auditWebhook"]["bearerToken"]["existingSecret"]
    assert _secret_behind(mounts_of(webhook), token_file) == token_secret


def _secret_behind(mounts: dict[str, dict[str, Any]], file: str) -> str:
    """The Secret a file path is read from (its directory is a secret volume holding that key)."""
    path = Path(file)
    secret = mounts[str(path.parent)]["secret"]
    keys = [item["path"] for item in secret.get("items", [])]
    assert not keys or path.name in keys, f"{file}: the volume does not project key {path.name}"
    return secret["secretName"]


def test_sasl_without_a_secret_is_refused_with_a_reason(helm):
    result = _template(helm, "--set", "kafka.securityProtocol=SASL_SSL", "--set", "kafka.sasl.username=vigil")
    assert result.returncode != 0 and "kafka.sasl.existingSecret is required" in result.stderr


def test_stream_workers_are_bounded_by_the_raw_partitions(helm, external, external_values):
    assert by_kind(external, "Deployment")["vigil-stream-worker"]["spec"]["replicas"] == \
        external_values["streamWorker"]["replicas"]
    result = _template(helm, "--set", "streamWorker.replicas=7")
    assert result.returncode != 0 and "exceeds kafka.rawTopicPartitions (6)" in result.stderr


def test_custom_detections_are_mounted_as_a_directory_for_hot_reload(external, external_values):
    worker = by_kind(external, "Deployment")["vigil-stream-worker"]
    env, mounts = env_of(worker), mounts_of(worker)
    volume = mounts[env["VIGIL_DETECTIONS_PATH"]]
    configmap = by_kind(external, "ConfigMap")[volume["configMap"]["name"]]
    assert set(configmap["data"]) == set(external_values["detections"]["custom"])
    assert all("subPath" not in mount for mount in container(worker)["volumeMounts"])  # subPath never updates
    tuning = mounts[str(Path(env["VIGIL_DETECTIONS_CONFIG"]).parent)]
    assert "detections.toml" in by_kind(external, "ConfigMap")[tuning["configMap"]["name"]]["data"]
    assert worker["spec"]["template"]["metadata"]["annotations"]["checksum/detections-tuning"]


def test_the_example_detections_values_are_what_the_engine_accepts(external_values, tmp_path):
    (tmp_path / "detections.toml").write_text(external_values["detections"]["tuning"])
    tuning = Tuning.load(tmp_path / "detections.toml")
    assert tuning.detections["k8s.exec_into_pod"].overrides == {"severity": "critical"}
    for file, source in external_values["detections"]["custom"].items():
        (tmp_path / file).write_text(source)
    result = subprocess.run([sys.executable, "-m", "vigil.cli", "detections", "test", str(tmp_path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS site.prod_portforward" in result.stdout


def test_monitoring_objects_are_gated_and_query_real_metrics(external):
    (monitor,) = by_kind(external, "ServiceMonitor").values()
    metrics_services = [s for s in by_kind(external, "Service").values()
                        if s["metadata"]["labels"].get("vigil.dev/metrics") == "true"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in metrics_services if selector.items() <= s["metadata"]["labels"].items()]
    ports = {port["name"] for s in selected for port in s["spec"]["ports"]}
    assert ports == {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} == {"metrics", "https"}
    components = {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in selected}
    assert components == set(COMPONENT_COMMANDS)
    (rule,) = by_kind(external, "PrometheusRule").values()
    alerts = {r["alert"]: r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert {"VigilRecordsDropped", "VigilConsumerLag", "VigilNoData"} <= set(alerts)
    for name, expr in alerts.items():
        assert not unknown_metrics(expr), (name, unknown_metrics(expr))
