"""LSM denials from the real kernel, read from the audit netlink multicast group, as ``kernel.lsm`` events.

These run only where the LSM is active. On the development machine neither is: SELinux is built but not
enabled and AppArmor is not built (``CONFIG_LSM`` lists neither as active), so both skip with that reason and
the parser is tested on recorded kernel audit lines in ``tests/unit/test_kernel_audit.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from vigil.collectors.kernel_audit.netlink import AuditNetlinkReader
from vigil.event import Event
from vigil.sources.kernel_audit import KERNEL_AUDIT_SOURCE
from vigil.sources.kernel_audit.records import record_from_netlink

pytestmark = pytest.mark.integration

APPARMOR = Path("/sys/kernel/security/apparmor")
SELINUX = Path("/sys/fs/selinux")


def _lsm_events(reader: AuditNetlinkReader, lsm: str, marker: str, timeout_s: float = 10.0) -> list[Event]:
    """The ``kernel.lsm`` events of ``lsm`` about a path containing ``marker`` read within ``timeout_s``."""
    found: list[Event] = []
    deadline = time.monotonic() + timeout_s
    while not found and time.monotonic() < deadline:
        for type_id, body in reader.read(timeout_s=0.5):
            record = record_from_netlink(type_id, body)
            if record is None:
                continue
            event = KERNEL_AUDIT_SOURCE.normalize(record, "c1", "node-a")
            if event.kind == "kernel.lsm" and event.action == lsm and marker in event.target.path:
                found.append(event)
    return found


@pytest.fixture
def audit_reader():
    reader = AuditNetlinkReader()
    try:
        reader.open()
    except OSError as exc:
        pytest.skip(f"joining the audit netlink multicast group failed: {exc}")
    yield reader
    reader.close()


def test_an_apparmor_denial_arrives_as_a_kernel_lsm_event(audit_reader, tmp_path):
    if not (APPARMOR / "profiles").exists():
        pytest.skip("AppArmor is not active on this kernel (no /sys/kernel/security/apparmor): its parser is "
                    "tested on recorded kernel audit lines in tests/unit/test_kernel_audit.py")
    if not shutil.which("apparmor_parser"):
        pytest.skip("apparmor_parser is not installed (scripts/setup.sh installs it)")
    secret = tmp_path / f"vigil-secret-{uuid.uuid4().hex[:8]}"
    secret.write_text("s3cret\n")
    profile = f"vigil-test-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "profile"
    source.write_text(f"profile {profile} {{\n  /** rwixm,\n  capability,\n  network,\n  deny {secret} r,\n}}\n")
    subprocess.run(["apparmor_parser", "-r", str(source)], check=True, capture_output=True, timeout=60)
    try:
        # AppArmor's change_onexec: the shell asks to run its next program confined by the profile.
        cat = subprocess.run(["sh", "-c", f"echo exec {profile} > /proc/self/attr/exec && exec cat {secret}"],
                             capture_output=True, text=True, timeout=30)
        assert cat.returncode != 0, "the profile did not deny the read"
        events = _lsm_events(audit_reader, "apparmor", secret.name)
    finally:
        subprocess.run(["apparmor_parser", "-R", str(source)], capture_output=True, timeout=60)
    assert events, "no AppArmor record of the denied read arrived"
    event = events[0]
    assert (event.outcome.result, event.target.path, event.target.resource) == ("denied", str(secret), "file")
    assert "read" in event.target.name and profile in event.outcome.reason and event.actor.exe.endswith("cat")


def test_an_selinux_denial_arrives_as_a_kernel_lsm_event(audit_reader, tmp_path):
    if not (SELINUX / "enforce").exists() or SELINUX.joinpath("enforce").read_text().strip() != "1":
        pytest.skip("SELinux is not enforcing on this kernel (/sys/fs/selinux/enforce is absent or 0): "
                    "its parser is tested on recorded AVC lines in tests/unit/test_kernel_audit.py")
    if not (shutil.which("runcon") and shutil.which("chcon")):
        pytest.skip("runcon/chcon (coreutils with SELinux) are not installed")
    secret = tmp_path / f"vigil-secret-{uuid.uuid4().hex[:8]}"
    secret.write_text("s3cret\n")
    # container_t (container-selinux's type for containers) may not read shadow_t in the targeted policy.
    labelled = subprocess.run(["chcon", "-t", "shadow_t", str(secret)], capture_output=True, text=True, timeout=30)
    if labelled.returncode:
        pytest.skip(f"the policy has no shadow_t type: {labelled.stderr.strip()}")
    cat = subprocess.run(["runcon", "-t", "container_t", "cat", str(secret)], capture_output=True, text=True,
                         timeout=30)
    if "Invalid argument" in cat.stderr:
        pytest.skip(f"the policy has no container_t type (container-selinux not installed): {cat.stderr.strip()}")
    assert cat.returncode != 0, "the policy let container_t read shadow_t"
    events = _lsm_events(audit_reader, "selinux", secret.name)
    assert events, "no AVC record of the denied read arrived"
    event = events[0]
    assert (event.outcome.result, event.target.resource) == ("denied", "file")
    assert "read" in event.target.name and "container_t" in event.outcome.reason
