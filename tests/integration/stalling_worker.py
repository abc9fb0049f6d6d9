"""``vigil stream worker`` with Faust's stall injected: its first process never resumes the partitions its table
recovery paused, as Faust did after a rebalance during a broker failover. The process it restarts itself as (same
command, ``STALL_ENV`` now ``done``) is the real worker. Run as a script by ``test_stream_stall``."""

from __future__ import annotations

import os
import sys

from faust.transport.consumer import Consumer

from vigil.cli import main

STALL_ENV = "VIGIL_TEST_INJECT_STALL"


if __name__ == "__main__":
    if os.environ.get(STALL_ENV) == "1":
        os.environ[STALL_ENV] = "done"  # inherited by the restarted process, which runs unchanged
        Consumer.resume_partitions = lambda self, tps: None
    sys.exit(main(["stream", "worker"]))
