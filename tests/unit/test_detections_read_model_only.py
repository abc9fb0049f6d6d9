"""Detections read the event model only: never ``event.source`` nor ``event.raw``.

A detection that digs into a source's original record works for that source alone and breaks when the source's
format changes; one that tests ``event.source`` does the same by another road. Everything a detection needs is a
field of the envelope (``vigil/event.py``), filled by every source that knows it. This test reads the detection
files' syntax trees, so a new detection cannot slip back into reading past the model.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DETECTION_FILES = [
    *sorted((REPO / "detections" / "library").glob("*.py")),
    REPO / "detections" / "k8s.py",
    REPO / "detections" / "health.py",
]
#: Attributes of an Event that belong to the source, not to the model.
FORBIDDEN = frozenset({"source", "raw"})
_ATTRIBUTE_CALLS = frozenset({"getattr", "hasattr", "attrgetter"})


def reads_past_the_model(tree: ast.AST) -> list[str]:
    """Where ``tree`` reads ``.source``/``.raw``: as an attribute, through getattr/hasattr/attrgetter with the name,
    or as a key of an object's ``__dict__``/``vars()``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Call) and _called_name(node.func) in _ATTRIBUTE_CALLS:
            names = [arg.value for arg in node.args if isinstance(arg, ast.Constant)]
            found += [f"line {node.lineno}: {_called_name(node.func)}(…, {name!r})" for name in names
                      if name in FORBIDDEN]
        elif isinstance(node, ast.Subscript) and _is_attribute_mapping(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and key.value in FORBIDDEN:
                found.append(f"line {node.lineno}: [{key.value!r}] of an object's attributes")
    return found


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _is_attribute_mapping(value: ast.expr) -> bool:
    if isinstance(value, ast.Attribute):
        return value.attr == "__dict__"
    return isinstance(value, ast.Call) and _called_name(value.func) in ("vars", "asdict")


def test_the_scan_covers_the_library() -> None:
    assert len(DETECTION_FILES) > 50
    assert all(path.exists() for path in DETECTION_FILES)


@pytest.mark.parametrize("path", DETECTION_FILES, ids=lambda path: path.name)
def test_detection_reads_the_model_only(path: Path) -> None:
    found = reads_past_the_model(ast.parse(path.read_text(), filename=str(path)))
    assert not found, f"{path.relative_to(REPO)} reads past the event model: {', '.join(found)}"


@pytest.mark.parametrize("code", [
    "event.raw.get('output_fields')",
    "if event.source == 'falco': pass",
    "fields = getattr(event, 'raw')",
    "get = operator.attrgetter('source')",
    "event.__dict__['raw']",
    "vars(event)['source']",
    "hasattr(event, 'raw')",
])
def test_the_scan_finds_each_way_of_reading_past_the_model(code: str) -> None:
    assert reads_past_the_model(ast.parse(code))


@pytest.mark.parametrize("code", [
    "event.actor.exe_flags",
    "event.request.object.get('spec')",
    "Example(name='x', source='falco', fires=True, record={})",
    "record = {'source': 'syscall'}",
])
def test_the_scan_leaves_model_reads_alone(code: str) -> None:
    assert not reads_past_the_model(ast.parse(code))
