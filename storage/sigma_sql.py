"""Sigma rules for Kubernetes audit logs as ClickHouse SQL over stored events: the retro-hunt.

pySigma parses the rule (YAML, modifiers, the condition into a tree); this module turns that tree into a
WHERE clause. Rule values become server-side parameters (``{p0:String}`` …), never SQL text, so a rule file
cannot inject anything.

Fields are the audit event's own (``verb``, ``objectRef.resource``, ``requestURI``, ``responseStatus.code``
…), read from the flattened columns where vigil has one (fast, columnar) and from the stored original
record (``raw``) otherwise. Two fields that SigmaHQ's rules use are not audit fields but facts about the
requested pod: ``hostPath`` (its hostPath volume paths) and ``capabilities`` (capabilities its containers
add); both are read from ``requestObject`` in ``raw``, of a pod or of a workload's pod template.

Matching follows the Sigma specification: strings compare case-insensitively unless ``|cased``; ``*`` and
``?`` are wildcards; a list of values is any of them; a field holding a list matches if any element does.
Regular expressions are case-sensitive unless flagged ``i``. Correlation rules are refused: they count
across events, which is not a filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)


class SigmaConversionError(ValueError):
    """A rule this converter cannot express as a filter over stored events; the message says why."""


@dataclass(frozen=True, slots=True)
class Field:
    """How to read a Sigma field: a SQL expression, holding one value or an array of them."""

    sql: str
    array: bool = False


_POD_SPECS = ("JSONExtractArrayRaw(raw, 'requestObject', 'spec', '{0}')",
              "JSONExtractArrayRaw(raw, 'requestObject', 'spec', 'template', 'spec', '{0}')")


def _pod_spec_arrays(key: str) -> str:
    return "arrayConcat(" + ", ".join(spec.format(key) for spec in _POD_SPECS) + ")"


_HOST_PATHS = (f"arrayFilter(p -> p != '', arrayMap(v -> JSONExtractString(v, 'hostPath', 'path'), "
               f"{_pod_spec_arrays('volumes')}))")
_CAPABILITIES = ("arrayFlatten(arrayMap(c -> JSONExtract(c, 'securityContext', 'capabilities', 'add', "
                 f"'Array(String)'), arrayConcat({_pod_spec_arrays('containers')}, "
                 f"{_pod_spec_arrays('initContainers')})))")

#: Audit event fields (and the two pod facts) that have a better home than the raw record.
FIELDS: dict[str, Field] = {
    "verb": Field("action"),
    "auditID": Field("original_id"),
    "requestURI": Field("target_uri"),
    "userAgent": Field("actor_user_agent"),
    "sourceIPs": Field("actor_source_ips", array=True),
    "user.username": Field("actor_user"),
    "user.uid": Field("actor_user_uid"),
    "user.groups": Field("actor_groups", array=True),
    "objectRef.resource": Field("target_resource"),
    "objectRef.subresource": Field("target_subresource"),
    "objectRef.namespace": Field("target_namespace"),
    "objectRef.name": Field("target_name"),
    "objectRef.apiGroup": Field("target_api_group"),
    "apiGroup": Field("target_api_group"),  # SigmaHQ rules write it unqualified; the event has it in objectRef
    "objectRef.apiVersion": Field("target_api_version"),
    "responseStatus.code": Field("toString(outcome_code)"),
    "hostPath": Field(_HOST_PATHS, array=True),
    "capabilities": Field(_CAPABILITIES, array=True),
}

#: What a retro-hunt shows for each matching audit request (one row per request, not per stage).
SELECT_SQL = """
SELECT {{rule:String}} AS rule, time, cluster, actor_user AS user, action AS verb, target_resource AS resource,
       target_subresource AS subresource, target_namespace AS namespace, target_name AS name,
       outcome_code AS code, actor_source_ips AS source_ips, original_id AS audit_id
FROM events
WHERE source = 'k8s-audit' AND time >= {{since:DateTime64(9, 'UTC')}}
  AND ({condition})
