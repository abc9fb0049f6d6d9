"""Detections: Python files that turn normalized events into alerts, and the engine that runs them.

:mod:`detections.sdk` is what a detection file declares, :mod:`detections.engine` loads and runs them (dispatch by
event kind, error isolation, alert suppression, hot reload), :mod:`detections.library` holds the bundled ones, and
:mod:`detections.replay` runs recorded source files through them for ``vigil replay``.
"""
