"""Capture the benign audit corpus (tests/data/benign/k8s-audit-captured.jsonl) for real: a real kube-apiserver's
audit events, under the project's own audit policy (deploy/kube-apiserver/audit-policy.yaml), while a real
kube-controller-manager and kube-scheduler run their controllers and the usual in-cluster clients do their jobs.

    .venv/bin/python -m tests.integration.capture_benign_audit [OUTPUT_FILE]

Needs etcd (Debian's etcd-server) and the binaries scripts/kube-apiserver.sh and scripts/kube-node.sh build.
The apiserver and etcd are tests/integration/kube_apiserver.py's, on loopback ports of their own. Setup by the
administrator (namespaces, RBAC, the objects the clients work on) is not audited; then, audited:

- kube-controller-manager with per-controller service accounts (``--use-service-account-credentials``) and
  kube-scheduler, for as long as their start-up takes: informers listing and watching everything, secrets
  included, the service-account, root-CA publisher, deployment, replica-set and garbage controllers at work, the
  scheduler binding the pods;
- a node's kubelet identity (``system:node:worker-1``, its static token standing in for its client certificate)
  registering the node, mirroring its static pod, reporting its status, requesting its pods' tokens and setting
  their status;
- kube-state-metrics, Prometheus, cert-manager (controller, cainjector writing its webhooks' caBundle, webhook),
  ingress-nginx (controller, and its certgen job), Argo CD (applying the node agents' DaemonSets too: kube-proxy,
  calico-node, node-exporter, fluent-bit, whose pods the real daemon-set controller then creates), Flux,
  external-secrets and a CI deployer running Helm, each with a token the API issued to its own service account and
  its own User-Agent;
- ``kubectl exec`` by people into pods of ``dev-alice`` and ``staging`` (no kubelet serves it here, so the API
  answers with an error after authorizing it: the audit event is the one a served exec has, with that code).
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.integration.kube_apiserver import ADMIN_USER, AUDIT_WEBHOOK_PATH, KubeAPIServer, build_apiserver

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "deploy" / "kube-apiserver" / "audit-policy.yaml"
NODE = "worker-1"
KUBECTL_UA = "kubectl/v1.34.4 (linux/amd64) kubernetes/0b9fcf2"
#: Static-token identities (the control plane's and the node's client certificates, people's OIDC logins).
PEOPLE = {"alice@example.com": "developers", "bob@example.com": "developers"}
CONTROL_PLANE = {"system:kube-controller-manager": "", "system:kube-scheduler": "", f"system:node:{NODE}":
                 "system:nodes"}
#: The in-cluster clients: (namespace, service account) → User-Agent.
CLIENTS = {
    ("monitoring", "kube-state-metrics"): "kube-state-metrics/v2.13.0 (linux/amd64) kubernetes/4b1b7a5",
    ("monitoring", "prometheus-k8s"): "Prometheus/2.54.1",
    ("cert-manager", "cert-manager"): "cert-manager-controller/v1.16.2 (linux/amd64) cert-manager/8f1c1bb5",
    ("cert-manager", "cert-manager-cainjector"): "cainjector/v1.16.2 (linux/amd64) cert-manager/8f1c1bb5",
    ("cert-manager", "cert-manager-webhook"): "webhook/v1.16.2 (linux/amd64) cert-manager/8f1c1bb5",
    ("ingress-nginx", "ingress-nginx"): "nginx-ingress-controller/v1.11.3 (linux/amd64) ingress-nginx/0f5bf2f5",
    ("ingress-nginx", "ingress-nginx-admission"): "kube-webhook-certgen/v1.4.4",
    ("argocd", "argocd-application-controller"): "argocd-application-controller/v2.13.1 (linux/amd64)",
    ("argocd", "argocd-server"): "argocd-server/v2.13.1 (linux/amd64)",
    ("flux-system", "kustomize-controller"): "kustomize-controller/v1.4.0 (linux/amd64) flux",
    ("flux-system", "helm-controller"): "helm-controller/v1.1.0 (linux/amd64) flux",
    ("flux-system", "source-controller"): "source-controller/v1.4.1 (linux/amd64) flux",
    ("external-secrets", "external-secrets"): "external-secrets/v0.10.5",
    ("gitlab-runner", "deployer"): "Helm/3.16.2",
}
NAMESPACES = ("shop", "staging", "dev-alice", "monitoring", "logging", "cert-manager", "ingress-nginx", "argocd",
              "flux-system", "external-secrets", "gitlab-runner")
#: The node agents a cluster runs as DaemonSets, as their charts set them: (namespace, name, image, pod spec).
NODE_AGENTS = (
    ("kube-system", "kube-proxy", "registry.k8s.io/kube-proxy:v1.34.4", {
        "hostNetwork": True, "securityContext": {}, "priorityClassName": "system-node-critical",
        "volumes": [{"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                    {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}}],
        "container": {"securityContext": {"privileged": True}, "command": ["/usr/local/bin/kube-proxy"]}}),
    ("kube-system", "calico-node", "quay.io/calico/node:v3.28.2", {
        "hostNetwork": True, "priorityClassName": "system-node-critical",
        "volumes": [{"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                    {"name": "var-run-calico", "hostPath": {"path": "/var/run/calico"}},
                    {"name": "cni-net-dir", "hostPath": {"path": "/etc/cni/net.d"}},
                    {"name": "cni-bin-dir", "hostPath": {"path": "/opt/cni/bin"}}],
        "container": {"securityContext": {"privileged": True}}}),
    ("monitoring", "node-exporter", "quay.io/prometheus/node-exporter:v1.8.2", {
        "hostNetwork": True, "hostPID": True,
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}, {"name": "sys", "hostPath": {"path": "/sys"}}],
        "container": {"args": ["--path.rootfs=/host/root"], "securityContext": {"readOnlyRootFilesystem": True}}}),
    ("logging", "fluent-bit", "cr.fluentbit.io/fluent/fluent-bit:3.1.9", {
        "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log"}},
                    {"name": "containers", "hostPath": {"path": "/var/lib/containerd"}}],
        "container": {}}),
)
WEBHOOKS = (("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", "cert-manager-webhook",
             "cert-manager", "webhook.cert-manager.io"),
            ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", "cert-manager-webhook",
             "cert-manager", "webhook.cert-manager.io"),
            ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", "ingress-nginx-admission",
             "ingress-nginx", "validate.nginx.ingress.kubernetes.io"))


class Api:
    """Requests to the apiserver as one identity."""

    def __init__(self, server: KubeAPIServer, token: str, user_agent: str) -> None:
        self.url, self.token, self.user_agent = server.url, token, user_agent
        self.context = ssl.create_default_context(cafile=str(server.certificate))

    def __call__(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "User-Agent": self.user_agent, "Content-Type": content_type,
            "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
                body = response.read()
                return None if "watch=true" in path else json.loads(body or b"null")  # a watch streams events
        except urllib.error.HTTPError as error:
            return {"code": error.code}

    def patch(self, path: str, body: Any, merge: str = "merge") -> Any:
        """A JSON merge patch, or a strategic one (``merge="strategic-merge"``: lists merged by their keys)."""
        return self("PATCH", path, body, f"application/{merge}-patch+json")


@contextmanager
def audit_receiver(port: int) -> Iterator[list[dict]]:
    """The apiserver's audit webhook: every event it posts, in arrival order."""
    events: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.partition("?")[0] == AUDIT_WEBHOOK_PATH:
                events.extend(json.loads(body).get("items", []))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield events
    finally:
        server.shutdown()
        server.server_close()


