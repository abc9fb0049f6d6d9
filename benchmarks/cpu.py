"""CPU time of a process, for the benchmarks' per-CPU-second figures.

On a machine shared with the broker and other work, wall-clock rates measure the neighbours as much as vigil; the
CPU a process was charged is its own cost.
"""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (``/proc/<pid>/stat``, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
