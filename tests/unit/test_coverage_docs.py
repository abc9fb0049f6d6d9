"""The coverage tables (docs/coverage/*.md) stay true: every detection id they name exists in the library, every
row has a status, and the summary in docs/COVERAGE.md counts what the tables say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vigil.detections.engine import LIBRARY, load_detections

DOCS = Path(__file__).resolve().parents[2] / "docs"
COVERAGE = DOCS / "coverage"
STATUSES = ("covered", "partly", "not applicable", "missing")
STATUS = re.compile(r"^(covered|partly: .+|not applicable: .+|missing)$")
ID = re.compile(r"`([a-z0-9_]+(?:\.[a-z0-9_]+)+)`")


def _rows(table: Path) -> list[list[str]]:
    """The body rows of the table in ``table``: cells of each ``| a | b | c | d |`` line after the header rule."""
    lines = [line.strip() for line in table.read_text().splitlines() if line.strip().startswith("|")]
    body = lines[2:] if len(lines) > 1 and set(lines[1]) <= set("|-: ") else lines
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in body]


TABLES = sorted(COVERAGE.glob("*.md"))


@pytest.mark.parametrize("table", TABLES, ids=lambda path: path.stem)
def test_every_detection_a_coverage_table_names_exists(table: Path) -> None:
    loaded, errors = load_detections([LIBRARY])
    assert not errors
    known = {detection.id for detection in loaded.values()}
    rows = _rows(table)
    assert rows, f"{table.name}: no table rows"
    for rule, _what, ids, status in (row[:4] for row in rows):
        assert STATUS.match(status), f"{table.name}: {rule}: status {status!r}"
        named = ID.findall(ids)
        assert set(named) <= set(known), f"{table.name}: {rule}: unknown {sorted(set(named) - set(known))}"
        assert named or not status.startswith(("covered", "partly")), f"{table.name}: {rule}: covered by what?"


def test_the_summary_counts_what_each_table_says() -> None:
    summary = {row[1].split("(coverage/")[1].rstrip(")"): [int(n) for n in row[2:7]]
               for row in _rows(DOCS / "COVERAGE.md")}
    assert set(summary) == {table.name for table in TABLES}
    for table in TABLES:
        statuses = [row[3] for row in _rows(table)]
        counts = [sum(status.startswith(name) for status in statuses) for name in STATUSES]
        assert summary[table.name] == [len(statuses), *counts], table.name