def configure(server: KubeAPIServer) -> dict[str, str]:
    """Static tokens for the control plane, the node and people; the project's audit policy with the
    administrator's setup left out. Returns the tokens by user."""
    tokens = {user: uuid.uuid4().hex for user in (*CONTROL_PLANE, *PEOPLE)}
    groups = {**CONTROL_PLANE, **PEOPLE}
    with (server.directory / "tokens.csv").open("a") as csv:
        for user, token in tokens.items():
            csv.write(f'{token},{user},{uuid.uuid4()},"{groups[user]}"\n' if groups[user] else f"{token},{user},"
                      f"{uuid.uuid4()}\n")
    policy = yaml.safe_load(POLICY.read_text())
    policy["rules"].insert(0, {"level": "None", "users": [ADMIN_USER]})
    (server.directory / "audit-policy.json").write_text(json.dumps(policy))
    return tokens


def kubeconfig(server: KubeAPIServer, name: str, token: str) -> Path:
    path = server.directory / f"{name}.kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server.url,
                                               "certificate-authority": str(server.certificate)}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def setup_objects() -> list[dict]:
    """What the administrator creates before the capture (not audited)."""
    objects: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in NAMESPACES]
    objects += [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns}}
                for ns, sa in CLIENTS]
    objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": {"name": "capture-clients"},
                    "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})
    objects += [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": {"name": f"capture-{ns}-{sa}"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "capture-clients"},
                 "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]} for ns, sa in CLIENTS]
    objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": "capture-nodes"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
                    "subjects": [{"kind": "Group", "name": "system:nodes", "apiGroup": "rbac.authorization.k8s.io"}]})
    objects += [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": f"edit-{user.split('@')[0]}", "namespace": ns},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                 "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]}
                for user, ns in (("alice@example.com", "dev-alice"), ("bob@example.com", "staging"))]
    for _, kind, name, ns, hook in WEBHOOKS:
        objects.append({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name},
                        "webhooks": [{"name": hook, "failurePolicy": "Ignore", "sideEffects": "None",
                                      "admissionReviewVersions": ["v1"],
                                      "clientConfig": {"service": {"name": name, "namespace": ns, "path": "/validate"}},
                                      "rules": [{"apiGroups": ["cert-manager.io"], "apiVersions": ["v1"],
                                                 "operations": ["CREATE"], "resources": ["certificates"]}]}]})
    for ns, name in (("shop", "web"), ("staging", "orders"), ("dev-alice", "toolbox")):
        objects.append(_deployment(ns, name))
    objects += [_secret("cert-manager", "cert-manager-webhook-ca"), _secret("argocd", "argocd-secret"),
                _secret("flux-system", "flux-system"), _secret("flux-system", "sops-age"),
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": "shop"},
                 "data": {"LOG_LEVEL": "debug"}},
                {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                 "metadata": {"name": "web", "namespace": "shop"},
                 "spec": {"rules": [{"host": "shop.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                          "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}],
                          "tls": [{"hosts": ["shop.example.com"], "secretName": "web-tls"}]}}]
    return objects


