"""Searching the filesystem for private keys, passwords and cloud keys with grep or find: an intruder looking for
the next credential."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

GREPS = frozenset({"grep", "egrep", "fgrep", "rg", "ag", "ack"})
FINDERS = frozenset({"find", "locate", "mlocate", "fd", "fdfind"})
#: What a search for secrets looks for: key headers, cloud key names and credential file names.
GREP_TERMS = ("begin private", "begin openssh private", "begin rsa private", "begin dsa private", "begin ec private",
              "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "accesskeyid", "secretaccesskey",
              "client_secret", "private_key_id")
FIND_TERMS = ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", ".aws/credentials", "credentials.db", "*.pem", "*.key",
              "kubeconfig", ".kube/config", "wallet.dat", ".git-credentials")


def search_target(event: Event) -> str:
    """The secret the command line searches for ('' for none)."""
    program = program_name(event)
    arguments = " ".join(event.actor.args[1:]).lower()
    terms = GREP_TERMS if program in GREPS else FIND_TERMS if program in FINDERS else ()
    return next((term for term in terms if term in arguments), "")


def search_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "tool": program_name(event), "looking_for": search_target(event),
            "command": " ".join(event.actor.args), "parent_exe": event.actor.parent_exe,
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.credential_search",
    title="Search for private keys or cloud credentials",
    alert_title="{tool} searching for {looking_for} in {where}",
    description=(
        "grep (or rg, ag) was run for private-key headers or cloud access-key names, or find (or locate) for key "
        "and credential files (id_rsa, .aws/credentials, *.pem, kubeconfig), in a container or on a node. "
        "Sweeping the filesystem for secrets is what an intruder does right after getting a shell."
    ),
    severity="medium",
    mitre=["T1552.001", "T1552.004", "T1083"],
    tags=["runtime", "credential_access", "discovery"],
    references=["https://attack.mitre.org/techniques/T1552/001/"],
    false_positives=["Secret scanners and compliance jobs (trufflehog, gitleaks wrappers) that shell out to grep."],
    kinds=["process.exec"],
    exe_names=GREPS | FINDERS,
    match=lambda event: bool(search_target(event)),
    context=search_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{tool}/{looking_for}",
    examples=[
        Example(
            name="grep for private key headers (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/bin/grep", arguments='-rl "BEGIN RSA PRIVATE" /home /root',
                                   parent="/bin/bash"),
        ),
        Example(
            name="Falco: find looking for AWS credentials on a node",
            source="falco",
            fires=True,
            record=falco_record(
                "Find AWS Credentials", "execve",
                {"proc.exepath": "/usr/bin/find", "proc.name": "find",
                 "proc.cmdline": "find / -name credentials -path *.aws/credentials"},
                host=True,
            ),
        ),
        Example(
            name="grep through application logs",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/grep", arguments="-c ERROR /var/log/app.log"),
        ),
        Example(
            name="find cleaning old files",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/find", arguments="/tmp -mtime +7 -delete"),
        ),
    ],
)
