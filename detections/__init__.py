"""Detections: Python files that turn normalized events into alerts, and the engine that runs them.

:mod:`vigil.detections.sdk` is what a detection file declares, :mod:`vigil.detections.engine` loads and runs them
(dispatch by event kind, error isolation, alert suppression, hot reload), :mod:`vigil.detections.library` holds the
bundled ones, and :mod:`vigil.detections.replay` runs recorded source files through them for ``vigil replay``.
"""
