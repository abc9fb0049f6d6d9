"""Capture the benign node corpus (tests/data/benign/node-*.jsonl) for real: ``vigil collect node``'s own records
(eBPF sensor, containerd, kernel audit) while a node does only ordinary things.

    .venv/bin/python -m tests.integration.capture_benign [OUTPUT_DIR]     # default tests/data/benign

Needs root, the dev Kafka (``vigil dev up``), containerd/runc (scripts/setup.sh), busybox-static, Debian's
``buildah``, ``containernetworking-plugins`` and a C compiler and git on the host. It starts a private containerd
(tests/integration/containerd_runtime.py) and the node collector on a topic prefix of its own, then:

- **entrypoints and probes**: a web pod whose PID 1 is an ``sh -c`` script that execs busybox ``httpd``, probed by
  exec (``cat /tmp/healthy``, ``wget`` of its page) through containerd's task exec, as CRI ExecSync does;
- **init containers**: waiting for a service's name (``nslookup``) and port (``nc -z``), as the Kubernetes
  documentation's example does, then installing a package (``dpkg -i`` of a .deb built here: files under /usr,
  /etc and /var/lib/dpkg in the container's root), then the app container reading its own service-account token;
- **an image build**: ``buildah from``/``run``/``commit`` on the node, the RUN step installing the same .deb and
  adding an apt source;
- **a CI runner pod** (GitLab-runner shaped): git clone/commit, ``cc`` compiling and running the result in the
  build directory, tar of the artifacts, with the host's toolchain mounted read-only as the job image's;
- **a pod on a CNI bridge network** (bridge, host-local, loopback plugins run by containerd);
- **operators' exec** into pods of ``dev-alice`` and ``staging`` (an interactive shell on a terminal, as
  ``kubectl exec -it`` opens, then ``ps``, ``ls``, reading config, ``wget`` of a service);
- and everything runc, the shims and containerd do for those (mounts, namespace joins, cgroups).

The sensor sees the whole machine (other work runs here), so only records of these containers, and of the
processes descended from this script (containerd, shims, runc, CNI plugins, buildah, ctr), are kept. Records
are written one JSON object a line, sorted by time, exactly as the collector shipped them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.containerd_runtime import Containerd, Pod, missing_requirements
from tests.integration.harness import read_raw_records, running_node_collector, wait_for
from vigil import kafka
from vigil.collectors.node.collector import NodeCollector, NodeOptions
from vigil.collectors.runtime.api import cri_pb2
from vigil.config import Settings, load_settings
from vigil.devstack.oci_image import write_busybox_image

REPO = Path(__file__).resolve().parents[2]
NODE = "node-benign-1"
TOPICS = {"ebpf": "raw.ebpf", "containerd": "raw.containerd", "kernel-audit": "raw.kernel-audit"}
WEB_PORT = 18080
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CNI_BRIDGE = "cni-vigilcap0"
#: The applets the pods' images link (a busybox image links them all; these are what the workloads use).
APPLETS = ("sh", "cat", "sleep", "echo", "true", "ls", "id", "mkdir", "cp", "ln", "rm", "test", "[", "wget", "nc",
           "nslookup", "httpd", "dpkg", "tar", "gzip", "ps", "env", "grep", "date", "hostname", "touch", "sed", "head",
           "wc")
IMAGES = {
    "web": "registry.example.com/shop/web:1.4.2",
    "api": "registry.example.com/payments/api:2.0.1",
    "toolbox": "docker.io/library/busybox:1.36",
    "ci-build": "docker.io/library/gcc:13",
    "ci-helper": "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v17.5.0",
    "agent": "quay.io/prometheus/node-exporter:v1.8.2",
    "kaniko": "gcr.io/kaniko-project/executor:v1.23.2-debug",
}


def build_deb(directory: Path) -> Path:
    """A small Debian package (a script in /usr/local/bin, a config in /etc, docs in /usr/share)."""
    root = directory / "deb"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: api-tools\nVersion: 1.2.0\nArchitecture: all\nMaintainer: Payments <payments@example.com>\n"
        "Description: health checks for the payments API\n")
    for path, text in (("usr/local/bin/api-healthcheck", "#!/bin/sh\nwget -q -O- http://127.0.0.1:8080/healthz\n"),
                       ("etc/api-tools/api-tools.conf", "endpoint=http://127.0.0.1:8080\n"),
                       ("usr/share/doc/api-tools/README", "health checks\n")):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "usr/local/bin/api-healthcheck").chmod(0o755)
    deb = directory / "api-tools_1.2.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


def import_images(runtime: Containerd, directory: Path, deb: Path) -> None:
    empty = directory / "empty"
    empty.write_text("")
    dpkg_files = {"var/lib/dpkg/status": empty, "var/lib/dpkg/info/base-files.list": empty,
                  "opt/debs/api-tools_1.2.0_all.deb": deb}
    for role, name in IMAGES.items():
        runtime.import_image(name, ["/bin/sh"], APPLETS, dpkg_files if role in ("api", "kaniko") else {})


def exec_in(runtime: Containerd, container_id: str, *command: str) -> str:
    """A process in a running container through containerd's task exec: what CRI ExecSync (exec probes, and
    ``kubectl exec`` through the kubelet) does underneath, down to runc exec."""
    return runtime.ctr("tasks", "exec", "--exec-id", f"exec-{uuid.uuid4().hex[:8]}", container_id, *command)


async def until_exited(runtime: Containerd, container_id: str) -> None:
    await wait_for(lambda: runtime.container_state(container_id) == cri_pb2.CONTAINER_EXITED, timeout=120)


async def until_running(runtime: Containerd, container_id: str) -> None:
    await wait_for(lambda: runtime.container_state(container_id) == cri_pb2.CONTAINER_RUNNING, timeout=60)


async def web_server(runtime: Containerd) -> Pod:
    """A web pod: PID 1 an ``sh -c`` entrypoint that prepares its files and execs httpd; exec probes."""
    pod = await asyncio.to_thread(runtime.run_pod, "web-6b7d9f-x2v4k", "shop", {"app": "web"})
    entrypoint = ("mkdir -p /www /var/cache/web && echo '<h1>shop</h1>' > /www/index.html && "
                  f"touch /tmp/healthy && exec httpd -f -p 127.0.0.1:{WEB_PORT} -h /www")
    web = await asyncio.to_thread(runtime.run_container, pod, "web", ["sh", "-c", entrypoint], image=IMAGES["web"])
    await until_running(runtime, web)
    await wait_for(lambda: _probe(runtime, web, "cat", "/tmp/healthy"), timeout=30)
    for _ in range(3):
        await asyncio.to_thread(exec_in, runtime, web, "cat", "/tmp/healthy")
        await asyncio.to_thread(exec_in, runtime, web, "wget", "-q", "-O", "/dev/null",
                                f"http://127.0.0.1:{WEB_PORT}/index.html")
    await asyncio.to_thread(exec_in, runtime, web, "sh", "-c", "test -f /tmp/healthy")
    return pod


def interactive_shell(runtime: Containerd, container_id: str, typed: str) -> None:
    """``kubectl exec -it … -- sh``: a shell on a terminal (``script`` gives ``ctr`` one), ``typed`` into it."""
    command = (f"ctr --address {runtime.socket} --namespace k8s.io tasks exec --tty "
               f"--exec-id exec-{uuid.uuid4().hex[:8]} {container_id} sh")
    subprocess.run(["script", "--quiet", "--return", "--command", command, "/dev/null"], input=typed, text=True,
                   capture_output=True, timeout=60, check=True)


def _probe(runtime: Containerd, container_id: str, *command: str) -> bool:
    try:
        exec_in(runtime, container_id, *command)
    except RuntimeError:
        return False
    return True


async def api_with_init_install(runtime: Containerd, directory: Path) -> Pod:
    """An init container that installs a package with dpkg, then the app, which reads its own token."""
    pod = await asyncio.to_thread(runtime.run_pod, "payments-api-5c8d7b-qz9lm", "payments", {"app": "payments-api"})
    tokens = directory / "token-payments-api"
    tokens.mkdir()
    (tokens / "token").write_text("eyJhbGciOiJSUzI1NiJ9.payments-api.signature\n")
    (tokens / "namespace").write_text("payments\n")
    token_mount = [cri_pb2.Mount(container_path=TOKEN_DIR, host_path=str(tokens), readonly=True)]
    # The init containers of the Kubernetes documentation's example: wait for a service's name, then its port
    # (the name is asked of a resolver on loopback, where nothing answers: no query leaves the machine; Debian's
    # busybox nc has no -z, so the exec is recorded as netcat-openbsd's would be and wget does the waiting).
    for name, wait in (("wait-for-dns", "nslookup payments-db.payments.svc.cluster.local 127.0.0.1 || true"),
                       ("wait-for-web", f"nc -z 127.0.0.1 {WEB_PORT} || wget -q -O /dev/null "
                                        f"http://127.0.0.1:{WEB_PORT}/")):
        waiting = await asyncio.to_thread(runtime.run_container, pod, name, ["sh", "-c", wait], image=IMAGES["api"])
        await until_exited(runtime, waiting)
    install = "dpkg -i /opt/debs/api-tools_1.2.0_all.deb && /usr/local/bin/api-healthcheck --version || true"
    init = await asyncio.to_thread(runtime.run_container, pod, "install-tools", ["sh", "-c", install],
                                   image=IMAGES["api"], mounts=token_mount)
    await until_exited(runtime, init)
    app = ("cat /var/run/secrets/kubernetes.io/serviceaccount/token > /dev/null; "
           "cat /etc/api-tools/api-tools.conf > /dev/null; touch /tmp/healthy; exec sleep 3600")
    main = await asyncio.to_thread(runtime.run_container, pod, "api", ["sh", "-c", app], image=IMAGES["api"],
                                   mounts=token_mount)
    await until_running(runtime, main)
    await wait_for(lambda: _probe(runtime, main, "cat", "/tmp/healthy"), timeout=30)
    return pod


async def ci_runner(runtime: Containerd, directory: Path) -> Pod:
    """A GitLab-runner job pod: the helper clones and archives, the build container compiles and tests."""
    pod = await asyncio.to_thread(runtime.run_pod, "runner-x7k2p9-project-42-concurrent-0", "gitlab-runner",
                                  {"job.runner.gitlab.com/pod": "runner-x7k2p9-project-42-concurrent-0"})
    builds = directory / "builds"
    builds.mkdir()
    toolchain = [cri_pb2.Mount(container_path="/usr", host_path="/usr", readonly=True),
                 cri_pb2.Mount(container_path="/lib", host_path="/usr/lib", readonly=True),
                 cri_pb2.Mount(container_path="/lib64", host_path="/usr/lib64", readonly=True),
                 cri_pb2.Mount(container_path="/etc/alternatives", host_path="/etc/alternatives", readonly=True),
                 cri_pb2.Mount(container_path="/builds", host_path=str(builds))]
    env = "export HOME=/builds PATH=/usr/local/bin:/usr/bin:/bin GIT_CONFIG_NOSYSTEM=1"
    clone = (f"{env}; mkdir -p /builds/upstream /builds/acme && cd /builds/upstream && git init -q -b main && "
             "printf '#include <stdio.h>\\nint main(void){puts(\"ok\");return 0;}\\n' > main.c && "
             "git -c user.email=ci@example.com -c user.name=ci add main.c && "
             "git -c user.email=ci@example.com -c user.name=ci commit -q -m init && "
             "git clone -q /builds/upstream /builds/acme/app && git -C /builds/acme/app log --oneline")
    helper = await asyncio.to_thread(runtime.run_container, pod, "helper", ["sh", "-c", clone],
                                     image=IMAGES["ci-helper"], mounts=toolchain)
    await until_exited(runtime, helper)
    build = (f"{env}; cd /builds/acme/app && cc -O2 -Wall -o app main.c && ./app && "
             "mkdir -p dist && cp app dist/ && tar czf /builds/acme/artifacts.tar.gz dist && "
             "mkdir -p /tmp/verify && tar xzf /builds/acme/artifacts.tar.gz -C /tmp/verify && ls /tmp/verify/dist")
    job = await asyncio.to_thread(runtime.run_container, pod, "build", ["sh", "-c", build],
                                  image=IMAGES["ci-build"], mounts=toolchain)
    await until_exited(runtime, job)
    return pod


async def kaniko_build(runtime: Containerd) -> Pod:
    """An image build in a pod, as kaniko does it: the executor unpacks the base image over its own root and runs
    each RUN step there (a package install, an apt source added, a binary copied into /usr/local/bin)."""
    pod = await asyncio.to_thread(runtime.run_pod, "kaniko-api-tools-8fz2k", "gitlab-runner", {"app": "kaniko"})
    steps = ("mkdir -p /kaniko /workspace && cd /workspace && echo 'FROM base' > Dockerfile && "
             "dpkg -i /opt/debs/api-tools_1.2.0_all.deb && mkdir -p /etc/apt/sources.list.d && "
             "echo 'deb http://deb.example.com/debian bookworm main' > /etc/apt/sources.list.d/vendor.list && "
             "cp /bin/busybox /usr/local/bin/healthcheck && tar czf /kaniko/layer.tar.gz /usr/local /etc/api-tools")
    build = await asyncio.to_thread(runtime.run_container, pod, "build", ["sh", "-c", steps], image=IMAGES["kaniko"])
    await until_exited(runtime, build)
    return pod


def cni_config(directory: Path) -> None:
    """containerd's CNI configuration: a bridge without a gateway address (no route, no traffic leaves)."""
    (directory / "cni-bin").mkdir(parents=True, exist_ok=True)
    for plugin in ("bridge", "host-local", "loopback"):
        (directory / "cni-bin" / plugin).symlink_to(Path("/usr/lib/cni") / plugin)
    (directory / "cni-conf").mkdir(parents=True, exist_ok=True)
    (directory / "cni-conf" / "10-pods.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": "pods",
        "plugins": [{"type": "bridge", "bridge": CNI_BRIDGE, "isGateway": False, "ipMasq": False,
                     "ipam": {"type": "host-local", "dataDir": str(directory / "cni-ipam"),
                              "ranges": [[{"subnet": "10.244.177.0/24"}]]}},
                    {"type": "loopback"}],
    }))


