#!/usr/bin/env bash
# Kubernetes commands built from source at one version, for vigil's integration tests and `vigil dev cluster`:
# no package manager here ships them. The missing ones of those asked for are built with the Go toolchain in ONE
# `go build` (they share one build cache and most packages), once per version, into $VIGIL_CACHE_DIR/bin (default
# ~/.cache/vigil/bin), outside the checkout; later calls reuse them. scripts/kube-apiserver.sh and
# scripts/kube-node.sh name the commands each needs.
#
#   scripts/kube-build.sh COMMAND...    build the missing ones, print each command's binary path, one a line
#
# Exit code 3 means Go is not installed, so the binaries cannot be built (tests skip on it).
set -euo pipefail

K8S_VERSION=v1.34.4  # the minor matches the k8s.io/client-go v0.34 that helm (scripts/helm.sh) is built on
bin_dir=${VIGIL_CACHE_DIR:-$HOME/.cache/vigil}/bin

if (($# == 0)); then
  echo "usage: scripts/kube-build.sh COMMAND..." >&2
  exit 2
fi

missing=()
for command in "$@"; do
  [[ -x $bin_dir/$command-$K8S_VERSION ]] || missing+=("$command")
done

if ((${#missing[@]})); then
  if ! command -v go >/dev/null; then
    echo "kube-build.sh: Go is not installed, so ${missing[*]} $K8S_VERSION cannot be built" >&2
    exit 3
  fi
  mkdir -p "$bin_dir"
  echo "kube-build.sh: building ${missing[*]} $K8S_VERSION with $(go version | cut -d' ' -f3)" \
    "(once, several minutes)" >&2
  started=$SECONDS
  build=$(mktemp -d "$bin_dir/.build.XXXXXX")
  trap 'rm -rf "$build"' EXIT
  # k8s.io/kubernetes replaces its staging modules (k8s.io/api, k8s.io/apiserver, k8s.io/kubectl, ...) with
  # directories of its own repository, so `go install k8s.io/kubernetes/cmd/kube-apiserver@VERSION` is refused. A
  # throwaway module that requires k8s.io/kubernetes and replaces each staging module with its published
  # v0.MINOR.PATCH builds the same code.
  staging_version=v0.${K8S_VERSION#v1.}
  kubernetes_mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  cd "$build"
  go mod init vigil.invalid/kube-build >/dev/null 2>&1
  go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
  for module in $(sed -n 's|^\t\(k8s.io/[a-z0-9-]*\) => ./staging/.*|\1|p' "$kubernetes_mod"); do
    go mod edit -replace "$module=$module@$staging_version"
  done
  # The version stamps of Kubernetes' own release build (hack/lib/version.sh): without them each binary reports
  # v0.0.0-master, which clients, the kubelet's node status and the version-skew checks read.
  ldflags="-w -s"
  minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $package.gitVersion=$K8S_VERSION -X $package.gitMajor=1 -X $package.gitMinor=$minor"
    ldflags+=" -X $package.gitTreeState=clean"
  done
  packages=()
  for command in "${missing[@]}"; do packages+=("k8s.io/kubernetes/cmd/$command"); done
  mkdir out
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o out/ "${packages[@]}"
  for command in "${missing[@]}"; do mv "out/$command" "$bin_dir/$command-$K8S_VERSION"; done
  cd /
  rm -rf "$build"
  trap - EXIT
  echo "kube-build.sh: built ${missing[*]} in $((SECONDS - started)) s" >&2
fi

for command in "$@"; do echo "$bin_dir/$command-$K8S_VERSION"; done
