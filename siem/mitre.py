"""MITRE ATT&CK names for the technique ids detections carry, so SIEM documents can say what they mean.

Detections name techniques by id only (``T1609``, ``T1611.001``). OCSF's ``attacks`` and ECS's
``threat.*`` want the technique's name and the tactics it belongs to as well; analysts filter on tactic.
This table covers the Enterprise ATT&CK techniques that apply to containers, Kubernetes and Linux hosts
(ATT&CK v15). A technique missing here is still forwarded, by id alone: nothing is dropped for lack of a name.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ATT&CK version the names below were taken from (OCSF ``attack.version``).
ATTACK_VERSION = "15.1"

TACTICS: dict[str, str] = {
    "TA0001": "Initial Access",
    "TA0002": "Execution",
    "TA0003": "Persistence",
    "TA0004": "Privilege Escalation",
    "TA0005": "Defense Evasion",
    "TA0006": "Credential Access",
    "TA0007": "Discovery",
    "TA0008": "Lateral Movement",
    "TA0009": "Collection",
    "TA0010": "Exfiltration",
    "TA0011": "Command and Control",
    "TA0040": "Impact",
}

#: technique id → (name, tactic ids). Sub-techniques take their parent's tactics.
TECHNIQUES: dict[str, tuple[str, tuple[str, ...]]] = {
    "T1003": ("OS Credential Dumping", ("TA0006",)),
    "T1003.008": ("/etc/passwd and /etc/shadow", ("TA0006",)),
    "T1014": ("Rootkit", ("TA0005",)),
    "T1021.004": ("SSH", ("TA0008",)),
    "T1027": ("Obfuscated Files or Information", ("TA0005",)),
    "T1036": ("Masquerading", ("TA0005",)),
    "T1036.005": ("Match Legitimate Name or Location", ("TA0005",)),
    "T1041": ("Exfiltration Over C2 Channel", ("TA0010",)),
    "T1046": ("Network Service Discovery", ("TA0007",)),
    "T1053.003": ("Cron", ("TA0002", "TA0003", "TA0004")),
    "T1053.007": ("Container Orchestration Job", ("TA0002", "TA0003", "TA0004")),
    "T1055": ("Process Injection", ("TA0005", "TA0004")),
    "T1055.008": ("Ptrace System Calls", ("TA0005", "TA0004")),
    "T1059": ("Command and Scripting Interpreter", ("TA0002",)),
    "T1059.004": ("Unix Shell", ("TA0002",)),
    "T1068": ("Exploitation for Privilege Escalation", ("TA0004",)),
    "T1069": ("Permission Groups Discovery", ("TA0007",)),
    "T1070": ("Indicator Removal", ("TA0005",)),
    "T1071": ("Application Layer Protocol", ("TA0011",)),
    "T1078": ("Valid Accounts", ("TA0005", "TA0003", "TA0004", "TA0001")),
    "T1078.001": ("Default Accounts", ("TA0005", "TA0003", "TA0004", "TA0001")),
    "T1078.004": ("Cloud Accounts", ("TA0005", "TA0003", "TA0004", "TA0001")),
    "T1087": ("Account Discovery", ("TA0007",)),
    "T1090": ("Proxy", ("TA0011",)),
    "T1095": ("Non-Application Layer Protocol", ("TA0011",)),
    "T1098": ("Account Manipulation", ("TA0003", "TA0004")),
    "T1098.004": ("SSH Authorized Keys", ("TA0003", "TA0004")),
    "T1098.006": ("Additional Container Cluster Roles", ("TA0003", "TA0004")),
    "T1105": ("Ingress Tool Transfer", ("TA0011",)),
    "T1133": ("External Remote Services", ("TA0003", "TA0001")),
    "T1136": ("Create Account", ("TA0003",)),
    "T1136.001": ("Local Account", ("TA0003",)),
    "T1190": ("Exploit Public-Facing Application", ("TA0001",)),
    "T1204.003": ("Malicious Image", ("TA0002",)),
    "T1222": ("File and Directory Permissions Modification", ("TA0005",)),
    "T1484": ("Domain or Tenant Policy Modification", ("TA0005", "TA0004")),
    "T1485": ("Data Destruction", ("TA0040",)),
    "T1489": ("Service Stop", ("TA0040",)),
    "T1496": ("Resource Hijacking", ("TA0040",)),
    "T1499": ("Endpoint Denial of Service", ("TA0040",)),
    "T1525": ("Implant Internal Image", ("TA0003",)),
    "T1526": ("Cloud Service Discovery", ("TA0007",)),
    "T1528": ("Steal Application Access Token", ("TA0006",)),
    "T1543": ("Create or Modify System Process", ("TA0003", "TA0004")),
    "T1543.005": ("Container Service", ("TA0003", "TA0004")),
    "T1546": ("Event Triggered Execution", ("TA0004", "TA0003")),
    "T1547.006": ("Kernel Modules and Extensions", ("TA0003", "TA0004")),
    "T1548": ("Abuse Elevation Control Mechanism", ("TA0004", "TA0005")),
    "T1550": ("Use Alternate Authentication Material", ("TA0005", "TA0008")),
    "T1550.001": ("Application Access Token", ("TA0005", "TA0008")),
    "T1552": ("Unsecured Credentials", ("TA0006",)),
    "T1552.001": ("Credentials In Files", ("TA0006",)),
    "T1552.007": ("Container API", ("TA0006",)),
    "T1555": ("Credentials from Password Stores", ("TA0006",)),
    "T1562": ("Impair Defenses", ("TA0005",)),
    "T1562.001": ("Disable or Modify Tools", ("TA0005",)),
    "T1571": ("Non-Standard Port", ("TA0011",)),
    "T1572": ("Protocol Tunneling", ("TA0011",)),
    "T1574": ("Hijack Execution Flow", ("TA0003", "TA0004", "TA0005")),
    "T1574.006": ("Dynamic Linker Hijacking", ("TA0003", "TA0004", "TA0005")),
    "T1599": ("Network Boundary Bridging", ("TA0005",)),
    "T1609": ("Container Administration Command", ("TA0002",)),
    "T1610": ("Deploy Container", ("TA0005", "TA0002")),
    "T1611": ("Escape to Host", ("TA0004",)),
    "T1612": ("Build Image on Host", ("TA0005",)),
    "T1613": ("Container and Resource Discovery", ("TA0007",)),
    "T1620": ("Reflective Code Loading", ("TA0005",)),
    "T1649": ("Steal or Forge Authentication Certificates", ("TA0006",)),
}


@dataclass(frozen=True, slots=True)
class Technique:
    """One technique id resolved: ``parent`` is set for a sub-technique (``T1552.007`` → ``T1552``)."""

    id: str
    name: str  # empty when the id is not in the table
    parent: str
    tactics: tuple[tuple[str, str], ...]  # (tactic id, tactic name)

    @property
    def is_sub_technique(self) -> bool:
        return bool(self.parent)


def technique(technique_id: str) -> Technique:
    parent = technique_id.split(".", 1)[0] if "." in technique_id else ""
    name, tactic_ids = TECHNIQUES.get(technique_id) or ("", TECHNIQUES.get(parent, ("", ()))[1])
    return Technique(technique_id, name, parent, tuple((t, TACTICS[t]) for t in tactic_ids))