async def pod_network_agent(runtime: Containerd) -> Pod:
    """A pod with its own network namespace, set up by the CNI plugins; an exec readiness probe."""
    uid = str(uuid.uuid4())
    config = cri_pb2.PodSandboxConfig(
        metadata=cri_pb2.PodSandboxMetadata(name="node-exporter-8mf2t", namespace="monitoring", uid=uid),
        log_directory=str(runtime.directory / "pods" / uid), labels={"app": "node-exporter"},
        hostname="node-exporter-8mf2t")
    reply = await asyncio.to_thread(runtime.runtime.RunPodSandbox,
                                    cri_pb2.RunPodSandboxRequest(config=config), timeout=120)
    pod = Pod(reply.pod_sandbox_id, "node-exporter-8mf2t", "monitoring", uid, {"app": "node-exporter"}, config)
    agent = await asyncio.to_thread(runtime.run_container, pod, "node-exporter",
                                    ["sh", "-c", "hostname > /tmp/healthy; exec sleep 3600"], image=IMAGES["agent"])
    await until_running(runtime, agent)
    await wait_for(lambda: _probe(runtime, agent, "cat", "/tmp/healthy"), timeout=30)
    return pod


async def operators_exec(runtime: Containerd) -> list[Pod]:
    """``kubectl exec`` by people debugging non-production pods: a shell and the usual looking around."""
    pods = []
    for name, namespace in (("toolbox-7d9f4-kq2lp", "dev-alice"), ("orders-84c6d-m2xkq", "staging")):
        pod = await asyncio.to_thread(runtime.run_pod, name, namespace, {"app": name.split("-")[0]})
        container = await asyncio.to_thread(runtime.run_container, pod, "main", ["sh", "-c", "exec sleep 3600"],
                                            image=IMAGES["toolbox"])
        await until_running(runtime, container)
        await asyncio.to_thread(interactive_shell, runtime, container,
                                "id\nhostname\nls -la /\nps\ncat /etc/resolv.conf\nenv | grep -c PATH\n"
                                f"wget -q -O- http://127.0.0.1:{WEB_PORT}/index.html\nexit\n")
        for command in (["sh", "-c", "cat /etc/hosts /etc/resolv.conf 2>/dev/null | head -5; date"], ["ls", "/tmp"]):
            await asyncio.to_thread(exec_in, runtime, container, *command)
        pods.append(pod)
    return pods


