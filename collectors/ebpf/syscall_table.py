"""What the sensor's kernel side does with each syscall number: the ``syscall_table`` map.

One program (``on_sys_enter``) runs at the entry of every syscall. It looks the syscall's number up in this
table, which says which counter of the cgroup's profile the syscall adds to (its class: fork, exec, open,
connect) and which handler, if any, turns it into a record (opens of watched paths, connect, ptrace, the
setuid family, ...). Syscall numbers differ between architectures and names do not, so the table is built
here from the names, for the node's architecture, and handed to the kernel at start. Slots from
``COMPAT_BASE`` on are the numbers of 32-bit tasks on a 64-bit kernel; they are counted, never handled.
"""

from __future__ import annotations

import platform
import struct

from vigil.collectors.ebpf.libbpf import BpfObject
from vigil.sources.ebpf.records import FILE_OPS, SEND_CALLS, SETID_CALLS, WX_CALLS
from vigil.sources.host_sensors import SYSCALL_NUMBERS

MAP = "syscall_table"
SYSCALL_SLOTS = 1024
COMPAT_BASE = 512
#: ``enum syscall_class``: the profile counter a syscall adds to besides the total (index 0).
CLASSES = ("syscalls", "fork", "exec", "open", "connect")
_CLASS_MEMBERS = {
    "fork": ("clone", "clone3", "fork", "vfork"),
    "exec": ("execve", "execveat"),
    "open": ("open", "openat", "openat2", "creat", "open_by_handle_at"),
    "connect": ("connect",),
}
#: ``enum syscall_handler``, by syscall name: (handler number, variant).
HANDLERS: dict[str, tuple[int, int]] = {
    "open": (1, 0), "openat": (2, 0), "creat": (3, 0), "openat2": (4, 0), "connect": (5, 0), "listen": (6, 0),
    "ptrace": (7, 0), **{call: (8, variant) for variant, call in enumerate(SETID_CALLS)},
    "unshare": (9, 0), "setns": (10, 0), "mount": (11, 0), "init_module": (12, 0), "finit_module": (13, 0),
    "bpf": (14, 0), "memfd_create": (15, 0), "socket": (16, 0), "dup2": (17, 0), "dup3": (18, 0),
    "userfaultfd": (19, 0), "process_vm_writev": (20, 0), "dup": (21, 0), "fcntl": (22, 0),
    **{call: (23, variant) for variant, call in enumerate(FILE_OPS)},
    **{call: (24, variant) for variant, call in enumerate(WX_CALLS)},
    **{call: (25, variant) for variant, call in enumerate(SEND_CALLS)},
}
#: The architecture of 32-bit tasks on a 64-bit kernel of each architecture.
COMPAT_ARCH = {"x86_64": "i386", "aarch64": "arm"}
_UINT = struct.Struct("<I")


def node_arch() -> str:
    """The node's architecture as syscall tables name it (``uname -m``)."""
    machine = platform.machine()
    return "aarch64" if machine == "arm64" else machine


def entries(arch: str) -> dict[int, int]:
    """Slot → ``class | handler << 8 | variant << 16`` for every syscall the kernel must not ignore."""
    table: dict[int, int] = {}
    for base, table_arch in ((0, arch), (COMPAT_BASE, COMPAT_ARCH.get(arch, ""))):
        numbers = SYSCALL_NUMBERS.get(table_arch, {})
        for class_number, name in enumerate(CLASSES):
            for syscall in _CLASS_MEMBERS.get(name, ()):
                if syscall in numbers:
                    table[base + numbers[syscall]] = class_number
    for syscall, (handler, variant) in HANDLERS.items():
        number = SYSCALL_NUMBERS.get(arch, {}).get(syscall)
        if number is not None:
            table[number] = table.get(number, 0) | handler << 8 | variant << 16
    return table


def load(bpf: BpfObject, arch: str) -> None:
    """Hand the kernel the table for ``arch``."""
    for slot, entry in entries(arch).items():
        bpf.update(MAP, _UINT.pack(slot), _UINT.pack(entry))
