"""``vigil stream worker`` with one fault injected: the containerd normalizer raises an unexpected exception on a
record that carries ``FAULT_FIELD``, the way a normalizer bug meets odd input. Everything else is the real
worker on the real Kafka. Run as a script by ``test_normalizer_failure``."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import vigil.sources.containerd as containerd
from vigil.cli import main
from vigil.event import Event

FAULT_FIELD = "vigil_test_fault"


def _faulty(normalize_record):
    def normalize(record: dict[str, Any], cluster: str, node: str) -> Event:
        if record.get(FAULT_FIELD):
            raise RuntimeError("injected normalizer fault")
        return normalize_record(record, cluster, node)

    return normalize


if __name__ == "__main__":
    source = containerd.CONTAINERD_SOURCE
    containerd.CONTAINERD_SOURCE = dataclasses.replace(source, normalize_record=_faulty(source.normalize_record))
    sys.exit(main(["stream", "worker"]))
