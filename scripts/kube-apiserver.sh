#!/usr/bin/env bash
# The kube-apiserver binary that vigil's integration tests run (with etcd) to exercise the node collector's pod
# watch and the audit webhook against a real Kubernetes API. No package manager here ships it, so it is built from
# source with the Go toolchain, once per version, into $VIGIL_CACHE_DIR/bin (default ~/.cache/vigil/bin), outside
# the checkout; later calls reuse it.
#
#   scripts/kube-apiserver.sh --path      build if needed, print the binary's path
#   scripts/kube-apiserver.sh ARGS...     build if needed, run kube-apiserver ARGS...
#
# Exit code 3 means Go is not installed, so kube-apiserver cannot be built (tests skip on it).
set -euo pipefail

K8S_VERSION=v1.34.4  # the minor matches the k8s.io/client-go v0.34 that helm (scripts/helm.sh) is built on
bin_dir=${VIGIL_CACHE_DIR:-$HOME/.cache/vigil}/bin
apiserver=$bin_dir/kube-apiserver-$K8S_VERSION

if [[ ! -x $apiserver ]]; then
  if ! command -v go >/dev/null; then
    echo "kube-apiserver.sh: Go is not installed, so kube-apiserver $K8S_VERSION cannot be built" >&2
    exit 3
  fi
  mkdir -p "$bin_dir"
  echo "kube-apiserver.sh: building kube-apiserver $K8S_VERSION with $(go version | cut -d' ' -f3)" \
    "(once, several minutes)" >&2
  started=$SECONDS
  build=$(mktemp -d "$bin_dir/.build.XXXXXX")
  trap 'rm -rf "$build"' EXIT
  # k8s.io/kubernetes replaces its staging modules (k8s.io/api, k8s.io/apiserver, ...) with directories of its own
  # repository, so `go install k8s.io/kubernetes/cmd/kube-apiserver@VERSION` is refused. A throwaway module that
  # requires k8s.io/kubernetes and replaces each staging module with its published v0.MINOR.PATCH builds the same code.
  staging_version=v0.${K8S_VERSION#v1.}
  kubernetes_mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  cd "$build"
  go mod init vigil.invalid/kube-apiserver-build >/dev/null 2>&1
  go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
  for module in $(sed -n 's|^\t\(k8s.io/[a-z0-9-]*\) => ./staging/.*|\1|p' "$kubernetes_mod"); do
    go mod edit -replace "$module=$module@$staging_version"
  done
  # The version stamps of Kubernetes' own release build (hack/lib/version.sh): without them the server reports
  # v0.0.0-master, which clients and the compatibility-version checks read.
  ldflags="-w -s"
  minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $package.gitVersion=$K8S_VERSION -X $package.gitMajor=1 -X $package.gitMinor=$minor"
    ldflags+=" -X $package.gitTreeState=clean"
  done
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o kube-apiserver \
    k8s.io/kubernetes/cmd/kube-apiserver
  mv kube-apiserver "$apiserver"
  cd /
  rm -rf "$build"
  trap - EXIT
  echo "kube-apiserver.sh: built $apiserver in $((SECONDS - started)) s" >&2
fi

if [[ ${1:-} == --path ]]; then
  echo "$apiserver"
else
  exec "$apiserver" "$@"
fi
