"""The few libbpf calls the sensor needs, through ctypes on Debian's ``libbpf1``.

No Python binding on PyPI loads CO-RE objects and reads BPF ring buffers on this kernel (pylibbpf reads only
perf event arrays; bcc needs kernel headers), so the sensor speaks to libbpf directly: open and load the
object, set map sizes and contents, attach programs. The ring buffer itself is read without libbpf
(:mod:`vigil.collectors.ebpf.ringbuf`). libbpf's own messages, including the verifier log of a program the
kernel refused, are captured so that a failure can say what went wrong.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import errno
import functools
import os
import struct
from collections.abc import Iterator

LIBRARY = "libbpf.so.1"

_LIBBPF_INFO = 1  # enum libbpf_print_level: WARN, INFO, DEBUG
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


#: ``struct bpf_prog_info`` (uapi): its size and where the run statistics sit in it.
_PROG_INFO_SIZE = 232
_RUN_STATS = struct.Struct("<QQ")  # run_time_ns, run_cnt
_RUN_STATS_OFFSET = 192
_BPF_STATS_RUN_TIME = 0


class LibbpfError(OSError):
    """A libbpf call failed; the message carries libbpf's last lines (e.g. the verifier log)."""


class _OpenOptions(ctypes.Structure):
    """``struct bpf_object_open_opts`` of libbpf 1.x (extended only at its end, checked through ``sz``)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("_unused", ctypes.c_uint32),
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_char_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
    ]


def _declare(lib: ctypes.CDLL) -> None:
    ptr, cstr, cint = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    signatures = {
        "libbpf_set_print": (ptr, [_PRINT_FN]),
        "libbpf_num_possible_cpus": (cint, []),
        "bpf_object__open_file": (ptr, [cstr, ctypes.POINTER(_OpenOptions)]),
        "bpf_object__load": (cint, [ptr]),
        "bpf_object__close": (None, [ptr]),
        "bpf_object__next_program": (ptr, [ptr, ptr]),
        "bpf_object__find_map_by_name": (ptr, [ptr, cstr]),
        "bpf_program__name": (cstr, [ptr]),
        "bpf_program__section_name": (cstr, [ptr]),
        "bpf_program__set_autoload": (cint, [ptr, ctypes.c_bool]),
        "bpf_program__autoload": (ctypes.c_bool, [ptr]),
        "bpf_program__attach": (ptr, [ptr]),
        "bpf_program__fd": (cint, [ptr]),
        "bpf_obj_get_info_by_fd": (cint, [cint, ptr, ctypes.POINTER(ctypes.c_uint32)]),
        "bpf_enable_stats": (cint, [cint]),
        "bpf_link__destroy": (cint, [ptr]),
        "bpf_map__fd": (cint, [ptr]),
        "bpf_map__set_max_entries": (cint, [ptr, ctypes.c_uint32]),
        "bpf_map__update_elem": (cint, [ptr, ptr, ctypes.c_size_t, ptr, ctypes.c_size_t, ctypes.c_uint64]),
        "bpf_map__lookup_elem": (cint, [ptr, ptr, ctypes.c_size_t, ptr, ctypes.c_size_t, ctypes.c_uint64]),
        "bpf_map_get_next_key": (cint, [cint, ptr, ptr]),
        "bpf_map_lookup_and_delete_elem": (cint, [cint, ptr, ptr]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes


@functools.cache
def libbpf() -> Libbpf:
    """The process's one :class:`Libbpf`: libbpf's message callback is process-wide, so the Python callback
    it points to must live as long as the process does."""
    return Libbpf()


class Libbpf:
    """libbpf with its messages kept in a short ring for error reports (use :func:`libbpf`, not this)."""

    def __init__(self) -> None:
        path = ctypes.util.find_library("bpf") or LIBRARY
        try:
            self.lib = ctypes.CDLL(path, use_errno=True)
            _declare(self.lib)
        except (OSError, AttributeError) as exc:
            raise LibbpfError(f"cannot load {LIBRARY} (Debian package libbpf1): {exc}") from None
        self.messages: collections.deque[str] = collections.deque(maxlen=400)
        libc = ctypes.CDLL(None)
        self._vsnprintf = libc.vsnprintf
        self._vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
        self._printer = _PRINT_FN(self._keep_message)  # referenced here so it outlives every libbpf call
        self.lib.libbpf_set_print(self._printer)

    def _keep_message(self, level: int, fmt: bytes, args: int) -> int:
        if level > _LIBBPF_INFO:
            return 0
        buffer = ctypes.create_string_buffer(1 << 20)  # a verifier log comes as one message, its error last
        self._vsnprintf(buffer, len(buffer), fmt, args)
        self.messages.extend(buffer.value.decode(errors="replace").rstrip("\n").split("\n"))
        return 0

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(list(self.messages)[-lines:])

    def enable_run_stats(self) -> int:
        """Make the kernel time every BPF program run, for as long as the returned descriptor is open."""
        fd = self.lib.bpf_enable_stats(_BPF_STATS_RUN_TIME)
        if fd < 0:
            raise self.failure("cannot enable BPF run statistics", fd)
        return fd

    def failure(self, what: str, result: int | None = None) -> LibbpfError:
        """The error for a failed call, with libbpf's messages since the last failure (then forgotten)."""
        code = -result if result else ctypes.get_errno()
        tail = self.log_tail()
        self.messages.clear()
        return LibbpfError(code, f"{what}: {os.strerror(code)}" + (f"\nlibbpf:\n{tail}" if tail else ""))


