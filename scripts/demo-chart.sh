#!/usr/bin/env bash
# vigil's Helm chart installed for real on the dev cluster, and the attack of scripts/demo-cluster.sh seen through
# the chart's own pods. Runs as root.
#
# Builds vigil's image without Docker or a registry (scripts/vigil-image.sh: mmdebstrap + buildah, about 10 min
# once), imports it into the dev cluster's containerd, `helm install`s ./helm with helm/examples/dev-cluster.yaml
# (the dev stack's Kafka and ClickHouse; topics vigil-chart.*, database vigil_chart) and waits until the DaemonSet
# and the Deployments are Ready. The apiserver posts its audit events to 127.0.0.1:<port> on the node (`vigil dev
# cluster` sets it at start): the chart's webhook listens there on the host network (auditWebhook.hostNetwork).
# Everything is the chart's: its audit webhook, node collector (eBPF, containerd, CRI, the API watch), stream
# worker, writer and SIEM publisher. Then kubectl runs examples/cluster-attack.sh in a pod and the alerts are read from the chart's
# ClickHouse database and its OCSF topic. The release stays installed (`helm uninstall vigil -n vigil`); while it
# is, its webhook holds the host's webhook port, so scripts/demo-cluster.sh's host webhook cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[[ $(id -u) -eq 0 ]] || { echo "demo-chart.sh: run as root (the kubelet, the image build)" >&2; exit 1; }

vigil=.venv/bin/vigil
run=$(mktemp -d)
pids=()
started=$SECONDS
cleanup() {
  # The listener ends by SIGTERM (status 143): the script's own status must not become that.
  ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null && { wait "${pids[@]}" 2>/dev/null || true; }
  echo "logs: $run"
}
trap cleanup EXIT
step() { printf '\n== [%3d s] %s\n' $((SECONDS - started)) "$*"; }

step "vigil's image (scripts/vigil-image.sh; built once per change of the sources)"
archive=$(bash scripts/vigil-image.sh --path)

step "the dev stack and the dev cluster"
$vigil dev up >/dev/null
$vigil dev cluster up >/dev/null
cluster_dir=$($vigil dev cluster status | sed -n 's/^kubeconfig: \(.*\)\/kubeconfig$/\1/p')
export KUBECONFIG=$cluster_dir/kubeconfig
kubectl=$(bash scripts/kube-node.sh --path | grep '/kubectl-')
helm=$(bash scripts/helm.sh --path)
ctr=(ctr --address "$cluster_dir/containerd/containerd.sock" --namespace k8s.io)
node_ip=$($kubectl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
webhook_port=$(sed -n 's|.*"server": "http://127.0.0.1:\([0-9]*\)/audit".*|\1|p' "$cluster_dir/audit-webhook.kubeconfig")

step "importing $archive into the cluster's containerd"
"${ctr[@]}" images import "$archive" >/dev/null

step "helm install vigil ./helm -f helm/examples/dev-cluster.yaml"
"$helm" upgrade --install vigil ./helm -n vigil --create-namespace -f helm/examples/dev-cluster.yaml \
  --set nodeCollector.containerdSocket="$cluster_dir/containerd/containerd.sock" \
  --set nodeCollector.hostStateDir="$cluster_dir/vigil-state" --set auditWebhook.port="$webhook_port" \
  --wait --timeout 5m
$kubectl -n vigil get daemonsets,deployments,pods -o wide

mkdir -p "$run/www" && printf '#!/bin/sh\necho pwned\n' >"$run/www/payload.sh"
listener_port=${VIGIL_DEMO_LISTENER_PORT:-18080}
.venv/bin/python -m http.server --bind "$node_ip" --directory "$run/www" "$listener_port" >"$run/listener.log" 2>&1 &
pids+=($!)

namespace=chart-attack-$(date +%s)
step "kubectl: $namespace/web, then kubectl exec with examples/cluster-attack.sh"
$kubectl create namespace "$namespace"
until $kubectl get serviceaccount default -n "$namespace" >/dev/null 2>&1; do sleep 0.5; done
$kubectl run web -n "$namespace" --image=docker.io/vigil/busybox:dev --image-pull-policy=Never \
  --command -- sleep 3600
$kubectl wait --for=condition=Ready pod/web -n "$namespace" --timeout=120s
$kubectl exec -i -n "$namespace" web -- sh -s "$node_ip" "$listener_port" 16443 <examples/cluster-attack.sh

step "alerts about $namespace/web stored by the chart's writer (database vigil_chart)"
query="SELECT groupUniqArray(detection) FROM vigil_chart.alerts WHERE namespace = '$namespace'"
for _ in $(seq 120); do
  found=$(VIGIL_CLICKHOUSE_URL=http://127.0.0.1:8123 $vigil query --format csv "$query" 2>/dev/null | tail -n1 || true)
  [[ $found == *seq.exec_then_tooling* && $found == *seq.token_read_api_use* ]] && break
  sleep 2
done
VIGIL_CLICKHOUSE_URL=http://127.0.0.1:8123 $vigil query "SELECT severity, detection, pod, user, title
  FROM vigil_chart.alerts FINAL WHERE namespace = '$namespace' ORDER BY time"
step "the same alerts as OCSF, from the chart's SIEM publisher (topic vigil-chart.alerts.ocsf)"
VIGIL_KAFKA_TOPIC_PREFIX=vigil-chart. $vigil stream tail alerts.ocsf --since 10m --timeout 15 \
  | grep -c "\"$namespace\"" || true
[[ $found == *seq.exec_then_tooling* && $found == *seq.token_read_api_use* ]] \
  || { echo "missing sequence alerts (found: $found)" >&2; exit 1; }
$kubectl delete namespace "$namespace" --wait=false
step "done"
