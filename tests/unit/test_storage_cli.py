"""``vigil query`` and ``vigil storage``: output formats and error handling, on the embedded engine (chdb)."""

from __future__ import annotations

import argparse
import csv
import io
import uuid
from collections.abc import Iterator

import orjson
import pytest

from vigil.config import ClickHouseSettings, Settings
from vigil.event import Event, K8sContext
from vigil.storage import cli
from vigil.storage.clickhouse import connect
from vigil.storage.schema import migrate

T0 = 1_700_000_000_123_456_789


@pytest.fixture
def settings() -> Iterator[Settings]:
    settings = Settings(clickhouse=ClickHouseSettings(url="chdb://memory", database=f"cli_{uuid.uuid4().hex[:12]}"))
    # The in-memory engine lives while a client is open; this one keeps it alive across the commands' own.
    store = connect(settings.clickhouse)
    yield settings
    store.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": settings.clickhouse.database})
    store.close()


@pytest.fixture
def stored(settings: Settings) -> Settings:
    store = connect(settings.clickhouse)
    migrate(store)
    events = [
        Event(id="e1", time_ns=T0, source="k8s-audit", kind="k8s.api", action="create",
              k8s=K8sContext(namespace="payments", pod="api-1", labels={"app": "api"}), raw={"line": "a\nb"}),
        Event(id="e2", time_ns=T0 + 1, source="k8s-audit", kind="k8s.api", action="delete",
              k8s=K8sContext(namespace="kube-system", pod="dns-0")),
    ]
    store.insert_events(events, "cli-test")
    store.close()
    return settings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def run(settings: Settings, *argv: str) -> int:
    args = parse(*argv)
    return args.func(args, settings)


def test_query_table_output_is_aligned(stored: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(stored, "query", "SELECT event_id, namespace, toUInt32(length(pod)) AS n, time, raw "
                                "FROM events ORDER BY event_id;") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["event_id", "namespace", "n", "time", "raw"]
    assert lines[-1] == "(2 rows)"
    assert set(lines[1]) == {"-", " "}
    body = lines[2:4]
    assert body[0].startswith("e1        payments     ")
    assert "2023-11-14 22:13:20.123456789" in body[0]  # nanoseconds as ClickHouse prints them
    assert '{"line":"a\\nb"}' in body[0]  # one line per row: the newline is shown escaped
    assert body[0].index("22:13") == body[1].index("22:13")  # columns line up
    assert body[0].split()[2] == "5" and body[1].split()[2] == "5"


def test_query_json_is_one_object_per_line(stored: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(stored, "query", "SELECT event_id, labels, count() OVER () AS total FROM events ORDER BY event_id",
               "--format", "json")
    assert code == 0
    rows = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == [{"event_id": "e1", "labels": {"app": "api"}, "total": 2},
                    {"event_id": "e2", "labels": {}, "total": 2}]


def test_query_csv_has_header(stored: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(stored, "query", "SELECT event_id, action FROM events ORDER BY event_id", "--format", "csv") == 0
    assert list(csv.reader(io.StringIO(capsys.readouterr().out))) == [
        ["event_id", "action"], ["e1", "create"], ["e2", "delete"]
    ]


def test_query_parameters_are_bound(stored: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT event_id FROM events WHERE namespace = {ns:String} OR event_id IN {ids:Array(String)}"
    assert run(stored, "query", sql, "--param", "ns=payments' OR '1'='1", "--param", "ids=['e2']",
               "--format", "csv") == 0
    assert capsys.readouterr().out.splitlines() == ['"event_id"', '"e2"']


@pytest.mark.parametrize(
    ("sql", "message"),
    [("SELEC 1", "SYNTAX_ERROR"), ("SELECT * FROM no_such_table", "UNKNOWN_TABLE")],
)
def test_query_error_prints_clickhouse_message_and_exits_1(
    stored: Settings, capsys: pytest.CaptureFixture[str], sql: str, message: str
) -> None:
    assert run(stored, "query", sql) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("vigil query: Code: ") and message in captured.err
    assert "Traceback" not in captured.err


def test_migrate_then_status(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(settings, "storage", "status") == 0
    assert "pending" in capsys.readouterr().out
    assert run(settings, "storage", "migrate") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["applied migrations: 1, 2, 3, 4, 5", "events retention: forever"]
    assert out[2].startswith("roles: not created, the server does not allow it (Code: 497.")  # chdb: no access control
    assert run(settings, "storage", "migrate") == 0
    assert capsys.readouterr().out.splitlines()[0] == "schema is up to date"
    assert run(settings, "storage", "status") == 0
    status = capsys.readouterr().out
    assert "events and alerts tables" in status and "pending" not in status


def test_format_table_truncates_and_right_aligns_numbers() -> None:
    text = cli.format_table(["name", "n", "note"], [["a", 5, "x" * 100], ["bbb", 1234, None]], max_width=10)
    assert text.splitlines() == [
        "name     n  note",
        "----  ----  ----------",
        "a        5  xxxxxxxxx…",
        "bbb   1234  NULL",
        "(2 rows)",
    ]


def test_format_table_of_no_rows() -> None:
    assert cli.format_table(["a"], []).splitlines() == ["a", "-", "(0 rows)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ns=default", ("ns", "default")),
        ("q=a=b", ("q", "a=b")),
        ("ids=['a', 'b']", ("ids", ["a", "b"])),
        ("m={'k': 'v'}", ("m", {"k": "v"})),
        ("s=[not a literal", ("s", "[not a literal")),
        ("s='quoted'", ("s", "'quoted'")),
    ],
)
def test_parse_param(text: str, expected: tuple[str, object]) -> None:
    assert cli.parse_param(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=x"])
def test_parse_param_refuses_malformed(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_param(text)