def _deployment(namespace: str, name: str) -> dict:
    container = {"name": "main", "image": f"registry.example.com/{namespace}/{name}@sha256:{'ab' * 32}",
                 "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                 "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                     "seccompProfile": {"type": "RuntimeDefault"}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}}


def _secret(namespace: str, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "stringData": {"key": uuid.uuid4().hex}}


def kubectl(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(config), *args], input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)


@contextmanager
def control_plane(server: KubeAPIServer, tokens: dict[str, str], binaries: dict[str, str]) -> Iterator[None]:
    """The real kube-controller-manager and kube-scheduler, serving nothing themselves (secure port 0)."""
    logs = server.directory
    manager = [binaries["kube-controller-manager"], "--kubeconfig",
               str(kubeconfig(server, "kcm", tokens["system:kube-controller-manager"])),
               "--use-service-account-credentials=true", "--secure-port=0",
               f"--service-account-private-key-file={server.directory / 'service-account.key'}",
               f"--root-ca-file={server.certificate}", "--controllers=*,-nodeipam"]
    scheduler = [binaries["kube-scheduler"], "--kubeconfig",
                 str(kubeconfig(server, "sched", tokens["system:kube-scheduler"])), "--secure-port=0"]
    processes = [subprocess.Popen(command, stdout=(logs / f"{Path(command[0]).name}.log").open("wb"),
                                  stderr=subprocess.STDOUT, start_new_session=True) for command in (manager, scheduler)]
    try:
        yield
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)


