#!/usr/bin/env bash
# Idempotent set-up of a checkout: system packages vigil's dev stack needs, and .venv with vigil installed.
# Called by scripts/demo.sh and scripts/test.sh; safe to run again (a no-op when nothing changed).
set -euo pipefail
cd "$(dirname "$0")/.."

# Java + Maven: the dev Kafka. clang, bpftool, libbpf: compiling and loading the eBPF sensor. containerd, runc,
# busybox-static: the real container runtime the node-collector tests run containers on. apparmor: apparmor_parser
# checks the syntax of `vigil advise apparmor` drafts (this kernel has no AppArmor to enforce them). etcd-server:
# the etcd under the real kube-apiserver of the Kubernetes API tests. containernetworking-plugins: the bridge,
# host-local and loopback CNI plugins of `vigil dev cluster`'s kubelet.
missing=()
command -v java >/dev/null || missing+=(default-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v clang >/dev/null || missing+=(clang)
command -v llvm-strip >/dev/null || missing+=(llvm)
command -v bpftool >/dev/null || missing+=(bpftool)
[[ -e /usr/include/bpf/bpf_helpers.h ]] || missing+=(libbpf-dev)
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[[ -x /bin/busybox ]] || missing+=(busybox-static)
command -v apparmor_parser >/dev/null || [[ -x /sbin/apparmor_parser ]] || missing+=(apparmor)
command -v etcd >/dev/null || missing+=(etcd-server)
[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
command -v promtool >/dev/null || missing+=(prometheus)
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: please install: ${missing[*]} (Debian package names)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: vigil needs Python >= 3.11 ($python is $("$python" --version 2>&1))" >&2
  exit 1
fi
[[ -x .venv/bin/python ]] || "$python" -m venv .venv

stamp=.venv/.vigil-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "setup: installing vigil into .venv" >&2
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi
