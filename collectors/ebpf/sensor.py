"""The eBPF syscall sensor: what it needs from the host, loading it, and reading its records.

:class:`Sensor` compiles (or takes from the cache) the CO-RE program, loads it through libbpf, attaches it to
tracepoints, hands it the file-open rules, and returns decoded records from its ring buffer. A host that
cannot run it (no BTF, tracefs not mounted, missing capabilities, no compiler, a kernel refusing the program)
gets :class:`SensorUnavailable` naming exactly what is missing, so a node collector can log it and keep its
other sources running. :func:`diagnose` is the same checks as a list, for ``vigil sensor check``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigil.collectors.ebpf import build, metrics, profiles, syscall_table
from vigil.collectors.ebpf.cgroups import CgroupResolver
from vigil.collectors.ebpf.libbpf import BpfObject, LibbpfError, libbpf
from vigil.collectors.ebpf.ringbuf import RingBuffer
from vigil.sources.ebpf.records import TYPES, RecordDecoder

log = logging.getLogger(__name__)

#: Sensitive files: any open of a path matching one of these is recorded (``*`` stands for any text). Credentials
#: and tokens; sudo and PAM configuration; what kernel exploits read first (ASLR, symbols, the scheduler's view of
#: every process); shell start-up files; the node's disks as block devices; the node's configuration and
#: credentials seen through a container's host mount.
DEFAULT_OPEN_WATCH = (
    "/etc/shadow",
    "/etc/kubernetes/",
    "/var/run/secrets/kubernetes.io/",
    "/run/secrets/kubernetes.io/",
    "/proc/*/mem",
    "/root/.ssh/",
    "/etc/sudoers",
    "/etc/pam",
    "/proc/sys/kernel/randomize_va_space",
    "/proc/kallsyms",
    "/proc/sched_debug",
    "/sys/kernel/debug/sched/debug",
    "/etc/profile",
    "/etc/bash.bashrc",
    "/etc/bashrc",
    "/root/.bashrc",
    "/root/.profile",
    "/dev/sd",
    "/dev/nvme",
    "/dev/vd",
    "/dev/xvd",
    "/host/etc/",
    "/host/root/",
    "/host/var/lib/kubelet/",
    "/rootfs/etc/",
)
#: Files whose modification is a container escape, and the places that decide what runs on a machine (its
#: configuration, cron, program and library directories, /boot, root's home and SSH keys), and dot-files made
#: directly in the temporary directories (hidden droppers): opens of these for writing are recorded. The kernel
#: takes 64 patterns in all (``MAX_RULES``), so a deployment has room for patterns of its own.
DEFAULT_WRITE_WATCH = ("*release_agent", "*core_pattern", "/etc/", "/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/",
                       "/var/spool/cron/", "/root/", "/boot/", "/lib", "/usr/lib/", "/usr/local/", "/tmp/.",
                       "/dev/shm/.", "/var/tmp/.")

MAX_RULES = 64  # sensor.bpf.c's MAX_RULES: the size of its rule map
MAX_PREFIX = 64
MAX_SUFFIX = 32
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39
_RULE = struct.Struct("<64s64s32sIIII")
_RULE_SET = struct.Struct("<QQ")
_HEAD_SLOTS4 = 256  # sensor.bpf.c's HEAD_SLOTS4: the rule_heads slots of 4-byte heads, then those of 8-byte ones
_HEAD_HASH = 0x9E3779B97F4A7C15  # HEAD_HASH: a head's slot is the top 8 bits of its product with this
_ZERO_KEY = struct.pack("<I", 0)
_TYPE_SLOTS = 32
_TYPE_SLOTS_STRUCT = struct.Struct(f"<{_TYPE_SLOTS}Q")
_LOSSES_STRUCT = struct.Struct("<QQ")
_COUNT = struct.Struct("<Q")


class SensorUnavailable(RuntimeError):
    """The sensor cannot run on this host; the message says what is missing."""


@dataclass(slots=True)
class SensorConfig:
    """What the sensor watches and where it finds the kernel's interfaces (defaults suit a Linux node).

    ``open_watch`` and ``write_watch`` are path patterns with at most one ``*``: the text before it is a
    prefix and the text after it a suffix, both matched in the kernel (prefixes up to 64 bytes, suffixes up
    to 32, 64 patterns in all). An absolute path is matched as the process passed it to open(2); a relative one,
    or one with ``.``, ``..`` or ``//`` components, as the kernel resolved it (the opened file's path, walked at
    the open's exit up to the process's root: only opens that succeeded are recorded then).
    """

    open_watch: tuple[str, ...] = DEFAULT_OPEN_WATCH
    write_watch: tuple[str, ...] = DEFAULT_WRITE_WATCH
    btf_path: Path = Path("/sys/kernel/btf/vmlinux")
    tracefs_path: Path = Path("/sys/kernel/tracing")
    mount_tracefs: bool = True  # mount tracefs when it is missing and the sensor runs as root
    cache_dir: Path = field(default_factory=build.default_cache_dir)
    ring_buffer_bytes: int = 16 << 20
    wakeup_bytes: int = 64 << 10  # the kernel wakes the reader once this much waits (else at poll timeouts)
    #: A process's repeated opens of one watched path with the same flags within this window are counted in
    #: the kernel (the next record's ``repeats``) instead of recorded one by one; 0 records every open.
    open_repeat_window_ns: int = 1_000_000_000
    cgroup_root: Path | None = None  # None: wherever cgroup2 is mounted
    cgroup_cache_size: int = 4096
    #: Per-container syscall profiles (:mod:`vigil.collectors.ebpf.profiles`): aggregated in the kernel, reported
    #: every ``syscall_flush_s`` and when a container's cgroup is removed; ``profile_host_cgroups`` reports
    #: the host's own cgroups too; ``max_cgroups`` bounds the kernel's table (syscalls of cgroups beyond it are
    #: counted in ``vigil_sensor_unprofiled_syscalls_total``).
    syscall_profiles: bool = True
    syscall_flush_s: float = 30.0
    profile_host_cgroups: bool = False
    max_cgroups: int = 4096

    def __post_init__(self) -> None:
        if len(self.open_watch) + len(self.write_watch) > MAX_RULES:
            raise ValueError(f"at most {MAX_RULES} open_watch and write_watch patterns in all")
        for pattern in (*self.open_watch, *self.write_watch):
            split_pattern(pattern)
        if self.syscall_flush_s <= 0 or self.max_cgroups < 1:
            raise ValueError("syscall_flush_s must be positive and max_cgroups at least 1")
        size = self.ring_buffer_bytes
        if size < 4096 or size & (size - 1):
            raise ValueError(f"ring_buffer_bytes must be a power of two of at least 4096, not {size}")

    def rule_sets(self) -> tuple[RuleSet, dict[int, RuleSet]]:
        """Which rules may match a path, as the kernel looks them up by the path's first bytes before matching
        any: the rules whose prefix is under 4 bytes (any path may match them) and, by ``rule_heads`` slot (see
        :func:`head_slot`), the rules whose prefix starts like a path landing there. A rule is a bit of its index
        in ``encoded_rules`` order; each set is (rules for every open, rules for opens that write), since
        ``write_watch`` rules ignore reads."""
        short, heads = RuleSet(), {}
        rules = [(pattern, True) for pattern in self.write_watch] + [(pattern, False) for pattern in self.open_watch]
        for index, (pattern, write_only) in enumerate(rules):
            slot = head_slot(split_pattern(pattern)[0])
            rule_set = short if slot is None else heads.setdefault(slot, RuleSet())
            rule_set.add(index, write_only)
        return short, heads

    def encoded_rules(self) -> list[bytes]:
        """The ``struct open_rule`` values for the kernel's rule map, write rules first."""
        rules = [(pattern, 1) for pattern in self.write_watch] + [(pattern, 0) for pattern in self.open_watch]
        encoded = []
        for pattern, write_only in rules:
            prefix, suffix = split_pattern(pattern)
            mask = b"\xff" * len(prefix)
            encoded.append(_RULE.pack(prefix, mask, suffix, len(prefix), len(suffix), write_only, 0))
        return encoded


@dataclass(slots=True)
class RuleSet:
    """Rules by index, one bit each: those that apply to every open (``reads``) and to opens that write."""

    reads: int = 0
    writes: int = 0

    def add(self, index: int, write_only: bool) -> None:
        self.writes |= 1 << index
        if not write_only:
            self.reads |= 1 << index

    def encoded(self) -> bytes:
        """The kernel's ``struct rule_set``."""
        return _RULE_SET.pack(self.reads, self.writes)


def head_slot(prefix: bytes) -> int | None:
    """The ``rule_heads`` slot the kernel finds a rule with this prefix in: by the prefix's first 8 bytes when it
    has them, else by its first 4; None under 4 bytes. A path's first 4 and first 8 bytes, hashed the same way,
    name the two slots of every rule it may match (colliding rules share a slot: the full match decides)."""
    if len(prefix) < 4:
        return None
    head = prefix[:8] if len(prefix) >= 8 else prefix[:4]
    hashed = (int.from_bytes(head, sys.byteorder) * _HEAD_HASH) % 2**64 >> 56  # as the kernel loads the bytes
    return hashed if len(head) == 4 else _HEAD_SLOTS4 + hashed


def split_pattern(pattern: str) -> tuple[bytes, bytes]:
    """(prefix, suffix) of a watch pattern; raises ValueError for one the kernel side cannot match."""
    prefix, _, suffix = pattern.encode().partition(b"*")
    if not pattern or b"*" in suffix:
        raise ValueError(f"watch pattern {pattern!r} must be non-empty with at most one '*'")
    if len(prefix) > MAX_PREFIX or len(suffix) > MAX_SUFFIX:
        raise ValueError(f"watch pattern {pattern!r}: prefix over {MAX_PREFIX} or suffix over {MAX_SUFFIX} bytes")
    return prefix, suffix


@dataclass(slots=True)
class Check:
    """One thing the sensor needs, whether the host has it, and what was found or is missing."""

    name: str
    ok: bool
    detail: str


def diagnose(config: SensorConfig) -> list[Check]:
    """Everything the sensor needs, checked without loading it (tracefs is mounted here when allowed)."""
    btf = config.btf_path.exists()
    cached = build.object_path(config.cache_dir).exists()
    missing_tools = [] if cached else build.missing_tools()
    return [
        Check("btf", btf, f"kernel BTF at {config.btf_path}" if btf
              else f"no kernel BTF at {config.btf_path} (the kernel needs CONFIG_DEBUG_INFO_BTF)"),
        _check_tracefs(config),
        _check_capabilities(),
        Check("compiler", not missing_tools, "sensor object cached" if cached else
              "clang, bpftool and libbpf headers present" if not missing_tools
              else "missing: " + ", ".join(missing_tools)),
        _check_libbpf(),
    ]


def _check_tracefs(config: SensorConfig) -> Check:
    path = config.tracefs_path
    if (path / "events").is_dir():
        return Check("tracefs", True, f"tracefs mounted at {path}")
    if not config.mount_tracefs or os.geteuid() != 0:
        return Check("tracefs", False, f"tracefs is not mounted at {path} (mount -t tracefs nodev {path})")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"nodev", str(path).encode(), b"tracefs", 0, None) != 0:
        error = os.strerror(ctypes.get_errno())
        return Check("tracefs", False, f"tracefs is not mounted at {path} and mounting it failed: {error}")
    return Check("tracefs", True, f"tracefs mounted at {path} (by vigil)")


def _check_capabilities() -> Check:
    effective = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            effective = int(line.split()[1], 16)
    has = {bit: bool(effective >> bit & 1) for bit in (_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF)}
    if has[_CAP_SYS_ADMIN] or (has[_CAP_BPF] and has[_CAP_PERFMON]):
        return Check("capabilities", True, "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)")
    return Check("capabilities", False, "needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN (run as root)")


def _check_libbpf() -> Check:
    try:
        libbpf()
    except LibbpfError as exc:
        return Check("libbpf", False, str(exc))
    return Check("libbpf", True, "libbpf.so.1 loads")


def _tracepoint_exists(section: str, tracefs: Path) -> bool:
    """Whether a ``tracepoint/<category>/<name>`` program has its tracepoint (tp_btf ones need only BTF)."""
    kind, _, name = section.partition("/")
    return kind != "tracepoint" or (tracefs / "events" / name).is_dir()


def _boot_offset_ns() -> int:
    """Wall clock minus boot clock: the kernel stamps records with CLOCK_BOOTTIME."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class Sensor:
    """The loaded sensor. ``start`` it, ``poll`` for records, read ``losses``, then ``close`` it."""

    def __init__(self, config: SensorConfig | None = None) -> None:
        self.config = config or SensorConfig()
        self.missing_hooks: list[str] = []  # tracepoints this kernel lacks (e.g. init_module without modules)
        self._object: BpfObject | None = None
        self._ring: RingBuffer | None = None
        self._cgroups: CgroupResolver | None = None
        self._decoder: RecordDecoder | None = None
        self._profiles: profiles.SyscallProfiles | None = None
        self._reported_unprofiled = 0
        self._reported_losses: dict[str, int] = {}
        self._reported_misses = 0
        self._reported_written: dict[int, int] = {}

    def start(self) -> None:
        """Check the host, build if needed, load and attach; raises :class:`SensorUnavailable`."""
        problems = [check.detail for check in diagnose(self.config) if not check.ok]
        if problems:
            raise SensorUnavailable("eBPF sensor unavailable: " + "; ".join(problems))
        try:
            path = build.build(self.config.cache_dir, self.config.btf_path)
            self._object = self._load(str(path))
            self._ring = RingBuffer(self._object.map_fd("events"), self.config.ring_buffer_bytes)
            self._cgroups = CgroupResolver(self.config.cgroup_root, self.config.cgroup_cache_size)
        except (build.BuildError, OSError) as exc:  # LibbpfError is an OSError
            self.close()
            raise SensorUnavailable(f"eBPF sensor unavailable: {exc}") from None
        self._decoder = RecordDecoder(self._cgroups.known, self._cgroups.container_id, _boot_offset_ns(),
                                      self._cgroups.learn)
        if self.config.syscall_profiles:
            self._profiles = profiles.SyscallProfiles(self._object, self._cgroups, self.config.syscall_flush_s,
                                                      self.config.profile_host_cgroups)
        # What a caller waits for before making the activity it wants recorded (``vigil sensor trace``'s stderr)
        log.info("eBPF sensor attached", extra={"object": str(path), "programs": len(self._object.links),
                                                "missing_hooks": self.missing_hooks, "pid": os.getpid()})

    def _load(self, path: str) -> BpfObject:
        bpf = BpfObject(libbpf(), path, str(self.config.btf_path))
        try:
            for program, name, section in bpf.programs():
                if name == "on_cgroup_rmdir" and not self.config.syscall_profiles:
                    bpf.skip(program)
                elif not _tracepoint_exists(section, self.config.tracefs_path):
                    bpf.skip(program)
                    self.missing_hooks.append(section)
            bpf.set_max_entries("events", self.config.ring_buffer_bytes)
            bpf.set_max_entries(profiles.MAP, self.config.max_cgroups)
            bpf.load()
            syscall_table.load(bpf, syscall_table.node_arch())
            for index, rule in enumerate(self.config.encoded_rules()):
                bpf.update("open_rules", struct.pack("<I", index), rule)
            rules = len(self.config.open_watch) + len(self.config.write_watch)
            short, heads = self.config.rule_sets()
            for slot, rule_set in heads.items():
                bpf.update("rule_heads", struct.pack("<I", slot), rule_set.encoded())
            settings = struct.pack("<IIQQII", rules, os.getpid(), self.config.wakeup_bytes,
                                   self.config.open_repeat_window_ns, self.config.syscall_profiles, 0)
            bpf.update("sensor_config", _ZERO_KEY, settings + short.encoded())
            bpf.attach_all()
        except LibbpfError:
            bpf.close()
            raise
        return bpf

    def poll(self, timeout_ms: int = 100, max_records: int = 65536) -> list[dict[str, Any]]:
        """The records that arrived (JSON-able dicts), waiting up to ``timeout_ms`` when there are none.

        The kernel signals only once ``wakeup_bytes`` are waiting, so on a quiet host a record is returned by
        the first poll whose timeout ends after it was written: poll in a loop with a timeout that is the
        latency you accept.
        """
        if self._ring is None or self._decoder is None:
            raise RuntimeError("the sensor is not started")
        if not self._ring.pending():
            self._ring.wait(timeout_ms)
        self._decoder.boot_offset_ns = _boot_offset_ns()
        records = self._ring.read(self._decoder, max_records)
        self._export(records)
        if self._profiles is not None:
            records += self._take_profiles(self._profiles.due())
        return records

    def drain(self) -> list[dict[str, Any]]:
        """Everything the sensor still holds, for a collector that stops: the records waiting in the ring
        buffer and every container's syscall profile since the last flush. Call it last, before ``close``."""
        records: list[dict[str, Any]] = []
        while batch := self.poll(0):
            records += batch
        if self._profiles is not None:
            records += self._take_profiles(everything=True)
        return records

    def _take_profiles(self, everything: bool) -> list[dict[str, Any]]:
        """The syscall records of removed cgroups, and of all cgroups when ``everything`` (a flush)."""
        assert self._profiles is not None and self._decoder is not None
        removed = self._decoder.removed_cgroups
        taken = self._profiles.take_removed(removed)
        removed.clear()
        if everything:
            taken += self._profiles.take_all()
        if taken:
            metrics.RECORDS.labels("syscalls").inc(len(taken))
        return taken

    def _export(self, records: list[dict[str, Any]]) -> None:
        """Add what happened since the last poll to the metrics (the kernel counts records and losses)."""
        for record_type, count in self.written().items():
            new = count - self._reported_written.get(record_type, 0)
            if new:
                metrics.RECORDS.labels(TYPES[record_type]).inc(new)
                self._reported_written[record_type] = count
        cgroups = self._cgroups
        if cgroups is not None:  # one container lookup per record; the resolver counts the misses
            misses = cgroups.misses - self._reported_misses
            metrics.CGROUP_CACHE.labels("hit").inc(len(records) - misses)
            metrics.CGROUP_CACHE.labels("miss").inc(misses)
            self._reported_misses = cgroups.misses
        unprofiled = self.unprofiled_syscalls()
        if unprofiled > self._reported_unprofiled:
            metrics.UNPROFILED.inc(unprofiled - self._reported_unprofiled)
            self._reported_unprofiled = unprofiled
        for reason, lost in self.losses_by_reason().items():
            if lost > self._reported_losses.get(reason, 0):
                metrics.KERNEL_LOSSES.labels(reason).inc(lost - self._reported_losses.get(reason, 0))
                self._reported_losses[reason] = lost

    def written(self) -> dict[int, int]:
        """Records the kernel wrote to the ring buffer since the sensor started, by record type number."""
        if self._object is None:
            return {}
        totals: dict[int, int] = {}
        for value in self._object.lookup_per_cpu("written", _ZERO_KEY, 8 * _TYPE_SLOTS):
            for record_type, count in enumerate(_TYPE_SLOTS_STRUCT.unpack(value)):
                if count and record_type in TYPES:
                    totals[record_type] = totals.get(record_type, 0) + count
        return totals

    def unprofiled_syscalls(self) -> int:
        """Syscalls left out of the profiles because the kernel's cgroup table was full (``max_cgroups``)."""
        if self._object is None or not self.config.syscall_profiles:
            return 0
        return sum(_COUNT.unpack(value)[0] for value in self._object.lookup_per_cpu("unprofiled", _ZERO_KEY, 8))

    def kernel_time(self) -> dict[str, tuple[int, int]]:
        """(runs, nanoseconds) of each of the sensor's programs, counted while the kernel's BPF run statistics
        are enabled (``libbpf().enable_run_stats()``): what the sensor costs the traced processes."""
        return self._object.run_stats() if self._object is not None else {}

    def losses(self) -> int:
        """Records the kernel dropped since the sensor started (see :meth:`losses_by_reason`)."""
        return sum(self.losses_by_reason().values())

    def losses_by_reason(self) -> dict[str, int]:
        """Dropped records: ``full`` when the ring buffer had no room (the reader fell behind), ``busy`` when
        it had room but the kernel could not take its lock in time."""
        if self._object is None:
            return {"full": 0, "busy": 0}
        full = busy = 0
        for value in self._object.lookup_per_cpu("losses", _ZERO_KEY, 16):
            cpu_full, cpu_busy = _LOSSES_STRUCT.unpack(value)
            full, busy = full + cpu_full, busy + cpu_busy
        return {"full": full, "busy": busy}

    def close(self) -> None:
        """Detach and unload everything (idempotent)."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._cgroups is not None:
            self._cgroups.close()
            self._cgroups = None
        if self._object is not None:
            self._object.close()
            self._object = None

    def __enter__(self) -> Sensor:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