ORDER BY time, audit_id
LIMIT 1 BY audit_id
LIMIT {{limit:UInt32}}
"""


@dataclass(slots=True)
class SigmaQuery:
    """A rule as SQL with its parameters (``since`` and ``limit`` are the caller's to add)."""

    title: str
    rule_id: str
    sql: str
    parameters: dict[str, Any] = field(default_factory=dict)


def convert_rule(text: str) -> SigmaQuery:
    """One Sigma rule (YAML text) as a query over ``events``."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SigmaConversionError(f"not a valid Sigma rule: {exc}") from exc
    if not isinstance(document, dict):
        raise SigmaConversionError("not a valid Sigma rule: expected one YAML mapping")
    if "correlation" in document:
        raise SigmaConversionError("correlation rules count across events and cannot run as a retro-hunt filter")
    try:
        rule = SigmaRule.from_dict(document)
    except SigmaError as exc:
        raise SigmaConversionError(f"not a valid Sigma rule: {exc}") from exc
    _check_logsource(rule)
    converter = _Converter()
    try:
        conditions = [converter.convert(parsed.parse()) for parsed in rule.detection.parsed_condition]
    except SigmaError as exc:
        raise SigmaConversionError(f"rule {rule.title!r}: {exc}") from exc
    condition = " OR ".join(f"({c})" for c in conditions)
    parameters = converter.parameters | {"rule": rule.title}
    return SigmaQuery(rule.title, str(rule.id or ""), SELECT_SQL.format(condition=condition), parameters)


def _check_logsource(rule: SigmaRule) -> None:
    source = rule.logsource
    if source.product != "kubernetes" or source.service not in (None, "audit"):
        raise SigmaConversionError(
            f"rule {rule.title!r} is for logsource product={source.product} service={source.service}; "
            "retro-hunt covers Kubernetes audit rules (product: kubernetes, service: audit)")


class _Converter:
    """Walks a parsed Sigma condition, collecting the values as numbered parameters."""

    def __init__(self) -> None:
        self.parameters: dict[str, Any] = {}

    def convert(self, node: Any) -> str:
        if isinstance(node, ConditionAND):
            return " AND ".join(f"({self.convert(arg)})" for arg in node.args)
        if isinstance(node, ConditionOR):
            return " OR ".join(f"({self.convert(arg)})" for arg in node.args)
        if isinstance(node, ConditionNOT):
            return f"NOT ({self.convert(node.args[0])})"
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return self._field_condition(self._field(node.field), node.value)
        if isinstance(node, ConditionValueExpression):
            return self._keyword(node.value)
        raise SigmaConversionError(f"unsupported condition element {type(node).__name__}")

    def _field(self, name: str) -> Field:
        if name in FIELDS:
            return FIELDS[name]
        path = ", ".join(self._bind(part, "String") for part in name.split("."))
        return Field(f"if(JSONType(raw, {path}) = 'String', JSONExtractString(raw, {path}), "
                     f"trim(BOTH '\"' FROM JSONExtractRaw(raw, {path})))")

    def _field_condition(self, target: Field, value: Any) -> str:
        if isinstance(value, SigmaExpansion):
            return " OR ".join(f"({self._field_condition(target, v)})" for v in value.values)
        if isinstance(value, SigmaExists):
            present = f"notEmpty({target.sql})" if target.array else f"{target.sql} != ''"
            return present if value.exists else f"NOT ({present})"
        if isinstance(value, SigmaNull):
            return f"empty({target.sql})" if target.array else f"{target.sql} = ''"
        predicate = self._predicate(value)
        return f"arrayExists(x -> {predicate('x')}, {target.sql})" if target.array else predicate(target.sql)

    def _predicate(self, value: Any) -> Any:
        """A function from a SQL expression to the SQL test of ``value`` on it."""
        if isinstance(value, SigmaString):
            operator = "LIKE" if isinstance(value, SigmaCasedString) else "ILIKE"
            pattern = self._bind(_like_pattern(value), "String")
            return lambda expr: f"{expr} {operator} {pattern}"
        if isinstance(value, SigmaNumber | SigmaBool):
            text = str(value.number if isinstance(value, SigmaNumber) else value.boolean).lower()
            bound = self._bind(text, "String")
            return lambda expr: f"lowerUTF8({expr}) = {bound}"
        if isinstance(value, SigmaRegularExpression):
            flags = "".join(f"(?{flag})" for sigma_flag, flag in _REGEX_FLAGS.items() if sigma_flag in value.flags)
            bound = self._bind(flags + value.regexp, "String")
            return lambda expr: f"match({expr}, {bound})"
        if isinstance(value, SigmaCompareExpression):
            bound = self._bind(value.number.number, "Float64")
            operator = _COMPARE[value.op]
            return lambda expr: f"toFloat64OrNull({expr}) {operator} {bound}"
        if isinstance(value, SigmaCIDRExpression):
            bound = self._bind(str(value.network), "String")
            return lambda expr: f"isIPAddressInRange({expr}, {bound})"
        raise SigmaConversionError(f"unsupported value type {type(value).__name__}")

    def _keyword(self, value: Any) -> str:
        """A keyword (a value without a field) is looked for anywhere in the original record."""
        if not isinstance(value, SigmaString):
            raise SigmaConversionError(f"unsupported keyword type {type(value).__name__}")
        operator = "LIKE" if isinstance(value, SigmaCasedString) else "ILIKE"
        return f"raw {operator} {self._bind('%' + _like_pattern(value) + '%', 'String')}"

    def _bind(self, value: Any, kind: str) -> str:
        name = f"p{len(self.parameters)}"
        self.parameters[name] = value
        return f"{{{name}:{kind}}}"


_REGEX_FLAGS = {SigmaRegularExpressionFlag.IGNORECASE: "i", SigmaRegularExpressionFlag.MULTILINE: "m",
                SigmaRegularExpressionFlag.DOTALL: "s"}
_COMPARE = {CompareOperators.LT: "<", CompareOperators.LTE: "<=", CompareOperators.GT: ">",
            CompareOperators.GTE: ">=", CompareOperators.NEQ: "!="}


def _like_pattern(value: SigmaString) -> str:
    """Sigma's ``*`` and ``?`` as LIKE's ``%`` and ``_``; LIKE's own special characters escaped."""
    out = []
    for part in value.s:
        if part == SpecialChars.WILDCARD_MULTI:
            out.append("%")
        elif part == SpecialChars.WILDCARD_SINGLE:
            out.append("_")
        elif isinstance(part, str):
            out.append(part.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))
        else:
            raise SigmaConversionError(f"unsupported placeholder {part!r} in a Sigma value")
    return "".join(out)