def kubelet(server: KubeAPIServer, token: str) -> None:
    """What a kubelet asks of the API: its Node, its status, its pods, their tokens and their status."""
    api = Api(server, token, "kubelet/v1.34.4 (linux/amd64) kubernetes/0b9fcf2")
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
             "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}
    api("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}}})
    status = {"status": {"conditions": [ready], "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                         "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
                         "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"}}}
    api("PATCH", f"/api/v1/nodes/{NODE}/status", status, "application/strategic-merge-patch+json")
    api("GET", f"/api/v1/nodes/{NODE}")
    api("GET", "/api/v1/services?limit=500")
    node_uid = api("GET", f"/api/v1/nodes/{NODE}")["metadata"]["uid"]
    api("POST", "/api/v1/namespaces/kube-system/pods", {  # the mirror of its static API load balancer (kubespray's)
        "apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": f"nginx-proxy-{NODE}", "namespace": "kube-system",
            "annotations": {"kubernetes.io/config.mirror": uuid.uuid4().hex, "kubernetes.io/config.source": "file"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": node_uid,
                                 "controller": True}]},
        "spec": {"nodeName": NODE, "hostNetwork": True, "priorityClassName": "system-node-critical",
                 "containers": [{"name": "nginx-proxy", "image": "docker.io/library/nginx:1.27-alpine",
                                 "volumeMounts": [{"name": "etc-nginx", "mountPath": "/etc/nginx"}]}],
                 "volumes": [{"name": "etc-nginx", "hostPath": {"path": "/etc/nginx"}}]}})


def kubelet_pods(server: KubeAPIServer, token: str) -> int:
    """The kubelet starting the pods bound to it: their service-account tokens, root CA and Running status."""
    api = Api(server, token, "kubelet/v1.34.4 (linux/amd64) kubernetes/0b9fcf2")
    pods = api("GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}").get("items", [])
    for pod in pods:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        account = pod["spec"].get("serviceAccountName", "default")
        api("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{account}/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3607,
                     "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": name,
                                        "uid": pod["metadata"]["uid"]}}})
        api("GET", f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt")
        api("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": {
            "phase": "Running", "podIP": "10.244.1.9", "hostIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _now()}]}},
            "application/strategic-merge-patch+json")
    api("PATCH", f"/api/v1/nodes/{NODE}/status", {"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": _now()}]}},
        "application/strategic-merge-patch+json")
    return len(pods)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def clients(server: KubeAPIServer, admin: Api) -> None:
    """Each in-cluster client doing its job with a token the API issued to its own service account."""
    as_client = {key: Api(server, _token(admin, *key), agent) for key, agent in CLIENTS.items()}
    ksm, prom = as_client["monitoring", "kube-state-metrics"], as_client["monitoring", "prometheus-k8s"]
    for path in ("/api/v1/secrets", "/api/v1/configmaps", "/api/v1/pods", "/api/v1/nodes",
                 "/apis/apps/v1/deployments", "/apis/coordination.k8s.io/v1/leases"):
        ksm("GET", f"{path}?limit=500")
        ksm("GET", f"{path}?watch=true&timeoutSeconds=1&allowWatchBookmarks=true")
    for path in ("/api/v1/endpoints", "/api/v1/pods", "/api/v1/services"):
        prom("GET", path)
    cert, cainjector = as_client["cert-manager", "cert-manager"], as_client["cert-manager", "cert-manager-cainjector"]
    cert("GET", "/api/v1/secrets?limit=500")
    cert("GET", "/api/v1/secrets?watch=true&timeoutSeconds=1")
    tls = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": "web-tls", "namespace": "shop"},
           "stringData": {"tls.crt": "-----BEGIN CERTIFICATE-----", "tls.key": "-----BEGIN EC PRIVATE KEY-----"}}
    cert("POST", "/api/v1/namespaces/shop/secrets", tls)
    cert("PUT", "/api/v1/namespaces/shop/secrets/web-tls", tls)
    cainjector("GET", "/api/v1/secrets?watch=true&timeoutSeconds=1")
    for resource, _, name, _, _ in WEBHOOKS[:2]:
        cainjector("GET", f"/apis/admissionregistration.k8s.io/v1/{resource}/{name}")
        bundle = {"webhooks": [{"name": "webhook.cert-manager.io", "clientConfig": {"caBundle": _ca(server)}}]}
        cainjector.patch(f"/apis/admissionregistration.k8s.io/v1/{resource}/{name}", bundle, "strategic-merge")
    webhook = as_client["cert-manager", "cert-manager-webhook"]
    webhook("GET", "/api/v1/namespaces/cert-manager/secrets/cert-manager-webhook-ca")
    webhook("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "system:serviceaccount:cert-manager:cert-manager", "resourceAttributes": {
            "group": "cert-manager.io", "resource": "certificates", "verb": "create", "namespace": "shop"}}})
    _ingress_nginx(server, as_client)
    _gitops(as_client)


