#!/usr/bin/env bash
# vigil's main job end to end on this machine: the real Kafka and ClickHouse started locally, the audit
# collector fed with audit logs (an attack scenario through the webhook, the public samples through the file
# tailer), the stream worker raising alerts onto the SIEM topic, the writer storing events and alerts, and
# the alerts shown from the topic and queried from ClickHouse. The dev stack stays up afterwards for your own
# queries (`.venv/bin/vigil query ...`); `.venv/bin/vigil dev down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
# --cluster: the attack through kubectl on a real node (the dev cluster) instead, see scripts/demo-cluster.sh
if [[ ${1:-} == --cluster ]]; then exec bash scripts/demo-cluster.sh; fi
bash scripts/setup.sh

# Each run is a cluster of its own: the scenario's audit records posted again are duplicates of the last run's,
# the evidence of alerts that run opened and that are still open, so a second run under one name raises nothing.
export VIGIL_CLUSTER=${VIGIL_CLUSTER:-demo-$(date +%Y%m%d-%H%M%S)}
# The writer and the queries below are separate processes: they share the dev stack's ClickHouse server
# (without this, vigil stores into an engine embedded in one process).
export VIGIL_CLICKHOUSE_URL=${VIGIL_CLICKHOUSE_URL:-http://127.0.0.1:8123}
vigil=.venv/bin/vigil
samples=${VIGIL_SHARED_DATA:-../shared/data}/k8s-audit
run=$(mktemp -d)
port=${VIGIL_COLLECTOR_WEBHOOK_PORT:-8765}
pids=()
cleanup() {
  ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null && wait "${pids[@]}" 2>/dev/null
  echo "component logs: $run"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "starting Kafka and ClickHouse (vigil dev up); this run's cluster: $VIGIL_CLUSTER"
$vigil dev up

step "starting the stream worker, the storage writer and the audit webhook"
$vigil stream worker >"$run/worker.log" 2>&1 & pids+=($!)
$vigil store >"$run/writer.log" 2>&1 & pids+=($!)
$vigil collect audit --webhook >"$run/webhook.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done

since=$(date +%s%3N)
step "posting an attack scenario to the audit webhook (examples/attack-scenario.jsonl as an EventList)"
.venv/bin/python -c 'import json,sys; print(json.dumps({"kind":"EventList","apiVersion":"audit.k8s.io/v1",
  "items":[json.loads(l) for l in open(sys.argv[1])]}))' examples/attack-scenario.jsonl >"$run/eventlist.json"
curl -sf -X POST -H 'Content-Type: application/json' --data-binary @"$run/eventlist.json" \
  "http://127.0.0.1:$port/audit"
echo

if [[ -d $samples ]]; then
  step "collecting the public audit samples (raw, GKE, AKS) with the file tailer"
  # A second collector process on this host: it gets its own spool and checkpoints.
  VIGIL_COLLECTOR_SPOOL_DIR="$run/spool" VIGIL_COLLECTOR_CHECKPOINT_DIR="$run/checkpoints" \
    $vigil collect audit --once \
    $(printf -- '--file %s ' "$samples"/*.log)
fi

expected=$($vigil replay examples/attack-scenario.jsonl 2>/dev/null | wc -l)
step "alerts on the SIEM topic (vigil stream tail alerts): $expected expected, as \`vigil replay\` finds offline"
$vigil stream tail alerts --since "$since" --max "$expected" --timeout 120 | tee "$run/alerts.jsonl"
[[ $(wc -l <"$run/alerts.jsonl") -ge $expected ]] || { echo "expected $expected alerts; see $run" >&2; exit 1; }

step "the same alerts, stored in ClickHouse (vigil query)"
for _ in $(seq 60); do
  n=$($vigil query --format csv "SELECT count() FROM vigil.alerts WHERE cluster = '$VIGIL_CLUSTER'" | tail -n1)
  [[ ${n:-0} -ge $expected ]] && break
  sleep 1
done
# Informational posture findings (no limits, tags instead of digests, ...) are counted, the rest listed.
$vigil query "SELECT time, severity, detection, namespace, pod, user FROM vigil.alerts FINAL
              WHERE cluster = '$VIGIL_CLUSTER' AND severity != 'informational' ORDER BY time"
$vigil query "SELECT severity, count() AS alerts FROM vigil.alerts FINAL WHERE cluster = '$VIGIL_CLUSTER'
              GROUP BY severity ORDER BY alerts DESC"
$vigil query "SELECT source, kind, action, count() AS events FROM vigil.events FINAL
              WHERE cluster IN ('$VIGIL_CLUSTER', 'test-cluster') GROUP BY ALL ORDER BY events DESC"
