"""Sigma rules, parsed and validated by pySigma, compiled into :mod:`vigil.detections.sigma.matching` objects.

A plain rule becomes its search identifiers as matcher trees (by constant name) and its condition as a
Python expression over them; a correlation becomes the plain rules it references plus its count threshold.
What cannot be matched on vigil's events (an unmapped log source, placeholders, ``value_sum``…) is refused
with a :class:`SigmaImportError` that names the rule and the construct.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection
from sigma.conditions import ConditionAND, ConditionIdentifier, ConditionNOT, ConditionOR, ConditionSelector
from sigma.correlations import SigmaCorrelationConditionOperator, SigmaCorrelationRule, SigmaCorrelationType
from sigma.exceptions import SigmaError
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from vigil.detections.sigma.matching import (
    AllOf,
    AnyOf,
    Boolean,
    Cidr,
    Compare,
    Exists,
    FieldMatch,
    FieldRef,
    Keywords,
    Null,
    Number,
    Regex,
    Search,
    Text,
    Value,
)

#: The log sources this importer maps fields for, as (product, service).
LOGSOURCES = {("kubernetes", "audit"): "k8s.api"}
_MITRE_TAG = re.compile(r"^t\d{4}(\.\d{3})?$")
_REGEX_FLAGS = {
    SigmaRegularExpressionFlag.IGNORECASE: "i",
    SigmaRegularExpressionFlag.MULTILINE: "m",
    SigmaRegularExpressionFlag.DOTALL: "s",
}


class SigmaImportError(ValueError):
    """A Sigma rule vigil cannot turn into a detection; the message names the rule and the construct."""


@dataclass
class CompiledRule:
    """One plain Sigma rule as Python: its searches by constant name and its condition as an expression."""

    rule: SigmaRule
    prefix: str
    searches: dict[str, Search]
    condition: str
    kind: str
    #: The detection's prefilter (see :class:`vigil.detections.sdk.prefilters.Prefilter`): the verbs, resources and
    #: subresources the condition requires, by declaration field.
    prefilter: dict[str, list[str]]

    @property
    def function(self) -> str:
        return f"condition_{self.prefix.lower()}" if self.prefix else "condition"


def slug(text: str) -> str:
    """Lowercase words joined by ``_``: a rule title as a detection id and file name."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "rule"


def load_rules(paths: Sequence[Path]) -> tuple[list[SigmaRule | SigmaCorrelationRule], list[str]]:
    """The rules in the given files and directories, and an error per file pySigma refused."""
    collection = SigmaCollection.load_ruleset([str(p) for p in paths], collect_errors=True)
    errors = [f"{getattr(e.source, 'path', '') or 'rule'}: {e}" for e in collection.errors]
    return list(collection.rules), errors


# --- Plain rules ------------------------------------------------------------------------------------------------


def compile_rule(rule: SigmaRule, prefix: str = "") -> CompiledRule:
    """The searches and condition of a plain rule, refusing what cannot be matched on audit events."""
    product, service = rule.logsource.product, rule.logsource.service
    kind = LOGSOURCES.get((product or "", service or ""))
    if kind is None:
        supported = ", ".join(f"{p}/{s}" for p, s in LOGSOURCES)
        raise SigmaImportError(f"{rule.title}: log source {product}/{service} is not mapped (supported: {supported})")
    detections = rule.detection.detections
    if not detections or not getattr(rule.detection, "condition", None):
        raise SigmaImportError(f"{rule.title}: the rule has no search identifiers or no condition")
    names = {name: _constant(prefix, name) for name in detections}
    try:
        searches = {names[name]: _search(rule, detection) for name, detection in detections.items()}
        parsed = [c.parse(postprocess=False) for c in rule.detection.parsed_condition]
        conditions = [_condition(node, names, rule) for node in parsed]
    except SigmaError as exc:
        raise SigmaImportError(f"{rule.title}: {exc}") from None
    condition = conditions[0] if len(conditions) == 1 else " or ".join(f"({c})" for c in conditions)
    required = _any_of([_required(node, {n: searches[c] for n, c in names.items()}) for node in parsed])
    prefilter = {PREFILTER_FIELDS[field]: sorted(values) for field, values in required.items() if values}
    return CompiledRule(rule, prefix, searches, _strip_parens(condition), kind, prefilter)


#: Sigma fields of the audit record that a prefilter can declare, and the declaration field of each.
PREFILTER_FIELDS = {"verb": "actions", "objectRef.resource": "resources", "objectRef.subresource": "subresources"}
#: A value a prefilter can name exactly: Kubernetes verbs and resource names (lowercase, as the API server logs
#: them), so Sigma's case-insensitive match is the same as equality. Wildcards and modifiers are not declared.
_PLAIN = re.compile(r"^[a-z0-9][a-z0-9.-]*$")

#: Values a Sigma field must have for a condition to hold, by field (a field not listed may have any value).
Required = dict[str, set[str]]