class BpfObject:
    """One opened BPF object file: maps and programs by name, loading and attaching."""

    def __init__(self, libbpf: Libbpf, path: str, btf_path: str) -> None:
        self.libbpf, self.lib = libbpf, libbpf.lib
        options = _OpenOptions(sz=ctypes.sizeof(_OpenOptions), btf_custom_path=btf_path.encode())
        self.handle = self.lib.bpf_object__open_file(path.encode(), ctypes.byref(options))
        if not self.handle:
            raise libbpf.failure(f"cannot open BPF object {path}")
        self.links: list[int] = []

    def programs(self) -> Iterator[tuple[int, str, str]]:
        """(handle, name, section) of every program in the object."""
        program = self.lib.bpf_object__next_program(self.handle, None)
        while program:
            name, section = self.lib.bpf_program__name(program), self.lib.bpf_program__section_name(program)
            yield program, name.decode(), section.decode()
            program = self.lib.bpf_object__next_program(self.handle, program)

    def run_stats(self) -> dict[str, tuple[int, int]]:
        """(runs, nanoseconds) of each loaded program, counted while run statistics are enabled."""
        stats = {}
        for program, name, _ in self.programs():
            fd = self.lib.bpf_program__fd(program)
            if fd < 0:
                continue  # not loaded (a hook this kernel lacks)
            info = ctypes.create_string_buffer(_PROG_INFO_SIZE)
            size = ctypes.c_uint32(_PROG_INFO_SIZE)
            if self.lib.bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size)) == 0:
                nanoseconds, runs = _RUN_STATS.unpack_from(info.raw, _RUN_STATS_OFFSET)
                stats[name] = (runs, nanoseconds)
        return stats

    def skip(self, program: int) -> None:
        self.lib.bpf_program__set_autoload(program, False)

    def map(self, name: str) -> int:
        handle = self.lib.bpf_object__find_map_by_name(self.handle, name.encode())
        if not handle:
            raise LibbpfError(f"BPF object has no map {name!r}")
        return handle

    def set_max_entries(self, name: str, entries: int) -> None:
        result = self.lib.bpf_map__set_max_entries(self.map(name), entries)
        if result:
            raise self.libbpf.failure(f"cannot size map {name}", result)

    def load(self) -> None:
        result = self.lib.bpf_object__load(self.handle)
        if result:
            raise self.libbpf.failure("the kernel refused the BPF object", result)

    def attach_all(self) -> None:
        """Attach every program that is loaded; any failure detaches what was attached and raises."""
        for program, name, section in self.programs():
            if not self.lib.bpf_program__autoload(program):
                continue
            link = self.lib.bpf_program__attach(program)
            if not link:
                error = self.libbpf.failure(f"cannot attach {name} ({section})")
                self.detach()
                raise error
            self.links.append(link)

    def map_fd(self, name: str) -> int:
        return self.lib.bpf_map__fd(self.map(name))

    def update(self, name: str, key: bytes, value: bytes) -> None:
        result = self.lib.bpf_map__update_elem(self.map(name), key, len(key), value, len(value), 0)
        if result:
            raise self.libbpf.failure(f"cannot update map {name}", result)

    def lookup_per_cpu(self, name: str, key: bytes, value_size: int) -> list[bytes]:
        """The value of ``key`` on every possible CPU (per-CPU maps round each value up to 8 bytes)."""
        cpus = self.lib.libbpf_num_possible_cpus()
        slot = (value_size + 7) // 8 * 8
        buffer = ctypes.create_string_buffer(slot * cpus)
        result = self.lib.bpf_map__lookup_elem(self.map(name), key, len(key), buffer, len(buffer), 0)
        if result:
            raise self.libbpf.failure(f"cannot read map {name}", result)
        raw = buffer.raw
        return [raw[cpu * slot : cpu * slot + value_size] for cpu in range(cpus)]

    def keys(self, name: str, key_size: int) -> list[bytes]:
        """Every key of a hash map, as it is now (entries added meanwhile may be missed)."""
        fd = self.map_fd(name)
        keys: list[bytes] = []
        current = ctypes.create_string_buffer(key_size)
        following = ctypes.create_string_buffer(key_size)
        previous = None  # NULL: the first key
        while self.lib.bpf_map_get_next_key(fd, previous, following) == 0:
            keys.append(following.raw)
            ctypes.memmove(current, following, key_size)
            previous = current
        return keys

    def take_per_cpu(self, name: str, key: bytes, value_size: int) -> list[bytes] | None:
        """Remove ``key`` from a per-CPU hash map in one step and return its value on every possible CPU
        (None when it was not there): what the kernel adds after the step lands in a fresh entry."""
        cpus = self.lib.libbpf_num_possible_cpus()
        slot = (value_size + 7) // 8 * 8
        buffer = ctypes.create_string_buffer(slot * cpus)
        result = self.lib.bpf_map_lookup_and_delete_elem(self.map_fd(name), key, buffer)
        if result:
            if -result == errno.ENOENT or ctypes.get_errno() == errno.ENOENT:
                return None
            raise self.libbpf.failure(f"cannot take from map {name}", result)
        raw = buffer.raw
        return [raw[cpu * slot : cpu * slot + value_size] for cpu in range(cpus)]

    def detach(self) -> None:
        for link in self.links:
            self.lib.bpf_link__destroy(link)
        self.links.clear()

    def close(self) -> None:
        self.detach()
        if self.handle:
            self.lib.bpf_object__close(self.handle)
            self.handle = None