def image_build(directory: Path, deb: Path) -> None:
    """``buildah`` building an image on the node: FROM the web image, RUN installing the package and adding an
    apt source, COPY, commit."""
    storage = ["--root", str(directory / "buildah" / "root"), "--runroot", str(directory / "buildah" / "run"),
               "--storage-driver", "vfs"]
    image = directory / "base.tar"
    write_busybox_image(image, "registry.example.com/base/busybox:1", ["/bin/sh"], list(APPLETS),
                        files={"var/lib/dpkg/status": directory / "empty", "var/lib/dpkg/info/base-files.list":
                               directory / "empty"})

    def buildah(*args: str) -> str:
        done = subprocess.run(["buildah", *storage, *args], capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(f"buildah {' '.join(args)}: {done.stderr.strip()[-2000:]}")
        return done.stdout.strip()

    container = buildah("from", "--pull-never", f"oci-archive:{image}")
    try:
        buildah("copy", container, str(deb), "/tmp/api-tools.deb")
        buildah("run", "--network", "none", "--runtime", "runc", container, "--", "sh", "-c",
                "dpkg -i /tmp/api-tools.deb && rm /tmp/api-tools.deb && mkdir -p /etc/apt/sources.list.d && "
                "echo 'deb http://deb.example.com/debian bookworm main' > /etc/apt/sources.list.d/vendor.list")
        buildah("config", "--entrypoint", '["/usr/local/bin/api-healthcheck"]', container)
        buildah("commit", "--rm", container, "registry.example.com/payments/api-tools:1.2.0")
        container = ""
        buildah("rmi", "--all", "--force")
    finally:
        if container:
            buildah("rm", container)


def kept(records: Iterable[dict], container_ids: set[str], root_pid: int) -> tuple[list[dict], list[dict]]:
    """The records of our containers and of the processes descended from ``root_pid`` (not itself: the
    collector runs in it), in time order; those of the image build on the node (buildah and what it ran) apart."""
    ordered = sorted(records, key=lambda r: r.get("time_ns") or 0)
    family, build = {root_pid}, set()
    node, built = [], []
    for record in ordered:
        pid, ppid = record.get("pid"), record.get("ppid")
        if record.get("container_id") in container_ids:
            node.append(record)
        elif pid in build or ppid in build or (record.get("args") or [""])[0] == "buildah":
            build.add(pid)
            built.append(record)
        elif pid != root_pid and (pid in family or ppid in family):
            family.add(pid)
            node.append(record)
    return node, built


async def delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka))
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(settings.kafka.topic_prefix)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


