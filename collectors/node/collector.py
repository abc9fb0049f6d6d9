"""``vigil collect node``: the eBPF sensor, the kernel's audit records and containerd's events, enriched with
k8s context, shipped to Kafka.

One process per node. Its parts run side by side and none needs the others:

- the eBPF sensor (``vigil.collectors.ebpf.Sensor``) is polled in its own thread; when the host cannot run it
  (no BTF, tracefs unmounted, no CAP_BPF) the reason is logged and everything else keeps running;
- the kernel's audit records (seccomp verdicts, LSM decisions; :mod:`vigil.collectors.kernel_audit`) are read from
  the audit netlink multicast group in another thread, which resolves each record's process to its
  container at once (``/proc/<pid>/cgroup``), while the process may still exist; for a process already
  gone (killed by its filter) the consumer asks :class:`~vigil.collectors.node.enrichment.PidContainers`, which
  the other sources feed;
- containerd's event stream gives ``container.*`` records (:mod:`vigil.collectors.runtime`);
- the :class:`~vigil.collectors.node.enrichment.ContextCache` maps every record's ``container_id`` to its pod, fed
  by CRI (warmed at connection, then per unknown container) and, when reachable, by a Kubernetes API watch
  of this node's pods.

All records meet in one bounded queue. A single consumer enriches them (adding ``k8s`` and ``node``), packs
each source's records by key into JSON-array Kafka messages (``raw.ebpf``, ``raw.kernel-audit`` and
``raw.containerd``) and ships them through :class:`~vigil.collectors.shipper.KafkaShipper`, so Kafka outages spool
to disk like every collector's. When the consumer falls behind, the queue fills and the reader threads
wait; the kernel then drops into the sensor ring buffer's loss counter, or overflows the audit socket (the
reader counts the serial numbers it missed), which is exported, never silent: the kernel's losses and the
records this collector loses for good (spool full, refused by Kafka) are also reported per source through
:class:`~vigil.collectors.health.HealthReporter`, so alerts say when they may be blind.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
import orjson

from vigil import metrics
from vigil.collectors.health import HealthReporter
from vigil.collectors.ingest import SourceIngest
from vigil.collectors.kernel_audit.netlink import AuditNetlinkReader
from vigil.collectors.node import metrics as node_metrics
from vigil.collectors.node.enrichment import ContextCache, PidContainers, container_of_pid
from vigil.collectors.node.kubeapi import PodWatch, exited_container_ids, pod_contexts
from vigil.collectors.runtime.cri import CriClient, contexts_from_event
from vigil.collectors.runtime.spec import ContainerSpecs
from vigil.collectors.runtime.watcher import ContainerdWatcher
from vigil.collectors.shipper import KafkaShipper, SpoolFull, pack
from vigil.config import Settings
from vigil.sources.containerd import CONTAINERD_SOURCE
from vigil.sources.kernel_audit import KERNEL_AUDIT_SOURCE
from vigil.sources.kernel_audit.normalize import is_decision
from vigil.sources.kernel_audit.records import record_from_netlink
from vigil.sources.source import RecordRejected, Rejected, Source, get_source

log = logging.getLogger(__name__)

COMPONENT = "node-collector"
DEFAULT_CONTAINERD_ADDRESS = "/run/containerd/containerd.sock"

_RUNTIME_LIFECYCLE_END = frozenset({"container.exit", "container.delete"})
_RUNTIME_LIFECYCLE_START = frozenset({"container.create", "container.start"})
#: CRI records a container in its store just after containerd announces it: a create event can outrun it.
_RESOLVE_RETRIES = (0.05, 0.1, 0.2, 0.4)


@dataclass(slots=True)
class NodeOptions:
    ebpf: bool = True
    kernel_audit: bool = True
    runtime: bool = True
    kube_api: bool = True
    containerd_address: str = DEFAULT_CONTAINERD_ADDRESS
    flush_interval_s: float = 0.2  # longest a record waits for its batch
    flush_records: int = 20_000  # ... or until this many records are waiting
    queue_batches: int = 4  # batches between the sensor thread and the consumer (a poll returns up to 64k)
    sensor_poll_ms: int = 100
    #: Passed to the sensor (``vigil.collectors.ebpf.SensorConfig``, whose defaults these are): how often every
    #: container's syscall profile is reported, and whether the host's own cgroups are profiled too.
    syscall_flush_s: float = 30.0
    profile_host_cgroups: bool = False


class NodeCollector:
    """Runs the node's sources until ``stop`` is set (see the module docstring)."""

    def __init__(self, settings: Settings, options: NodeOptions) -> None:
        self.settings = settings
        self.options = options
        self.cache = ContextCache()
        self._queue: asyncio.Queue[tuple[str, list[dict[str, Any]]]] = asyncio.Queue(options.queue_batches)
        self._shipper = KafkaShipper(settings, COMPONENT)
        self.health = HealthReporter(settings, self._shipper, COMPONENT)
        self._shipper.on_loss(self.health.count_lost_message)
        self._cri = CriClient(options.containerd_address) if options.runtime else None
        self._specs = ContainerSpecs(options.containerd_address) if options.runtime else None
        self.pids = PidContainers()
        self._sources: dict[str, Source] = {CONTAINERD_SOURCE.name: CONTAINERD_SOURCE}
        self._ingests = {source.name: SourceIngest(source, settings, self._shipper, COMPONENT)
                         for source in (CONTAINERD_SOURCE, KERNEL_AUDIT_SOURCE)}
        self._pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._pending_count = 0
        self._threads_stopping = threading.Event()
        self._consumer_gone = threading.Event()
        self._draining = asyncio.Event()
        self.pod_watch: PodWatch | None = None

    async def run(self, stop: asyncio.Event) -> None:
        await self._shipper.start()
        loop = asyncio.get_running_loop()
        consumer = asyncio.create_task(self._consume(), name="node-consume")
        threads = [await self._start_sensor(loop) if self.options.ebpf else None,
                   await self._start_kernel_audit(loop) if self.options.kernel_audit else None]
        followers = []
        if self._cri is not None:
            followers += [asyncio.create_task(self._follow_containerd(), name="containerd-events"),
                          asyncio.create_task(self._follow_cri_events(), name="cri-events")]
        if self.options.kube_api:
            self.pod_watch = PodWatch(self.settings.node, lambda kind, pod: loop.call_soon_threadsafe(
                self._apply_pod, kind, pod))
            self.pod_watch.start()
        failed = asyncio.Event()
        for task in followers:
            task.add_done_callback(lambda done: failed.set() if not done.cancelled() and done.exception() else None)
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(failed.wait())]
        reporting = asyncio.create_task(self.health.run(self._draining), name="node-health")
        try:
            await asyncio.wait([*waiters, consumer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await self._shut_down(consumer, followers, [t for t in threads if t is not None], reporting)
        for task in (consumer, *followers):  # a part that failed surfaces here, after everything was shipped
            if not task.cancelled() and task.exception():
                raise task.exception()

    async def _shut_down(self, consumer: asyncio.Task[None], followers: list[asyncio.Task[None]],
                         threads: list[threading.Thread], reporting: asyncio.Task[None]) -> None:
        """Stop the sources, then let the consumer ship everything they handed over, report what was lost,
        then close."""
        self._threads_stopping.set()
        for thread in threads:
            await asyncio.to_thread(thread.join)
        if self.pod_watch is not None:
            await asyncio.to_thread(self.pod_watch.stop)
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        self._draining.set()
        await asyncio.gather(consumer, return_exceptions=True)
        await reporting
        await self.health.report()  # what the consumer's last flush lost
        if self._cri is not None:
            await self._cri.close()
        if self._specs is not None:
            await self._specs.close()
        await self._shipper.close()

    # -- sources ---------------------------------------------------------------------------------------

    async def _start_sensor(self, loop: asyncio.AbstractEventLoop) -> threading.Thread | None:
        """Start the eBPF sensor; on a host that cannot run it, log why and carry on without it."""
        try:
            ebpf = importlib.import_module("vigil.collectors.ebpf")
            sensor = ebpf.Sensor(ebpf.SensorConfig(syscall_flush_s=self.options.syscall_flush_s,
                                                   profile_host_cgroups=self.options.profile_host_cgroups))
            await asyncio.to_thread(sensor.start)
        except Exception as exc:  # SensorUnavailable, or a sensor that fails to build on this host
            node_metrics.SOURCE_UP.labels("ebpf").set(0)
            log.error("eBPF sensor unavailable; collecting container events only",
                      extra={"reason": str(exc), "error": type(exc).__name__})
            return None
        self._sources["ebpf"] = get_source("ebpf")
        node_metrics.SOURCE_UP.labels("ebpf").set(1)
        log.info("eBPF sensor running")
        thread = threading.Thread(target=self._poll_sensor, args=(sensor, loop), name="ebpf-sensor", daemon=True)
        thread.start()
        return thread

    def _poll_sensor(self, sensor: Any, loop: asyncio.AbstractEventLoop) -> None:
        """The sensor thread: poll the ring buffer, hand batches to the event loop (waiting when it is full).
        On shutdown the sensor's last records go too, with every running container's syscalls since the last
        flush: otherwise a stop would lose up to a flush interval of each container's profile.

        The sensor itself exports what the kernel dropped (``vigil_sensor_kernel_losses_total``) as it polls;
        the health reporter learns of each new loss after the poll that saw it.
        """
        reported: dict[str, int] = {}
        try:
            while not self._threads_stopping.is_set():
                records = sensor.poll(self.options.sensor_poll_ms)
                for reason, lost in sensor.losses_by_reason().items():
                    self.health.count("ebpf", lost - reported.get(reason, 0), f"kernel_ring_{reason}")
                    reported[reason] = lost
                if records:
                    self._hand_over(loop, self._queue.put(("ebpf", records)))
            final = sensor.drain()
            if final:
                self._hand_over(loop, self._queue.put(("ebpf", final)))
        except Exception:  # a sensor failure must not take the container events down with it
            log.exception("eBPF sensor failed; collecting container events only")
        finally:
            node_metrics.SOURCE_UP.labels("ebpf").set(0)
            try:
                sensor.close()
            except Exception:
                log.exception("eBPF sensor did not close cleanly")

    def _hand_over(self, loop: asyncio.AbstractEventLoop, put: Awaitable[None]) -> None:
        """Wait until the consumer has room (it drains to the end, even while stopping), unless it is gone."""
        future = asyncio.run_coroutine_threadsafe(put, loop)
        while not self._consumer_gone.is_set():
            with contextlib.suppress(TimeoutError):
                future.result(timeout=0.5)
                return
        future.cancel()

    async def _start_kernel_audit(self, loop: asyncio.AbstractEventLoop) -> threading.Thread | None:
        """Join the kernel's audit multicast group; where that is refused, log why and carry on without it."""
        reader = AuditNetlinkReader()
        try:
            reader.open()
        except OSError as exc:  # EPERM without CAP_AUDIT_READ, EPROTONOSUPPORT without audit in the kernel
            node_metrics.SOURCE_UP.labels(KERNEL_AUDIT_SOURCE.name).set(0)
            log.error("kernel audit records unavailable; collecting the other sources",
                      extra={"reason": exc.strerror or str(exc), "errno": exc.errno})
            return None
        self._sources[KERNEL_AUDIT_SOURCE.name] = KERNEL_AUDIT_SOURCE
        node_metrics.SOURCE_UP.labels(KERNEL_AUDIT_SOURCE.name).set(1)
        log.info("reading kernel audit records (netlink multicast group)")
        thread = threading.Thread(target=self._read_kernel_audit, args=(reader, loop), name="kernel-audit",
                                  daemon=True)
        thread.start()
        return thread

    def _read_kernel_audit(self, reader: AuditNetlinkReader, loop: asyncio.AbstractEventLoop) -> None:
        """The audit thread: read records, resolve each process's container while it may still exist, hand
        records (and refusals) to the event loop; losses go to the health reporter."""
        source = KERNEL_AUDIT_SOURCE.name
        try:
            while not self._threads_stopping.is_set():
                messages = reader.read(self.options.sensor_poll_ms / 1000)
                for reason, lost in reader.take_losses().items():
                    self.health.count(source, lost, reason)
                records: list[dict[str, Any]] = []
                containers: dict[int, str | None] = {}  # a burst of denials is mostly one process's
                for type_id, body in messages:
                    try:
                        record = record_from_netlink(type_id, body)
                    except RecordRejected as exc:
                        self._hand_over(loop, self._refuse(source, Rejected(exc.reason, exc.detail, body)))
                        continue
                    if record is not None and is_decision(record):
                        _resolve_process(record, containers)
                        records.append(record)
                if records:
                    self._hand_over(loop, self._queue.put((source, records)))
        except Exception:  # a reader failure must not take the other sources down with it
            log.exception("kernel audit reader failed; collecting the other sources")
        finally:
            node_metrics.SOURCE_UP.labels(source).set(0)
            for reason, lost in reader.take_losses(final=True).items():
                self.health.count(source, lost, reason)
            reader.close()

    async def _follow_containerd(self) -> None:
        up = node_metrics.SOURCE_UP.labels("containerd")
        up.set(0)
        watcher = ContainerdWatcher(self.options.containerd_address, self.settings.node,
                                    on_connected=self._warm_cache, on_disconnected=lambda: up.set(0))
        async for item in watcher.records():
            if isinstance(item, Rejected):
                await self._refuse(CONTAINERD_SOURCE.name, item)
                continue
            if item["kind"] in _RUNTIME_LIFECYCLE_START and item["container_id"] not in self.cache:
                await self._resolve_new(item["container_id"])
            if item["kind"] == "container.create" and self._specs is not None:
                await self._read_spec(item)
            await self._queue.put((CONTAINERD_SOURCE.name, [item]))

    async def _read_spec(self, create: dict[str, Any]) -> None:
        """Add what a new container was started with to its create record, from containerd's own record (also for
        containers no pod spec shows); and its pod from the spec when CRI did not know it yet (a sandbox created
        on a loaded node), so its records are not taken for a container outside Kubernetes."""
        assert self._specs is not None
        container_id = create["container_id"]
        spec = await self._specs.read(create["containerd_namespace"], container_id)
        if spec is None:
            return
        create["security"] = spec.security
        if spec.pod is not None and container_id not in self.cache:
            self.cache.put(container_id, spec.pod, "cri")

    async def _warm_cache(self) -> None:
        """On every connection to containerd: learn every container CRI knows (events may have been missed)."""
        node_metrics.SOURCE_UP.labels("containerd").set(1)
        assert self._cri is not None
        try:
            contexts = await self._cri.all_contexts()
        except grpc.aio.AioRpcError as exc:
            log.warning("CRI unavailable: containers resolve once it is back",
                        extra={"code": exc.code().name, "error": exc.details()})
            return
        for container_id, context in contexts.items():
            self.cache.put(container_id, context, "cri")
        log.info("k8s context cache warmed from CRI", extra={"containers": len(contexts)})

    async def _follow_cri_events(self) -> None:
        """CRI's own container event stream, where the runtime has it (containerd >= 1.7); retried while the
        runtime is away, given up for good when the runtime says it does not implement it."""
        assert self._cri is not None
        backoff = 0.5
        while True:
            try:
                async for event in self._cri.container_events():
                    backoff = 0.5
                    for container_id, context in contexts_from_event(event).items():
                        self.cache.put(container_id, context, "cri")
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    log.info("the runtime has no CRI container events; containerd events drive CRI lookups")
                    return
                log.debug("CRI container events unavailable", extra={"code": exc.code().name})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def _apply_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        """A pod from the Kubernetes API watch (runs on the event loop)."""
        for container_id, context in pod_contexts(pod).items():
            self.cache.put(container_id, context, "api")
        ended = pod_contexts(pod) if event_type == "DELETED" else dict.fromkeys(exited_container_ids(pod))
        for container_id in ended:
            self.cache.exited(container_id)

    # -- enrichment ------------------------------------------------------------------------------------

    async def _resolve_new(self, container_id: str) -> None:
        """Resolve a container the runtime just announced, even if it was unknown a moment ago."""
        for delay in _RESOLVE_RETRIES:
            if await self._resolve(container_id, remember_unknown=False):
                return
            await asyncio.sleep(delay)

    async def _resolve(self, container_id: str, *, remember_unknown: bool = True) -> bool:
        """Ask CRI about one container and cache the answer; ``True`` when CRI knew it."""
        context = None
        if self._cri is not None:
            try:
                context = await self._cri.context(container_id)
            except grpc.aio.AioRpcError as exc:
                log.debug("CRI lookup failed", extra={"container_id": container_id, "code": exc.code().name})
        if context is not None:
            self.cache.put(container_id, context, "cri")
        elif remember_unknown:
            self.cache.put_unknown(container_id)
        return context is not None

    async def _enrich(self, records: list[dict[str, Any]]) -> None:
        """Add ``k8s`` (and ``node``) to each record, resolving unknown containers in one concurrent round.

        The cache is asked once per container per batch: a batch holds many records of few containers.
        """
        contexts = {container_id: self.cache.lookup(container_id)
                    for container_id in {_container_id(record) for record in records}}
        missing = [container_id for container_id, context in contexts.items() if context is None]
        if missing:
            await asyncio.gather(*(self._resolve(container_id) for container_id in missing))
            contexts.update((container_id, self.cache.peek(container_id)) for container_id in missing)
        node = self.settings.node
        for record in records:
            record["k8s"] = contexts[_container_id(record)]
            record.setdefault("node", node)

    # -- shipping --------------------------------------------------------------------------------------

    async def _consume(self) -> None:
        """Enrich and batch what the sources hand over; flush by size or age; at shutdown, drain and flush."""
        deadline = time.monotonic() + self.options.flush_interval_s
        try:
            while not (self._draining.is_set() and self._queue.empty()):
                try:
                    item = await asyncio.wait_for(self._queue.get(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    item = None
                if item is not None:
                    await self._accept(*item)
                if self._pending_count >= self.options.flush_records or time.monotonic() >= deadline:
                    await self._flush()
                    deadline = time.monotonic() + self.options.flush_interval_s
            await self._flush()
        finally:
            self._consumer_gone.set()

    async def _accept(self, source_name: str, records: list[dict[str, Any]]) -> None:
        for kind, count in _count_kinds(records).items():
            node_metrics.CAPTURED.labels(source_name, kind).inc(count)
        self._learn_pids(source_name, records)
        await self._enrich(records)
        self._pending[source_name].extend(records)
        self._pending_count += len(records)
        if source_name == CONTAINERD_SOURCE.name:
            for record in records:
                if record["kind"] in _RUNTIME_LIFECYCLE_END:
                    self.cache.exited(record["container_id"])

    async def _flush(self) -> None:
        """Ship what is pending, one batch of packed messages per source."""
        pending, self._pending, self._pending_count = self._pending, defaultdict(list), 0
        cluster, max_bytes = self.settings.cluster, self.settings.kafka.max_message_bytes
        for source_name, records in pending.items():
            source = self._sources[source_name]
            encoded = [(source.key(record, cluster), orjson.dumps(record)) for record in records]
            messages = pack(self.settings.topic(f"raw.{source_name}"), encoded, max_bytes)
            metrics.RECEIVED.labels(COMPONENT, source_name).inc(len(records))
            try:
                await self._shipper.ship(messages)
            except SpoolFull:
                log.error("spool full: records lost", extra={"source": source_name, "records": len(records)})
                self.health.count(source_name, len(records), "spool_full")
                for kind, count in _count_kinds(records).items():
                    node_metrics.DROPPED.labels(source_name, kind, "spool_full").inc(count)
                continue
            for kind, count in _count_kinds(records).items():
                node_metrics.SHIPPED.labels(source_name, kind).inc(count)

    async def _refuse(self, source_name: str, rejected: Rejected) -> None:
        """Something a source sent that vigil cannot use: counted and kept in the dead-letter topic."""
        log.warning("refused record", extra={"source": source_name, "reason": rejected.reason,
                                             "detail": rejected.detail[:200]})
        try:
            await self._ingests[source_name].refuse(rejected)
        except SpoolFull:
            node_metrics.DROPPED.labels(source_name, "unknown", "spool_full").inc()
            self.health.count(source_name, 1, "spool_full")

    def _learn_pids(self, source_name: str, records: list[dict[str, Any]]) -> None:
        """Remember which container started each process the sources announce; give audit records of
        processes that were gone before their record was read (``container_id`` absent) theirs."""
        if source_name == CONTAINERD_SOURCE.name:
            for record in records:
                if record["kind"] == "container.start" and record.get("pid"):
                    self.pids.remember(record["pid"], record["container_id"])
        elif source_name == "ebpf":
            for record in records:
                if record.get("type") == "exec":
                    self.pids.remember(record["pid"], _container_id(record))
        elif source_name == KERNEL_AUDIT_SOURCE.name:
            for record in records:
                if "container_id" not in record:
                    record["container_id"] = self.pids.lookup(_audit_pid(record))


def _resolve_process(record: dict[str, Any], containers: dict[int, str | None]) -> None:
    """Set an audit record's ``container_id`` from its live process (``containers``: those of this batch);
    leave it out when the process is gone."""
    pid = _audit_pid(record)
    if pid not in containers:
        containers[pid] = container_of_pid(pid) if pid > 0 else ""
    container_id = containers[pid]
    if container_id is not None:
        record["container_id"] = container_id


def _audit_pid(record: dict[str, Any]) -> int:
    pid = record["fields"].get("pid", "")
    return int(pid) if pid.isdigit() and len(pid) < 12 else 0


def _container_id(record: dict[str, Any]) -> str:
    container_id = record.get("container_id")
    return container_id if isinstance(container_id, str) else ""


def _count_kinds(records: list[dict[str, Any]]) -> Counter[str]:
    """Records per kind, for metric labels: runtime records say ``kind``, sensor records ``type``."""
    return Counter(str(record.get("kind") or record.get("type") or "unknown") for record in records)
