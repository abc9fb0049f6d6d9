"""Checks shared by the deployment tests (Dockerfile, docker-compose.yml, the Helm chart): what vigil really
has — its subcommands, the environment variables it reads, the Prometheus metrics it defines — and a strict
check of Kubernetes objects against the API's own models."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from kubernetes import client

from vigil.cli import build_parser
from vigil.config import Settings

ROOT = Path(__file__).resolve().parents[2]
#: The packages whose sources define metrics and read environment variables (what the image installs).
PACKAGES = ("vigil", "sources", "collectors", "streams", "detections", "storage", "siem", "benchmarks")

_METRIC = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(vigil_\w+)\"")
_SAMPLE_SUFFIXES = {"Counter": ("",), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count"),
                    "Summary": ("", "_sum", "_count")}
_PROMQL_METRIC = re.compile(r"\bvigil_\w+")


def source_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from (ROOT / package).rglob("*.py")


@cache
def metric_samples() -> frozenset[str]:
    """Every sample name vigil's code can expose (``vigil_x_total``, ``vigil_y_bucket``, ...)."""
    names = set()
    for path in source_files():
        for kind, name in _METRIC.findall(path.read_text()):
            names |= {name + suffix for suffix in _SAMPLE_SUFFIXES[kind]}
    return frozenset(names)


def unknown_metrics(promql: str) -> set[str]:
    """The vigil metric names a PromQL expression uses that no code defines."""
    return set(_PROMQL_METRIC.findall(promql)) - metric_samples()


@cache
def known_variables() -> frozenset[str]:
    """``VIGIL_*`` variables vigil reads: one per setting, and those the code names itself."""
    names = {f"VIGIL_{f.name.upper()}" for f in dataclasses.fields(Settings) if f.name not in _sections()}
    for section, section_type in _sections().items():
        names |= {f"VIGIL_{section.upper()}_{f.name.upper()}" for f in dataclasses.fields(section_type)}
    for path in source_files():
        names |= set(re.findall(r"\"(VIGIL_[A-Z_]*[A-Z])\"", path.read_text()))
    return frozenset(names)


def _sections() -> dict[str, type]:
    return {f.name: type(getattr(Settings(), f.name)) for f in dataclasses.fields(Settings)
            if dataclasses.is_dataclass(getattr(Settings(), f.name))}


def vigil_command_error(argv: list[str]) -> str | None:
    """Why ``argv`` (``["vigil", ...]``) is not a command the vigil CLI accepts, or None when it is."""
    if not argv or argv[0] != "vigil":
        return f"not a vigil command: {argv}"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = build_parser().parse_args(argv[1:])
    except SystemExit:
        return f"vigil {' '.join(argv[1:])}: {stderr.getvalue().strip()}"
    if not callable(getattr(args, "func", None)):
        return f"vigil {' '.join(argv[1:])} runs nothing"
    return None


def parse_vigil_command(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv[1:])


# ---- Kubernetes objects against the API's models ----------------------------------------------------------

_PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object,
               "datetime": str, "bytes": str}  # bytes: base64 text in YAML


def model_name(obj: dict[str, Any]) -> str:
    """The kubernetes client's model class of an object: ``apps/v1`` ``DaemonSet`` -> ``V1DaemonSet``."""
    group_version = obj["apiVersion"]
    version = group_version.rpartition("/")[2]
    return version[0].upper() + version[1:] + obj["kind"]


def object_problems(obj: dict[str, Any]) -> list[str]:
    """What the API server would refuse in ``obj``: unknown fields (strict field validation), wrong types and
    missing required fields, per the kubernetes client's models of the API's OpenAPI schema."""
    name = model_name(obj)
    model = getattr(client, name, None)
    if model is None:
        return [f"no Kubernetes API model {name} for {obj['apiVersion']} {obj['kind']}"]
    problems = _unknown_fields(obj, name, obj["kind"])
    try:
        model.from_dict(obj)
    except Exception as exc:  # pydantic's ValidationError, or a TypeError on a wrongly shaped value
        problems.append(f"{obj['kind']}: {exc}")
    return problems


def _unknown_fields(data: Any, type_name: str, path: str) -> list[str]:
    if type_name.startswith(("List[", "list[")):
        if not isinstance(data, list):
            return [f"{path}: expected a list, got {type(data).__name__}"]
        return [p for i, item in enumerate(data) for p in _unknown_fields(item, type_name[5:-1], f"{path}[{i}]")]
    if type_name.startswith(("Dict[", "dict(")):
        if not isinstance(data, dict):
            return [f"{path}: expected a map, got {type(data).__name__}"]
        value_type = type_name[5:-1].split(", ", 1)[1]
        return [p for key, value in data.items() for p in _unknown_fields(value, value_type, f"{path}.{key}")]
    if type_name in _PRIMITIVES:
        expected = _PRIMITIVES[type_name]
        ok = isinstance(data, expected) and not (expected is int and isinstance(data, bool))
        return [] if ok else [f"{path}: expected {type_name}, got {data!r}"]
    model = getattr(client, type_name)
    if not isinstance(data, dict):
        return [f"{path}: expected a {type_name} object, got {data!r}"]
    fields = {json_name: model.openapi_types[attribute] for attribute, json_name in model.attribute_map.items()}
    problems = []
    for key, value in data.items():
        if key not in fields:
            problems.append(f"{path}.{key}: unknown field of {type_name}")
        elif value is not None:
            problems.extend(_unknown_fields(value, fields[key], f"{path}.{key}"))
    return problems
