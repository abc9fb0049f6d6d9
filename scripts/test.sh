#!/usr/bin/env bash
# The whole test suite: lint, the detection library's own examples, unit and integration tests.
# Integration tests start the real local Kafka and ClickHouse (vigil dev up) and stop them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# helm, built from source once (about 5 min on 2 cores, cached in ~/.cache/vigil/bin) for the chart's tests
if command -v go >/dev/null; then bash scripts/helm.sh --path >/dev/null; fi
# kube-apiserver, built from source once (about 7 min on 2 cores, cached in ~/.cache/vigil/bin) for the tests
# against a real Kubernetes API
if command -v go >/dev/null; then bash scripts/kube-apiserver.sh --path >/dev/null; fi
# kubelet, controller-manager, scheduler and kubectl, built once the same way (about 6 min on 2 cores after the
# apiserver's build, cached in ~/.cache/vigil/bin) for the dev cluster's attack test (tests/integration/test_dev_cluster.py)
if command -v go >/dev/null; then bash scripts/kube-node.sh --path >/dev/null; fi
# vigil's own image (mmdebstrap + buildah, 257-589 s on 2 cores; cached in ~/.cache/vigil/images, rebuilt when
# vigil's code or dependencies change) for the chart installed on the dev cluster
# (tests/integration/test_helm_chart_installed.py); root only, as that test is
if [[ $(id -u) -eq 0 ]] && command -v go >/dev/null; then bash scripts/vigil-image.sh --path >/dev/null; fi
.venv/bin/ruff check .
bash scripts/lint-imports.sh  # the import contracts in pyproject.toml; plain lint-imports cannot see the mapped parts
.venv/bin/vigil detections test
.venv/bin/pytest -q -p no:cacheprovider "$@"
