# syntax=docker/dockerfile:1
# One image for every vigil component; the command picks the component:
#
#   vigil collect audit --webhook    the kube-apiserver audit webhook          (uid 10001)
#   vigil stream worker              normalization and detections              (uid 10001)
#   vigil store                      Kafka -> ClickHouse writer                (uid 10001)
#   vigil siem publish               alerts -> OCSF/ECS/CEF topics, HEC, syslog (uid 10001)
#   vigil collect node               eBPF sensor + containerd, one per node    (root, see below)
#
# The node collector is the one component that cannot run unprivileged. It needs uid 0 (containerd's socket
# is root-only) with CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE (load the sensor, attach tracepoints, lock
# ring-buffer memory) and CAP_SYS_ADMIN only to mount tracefs when the host has not mounted it; the host's
# PID namespace; and from the host /sys/kernel/btf (the kernel's BTF), /sys/fs/cgroup (cgroup id ->
# container), /sys/kernel/tracing and the containerd socket. It compiles its BPF object at start against the
# host kernel's BTF, which only exists at run time, hence clang, bpftool and libbpf-dev in this image; the
# object is cached in $VIGIL_CACHE_DIR/ebpf (mount a host directory there to compile once per node and kernel).
# docker-compose.yml and the Helm chart (helm/) run it that way.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY vigil/ vigil/
COPY collectors/ collectors/
COPY streams/ streams/
COPY detections/ detections/
COPY storage/ storage/
COPY siem/ siem/
COPY sources/ sources/
COPY benchmarks/ benchmarks/
RUN python -m venv /opt/vigil && /opt/vigil/bin/pip install .

FROM ${PYTHON_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clang llvm bpftool libbpf-dev libbpf1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 vigil \
    && useradd --system --uid 10001 --gid vigil --home-dir /var/lib/vigil --no-create-home --shell /usr/sbin/nologin vigil \
    && install -d -o vigil -g vigil -m 0750 /var/lib/vigil /var/cache/vigil
COPY --from=build /opt/vigil /opt/vigil
ENV PATH=/opt/vigil/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VIGIL_DATA_DIR=/var/lib/vigil \
    VIGIL_CACHE_DIR=/var/cache/vigil \
    VIGIL_METRICS_HOST=0.0.0.0
WORKDIR /var/lib/vigil
USER 10001:10001
CMD ["vigil", "--help"]
