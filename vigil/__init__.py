"""vigil: Kubernetes runtime-security telemetry pipeline and detection service.

This package is the home of what the four parts share: the event and alert models (``vigil.event``,
``vigil.alert``), settings (``vigil.config``), Kafka I/O (``vigil.kafka``), metrics, logging, the CLI and
the local development stack (``vigil.devstack``). The parts themselves live in the top-level packages
``collectors``, ``streams``, ``detections`` and ``storage``.
"""

__version__ = "0.1.0"
