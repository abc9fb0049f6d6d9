"""Parameters, and what a deployment sets per namespace.

What is normal differs between namespaces (the registries a production namespace may pull from, the binaries
expected to be setuid), so a detection may declare ``params`` with their defaults; a deployment sets them in
``detections.toml``, for all namespaces and per namespace, and the detection's ``match`` and ``context`` then
receive them, resolved for the event's namespace, as a second argument. Severity, and the threshold and window of
a :class:`ThresholdDetection`, can be set per namespace the same way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vigil.alert import SEVERITIES
from vigil.detections.sdk.errors import DetectionError

if TYPE_CHECKING:  # annotations only: the declarations module builds on this one
    from vigil.detections.sdk.declarations import Detection

#: Settings a namespace may change beyond parameters, and the kinds of detection that have them.
NAMESPACE_OVERRIDES = ("severity", "threshold", "window_s")


@dataclass(frozen=True, kw_only=True)
class NamespaceSettings:
    """What a deployment set for the namespaces matching ``pattern`` (an exact name, or an ``fnmatch`` glob
    such as ``prod-*``): parameters (merged over the detection's), and optionally the severity and, for a
    threshold, the threshold and window. ``None`` keeps the detection's own value."""

    pattern: str
    params: Mapping[str, Any] = field(default_factory=dict)
    severity: str | None = None
    threshold: float | None = None
    window_s: float | None = None

    def check(self, detection: Detection) -> None:
        """Raise DetectionError naming the namespace and field when ``detection`` cannot run with these."""
        where = f"{detection.id}: namespace {self.pattern!r}"
        if self.severity is not None and self.severity not in SEVERITIES:
            raise DetectionError(f"{where}: severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        for name in ("threshold", "window_s"):
            value = getattr(self, name)
            if value is None:
                continue
            if not hasattr(detection, name):  # only a threshold detection has a threshold and window to change
                raise DetectionError(f"{where}: {name} applies to threshold detections only")
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise DetectionError(f"{where}: {name} must be a positive number, got {value!r}")
        configured_params(detection, self.params, f": namespace {self.pattern!r}")


def configured_params(detection: Detection, params: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """The detection's parameters with ``params`` set over their defaults; raises DetectionError naming the
    parameter when it is not declared or has the wrong type."""
    prefix = f"{detection.id}{where}"
    for name, value in params.items():
        if name not in detection.params:
            raise DetectionError(f"{prefix}: unknown parameter {name!r}; {_declared(detection)}")
        param_value(prefix, name, value, detection.params[name])
    return {**detection.params, **params}


def _declared(detection: Detection) -> str:
    return f"it declares {', '.join(sorted(detection.params))}" if detection.params else "it declares none"


def param_value(detection_id: str, name: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of the parameter's ``default`` (lists become tuples: parameters are
    shared by every event and must not be changed by one)."""
    if isinstance(default, list | tuple):
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return tuple(value)
        expected = "a list of strings"
    elif isinstance(default, bool):
        if isinstance(value, bool):
            return value
        expected = "true or false"
    elif isinstance(default, int | float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        expected = "a number"
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        expected = "a string"
    else:
        raise DetectionError(f"{detection_id}: parameter {name!r} must default to a bool, number, string or list")
    raise DetectionError(f"{detection_id}: parameter {name!r} must be {expected}, got {value!r}")
