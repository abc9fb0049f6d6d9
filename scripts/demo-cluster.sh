#!/usr/bin/env bash
# An attack on a real Kubernetes node, seen by vigil end to end (also `scripts/demo.sh --cluster`). Runs as root.
#
# Starts the dev stack (Kafka, ClickHouse) and the dev cluster (`vigil dev cluster up`: etcd, apiserver,
# controller-manager, scheduler, a kubelet on a private containerd; the Kubernetes binaries are built once, minutes),
# then vigil as on a node: the audit webhook the apiserver sends to, `vigil collect node` (eBPF, containerd, CRI and
# this node's pods on the API), the stream worker and the writer. Then, with kubectl: a namespace, a busybox pod,
# and `kubectl exec` into it running examples/cluster-attack.sh (a download tool, the service-account token read
# and used against the API, a connection out to a listener on the host, a write under /etc). Shows the alerts
# about that pod from the SIEM topic and from ClickHouse. The dev stack and the cluster stay up afterwards;
# `.venv/bin/vigil dev cluster down` stops the cluster and undoes its host changes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[[ $(id -u) -eq 0 ]] || { echo "demo-cluster.sh: run as root (the kubelet and the eBPF sensor need it)" >&2; exit 1; }

export VIGIL_CLUSTER=${VIGIL_CLUSTER:-demo-cluster}
export VIGIL_CLICKHOUSE_URL=${VIGIL_CLICKHOUSE_URL:-http://127.0.0.1:8123}
export VIGIL_NODE=${VIGIL_NODE:-$(hostname | tr '[:upper:]' '[:lower:]')}
vigil=.venv/bin/vigil
run=$(mktemp -d)
pids=()
started=$SECONDS
cleanup() {
  # The listener ends by SIGTERM (status 143): the script's own status must not become that.
  ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null && { wait "${pids[@]}" 2>/dev/null || true; }
  echo "component logs: $run; cluster logs: ${cluster_dir:-?}/logs"
}
trap cleanup EXIT
step() { printf '\n== [%3d s] %s\n' $((SECONDS - started)) "$*"; }

step "starting Kafka and ClickHouse (vigil dev up)"
$vigil dev up

step "starting the dev cluster (vigil dev cluster up; the first run builds the Kubernetes binaries)"
$vigil dev cluster up
cluster_dir=$($vigil dev cluster status | sed -n 's/^kubeconfig: \(.*\)\/kubeconfig$/\1/p')
export KUBECONFIG=$cluster_dir/kubeconfig
kubectl=$(bash scripts/kube-node.sh --path | grep '/kubectl-')
node_ip=$($kubectl get node "$VIGIL_NODE" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
webhook_port=$(sed -n 's|.*"server": "http://127.0.0.1:\([0-9]*\)/audit".*|\1|p' "$cluster_dir/audit-webhook.kubeconfig")

step "starting the audit webhook (:$webhook_port), the node collector, the stream worker and the writer"
VIGIL_COLLECTOR_WEBHOOK_PORT=$webhook_port $vigil collect audit --webhook >"$run/webhook.log" 2>&1 & pids+=($!)
metrics_port=${VIGIL_DEMO_METRICS_PORT:-19464}
VIGIL_METRICS_PORT=$metrics_port $vigil collect node --containerd-address "$cluster_dir/containerd/containerd.sock" \
  >"$run/node.log" 2>&1 & pids+=($!)
$vigil stream worker >"$run/worker.log" 2>&1 & pids+=($!)
$vigil store >"$run/writer.log" 2>&1 & pids+=($!)
for _ in $(seq 240); do
  up=$(curl -sf "http://127.0.0.1:$metrics_port/metrics" | grep -c '^vigil_node_source_up{source="\(ebpf\|containerd\|kubernetes-api\)"} 1' || true)
  [[ $up -eq 3 ]] && curl -sf "http://127.0.0.1:$webhook_port/healthz" >/dev/null && break
  sleep 0.5
done
[[ $up -eq 3 ]] || { echo "the node collector did not bring up eBPF, containerd and the API watch; see $run/node.log" >&2; exit 1; }

step "the attacker's listener on the host ($node_ip)"
mkdir -p "$run/www" && printf '#!/bin/sh\necho pwned\n' >"$run/www/payload.sh"
listener_port=${VIGIL_DEMO_LISTENER_PORT:-18080}
.venv/bin/python -m http.server --bind "$node_ip" --directory "$run/www" "$listener_port" >"$run/listener.log" 2>&1 &
pids+=($!)

namespace=attack-$(date +%s)
step "kubectl: namespace $namespace and a busybox pod (imagePullPolicy: Never)"
$kubectl create namespace "$namespace"
until $kubectl get serviceaccount default -n "$namespace" >/dev/null 2>&1; do sleep 0.5; done
$kubectl apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: $namespace, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - {name: app, image: docker.io/vigil/busybox:dev, imagePullPolicy: Never, command: [sleep, "3600"]}
EOF
$kubectl wait --for=condition=Ready pod/web -n "$namespace" --timeout=120s

step "kubectl exec into the pod: examples/cluster-attack.sh"
$kubectl exec -i -n "$namespace" web -- sh -s "$node_ip" "$listener_port" 16443 <examples/cluster-attack.sh

step "waiting for the alerts about $namespace/web in ClickHouse (the audit exec, runtime alerts, both sequences)"
query="SELECT groupUniqArray(detection) FROM vigil.alerts WHERE cluster = '$VIGIL_CLUSTER' AND namespace = '$namespace'"
for _ in $(seq 120); do
  found=$($vigil query --format csv "$query" 2>/dev/null | tail -n1 || true)
  [[ $found == *seq.exec_then_tooling* && $found == *seq.token_read_api_use* && $found == *k8s.exec_into_pod* ]] && break
  sleep 2
done

step "the alerts on the SIEM topic (vigil stream tail alerts), about $namespace/web"
$vigil stream tail alerts --since 15m --timeout 15 | grep "\"namespace\":\"$namespace\"" \
  | .venv/bin/python -c 'import json, sys
for line in sys.stdin:
    alert = json.loads(line)
    print("%-14s%-42s%s" % (alert["severity"], alert["detection"], alert["title"]))'

step "the same alerts in ClickHouse (vigil query)"
$vigil query "SELECT severity, detection, namespace, pod, user, title FROM vigil.alerts FINAL
              WHERE cluster = '$VIGIL_CLUSTER' AND namespace = '$namespace' ORDER BY time"
step "the pod's runtime events with the container and image the node collector gave them"
$vigil query "SELECT source, kind, container_name, image, actor_exe, arrayStringConcat(actor_args, ' ') AS args
              FROM vigil.events WHERE cluster = '$VIGIL_CLUSTER' AND namespace = '$namespace'
              AND kind IN ('process.exec', 'file.write') ORDER BY time LIMIT 20"
[[ $found == *seq.exec_then_tooling* && $found == *seq.token_read_api_use* ]] \
  || { echo "missing sequence alerts (found: $found); see $run" >&2; exit 1; }
$kubectl delete namespace "$namespace" --wait=false
step "done"
