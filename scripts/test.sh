#!/usr/bin/env bash
# The whole test suite: lint, the detection library's own examples, unit and integration tests.
# Integration tests start the real local Kafka and ClickHouse (vigil dev up) and stop them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# helm, built from source once (about 5 min on 2 cores, cached in ~/.cache/vigil/bin) for the chart's tests
if command -v go >/dev/null; then bash scripts/helm.sh --path >/dev/null; fi
# kube-apiserver (the tests against a real Kubernetes API), and kubelet, controller-manager, scheduler and kubectl
# (the dev cluster's tests), built from source once in one go build that shares their packages (on 2 cores the
# apiserver alone took about 7 min and the other four 547 s from an empty Go cache), cached in ~/.cache/vigil/bin
if command -v go >/dev/null; then
  bash scripts/kube-build.sh kube-apiserver kubelet kube-controller-manager kube-scheduler kubectl >/dev/null
fi
# vigil's own image (mmdebstrap + buildah, 257-589 s on 2 cores; cached in ~/.cache/vigil/images, rebuilt when
# vigil's code or dependencies change) for the chart installed on the dev cluster
# (tests/integration/test_helm_chart_installed.py); root only, as that test is
if [[ $(id -u) -eq 0 ]] && command -v go >/dev/null; then bash scripts/vigil-image.sh --path >/dev/null; fi
.venv/bin/ruff check .
bash scripts/lint-imports.sh  # the import contracts in pyproject.toml; plain lint-imports cannot see the mapped parts
.venv/bin/vigil detections test
.venv/bin/pytest -q -p no:cacheprovider "$@"
