#!/usr/bin/env bash
# The rest of a single-node Kubernetes beside scripts/kube-apiserver.sh's apiserver, for `vigil dev cluster`:
# kubelet, kube-controller-manager, kube-scheduler and kubectl at the apiserver's version, built once (in one
# `go build`) by scripts/kube-build.sh.
#
#   scripts/kube-node.sh --path      build if needed, print the four binaries' paths, one a line
#
# Exit code 3 means Go is not installed, so the binaries cannot be built (tests skip on it).
set -euo pipefail

if [[ ${1:-} != --path ]]; then
  echo "usage: scripts/kube-node.sh --path" >&2
  exit 2
fi
exec bash "$(dirname "$0")/kube-build.sh" kubelet kube-controller-manager kube-scheduler kubectl
