"""RFC 3339 timestamps as exact Unix epoch nanoseconds, fast: every source's event time goes through here.

Audit logs, Tetragon and Falco all stamp events in RFC 3339 with up to nanosecond fractions. Floats would
round microseconds away and ``datetime.fromisoformat`` costs several microseconds per event, so this
parser works in integers and remembers the epoch second of recently seen prefixes.
"""

from __future__ import annotations

from datetime import date

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
#: Epoch seconds of recently seen ``YYYY-MM-DDTHH:MM:SS`` prefixes: events come roughly in time order,
#: so most share their second with an earlier one and skip the calendar arithmetic.
_second_starts: dict[str, int] = {}
_SECOND_CACHE_SIZE = 4096
#: Multiplier turning a fraction of n digits into nanoseconds.
_FRACTION_SCALE = (0, 100_000_000, 10_000_000, 1_000_000, 100_000, 10_000, 1000, 100, 10, 1)


def parse_timestamp_ns(text: str) -> int:
    """RFC 3339 time (``2025-03-04T06:22:18.819232Z``, any fraction up to ns, ``Z`` or ``±hh:mm``) as
    Unix epoch nanoseconds, in integers only: floats would round microseconds away.

    A space instead of ``T`` and a missing zone (taken as UTC) are accepted, as some exports write them.
    Raises ValueError for anything else.
    """
    seconds = _second_starts.get(text[:19])
    if seconds is None:
        seconds = _second_start(text)
    if text[-1] == "Z":
        fraction = text[19:-1]
        if not fraction:
            return seconds * 1_000_000_000
        digits = fraction[1:]
        if fraction[0] == "." and 0 < len(digits) <= 9 and digits.isascii() and digits.isdigit():
            return seconds * 1_000_000_000 + int(digits) * _FRACTION_SCALE[len(digits)]
    zone_offset, nanos = _zone_and_fraction(text)
    return (seconds - zone_offset) * 1_000_000_000 + nanos


def _second_start(text: str) -> int:
    """Epoch seconds of the date and clock time in ``text[:19]``, validated, remembered for the next call."""
    prefix = text[:19]
    digits = prefix[:4] + prefix[5:7] + prefix[8:10] + prefix[11:13] + prefix[14:16] + prefix[17:19]
    if (
        len(prefix) < 19
        or prefix[4] != "-"
        or prefix[7] != "-"
        or prefix[10] not in "Tt "
        or prefix[13] != ":"
        or prefix[16] != ":"
        or not (digits.isascii() and digits.isdigit())
    ):
        raise ValueError(f"{text[:40]!r} is not an RFC 3339 time")
    hour, minute, second = int(digits[8:10]), int(digits[10:12]), int(digits[12:])
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{text[:40]!r} has a time of day out of range")
    try:
        ordinal = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])).toordinal()
    except ValueError:
        raise ValueError(f"{text[:40]!r} has no such date") from None
    if len(_second_starts) >= _SECOND_CACHE_SIZE:
        _second_starts.clear()
    start = _second_starts[prefix] = (ordinal - _EPOCH_ORDINAL) * 86400 + hour * 3600 + minute * 60 + second
    return start


def _zone_and_fraction(text: str) -> tuple[int, int]:
    """The zone's offset east of UTC in seconds and the fractional second in ns, from after the seconds."""
    end, offset = len(text), 0
    if text[-1] in "Zz":
        end -= 1
    elif end >= 25 and text[-6] in "+-":
        zone = text[-5:-3] + text[-2:]
        if text[-3] != ":" or not (zone.isascii() and zone.isdigit()):
            raise ValueError(f"{text[:40]!r} has a malformed zone offset")
        offset = int(zone[:2]) * 3600 + int(zone[2:]) * 60
        offset = -offset if text[-6] == "-" else offset
        end -= 6
    rest = text[19:end]
    if not rest:
        return offset, 0
    digits = rest[1:]
    if rest[0] != "." or not digits or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"{text[:40]!r} is not an RFC 3339 time")
    return offset, int((digits + "00000000")[:9])