def _required(node: Any, searches: dict[str, Search]) -> Required:
    """What a condition requires of the prefilter fields: an AND requires what any of its parts does, an OR
    only what all of its parts do (any of their values); a NOT or a selector requires nothing."""
    if isinstance(node, ConditionIdentifier):
        return _search_requires(searches[node.identifier])
    if isinstance(node, ConditionAND):
        return _all_of([_required(arg, searches) for arg in node.args])
    if isinstance(node, ConditionOR):
        return _any_of([_required(arg, searches) for arg in node.args])
    return {}


def _search_requires(search: Search) -> Required:
    if isinstance(search, AllOf):
        return _all_of([_search_requires(item) for item in search.items])
    if isinstance(search, AnyOf):
        return _any_of([_search_requires(item) for item in search.items])
    if not isinstance(search, FieldMatch) or search.field not in PREFILTER_FIELDS or search.every:
        return {}
    if not all(isinstance(v, Text) and _PLAIN.match(v.pattern.casefold()) for v in search.values):
        return {}
    return {search.field: {v.pattern.casefold() for v in search.values if isinstance(v, Text)}}


def _all_of(parts: list[Required]) -> Required:
    required: Required = {}
    for part in parts:
        for field_name, values in part.items():
            required[field_name] = required[field_name] & values if field_name in required else set(values)
    return required


def _any_of(parts: list[Required]) -> Required:
    if not parts:
        return {}
    shared = set.intersection(*(set(part) for part in parts))
    return {field_name: set().union(*(part[field_name] for part in parts)) for field_name in shared}


def _constant(prefix: str, name: str) -> str:
    constant = re.sub(r"\W", "_", name).upper()
    constant = f"{prefix}_{constant}" if prefix else constant
    return constant if not constant[0].isdigit() else f"S_{constant}"


def _search(rule: SigmaRule, detection: SigmaDetection) -> Search:
    items = [
        _search(rule, item) if isinstance(item, SigmaDetection) else _item(rule, item)
        for item in detection.detection_items
    ]
    if len(items) == 1:
        return items[0]
    return AllOf(*items) if detection.item_linking is ConditionAND else AnyOf(*items)


def _item(rule: SigmaRule, item: SigmaDetectionItem) -> Search:
    values = [value for original in item.value for value in _values(rule, item.field, original)]
    every = item.value_linking is ConditionAND
    if item.field:
        return FieldMatch(item.field, *values, every=every)
    return Keywords(*(_anywhere(value) for value in values), every=every)


def _anywhere(value: Value) -> Value:
    """A keyword is searched for in the whole record, as full-text search does: inside any string of it."""
    if not isinstance(value, Text):
        return value
    pattern = value.pattern if value.pattern.startswith("*") else f"*{value.pattern}"
    pattern = pattern if pattern.endswith("*") and not pattern.endswith("\\*") else f"{pattern}*"
    return Text(pattern, cased=value.cased)


def _values(rule: SigmaRule, field_name: str | None, value: Any) -> list[Value]:
    if isinstance(value, SigmaExpansion):
        return [v for inner in value.values for v in _values(rule, field_name, inner)]
    if isinstance(value, SigmaString):
        if value.contains_placeholder():
            raise SigmaImportError(f"{rule.title}: {field_name}: placeholders (expand) have no value in vigil")
        return [Text(sigma_text(value), cased=isinstance(value, SigmaCasedString))]
    if isinstance(value, SigmaBool):
        return [Boolean(value.boolean)]
    if isinstance(value, SigmaNumber):
        return [Number(value.number)]
    if isinstance(value, SigmaNull):
        return [Null()]
    if isinstance(value, SigmaExists):
        return [Exists(value.exists)]
    if isinstance(value, SigmaRegularExpression):
        flags = "".join(sorted(_REGEX_FLAGS[f] for f in value.flags))
        return [Regex(value.regexp.original, flags)]
    if isinstance(value, SigmaCIDRExpression):
        return [Cidr(str(value.network))]
    if isinstance(value, SigmaCompareExpression):
        return [Compare(value.op.name.lower(), value.number.number)]
    if isinstance(value, SigmaFieldReference) and not (value.starts_with or value.ends_with):
        return [FieldRef(value.field)]
    raise SigmaImportError(f"{rule.title}: {field_name}: {type(value).__name__} values are not supported")


def sigma_text(value: SigmaString) -> str:
    """A pySigma string back in Sigma's own syntax: ``*`` and ``?`` wildcards, ``\\`` escaping literal ones."""
    parts = []
    for part in value.s:
        if part is SpecialChars.WILDCARD_MULTI:
            parts.append("*")
        elif part is SpecialChars.WILDCARD_SINGLE:
            parts.append("?")
        else:
            parts.append(re.sub(r"([*?\\])", r"\\\1", str(part)))
    return "".join(parts)


