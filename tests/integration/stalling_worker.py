"""``vigil stream worker`` with one of the stalls Faust showed in broker failovers injected into its first process,
as ``STALL_ENV`` names it:

- ``resume``: the table restore ends, but the raw partitions it paused are never resumed;
- ``restore``: the same, and the restore never ends (Faust's ``in_recovery`` stays set);
- ``crash``: the agent crashes on its batches, which are never acknowledged (Faust restarts a crashed agent,
  but no commit can pass an unacknowledged message).

The process it restarts itself as (same command, ``STALL_ENV`` now ``done``) is the real worker. Run as a script
by ``test_stream_stall``."""

from __future__ import annotations

import os
import sys

from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer

from vigil.cli import main
from vigil.streams.processor import StreamProcessor

STALL_ENV = "VIGIL_TEST_INJECT_STALL"


if __name__ == "__main__":
    mode = os.environ.get(STALL_ENV)
    if mode in ("resume", "restore", "crash"):
        os.environ[STALL_ENV] = "done"  # inherited by the restarted process, which runs unchanged
    if mode in ("resume", "restore"):
        Consumer.resume_partitions = lambda self, tps: None
    if mode == "restore":
        Recovery._set_recovery_ended = lambda self: None
    if mode == "crash":
        def crash(self, messages):
            raise TypeError("'NoneType' object is not iterable")  # as aiokafka's partitioner did

        StreamProcessor.process_batch = crash
    sys.exit(main(["stream", "worker"]))
