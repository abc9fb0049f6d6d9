"""Compiling the sensor for the running kernel.

The BPF program is CO-RE C: ``vmlinux.h`` is generated from the kernel's own BTF with bpftool, and clang
compiles against it and libbpf-dev's headers. The object is cached under ``<cache>/ebpf/<kernel release>/``
by a hash of the source, so a machine compiles once per kernel and per sensor version; ``vigil sensor build``
does the same ahead of time (e.g. while building a node image).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("sensor.bpf.c")
LIBBPF_HEADER = Path("/usr/include/bpf/bpf_helpers.h")
_ARCH = {"x86_64": "x86", "aarch64": "arm64", "arm64": "arm64", "s390x": "s390", "ppc64le": "powerpc"}


class BuildError(RuntimeError):
    """The sensor could not be compiled; the message names the missing tool or the compiler's complaint."""


def default_cache_dir() -> Path:
    """``$VIGIL_CACHE_DIR/ebpf`` (default ``~/.cache/vigil/ebpf``), shared with vigil's other caches."""
    return Path(os.environ.get("VIGIL_CACHE_DIR") or Path.home() / ".cache" / "vigil") / "ebpf"


def object_path(cache_dir: Path) -> Path:
    """Where the object for this kernel and this source lives (whether or not it is built yet)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    return cache_dir / platform.release() / f"sensor-{digest}.bpf.o"


def missing_tools() -> list[str]:
    """What compiling needs and this machine lacks (empty when a build can run)."""
    missing = [f"{tool} (Debian package {package})" for tool, package in (("clang", "clang"), ("bpftool", "bpftool"))
               if not shutil.which(tool)]
    if not LIBBPF_HEADER.exists():
        missing.append(f"{LIBBPF_HEADER} (Debian package libbpf-dev)")
    return missing


def build(cache_dir: Path, btf_path: Path, force: bool = False) -> Path:
    """The compiled object for the running kernel, compiling it first when not cached (or ``force``)."""
    target = object_path(cache_dir)
    if target.exists() and not force:
        return target
    missing = missing_tools()
    if missing:
        raise BuildError("cannot compile the sensor, missing: " + ", ".join(missing))
    if not btf_path.exists():
        raise BuildError(f"no kernel BTF at {btf_path} (the kernel needs CONFIG_DEBUG_INFO_BTF)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        header = Path(work) / "vmlinux.h"
        _run(["bpftool", "btf", "dump", "file", str(btf_path), "format", "c"], stdout=header)
        compiled = Path(work) / "sensor.bpf.o"
        arch = _ARCH.get(platform.machine(), platform.machine())
        _run(["clang", "-target", "bpf", "-O2", "-g", "-Wall", f"-D__TARGET_ARCH_{arch}", f"-I{work}",
              "-c", str(SOURCE), "-o", str(compiled)])
        compiled.replace(target)  # atomic: a concurrent loader sees the old object or the whole new one
    for stale in target.parent.glob("sensor-*.bpf.o"):  # objects of earlier sensor versions
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


def _run(command: list[str], stdout: Path | None = None) -> None:
    try:
        if stdout is None:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        else:
            with stdout.open("w") as out:
                result = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
    except OSError as exc:
        raise BuildError(f"cannot run {command[0]}: {exc}") from None
    if result.returncode:
        tail = "\n".join(result.stderr.strip().splitlines()[-20:])
        raise BuildError(f"{command[0]} failed (exit {result.returncode}):\n{tail}")
