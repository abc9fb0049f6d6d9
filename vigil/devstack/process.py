"""A server process that outlives the command that started it, tracked by a PID file.

The dev stack's servers must keep running after ``vigil dev up`` returns, and a later ``down`` or
``status`` (from another shell, another pytest session) must find them again. A PID file alone is not
enough: after a crash or a reboot the PID may belong to some unrelated program, which ``down`` must never
signal. So a PID only counts while ``/proc/<pid>/cmdline`` still holds the service's marker argument
(a path inside this run dir, unique to it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

#: The shell backgrounds the server and exits at once, so the server is re-parented to init: it is
#: nobody's child (a long-lived caller such as pytest keeps no zombie after ``down``) and, in a session
#: of its own, it gets no SIGINT or SIGHUP from the terminal that ran ``vigil dev up``.
_LAUNCH = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'


class DetachedProcess:
    """One server: its PID file, its log file and the argument that identifies it in ``/proc``."""

    def __init__(self, pid_file: Path, log_file: Path, marker: str) -> None:
        self.pid_file = pid_file
        self.log_file = log_file
        self.marker = marker

    def start(self, argv: list[str], cwd: Path) -> int:
        """Start ``argv`` detached, its output going to a fresh log file (the previous one kept as ``.1``)."""
        if self.marker not in argv:
            raise ValueError(f"marker {self.marker!r} must be one of the arguments, to find the process again")
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
        launched = subprocess.run(
            ["/bin/sh", "-c", _LAUNCH, "sh", str(self.log_file), *argv],
            cwd=cwd, start_new_session=True, capture_output=True, text=True, check=True,
        )
        pid = int(launched.stdout)
        self.pid_file.write_text(f"{pid}\n")
        return pid

    def pid(self) -> int | None:
        """The PID if the process runs; a PID file that names anything else is stale and removed."""
        try:
            pid = int(self.pid_file.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            self.pid_file.unlink(missing_ok=True)
            return None
        if self._is_ours(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def terminate(self) -> int | None:
        """Ask the process to stop (SIGTERM) and return its PID, or None if it was not running."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):  # it exited on its own just now
                os.kill(pid, signal.SIGTERM)
        return pid

    def wait_gone(self, pid: int, grace: float) -> None:
        """Wait up to ``grace`` seconds for ``pid`` to exit, then SIGKILL it; the PID file goes either way."""
        deadline = time.monotonic() + grace
        while self._is_ours(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._is_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self._is_ours(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log: what a failed start most likely said about itself."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return f"(no log file at {self.log_file})"
        return "\n".join(text.splitlines()[-lines:])

    def _is_ours(self, pid: int) -> bool:
        # A zombie or an exited process has an empty cmdline; a reused PID has someone else's.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return False
        return self.marker.encode() in cmdline.split(b"\0")
