#!/usr/bin/env bash
# The rest of a single-node Kubernetes beside scripts/kube-apiserver.sh's apiserver: kubelet,
# kube-controller-manager, kube-scheduler and kubectl, all at the apiserver's version, for `vigil dev cluster`.
# No package manager here ships them, so they are built from source with the Go toolchain in ONE `go build` (they
# share one build cache and most packages), once per version, into $VIGIL_CACHE_DIR/bin (default ~/.cache/vigil/bin),
# outside the checkout; later calls reuse them.
#
#   scripts/kube-node.sh --path      build if needed, print the four binaries' paths, one a line
#
# Exit code 3 means Go is not installed, so the binaries cannot be built (tests skip on it).
set -euo pipefail

K8S_VERSION=v1.34.4  # the same as scripts/kube-apiserver.sh: kubelet and apiserver of one release
COMMANDS=(kubelet kube-controller-manager kube-scheduler kubectl)
bin_dir=${VIGIL_CACHE_DIR:-$HOME/.cache/vigil}/bin

missing=()
for command in "${COMMANDS[@]}"; do
  [[ -x $bin_dir/$command-$K8S_VERSION ]] || missing+=("$command")
done

if ((${#missing[@]})); then
  if ! command -v go >/dev/null; then
    echo "kube-node.sh: Go is not installed, so ${missing[*]} $K8S_VERSION cannot be built" >&2
    exit 3
  fi
  mkdir -p "$bin_dir"
  echo "kube-node.sh: building ${missing[*]} $K8S_VERSION with $(go version | cut -d' ' -f3)" \
    "(once, several minutes)" >&2
  started=$SECONDS
  build=$(mktemp -d "$bin_dir/.build.XXXXXX")
  trap 'rm -rf "$build"' EXIT
  # The throwaway module of scripts/kube-apiserver.sh: k8s.io/kubernetes with each staging module replaced by its
  # published v0.MINOR.PATCH, since `go install k8s.io/kubernetes/cmd/...@VERSION` is refused.
  staging_version=v0.${K8S_VERSION#v1.}
  kubernetes_mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  cd "$build"
  go mod init vigil.invalid/kube-node-build >/dev/null 2>&1
  go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
  for module in $(sed -n 's|^\t\(k8s.io/[a-z0-9-]*\) => ./staging/.*|\1|p' "$kubernetes_mod"); do
    go mod edit -replace "$module=$module@$staging_version"
  done
  # Kubernetes' release version stamps (hack/lib/version.sh): without them each binary reports v0.0.0-master, and
  # the kubelet's node status and kubectl's version skew checks read them.
  ldflags="-w -s"
  minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $package.gitVersion=$K8S_VERSION -X $package.gitMajor=1 -X $package.gitMinor=$minor"
    ldflags+=" -X $package.gitTreeState=clean"
  done
  # kubectl lives in its own staging module (k8s.io/kubectl); k8s.io/kubernetes/cmd/kubectl is its main package.
  packages=()
  for command in "${missing[@]}"; do packages+=("k8s.io/kubernetes/cmd/$command"); done
  mkdir out
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o out/ "${packages[@]}"
  for command in "${missing[@]}"; do mv "out/$command" "$bin_dir/$command-$K8S_VERSION"; done
  cd /
  rm -rf "$build"
  trap - EXIT
  echo "kube-node.sh: built ${missing[*]} in $((SECONDS - started)) s" >&2
fi

if [[ ${1:-} == --path ]]; then
  for command in "${COMMANDS[@]}"; do echo "$bin_dir/$command-$K8S_VERSION"; done
else
  echo "usage: scripts/kube-node.sh --path" >&2
  exit 2
fi