def _condition(node: Any, names: dict[str, str], rule: SigmaRule) -> str:
    if isinstance(node, ConditionIdentifier):
        if node.identifier not in names:
            raise SigmaImportError(f"{rule.title}: the condition names {node.identifier!r}, which is not defined")
        return f"{names[node.identifier]}.matches(event)"
    if isinstance(node, ConditionNOT):
        return f"not {_condition(node.args[0], names, rule)}"
    if isinstance(node, ConditionAND | ConditionOR):
        joiner = " and " if isinstance(node, ConditionAND) else " or "
        return "(" + joiner.join(_condition(arg, names, rule) for arg in node.args) + ")"
    if isinstance(node, ConditionSelector):
        return _selector(node, names, rule)
    raise SigmaImportError(f"{rule.title}: condition element {type(node).__name__} is not supported")


def _selector(node: ConditionSelector, names: dict[str, str], rule: SigmaRule) -> str:
    """``1 of pattern`` / ``all of pattern`` (``them``: every identifier not starting with ``_``)."""
    if node.pattern == "them":
        chosen = [n for n in names if not n.startswith("_")]
    else:
        chosen = [n for n in names if fnmatchcase(n, node.pattern)]
    if not chosen:
        raise SigmaImportError(f"{rule.title}: no search identifier matches {node.pattern!r} in the condition")
    joiner = " and " if node.cond_class is ConditionAND else " or "
    return "(" + joiner.join(f"{names[n]}.matches(event)" for n in chosen) + ")"


def _strip_parens(expression: str) -> str:
    """The top-level condition without its outer parentheses, when they enclose all of it."""
    if not (expression.startswith("(") and expression.endswith(")")):
        return expression
    depth = 0
    for index, char in enumerate(expression):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and index < len(expression) - 1:
            return expression
    return expression[1:-1]


# --- Metadata ---------------------------------------------------------------------------------------------------


def metadata(rule: SigmaRule | SigmaCorrelationRule, warnings: list[str]) -> dict[str, Any]:
    """The catalogue fields of the detection: Sigma's own, with author and rule id kept in the description
    so every alert carries the attribution the Detection Rule License asks for."""
    level = rule.level.name.lower() if rule.level is not None else "medium"
    if rule.level is None:
        warnings.append("the rule has no level: severity set to medium")
    tags = [f"{tag.namespace}.{tag.name}" for tag in rule.tags]
    mitre = [tag.name.upper() for tag in rule.tags if tag.namespace == "attack" and _MITRE_TAG.match(tag.name)]
    description = " ".join((rule.description or rule.title).split())
    attribution = f"Sigma rule {rule.id or rule.name or rule.title}"
    attribution += f" by {rule.author}" if rule.author else ""
    attribution += f", license {rule.license}" if rule.license else ""
    return {
        "id": f"sigma.{slug(rule.title)}",
        "title": rule.title,
        "description": f"{description} ({attribution}.)",
        "severity": level,
        "mitre": list(dict.fromkeys(mitre)),
        "tags": ["sigma", *tags],
        "references": list(rule.references),
        "false_positives": [str(f) for f in rule.falsepositives],
    }


# --- Correlations -----------------------------------------------------------------------------------------------


@dataclass
class Correlation:
    """A correlation rule and the plain rules it correlates, compiled."""

    rule: SigmaCorrelationRule
    rules: list[CompiledRule]
    threshold: int

    @property
    def kind(self) -> SigmaCorrelationType:
        return self.rule.type


def compile_correlation(rule: SigmaCorrelationRule) -> Correlation:
    referenced = [ref.rule for ref in rule.rules or ()]
    if not referenced or any(not isinstance(r, SigmaRule) for r in referenced):
        raise SigmaImportError(f"{rule.title}: a correlation must reference plain rules imported with it")
    if rule.aliases.aliases:
        raise SigmaImportError(f"{rule.title}: field aliases of correlations are not supported")
    compiled = [compile_rule(r, _constant("", slug(r.name or r.title))) for r in referenced]
    if len({c.kind for c in compiled}) > 1:
        raise SigmaImportError(f"{rule.title}: the correlated rules read different log sources")
    return Correlation(rule, compiled, _threshold(rule))


def _threshold(rule: SigmaCorrelationRule) -> int:
    """The count a window must reach: Sigma's ``gte n`` is n, ``gt n`` is n+1; temporal ones need every rule."""
    if rule.type in (SigmaCorrelationType.TEMPORAL, SigmaCorrelationType.TEMPORAL_ORDERED):
        return len(rule.rules or ())
    condition = rule.condition
    op = getattr(condition, "op", None)
    if op is SigmaCorrelationConditionOperator.GTE:
        return max(1, int(condition.count))
    if op is SigmaCorrelationConditionOperator.GT:
        return int(condition.count) + 1
    name = op.name.lower() if op is not None else type(condition).__name__
    raise SigmaImportError(f"{rule.title}: correlation condition {name!r} cannot be counted up to (use gt or gte)")
