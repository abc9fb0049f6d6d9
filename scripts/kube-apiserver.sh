#!/usr/bin/env bash
# The kube-apiserver binary that vigil's integration tests run (with etcd) to exercise the node collector's pod
# watch and the audit webhook against a real Kubernetes API, built once by scripts/kube-build.sh.
#
#   scripts/kube-apiserver.sh --path      build if needed, print the binary's path
#   scripts/kube-apiserver.sh ARGS...     build if needed, run kube-apiserver ARGS...
#
# Exit code 3 means Go is not installed, so kube-apiserver cannot be built (tests skip on it).
set -euo pipefail

apiserver=$(bash "$(dirname "$0")/kube-build.sh" kube-apiserver)
if [[ ${1:-} == --path ]]; then
  echo "$apiserver"
else
  exec "$apiserver" "$@"
fi
