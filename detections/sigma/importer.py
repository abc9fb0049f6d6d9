"""``vigil sigma import``: Sigma rules in, one generated detection file per rule out.

Generated files rather than detections built from the YAML at load time, because a detection in vigil is a
file an analyst reads, reviews in a pull request, tests with ``vigil detections test`` and tunes: the file
shows every search as matcher objects, the condition as Python, the rule's metadata with its author and
license, and examples synthesized from the rule (:mod:`vigil.detections.sigma.examples`). Each file is loaded and
its examples are run through the real audit source before it is handed out; an example that cannot be
synthesized or does not pass is a warning, and the file still lets ``vigil detections test`` say so.

Plain rules that only exist to feed a correlation (``generate: false``, Sigma's default) are not written on
their own: the correlation's file contains them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigma.correlations import SigmaCorrelationRule, SigmaCorrelationType
from sigma.rule import SigmaRule

from vigil.detections.harness import check_examples
from vigil.detections.sdk import Detection, Example, Scenario, ScenarioEvent
from vigil.detections.sigma import examples
from vigil.detections.sigma.compiler import (
    CompiledRule,
    Correlation,
    SigmaImportError,
    compile_correlation,
    compile_rule,
    load_rules,
    metadata,
    slug,
)
from vigil.detections.sigma.fields import write_field
from vigil.detections.sigma.render import render_correlation, render_rule

_COUNTED = (SigmaCorrelationType.EVENT_COUNT, SigmaCorrelationType.VALUE_COUNT)
_TEMPORAL = (SigmaCorrelationType.TEMPORAL, SigmaCorrelationType.TEMPORAL_ORDERED)


@dataclass
class GeneratedDetection:
    """A generated detection file: its name (``sigma_<slug>.py``), Python source, rule and importer notes."""

    name: str
    source: str
    rule: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    generated: list[GeneratedDetection]
    errors: list[str]


def import_rules(paths: Sequence[Path]) -> ImportResult:
    """Every rule in ``paths`` (files or directories of ``*.yml``) as a detection file; a rule that cannot be
    imported is an error naming it, and the others are still generated."""
    rules, errors = load_rules(paths)
    hidden = _only_correlated(rules)
    generated = []
    for rule in rules:
        if any(rule is h for h in hidden):
            continue
        try:
            made = _generate_correlation(rule) if isinstance(rule, SigmaCorrelationRule) else _generate_rule(rule)
        except SigmaImportError as exc:
            errors.append(f"{_origin(rule)}: {exc}")
            continue
        if any(made.name == other.name for other in generated):
            # The title is the detection id: two rules with one title would be one detection the engine refuses.
            errors.append(f"{_origin(rule)}: {rule.title}: another rule imported with it has the same title")
            continue
        generated.append(made)
    return ImportResult(generated, errors)


def write(generated: Sequence[GeneratedDetection], out: Path) -> list[Path]:
    """Write the files into ``out`` (created if needed); an existing file of the same name is replaced."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for detection in generated:
        path = out / detection.name
        path.write_text(detection.source)
        written.append(path)
    return written


def _only_correlated(rules: Sequence[SigmaRule | SigmaCorrelationRule]) -> list[SigmaRule]:
    """The plain rules referenced only by correlations that do not ``generate`` them."""
    correlations = [r for r in rules if isinstance(r, SigmaCorrelationRule)]
    referenced = [ref.rule for c in correlations for ref in c.rules or () if not c.generate]
    generated = [ref.rule for c in correlations for ref in c.rules or () if c.generate]
    return [r for r in referenced if not any(r is g for g in generated)]


def _origin(rule: SigmaRule | SigmaCorrelationRule) -> str:
    path = getattr(rule.source, "path", None)
    return Path(path).name if path else rule.title


def _generate_rule(rule: SigmaRule) -> GeneratedDetection:
    compiled = compile_rule(rule)
    warnings: list[str] = []
    meta = metadata(rule, warnings)
    origin = _origin(rule)
    draft = load_source(render_rule(compiled, meta, origin, []), origin)
    condition = draft[compiled.function]
    found = [
        Example(name=f"{kind} synthesized from the rule", source=examples.SOURCE, fires=fires, record=record)
        for kind, fires, record in _plain_examples(condition, compiled)
        if record is not None
    ]
    source = render_rule(compiled, meta, origin, found)
    return _checked(source, rule, warnings)


