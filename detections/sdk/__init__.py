"""What a detection file declares.

A detection is one file in ``detections/library`` that defines a module-level ``DETECTION``: its catalogue
metadata, the event kinds it looks at (the engine dispatches on them, so a detection costs nothing for
events of other kinds), its logic, and its own examples as raw source records (``vigil detections test``
normalizes them through the real source and checks positives fire and negatives stay quiet).

A detection file imports all it needs from here; each part lives in a module of its own:

- the kind of detection: :class:`EventDetection` (:mod:`.events`), :class:`ThresholdDetection`
  (:mod:`.thresholds`) or :class:`SequenceDetection` of :class:`Step` (:mod:`.sequences`); the two stateful
  kinds share :mod:`.stateful`, and all three the metadata of :class:`Detection` (:mod:`.declarations`);
- its examples: :class:`Example`, :class:`Scenario` of :class:`ScenarioEvent` (:mod:`.examples`);
- the keys that tie events of one pod or container together: :func:`pod_key`, :func:`container_key`
  (:mod:`.keys`), and how an alert names a container: :func:`container_label` (:mod:`.templates`);
- its prefilter (:mod:`.prefilters`) and parameters (:mod:`.params`), declared as fields of the detection.
"""

from vigil.detections.sdk.declarations import Detection
from vigil.detections.sdk.errors import DetectionError
from vigil.detections.sdk.events import EventDetection
from vigil.detections.sdk.examples import Example, Scenario, ScenarioEvent
from vigil.detections.sdk.keys import container_key, pod_key
from vigil.detections.sdk.prefilters import PATHS, PREFILTER_FIELDS, PathPatterns, declared_value, event_path
from vigil.detections.sdk.sequences import SequenceDetection, Step
from vigil.detections.sdk.stateful import UNCHANGED, Finding, StatefulDetection
from vigil.detections.sdk.templates import container_label
from vigil.detections.sdk.thresholds import WINDOWS, ThresholdDetection

__all__ = [
    "PATHS",
    "PREFILTER_FIELDS",
    "UNCHANGED",
    "WINDOWS",
    "Detection",
    "DetectionError",
    "EventDetection",
    "Example",
    "Finding",
    "PathPatterns",
    "Scenario",
    "ScenarioEvent",
    "SequenceDetection",
    "StatefulDetection",
    "Step",
    "ThresholdDetection",
    "container_key",
    "container_label",
    "declared_value",
    "event_path",
    "pod_key",
]
