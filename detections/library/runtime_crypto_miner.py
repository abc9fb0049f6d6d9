"""Cryptocurrency mining: a known miner, a stratum pool URL, or a container connecting to a pool port."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

MINERS = frozenset({
    "xmrig", "xmr-stak", "xmr-stak-cpu", "minerd", "cpuminer", "cpuminer-multi", "ethminer", "t-rex", "nbminer",
    "lolminer", "phoenixminer", "ccminer", "cgminer", "bfgminer", "nanominer", "srbminer", "srbminer-multi",
    "teamredminer", "gminer", "kawpowminer", "xmrigdaemon",
})
#: Arguments only miners take: pool protocols and miner options.
MINER_ARGUMENTS = ("stratum+tcp://", "stratum+ssl://", "stratum2+tcp://", "stratum+tls://", "--donate-level",
                   "--randomx", "cryptonight", "--coin=monero", "--coin monero")
#: Ports mining pools listen on by convention (Monero and Ethereum pools above all).
POOL_PORTS = frozenset({3333, 4444, 5555, 7777, 14444, 14433, 45700})


def miner_indicator(event: Event) -> str:
    """What marks the event as mining ('' for nothing)."""
    if event.kind == "net.connect":
        port = event.network.remote_port
        if (event.k8s.container_id or event.container.id) and port in POOL_PORTS:
            return f"connection to pool port {port}"
        return ""
    program = program_name(event).lower()
    if program in MINERS:
        return f"miner program {program}"
    command = " ".join(event.actor.args).lower()
    return next((f"miner argument {marker}" for marker in MINER_ARGUMENTS if marker in command), "")


def miner_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "indicator": miner_indicator(event), "command": " ".join(event.actor.args),
            "peer": f"{event.target.address}:{event.target.port}" if event.target.address else "",
            "container": event.k8s.container_name, "image": event.k8s.image, "node": event.node}


DETECTION = EventDetection(
    id="runtime.crypto_miner",
    title="Cryptocurrency miner",
    alert_title="Crypto mining in {namespace}/{pod} on {node}: {indicator}",
    description=(
        "A known mining program ran, a process was started with a mining pool URL (stratum) or miner options, "
        "or a container connected to a port mining pools use (3333, 4444, 5555, 7777, 14444). Miners are the "
        "most common payload of compromised clusters: they burn the nodes' CPU on the owner's bill."
    ),
    severity="high",
    mitre=["T1496"],
    tags=["runtime", "impact", "cryptomining"],
    references=["https://attack.mitre.org/techniques/T1496/", "https://falco.org/docs/rules/default-rules/"],
    false_positives=["Applications that legitimately use one of the pool ports (e.g. 5555 for adb, 7777 for games)."],
    kinds=["process.exec", "net.connect"],
    remote_ports={"net.connect": POOL_PORTS},
    match=lambda event: bool(miner_indicator(event)),
    context=miner_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{exe}",
    examples=[
        Example(
            name="xmrig in a pod (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/tmp/.x/xmrig", arguments="-o pool.minexmr.com:443 -u 4A... -k --tls",
                                   parent="/bin/sh"),
        ),
        Example(
            name="renamed miner with a stratum URL (Falco)",
            source="falco",
            fires=True,
            record=falco_record(
                "Detect crypto miners using the Stratum protocol", "execve",
                {"proc.exepath": "/usr/local/bin/kworker", "proc.name": "kworker",
                 "proc.cmdline": "kworker -o stratum+tcp://xmr.pool.example:3333 -u wallet -p x"},
                priority="Critical",
            ),
        ),
        Example(
            name="container connecting to a pool port (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_connect", binary="/usr/bin/python3", arguments="job.py",
                body={"source_ip": "10.88.0.7", "source_port": 40112, "destination_ip": "198.51.100.20",
                      "destination_port": 14444, "protocol": "TCP"},
            ),
        ),
        Example(
            name="container connecting to PostgreSQL",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_connect", binary="/usr/bin/python3", arguments="app.py",
                body={"source_ip": "10.88.0.7", "source_port": 40113, "destination_ip": "10.96.0.30",
                      "destination_port": 5432, "protocol": "TCP"},
            ),
        ),
        Example(
            name="the web server",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/sbin/nginx", arguments="-g daemon off;", container_pid=1),
        ),
    ],
)