def missing_tools() -> str:
    """Why the capture cannot run here ('' when it can)."""
    tools = ("cc", "git", "dpkg-deb", "script", "buildah")
    reason = missing_requirements() or next((f"{tool} is not installed" for tool in tools
                                             if shutil.which(tool) is None), "")
    if not reason and not Path("/usr/lib/cni/bridge").exists():
        reason = "containernetworking-plugins is not installed"
    return reason


async def capture(output: Path) -> dict[str, int]:
    """Capture into ``output``, the collector shipping on topics of its own (made and deleted here)."""
    directory = Path(tempfile.mkdtemp(prefix="vigil-cap-", dir="/tmp"))
    runtime = Containerd(directory)
    settings = load_settings()
    settings.kafka.topic_prefix = f"test-capture-{uuid.uuid4().hex[:8]}."
    settings.node = NODE
    settings.data_dir = str(directory / "data")
    settings.collector.spool_dir = settings.collector.checkpoint_dir = ""
    try:
        cni_config(directory)
        runtime.start()
        deb = build_deb(directory)
        import_images(runtime, directory, deb)
        await kafka.ensure_topics(settings)
        collector = NodeCollector(settings, NodeOptions(containerd_address=runtime.address, kube_api=False,
                                                        syscall_flush_s=3600.0))
        stop, run = await running_node_collector(collector, sources=("containerd", "ebpf"), timeout=180)
        pods = [await web_server(runtime), await api_with_init_install(runtime, directory),
                await ci_runner(runtime, directory), await kaniko_build(runtime), await pod_network_agent(runtime),
                *await operators_exec(runtime)]
        await asyncio.to_thread(image_build, directory, deb)
        for pod in pods:
            await asyncio.to_thread(runtime.remove_pod, pod)
        stop.set()
        await asyncio.wait_for(run, 120)
        records = {name: await read_raw_records(settings, topic) for name, topic in TOPICS.items()}
    finally:
        runtime.stop()
        subprocess.run(["ip", "link", "delete", CNI_BRIDGE], check=False, capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)
        await delete_topics(settings)
    ours = {r["container_id"] for r in records["containerd"]}  # this containerd's only
    counts = {}
    output.mkdir(parents=True, exist_ok=True)
    for name, found in records.items():
        node, built = kept(found, ours, os.getpid())
        for prefix, lines in (("node", node), ("build", built)):
            if lines:
                (output / f"{prefix}-{name}.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
            counts[f"{prefix}-{name}"] = len(lines)
    return counts


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "tests" / "data" / "benign"
    if reason := missing_tools():
        raise SystemExit(f"capture_benign: {reason}")
    print(json.dumps(asyncio.run(capture(output))))


if __name__ == "__main__":
    main()
