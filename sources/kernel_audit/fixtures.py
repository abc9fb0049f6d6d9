"""Complete ``raw.kernel-audit`` records for detection examples and tests: the kernel's own record text, parsed as
the node collector parses what it reads from the audit socket."""

from __future__ import annotations

from typing import Any

from vigil.sources.kernel_audit.records import record_from_netlink


def kernel_audit_record(type_id: int, body: str) -> dict[str, Any]:
    """The record of one kernel audit message of type ``type_id`` (1326 SECCOMP, 1400 AVC, 1500-1505 AppArmor)
    with the text ``body`` (``audit(SECONDS.MS:SERIAL): field=value ...``); raises ValueError for a type vigil
    does not keep, so an example cannot silently test nothing."""
    record = record_from_netlink(type_id, body.encode())
    if record is None:
        raise ValueError(f"audit type {type_id} is not one vigil keeps")
    return record