def _ingress_nginx(server: KubeAPIServer, as_client: dict[tuple[str, str], Api]) -> None:
    nginx, certgen = as_client["ingress-nginx", "ingress-nginx"], as_client["ingress-nginx", "ingress-nginx-admission"]
    for path in ("/api/v1/secrets", "/apis/networking.k8s.io/v1/ingresses",
                 "/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/configmaps"):
        nginx("GET", path)
        nginx("GET", f"{path}?watch=true&timeoutSeconds=1")
    nginx("PUT", "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web/status", {
        **nginx("GET", "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web"),
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.1.11"}]}}})
    certgen("POST", "/api/v1/namespaces/ingress-nginx/secrets", _secret("ingress-nginx", "ingress-nginx-admission"))
    certgen("GET", "/api/v1/namespaces/ingress-nginx/secrets/ingress-nginx-admission")
    bundle = {"webhooks": [{"name": "validate.nginx.ingress.kubernetes.io", "clientConfig": {"caBundle": _ca(server)}}]}
    certgen.patch("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/ingress-nginx-admission",
                  bundle, "strategic-merge")


def _gitops(as_client: dict[tuple[str, str], Api]) -> None:
    argo, argo_server = as_client["argocd", "argocd-application-controller"], as_client["argocd", "argocd-server"]
    for path in ("/api/v1/secrets", "/api/v1/configmaps", "/api/v1/pods", "/api/v1/services"):
        argo("GET", path)
        argo("GET", f"{path}?watch=true&timeoutSeconds=1")
    argo.patch("/apis/apps/v1/namespaces/shop/deployments/web",
               {"metadata": {"annotations": {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"}}})
    argo.patch("/api/v1/namespaces/shop/configmaps/web-config", {"data": {"LOG_LEVEL": "info"}})
    argo("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "web-reader", "namespace": "shop"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]})
    argo("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "web-reader", "namespace": "shop"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "web-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "shop"}]})
    for namespace, name, image, spec in NODE_AGENTS:
        argo("POST", f"/apis/apps/v1/namespaces/{namespace}/daemonsets", _daemonset(namespace, name, image, spec))
    argo_server("GET", "/api/v1/namespaces/argocd/secrets/argocd-secret")
    argo_server("GET", "/api/v1/namespaces/argocd/secrets")
    kustomize, helm = as_client["flux-system", "kustomize-controller"], as_client["flux-system", "helm-controller"]
    kustomize("GET", "/api/v1/namespaces/flux-system/secrets/sops-age")
    kustomize.patch("/apis/apps/v1/namespaces/staging/deployments/orders",
                    {"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}}})
    as_client["flux-system", "source-controller"]("GET", "/api/v1/namespaces/flux-system/secrets/flux-system")
    helm("GET", "/api/v1/namespaces/monitoring/secrets?labelSelector=owner%3Dhelm")
    helm("POST", "/api/v1/namespaces/monitoring/secrets", _release("monitoring", "kube-state-metrics", 1))
    external = as_client["external-secrets", "external-secrets"]
    external("GET", "/api/v1/secrets")
    external("POST", "/api/v1/namespaces/shop/secrets", _secret("shop", "db-credentials"))
    external("PUT", "/api/v1/namespaces/shop/secrets/db-credentials", _secret("shop", "db-credentials"))
    deployer = as_client["gitlab-runner", "deployer"]
    deployer("GET", "/api/v1/namespaces/staging/secrets?labelSelector=name%3Dorders%2Cowner%3Dhelm")
    deployer("POST", "/api/v1/namespaces/staging/secrets", _release("staging", "orders", 12))
    deployer.patch("/apis/apps/v1/namespaces/staging/deployments/orders",
                   {"spec": {"template": {"metadata": {"annotations": {"deployed-by": "gitlab-ci"}}}}})


def _daemonset(namespace: str, name: str, image: str, spec: dict[str, Any]) -> dict:
    """A node agent's DaemonSet: its one container mounts every host path volume of ``spec``."""
    pod = {key: value for key, value in spec.items() if key != "container"}
    mounts = [{"name": v["name"], "mountPath": f"/host{v['hostPath']['path']}".rstrip("/") or "/host"}
              for v in spec.get("volumes", [])]
    pod["containers"] = [{"name": name, "image": image, "volumeMounts": mounts, **spec["container"]}]
    pod["tolerations"] = [{"operator": "Exists"}]
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}}


def _release(namespace: str, name: str, version: int) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"name": f"sh.helm.release.v1.{name}.v{version}", "namespace": namespace,
                         "labels": {"owner": "helm", "name": name, "version": str(version)}},
            "stringData": {"release": "H4sIAAAAAAAA"}}


def _ca(server: KubeAPIServer) -> str:
    """A rotated CA bundle as an injector writes it (the apiserver's own certificate will do)."""
    return base64.b64encode(server.certificate.read_bytes()).decode()


def _token(admin: Api, namespace: str, account: str) -> str:
    reply = admin("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
    return reply["status"]["token"]


def people_exec(server: KubeAPIServer, tokens: dict[str, str]) -> None:
    """``kubectl get pods``, ``kubectl exec -it … -- sh`` and ``kubectl logs`` by developers in their namespaces."""
    for user, ns in (("alice@example.com", "dev-alice"), ("bob@example.com", "staging")):
        config = kubeconfig(server, user.split("@")[0], tokens[user])
        pods = kubectl(config, "-n", ns, "get", "pods", "-o", "name").stdout.split()
        if not pods:
            raise RuntimeError(f"no pod in {ns} to exec into")
        kubectl(config, "-n", ns, "exec", "-i", pods[0], "--", "sh", stdin="id\nexit\n")
        kubectl(config, "-n", ns, "logs", pods[0], "--tail=20")


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def capture(output: Path) -> int:
    etcd = shutil.which("etcd")
    if etcd is None or shutil.which("kubectl") is None:
        raise SystemExit("capture_benign_audit: etcd (etcd-server) and kubectl are needed")
    nodes = subprocess.run(["bash", str(REPO / "scripts" / "kube-node.sh"), "--path"], capture_output=True,
                           text=True, check=True).stdout.split()
    binaries = {Path(path).name.rsplit("-v", 1)[0]: path for path in nodes}
    directory = Path(tempfile.mkdtemp(prefix="vigil-audit-cap-"))
    server = KubeAPIServer(build_apiserver(), etcd, directory)
    tokens = configure(server)
    try:
        with audit_receiver(server.audit_webhook_port) as events:
            server.start()
            admin = Api(server, server.token, KUBECTL_UA)
            applied = kubectl(server.kubeconfig, "apply", "-f", "-",
                              stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": setup_objects()}))
            if applied.returncode:
                raise RuntimeError(applied.stderr)
            kubelet(server, tokens[f"system:node:{NODE}"])
            with control_plane(server, tokens, binaries):
                wait_for(lambda: all(admin("GET", f"/api/v1/namespaces/{ns}/pods").get("items") and all(
                    p["spec"].get("nodeName") for p in admin("GET", f"/api/v1/namespaces/{ns}/pods")["items"])
                    for ns in ("shop", "staging", "dev-alice")), 120, "the scheduler to bind the pods")
                kubelet_pods(server, tokens[f"system:node:{NODE}"])
                clients(server, admin)
                wait_for(lambda: len([p for ns, name, _, _ in NODE_AGENTS for p in admin(
                    "GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3D{name}").get("items", [])
                    if p["spec"].get("nodeName")]) == len(NODE_AGENTS), 120, "the node agents' pods on the node")
                people_exec(server, tokens)
                kubelet_pods(server, tokens[f"system:node:{NODE}"])
            server.stop()  # a graceful stop posts the webhook's last batch before the process exits
            captured = sorted(events, key=lambda e: (e.get("stageTimestamp", ""), e.get("auditID", "")))
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    output.write_text("".join(json.dumps(event, separators=(",", ":")) + "\n" for event in captured))
    return len(captured)


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "tests" / "data" / "benign" / "k8s-audit-captured.jsonl"
    print(json.dumps({"events": capture(output)}))


if __name__ == "__main__":
    main()
