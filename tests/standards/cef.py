"""A strict CEF reader written from the ArcSight CEF specification ("Implementing ArcSight Common Event Format",
rev. 25), and the specification's own examples it must read.

PyPI has no maintained CEF parser (``pycef`` 1.11, 2020, leaves escapes in values and refuses a backslash in a
header; ``cefp`` 0.0.2, 2020; ``cefevent`` only writes CEF), so vigil's CEF is read back by this reader, which is
itself tested on the specification's examples first.

What the specification says, and this reader enforces:
- ``CEF:Version|Device Vendor|Device Product|Device Version|Device Event Class ID|Name|Severity|Extension``;
- in the header, ``|`` and ``\\`` are escaped with a backslash, and nothing else is (``=`` is literal);
- Severity is an integer 0-10 (or one of Unknown, Low, Medium, High, Very-High);
- the extension is space-separated ``key=value`` pairs; in values ``=`` and ``\\`` are escaped, ``|`` is not,
  and line breaks are written ``\\n`` / ``\\r``; spaces in values are literal;
- keys come from the extension dictionary (data type and length per key below, for the keys vigil writes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The extension dictionary's entries for the keys vigil writes: key → (data type, maximum length; 0: none).
EXTENSION_DICTIONARY: dict[str, tuple[str, int]] = {
    "rt": ("TimeStamp", 0), "start": ("TimeStamp", 0), "end": ("TimeStamp", 0),
    "externalId": ("String", 40), "msg": ("String", 1023), "suser": ("String", 1023),
    **{f"cs{n}": ("String", 4000) for n in range(1, 7)},
    **{f"cs{n}Label": ("String", 1023) for n in range(1, 7)},
    **{f"cn{n}": ("Long", 0) for n in range(1, 4)},
    **{f"cn{n}Label": ("String", 1023) for n in range(1, 4)},
    "flexString1": ("String", 1023), "flexString1Label": ("String", 128),
}
SEVERITY_NAMES = frozenset({"Unknown", "Low", "Medium", "High", "Very-High"})
#: The specification's examples (section "Special characters"), as written there and as a reader must see them:
#: (line, the Name header field, the extension).
SPEC_EXAMPLES: list[tuple[str, str, dict[str, str]]] = [
    ("Sep 19 08:26:10 host CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 "
     "dst=2.1.2.2 spt=1232", "worm successfully stopped", {"src": "10.0.0.1", "dst": "2.1.2.2", "spt": "1232"}),
    ("Sep 19 08:26:10 host CEF:0|security|threatmanager|1.0|100|detected a \\| in message|10|src=10.0.0.1 "
     "act=blocked a | dst=1.1.1.1", "detected a | in message",
     {"src": "10.0.0.1", "act": "blocked a |", "dst": "1.1.1.1"}),
    ("Sep 19 08:26:10 host CEF:0|security|threatmanager|1.0|100|detected a \\\\ in packet|10|src=10.0.0.1 "
     "act=blocked a \\\\ dst=1.1.1.1", "detected a \\ in packet",
     {"src": "10.0.0.1", "act": "blocked a \\", "dst": "1.1.1.1"}),
    ("Sep 19 08:26:10 host CEF:0|security|threatmanager|1.0|100|detected a = in message|10|src=10.0.0.1 "
     "act=blocked a \\= dst=1.1.1.1", "detected a = in message",
     {"src": "10.0.0.1", "act": "blocked a =", "dst": "1.1.1.1"}),
    ("Sep 19 08:26:10 host CEF:0|security|threatmanager|1.0|100|Detected a threat. No action needed.|10|"
     "src=10.0.0.1 msg=Detected a threat.\\n No action needed.", "Detected a threat. No action needed.",
     {"src": "10.0.0.1", "msg": "Detected a threat.\n No action needed."}),
]

_KEY = re.compile(r"(?:^| )([A-Za-z0-9_]+)=")
_VALUE_ESCAPES = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


class CefError(ValueError):
    """The line is not CEF as the specification defines it."""


@dataclass(frozen=True, slots=True)
class CefRecord:
    version: int
    header: list[str]  # vendor, product, version, event class id, name, severity (unescaped)
    extension: dict[str, str]  # unescaped values

    @property
    def severity(self) -> str:
        return self.header[5]


def parse(line: str) -> CefRecord:
    """Read one CEF record (a syslog prefix before ``CEF:`` is skipped); :class:`CefError` when it is not CEF."""
    if "\n" in line or "\r" in line:
        raise CefError("a CEF record is one line")
    start = line.find("CEF:")
    if start < 0:
        raise CefError("no CEF: prefix")
    fields, rest = _header_fields(line[start:])
    version = fields[0].removeprefix("CEF:")
    if not version.isdigit():
        raise CefError(f"version {version!r} is not a number")
    _check_severity(fields[6])
    return CefRecord(int(version), fields[1:], _extension(rest))


def _header_fields(text: str) -> tuple[list[str], str]:
    """The 7 header fields, unescaped, and the extension after the 7th unescaped pipe."""
    fields, current, index = [], [], 0
    while len(fields) < 7:
        if index >= len(text):
            raise CefError(f"the header ends after {len(fields)} of 7 fields")
        char = text[index]
        if char == "\\":
            escaped = text[index + 1:index + 2]
            if escaped not in ("\\", "|"):
                raise CefError(f"header escape \\{escaped} is not one the specification defines")
            current.append(escaped)
            index += 2
        elif char == "|":
            fields.append("".join(current))
            current, index = [], index + 1
        else:
            current.append(char)
            index += 1
    return fields, text[index:]


def _check_severity(severity: str) -> None:
    if (severity.isdigit() and 0 <= int(severity) <= 10) or severity in SEVERITY_NAMES:
        return
    raise CefError(f"severity {severity!r} is neither 0-10 nor one of {sorted(SEVERITY_NAMES)}")


def _extension(text: str) -> dict[str, str]:
    """``key=value`` pairs: a value runs up to the space before the next unescaped ``key=``."""
    starts = [m for m in _KEY.finditer(text) if not _is_escaped(text, m.end() - 1)]
    if text.strip() and (not starts or starts[0].start() != 0):
        raise CefError(f"the extension does not start with key=: {text[:40]!r}")
    extension = {}
    for match, following in zip(starts, [*starts[1:], None], strict=True):
        key = match.group(1)
        if key in extension:
            raise CefError(f"key {key} appears twice")
        extension[key] = _unescape_value(text[match.end():following.start() if following else None])
    return extension


def _is_escaped(text: str, index: int) -> bool:
    backslashes = len(text[:index]) - len(text[:index].rstrip("\\"))
    return backslashes % 2 == 1


def _unescape_value(raw: str) -> str:
    out, index = [], 0
    while index < len(raw):
        char = raw[index]
        if char == "\\":
            escaped = raw[index + 1:index + 2]
            if escaped not in _VALUE_ESCAPES:
                raise CefError(f"extension escape \\{escaped} is not one the specification defines")
            out.append(_VALUE_ESCAPES[escaped])
            index += 2
        elif char == "=":
            raise CefError(f"unescaped = in a value: {raw[:60]!r}")
        else:
            out.append(char)
            index += 1
    return "".join(out)


def dictionary_problems(record: CefRecord) -> list[str]:
    """Extension keys outside the dictionary, values that do not fit the key's type or length, and custom
    fields without their label."""
    problems = []
    for key, value in record.extension.items():
        if key not in EXTENSION_DICTIONARY:
            problems.append(f"{key}: not a key of the CEF extension dictionary")
            continue
        data_type, length = EXTENSION_DICTIONARY[key]
        if data_type in ("TimeStamp", "Long") and not re.fullmatch(r"-?\d+", value):
            problems.append(f"{key}: {value!r} is not a {data_type} (milliseconds since the epoch / integer)")
        if length and len(value) > length:
            problems.append(f"{key}: {len(value)} characters, the dictionary allows {length}")
        label = f"{key}Label"
        if label in EXTENSION_DICTIONARY and not key.endswith("Label") and label not in record.extension:
            problems.append(f"{key}: custom field without {label}")
    return problems
