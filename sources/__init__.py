"""Sources: what is pure about each kind of telemetry vigil reads, with no I/O.

One package per source holds how its payloads split into records and are validated (``parse`` or ``split``), how a
record maps into the normalized :class:`~vigil.event.Event` (``normalize``), its record types and decoders, and
``fixtures``: complete records built from the few fields that matter, for detection examples and tests. The
source protocol and registry (:mod:`vigil.sources.source`), timestamps, the collectors' health records and what
the node sources share (:mod:`vigil.sources.host_sensors`) live beside them.

Collectors (the I/O daemons) split and key records here before shipping them; stream workers, ``vigil replay``
and the detection harness normalize them here. Nothing in this package reads a socket, a file or Kafka.
"""
