#!/usr/bin/env bash
# vigil's container image without Docker and without a registry, for clusters that import images (the dev
# cluster's containerd: `ctr images import`). The same image as the Dockerfile: a Debian bookworm root filesystem
# made from Debian packages by mmdebstrap (Python 3.11, and clang, llvm, bpftool and libbpf for the node
# collector's sensor), vigil installed into /opt/vigil with pip, user 10001; buildah turns it into an OCI image
# and writes it as an OCI archive into $VIGIL_CACHE_DIR/images (default ~/.cache/vigil/images), named
# docker.io/vigil/vigil:<version>. Rebuilt only when vigil's code or dependencies change. Runs as root
# (mmdebstrap's chroot).
#
#   scripts/vigil-image.sh --path     build if needed, print the archive's path
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
image=docker.io/vigil/vigil:$version
sources=(pyproject.toml README.md vigil collectors streams detections storage siem sources benchmarks)
cache=${VIGIL_CACHE_DIR:-$HOME/.cache/vigil}
# The archive's key: the code and pyproject.toml (the dependency list). README.md is only the package's long
# description, so editing it does not rebuild the image.
digest=$(find "${sources[@]:2}" pyproject.toml -type f -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum \
  | sha256sum | cut -c1-12)
archive=$cache/images/vigil-$version-$digest.tar

if [[ ! -f $archive ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "vigil-image.sh: run as root (mmdebstrap builds in a chroot)" >&2; exit 1; }
  missing=()
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v buildah >/dev/null || missing+=(buildah)
  if ((${#missing[@]})); then
    echo "vigil-image.sh: installing ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  started=$SECONDS
  work=$(mktemp -d "${TMPDIR:-/tmp}/vigil-image.XXXXXX")
  buildah=(buildah --root "$cache/buildah/storage" --runroot "$work/run" --storage-driver vfs)
  container=""
  cleanup() {
    [[ -n $container ]] && "${buildah[@]}" rm "$container" >/dev/null 2>&1
    rm -rf "$work"
  }
  trap cleanup EXIT
  echo "vigil-image.sh: building $image (Debian packages, then vigil with pip; several minutes)" >&2
  # vigil and its dependencies as wheels, fetched by the host's pip (its index, proxy and trust settings), so the
  # chroot installs offline.
  # From a copy of the sources: setuptools would reuse the checkout's build/ directory, stale files included.
  mkdir "$work/src" && cp -r "${sources[@]}" "$work/src/"
  .venv/bin/python -m pip wheel --quiet --wheel-dir "$work/wheels" "$work/src"
  mmdebstrap --variant=apt --format=tar --quiet \
    --include=python3,python3-venv,ca-certificates,clang,llvm,bpftool,libbpf-dev,libbpf1 \
    --customize-hook="mkdir \"\$1/wheels\" && cp '$work'/wheels/*.whl \"\$1/wheels/\"" \
    --customize-hook='chroot "$1" python3 -m venv /opt/vigil' \
    --customize-hook='chroot "$1" env -u PIP_FIND_LINKS /opt/vigil/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --no-index --find-links /wheels vigil' \
    --customize-hook='rm -rf "$1/wheels" "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    --customize-hook='chroot "$1" groupadd --system --gid 10001 vigil' \
    --customize-hook='chroot "$1" useradd --system --uid 10001 --gid vigil --home-dir /var/lib/vigil --no-create-home --shell /usr/sbin/nologin vigil' \
    --customize-hook='chroot "$1" install -d -o vigil -g vigil -m 0750 /var/lib/vigil /var/cache/vigil' \
    bookworm "$work/rootfs.tar"
  container=$("${buildah[@]}" from scratch)
  "${buildah[@]}" add "$container" "$work/rootfs.tar" / >/dev/null
  "${buildah[@]}" config \
    --env PATH=/opt/vigil/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env PYTHONUNBUFFERED=1 --env VIGIL_DATA_DIR=/var/lib/vigil --env VIGIL_CACHE_DIR=/var/cache/vigil \
    --env VIGIL_METRICS_HOST=0.0.0.0 --workingdir /var/lib/vigil --user 10001:10001 --cmd '["vigil", "--help"]' \
    --label org.opencontainers.image.version="$version" "$container"
  "${buildah[@]}" commit --quiet --format oci --rm "$container" "$image" >/dev/null
  container=""
  mkdir -p "$cache/images"
  rm -f "$cache/images/vigil-$version-"*.tar
  "${buildah[@]}" push --quiet "$image" "oci-archive:$archive.part:$image"
  mv "$archive.part" "$archive"
  "${buildah[@]}" rmi "$image" >/dev/null
  echo "vigil-image.sh: built $archive ($(du -h "$archive" | cut -f1)) in $((SECONDS - started)) s" >&2
fi

if [[ ${1:-} == --path ]]; then
  echo "$archive"
else
  echo "usage: scripts/vigil-image.sh --path" >&2
  exit 2
fi