def _plain_examples(condition: Callable[..., bool], compiled: CompiledRule) -> list[tuple[str, bool, Any]]:
    hit = examples.positive(condition, compiled.searches)
    return [("match", True, hit), ("non-match", False, examples.negative(condition, hit))]


def _generate_correlation(rule: SigmaCorrelationRule) -> GeneratedDetection:
    if rule.type not in (*_COUNTED, *_TEMPORAL):
        raise SigmaImportError(f"{rule.title}: {rule.type.name.lower()} correlations are not supported")
    correlation = compile_correlation(rule)
    warnings: list[str] = []
    meta = metadata(rule, warnings)
    origin = _origin(rule)
    draft = load_source(render_correlation(correlation, meta, origin, []), origin)
    scenarios = _scenarios(correlation, draft)
    source = render_correlation(correlation, meta, origin, scenarios)
    return _checked(source, rule, warnings)


def _scenarios(correlation: Correlation, draft: dict[str, Any]) -> list[Scenario]:
    """A positive scenario reaching the threshold within the window, and a negative one stopping short."""
    hits = []
    for compiled in correlation.rules:
        hit = examples.positive(draft[compiled.function], compiled.searches)
        if hit is None:
            return []
        for name in correlation.rule.group_by or ():
            write_field(hit, name, "example-group")
        hits.append(examples.renumbered(hit))
    if correlation.kind in _TEMPORAL:
        records = hits
        short = hits[:-1]
    else:
        field_name = correlation.rule.condition.fieldref if correlation.kind is SigmaCorrelationType.VALUE_COUNT else ""
        records = [_variant(hits[0], field_name, index) for index in range(correlation.threshold)]
        short = records[:-1]
    span = float(correlation.rule.timespan.seconds)
    return [
        _scenario("enough events within the timespan", records, span, fires=True),
        _scenario("one event short", short, span, fires=False),
    ]


def _variant(record: dict[str, Any], field_name: str, index: int) -> dict[str, Any]:
    """The record again as another request (another auditID), with ``field_name`` set to a new value."""
    copied = copy.deepcopy(record)
    if field_name:
        write_field(copied, field_name, f"example-value-{index}")
    return examples.renumbered(copied, salt=str(index))


def _scenario(name: str, records: list[dict[str, Any]], span: float, *, fires: bool) -> Scenario:
    step = min(1.0, span / (len(records) + 1))
    events = [ScenarioEvent(source=examples.SOURCE, at_s=round(i * step, 3), record=r) for i, r in enumerate(records)]
    return Scenario(name=name, fires=fires, events=events)


def load_source(source: str, origin: str) -> dict[str, Any]:
    """Run a generated file's source as the engine would load it, returning its namespace."""
    namespace: dict[str, Any] = {"__name__": f"vigil_sigma_{slug(origin)}"}
    try:
        exec(compile(source, origin, "exec"), namespace)  # our own generated code, run as the engine loads it
    except Exception as exc:  # a rule the matchers refuse (a bad regex, a bad CIDR) surfaces here
        raise SigmaImportError(f"the generated detection does not load: {type(exc).__name__}: {exc}") from None
    return namespace


def _checked(source: str, rule: SigmaRule | SigmaCorrelationRule, warnings: list[str]) -> GeneratedDetection:
    origin = _origin(rule)
    detection: Detection = load_source(source, origin)["DETECTION"]
    if not any(e.fires for e in detection.examples):
        warnings.append("no positive example could be synthesized: add one by hand")
    if all(e.fires for e in detection.examples):
        warnings.append("no negative example could be synthesized: add one by hand")
    failed = [r for r in check_examples(detection) if not r.passed and r.example != "(examples)"]
    warnings.extend(f"example {r.example!r} fails: {r.reason}" for r in failed)
    return GeneratedDetection(f"sigma_{slug(rule.title)}.py", source, origin, list(dict.fromkeys(warnings)))
