#!/usr/bin/env bash
# The helm binary that lints and renders vigil's chart (helm/), built from source with the Go toolchain because
# no package manager here ships helm. It is built once per version into $VIGIL_CACHE_DIR/bin (default
# ~/.cache/vigil/bin), outside the checkout; later calls reuse it.
#
#   scripts/helm.sh --path        build if needed, print the binary's path
#   scripts/helm.sh ARGS...       build if needed, run helm ARGS... (e.g. scripts/helm.sh lint helm)
#
# Exit code 3 means Go is not installed, so helm cannot be built (tests skip on it).
set -euo pipefail

HELM_VERSION=v3.19.5
K8S_MINOR=34  # helm v3.19 is built on k8s.io/client-go v0.34
bin_dir=${VIGIL_CACHE_DIR:-$HOME/.cache/vigil}/bin
helm=$bin_dir/helm-$HELM_VERSION

if [[ ! -x $helm ]]; then
  if ! command -v go >/dev/null; then
    echo "helm.sh: Go is not installed, so helm $HELM_VERSION cannot be built" >&2
    exit 3
  fi
  mkdir -p "$bin_dir"
  echo "helm.sh: building helm $HELM_VERSION with $(go version | cut -d' ' -f3) (once, a few minutes)" >&2
  started=$SECONDS
  # A private GOBIN keeps the user's ~/go/bin untouched; the version-named binary is moved in atomically.
  gobin=$(mktemp -d "$bin_dir/.build.XXXXXX")
  trap 'rm -rf "$gobin"' EXIT
  # The ldflags of helm's own release build (its Makefile): without them `helm version` has no patch level and
  # `helm template`/`lint` assume Kubernetes 1.20. 1.34 is the client-go minor this helm version is built on.
  ldflags="-w -s -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for package in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/$package.k8sVersionMajor=1 -X helm.sh/helm/v3/$package.k8sVersionMinor=$K8S_MINOR"
  done
  GOBIN=$gobin GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$gobin/helm" "$helm"
  rm -rf "$gobin"
  trap - EXIT
  echo "helm.sh: built $helm in $((SECONDS - started)) s" >&2
fi

if [[ ${1:-} == --path ]]; then
  echo "$helm"
else
  exec "$helm" "$@"
fi
