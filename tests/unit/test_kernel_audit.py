"""Kernel audit records: parsing the kernel's text (netlink and audit.log forms), refusing what is not, and the
mapping into ``kernel.seccomp`` / ``kernel.lsm`` / ``process.exit``.

SECCOMP lines are the kernel's own, captured on this project's machine (kernel 6.18) through the audit
netlink multicast group. SELinux and AppArmor are not active on this kernel (SELinux compiled but not
enabled, AppArmor not built), so their lines are recorded ones from public documentation, cited where used.
"""

from __future__ import annotations

import orjson
import pytest

from vigil.sources.health import HEALTH_RECORD_KIND
from vigil.sources.kernel_audit import KERNEL_AUDIT_SOURCE
from vigil.sources.kernel_audit.normalize import is_decision
from vigil.sources.kernel_audit.records import MAX_RECORD_BYTES, parse_fields, record_from_log_line, record_from_netlink
from vigil.sources.source import RecordRejected, Rejected

# Captured here: RET_ERRNO with SECCOMP_FILTER_FLAG_LOG (the kernel logs the action, 0x50000, not the errno),
# RET_KILL_PROCESS from runc applying a pod's Localhost profile, and RET_LOG.
SECCOMP_ERRNO = (b'audit(1795712736.005:2): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=27361 comm="python3" '
                 b'exe="/root/.pyenv/versions/3.11.7/bin/python3.11" sig=0 arch=c000003e syscall=83 compat=0 '
                 b'ip=0x7f8d6e6b4f37 code=0x50000')
SECCOMP_KILL = (b'audit(1795712893.101:71949): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=30733 comm="busybox" '
                b'exe="/bin/busybox" sig=31 arch=c000003e syscall=83 compat=0 ip=0x47b567 code=0x80000000')
SECCOMP_LOG = (b'audit(1795712780.097:71933): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=28601 comm="true" '
               b'exe="/bin/busybox" sig=0 arch=c000003e syscall=12 compat=0 ip=0x49641b code=0x7ffc0000')
# Red Hat Enterprise Linux 6 "Security-Enhanced Linux" guide, 8.3.6 "Raw Audit Messages" (an httpd denial).
SELINUX_AVC = (b'type=AVC msg=audit(1226874073.147:96): avc:  denied  { getattr } for  pid=2465 comm="httpd" '
               b'path="/var/www/html/file1" dev=dm-0 ino=284133 scontext=unconfined_u:system_r:httpd_t:s0 '
               b'tcontext=unconfined_u:object_r:samba_share_t:s0 tclass=file')
# The AppArmor denial as Ubuntu's kernel logs it (type 1400; e.g. oneuptime.com "Debug AppArmor denials in the
# system log on Ubuntu"), and its capability and network forms (Ubuntu wiki "DebuggingApparmor").
APPARMOR_FILE = (b'type=AVC msg=audit(1709000000.123:456): apparmor="DENIED" operation="open" profile="/usr/bin/myapp" '
                 b'name="/etc/shadow" pid=1234 comm="myapp" requested_mask="r" denied_mask="r" fsuid=1000 ouid=0')
APPARMOR_CAPABILITY = (b'type=AVC msg=audit(1431116353.523:77): apparmor="DENIED" operation="capable" '
                       b'profile="/usr/sbin/cupsd" pid=1317 comm="cupsd" capability=12  capname="net_admin"')
APPARMOR_NETWORK = (b'type=AVC msg=audit(1431116353.600:78): apparmor="ALLOWED" operation="create" '
                    b'profile="/usr/sbin/ntpd" pid=1412 comm="ntpd" family="inet6" sock_type="dgram" protocol=17 '
                    b'requested_mask="create" denied_mask="create"')
APPARMOR_STATUS = (b'type=AVC msg=audit(1431116300.001:70): apparmor="STATUS" operation="profile_load" '
                   b'profile="unconfined" name="/usr/sbin/cupsd" pid=1200 comm="apparmor_parser"')
# Red Hat Enterprise Linux 7 "Security Guide", 7.6 "Understanding the Audit Log Files" record types (ANOM_ABEND).
ANOM_ABEND = (b'type=ANOM_ABEND msg=audit(1364481363.243:24287): auid=1000 uid=1000 gid=1000 ses=1 '
              b'subj=unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023 pid=2837 comm="crasher" '
              b'exe="/usr/local/bin/crasher" sig=11 res=1')


def _event(record):
    return KERNEL_AUDIT_SOURCE.normalize(record, "prod", "node-a")


def _one(line: bytes):
    items = list(KERNEL_AUDIT_SOURCE.split(line, 1 << 20))
    assert len(items) == 1, items
    return items[0]


# -- parsing ------------------------------------------------------------------------------------------------

def test_a_netlink_seccomp_record_keeps_the_kernel_fields_and_line():
    record = record_from_netlink(1326, SECCOMP_ERRNO + b"\0")
    assert (record["type"], record["type_id"], record["serial"]) == ("SECCOMP", 1326, 2)
    assert record["time_ns"] == 1795712736_005_000_000
    assert record["fields"]["exe"] == "/root/.pyenv/versions/3.11.7/bin/python3.11"
    assert (record["fields"]["arch"], record["fields"]["syscall"], record["fields"]["code"]) == ("c000003e", "83",
                                                                                                 "0x50000")
    assert record["line"] == SECCOMP_ERRNO.decode()


def test_types_vigil_does_not_map_are_skipped_not_refused():
    assert record_from_netlink(1300, b"audit(1.000:1): arch=c000003e syscall=59") is None  # SYSCALL
    assert record_from_log_line(b"type=SYSCALL msg=audit(1.000:1): arch=c000003e syscall=59") is None
    assert list(KERNEL_AUDIT_SOURCE.split(b"type=USER_LOGIN msg=audit(1.000:2): pid=1 uid=0", 1 << 20)) == []
    assert list(KERNEL_AUDIT_SOURCE.split(b"   \n", 1 << 20)) == []


def test_an_audit_log_line_parses_like_its_netlink_record_with_auditds_node_and_enrichment():
    enriched = b'\x1dAUID="unset" UID="root" ARCH=x86_64 SYSCALL=mkdir\n'
    line = b"node=worker-3 type=SECCOMP msg=" + SECCOMP_KILL + enriched
    record = _one(line)
    assert record["node"] == "worker-3" and record["fields"] == record_from_netlink(1326, SECCOMP_KILL)["fields"]
    assert "AUID" not in record["fields"] and "SYSCALL" not in record["fields"]


def test_hex_encoded_untrusted_strings_are_decoded_and_quoted_ones_kept():
    fields = parse_fields('pid=7 comm=6D7920617070 exe="/bin/a b" name=2F746D702F782079 key=(null) res=1')
    assert (fields["comm"], fields["exe"], fields["name"]) == ("my app", "/bin/a b", "/tmp/x y")
    assert (fields["key"], fields["res"]) == ("(null)", "1")
    assert parse_fields("pid=12 ses=ABCD")["ses"] == "ABCD"  # not an untrusted string: left as written


def test_an_selinux_avc_prefix_becomes_fields():
    fields = _one(SELINUX_AVC)["fields"]
    assert (fields["avc"], fields["permissions"], fields["tclass"]) == ("denied", "getattr", "file")
    assert parse_fields("avc:  granted  { read  write } for  pid=1 tclass=file")["permissions"] == "read write"


@pytest.mark.parametrize(("line", "reason"), [
    (b"garbage", "not_audit"),
    (b"type=SECCOMP msg=audit(x): pid=1", "not_audit"),
    (b"type=SECCOMP msg=audit(0.000:1): pid=1", "missing_field"),
    (b"type=SECCOMP msg=audit(1795712736.005:2): pid=\xff\xfe", "invalid_utf8"),
    (b"type=SECCOMP msg=" + SECCOMP_ERRNO + b" x=" + b"A" * MAX_RECORD_BYTES, "too_large"),
])
def test_lines_that_are_not_kernel_records_are_refused_with_their_bytes(line, reason):
    refused = _one(line)
    assert isinstance(refused, Rejected) and refused.reason == reason and refused.raw == line


def test_hostile_bodies_parse_to_strings_without_raising():
    body = 'audit(1795712736.005:3): comm="unterminated pid=1 ' + "k=v " * 2000 + '{ } = == "" \\x00 \x1b[31m'
    record = record_from_netlink(1326, body.encode())
    assert all(isinstance(value, str) for value in record["fields"].values())
    with pytest.raises(RecordRejected) as refused:
        _event(record)  # no code, arch or syscall worth the name
    assert refused.value.reason == "missing_field"


# -- kernel.seccomp ----------------------------------------------------------------------------------------

def test_an_errno_verdict_is_a_denial_named_by_syscall():
    event = _event(record_from_netlink(1326, SECCOMP_ERRNO))
    assert (event.kind, event.action, event.source) == ("kernel.seccomp", "errno", "kernel-audit")
    assert (event.target.name, event.outcome.result, event.outcome.code) == ("mkdir", "denied", 83)
    assert event.outcome.reason == "seccomp errno on mkdir"
    assert (event.actor.pid, event.actor.uid, event.actor.gid) == (27361, 0, 0)
    assert event.original_id == "audit(1795712736.005:2)" and event.time_ns == 1795712736_005_000_000
    assert event.raw["line"] == SECCOMP_ERRNO.decode()


def test_a_kill_verdict_names_its_signal_and_a_log_verdict_is_a_success():
    kill = _event(record_from_netlink(1326, SECCOMP_KILL))
    assert (kill.action, kill.outcome.result, kill.outcome.reason) == (
        "kill_process", "denied", "seccomp kill_process (SIGSYS) on mkdir")
    logged = _event(record_from_netlink(1326, SECCOMP_LOG))
    assert (logged.action, logged.target.name, logged.outcome.result) == ("log", "brk", "success")


@pytest.mark.parametrize(("code", "action", "result"), [
    ("0x0", "kill_thread", "denied"), ("0x30000", "trap", "denied"), ("0x50001", "errno", "denied"),
    ("0x7fc00000", "user_notif", "denied"), ("0x7ff00000", "trace", "denied"), ("0x7ffc0000", "log", "success"),
])
def test_every_seccomp_action_maps_to_the_contracts_verdict(code, action, result):
    body = SECCOMP_ERRNO.replace(b"code=0x50000", f"code={code}".encode())
    event = _event(record_from_netlink(1326, body))
    assert (event.action, event.outcome.result) == (action, result)
    if action == "errno":
        assert event.outcome.reason == "seccomp errno 1 (EPERM) on mkdir"  # when a kernel does log the value


def test_unknown_seccomp_actions_and_incomplete_records_are_refused():
    for body, reason in ((SECCOMP_ERRNO.replace(b"code=0x50000", b"code=0x12340000"), "wrong_kind"),
                         (SECCOMP_ERRNO.replace(b" code=0x50000", b""), "missing_field"),
                         (SECCOMP_ERRNO.replace(b"syscall=83", b"syscall=eighty"), "missing_field")):
        with pytest.raises(RecordRejected) as refused:
            _event(record_from_netlink(1326, body))
        assert refused.value.reason == reason


def test_syscalls_are_named_for_the_records_architecture():
    for arch, number, name in ((b"c00000b7", b"34", "mkdirat"), (b"c00000b7", b"83", "fdatasync"),
                               (b"40000003", b"39", "mkdir"), (b"c000003e", b"99999", "syscall_99999"),
                               (b"12345678", b"83", "syscall_83")):
        body = SECCOMP_ERRNO.replace(b"arch=c000003e", b"arch=" + arch).replace(b"syscall=83", b"syscall=" + number)
        assert _event(record_from_netlink(1326, body)).target.name == name


# -- kernel.lsm --------------------------------------------------------------------------------------------

def test_an_selinux_denial():
    event = _event(_one(SELINUX_AVC))
    assert (event.kind, event.action) == ("kernel.lsm", "selinux")
    assert (event.target.path, event.target.name, event.target.resource) == ("/var/www/html/file1", "getattr", "file")
    assert event.outcome.result == "denied"
    assert event.outcome.reason == ("scontext=unconfined_u:system_r:httpd_t:s0 "
                                    "tcontext=unconfined_u:object_r:samba_share_t:s0")
    assert (event.actor.pid, event.actor.exe, event.actor.uid) == (2465, "httpd", -1)


def test_a_permissive_selinux_denial_says_so():
    event = _event(_one(SELINUX_AVC.replace(b"tclass=file", b"tclass=file permissive=1")))
    assert event.outcome.result == "denied" and event.outcome.reason.endswith(" permissive=1")


def test_apparmor_file_capability_and_network_decisions():
    file = _event(_one(APPARMOR_FILE))
    assert (file.action, file.target.path, file.target.name, file.target.resource) == (
        "apparmor", "/etc/shadow", "read", "file")
    assert (file.outcome.result, file.outcome.reason) == ("denied", "profile=/usr/bin/myapp operation=open")
    capability = _event(_one(APPARMOR_CAPABILITY))
    assert (capability.target.name, capability.target.resource, capability.outcome.result) == (
        "net_admin", "capability", "denied")
    network = _event(_one(APPARMOR_NETWORK))
    assert (network.target.name, network.target.resource, network.outcome.result) == ("create", "network", "success")


def test_typed_apparmor_records_of_older_kernels_take_the_decision_from_their_type():
    line = (b'type=APPARMOR_DENIED msg=audit(1238704406.145:27): operation="inode_permission" requested_mask="rw" '
            b'denied_mask="w" fsuid=0 name="/etc/passwd" pid=5120 profile="/usr/sbin/cupsd"')
    event = _event(_one(line))
    assert (event.outcome.result, event.target.name, event.target.path) == ("denied", "read write", "/etc/passwd")


def test_apparmor_status_records_are_no_decision():
    assert list(KERNEL_AUDIT_SOURCE.split(APPARMOR_STATUS, 1 << 20)) == []
    record = record_from_log_line(APPARMOR_STATUS)
    assert not is_decision(record)
    with pytest.raises(RecordRejected):
        _event(record)


# -- ANOM_ABEND ---------------------------------------------------------------------------------------------

def test_a_core_dumping_crash_is_a_failed_process_exit():
    event = _event(_one(ANOM_ABEND))
    assert (event.kind, event.action, event.outcome.result, event.outcome.code) == (
        "process.exit", "crash", "failure", 11)
    assert event.outcome.reason == "killed by signal 11 (SIGSEGV), core dumped"
    assert (event.actor.pid, event.actor.uid, event.actor.exe) == (2837, 1000, "/usr/local/bin/crasher")


# -- the wire format, context and key -----------------------------------------------------------------------

def test_node_records_carry_their_pod_and_share_its_key():
    record = record_from_netlink(1326, SECCOMP_ERRNO)
    record |= {"container_id": "c" * 64, "node": "node-b", "k8s": {
        "namespace": "shop", "pod": "web-1", "pod_uid": "u", "container_id": "c" * 64, "container_name": "main",
        "image": "img", "service_account": "", "labels": {"app": "web"}}}
    records = list(KERNEL_AUDIT_SOURCE.split(orjson.dumps([record, {"type": "SECCOMP"}, 7]), 1 << 20))
    assert records[0] == record and [r.reason for r in records[1:]] == ["missing_field", "wrong_kind"]
    event = _event(record)
    assert (event.k8s.namespace, event.k8s.pod, event.k8s.labels, event.node) == ("shop", "web-1", {"app": "web"},
                                                                                  "node-b")
    assert KERNEL_AUDIT_SOURCE.key(record, "prod") == event.correlation_key == "prod/shop/web-1"


def test_a_record_without_a_resolved_pod_keeps_its_container_id():
    record = record_from_netlink(1326, SECCOMP_KILL) | {"container_id": "d" * 64}
    event = _event(record)
    assert event.k8s.container_id == "d" * 64 and event.k8s.pod == ""
    assert KERNEL_AUDIT_SOURCE.key(record, "prod") == event.correlation_key


def test_a_host_process_keys_by_its_node():
    record = record_from_netlink(1326, SECCOMP_KILL) | {"node": "worker-7"}
    event = _event(record)
    assert event.actor.user == "node:worker-7"
    assert KERNEL_AUDIT_SOURCE.key(record, "prod") == event.correlation_key == "prod/~node:worker-7"


def test_the_same_record_always_gets_the_same_event_id():
    record = record_from_netlink(1326, SECCOMP_ERRNO)
    assert _event(record).id == _event(dict(record)).id != _event(record_from_netlink(1326, SECCOMP_KILL)).id


def test_health_records_travel_on_the_kernel_audit_topic():
    health = {"kind": HEALTH_RECORD_KIND, "source": "kernel-audit", "node": "node-a", "component": "node-collector",
              "dropped": 12, "reasons": {"socket_overflow": 12}, "since_ns": 1, "time_ns": 2}
    [record] = KERNEL_AUDIT_SOURCE.split(orjson.dumps([health]), 1 << 20)
    event = _event(record)
    assert (event.kind, event.outcome.code) == ("collector.health", 12)


# -- the model's process, container and file ------------------------------------------------------------------

def test_the_login_uid_is_the_actors_auid_and_unset_is_unknown():
    assert _event(_one(ANOM_ABEND)).actor.auid == 1000
    assert _event(record_from_netlink(1326, SECCOMP_KILL)).actor.auid == -1  # 4294967295: no login


def test_the_container_comes_from_the_records_cgroup_even_without_a_pod():
    event = _event(record_from_netlink(1326, SECCOMP_KILL) | {"container_id": "d" * 64})
    assert event.container.id == "d" * 64 and event.k8s.pod == ""
    assert _event(record_from_netlink(1326, SECCOMP_KILL)).container.id == ""


def test_an_lsm_decision_about_a_file_names_the_file_and_the_access_asked():
    denied = _event(_one(APPARMOR_FILE.replace(b'requested_mask="r"', b'requested_mask="rw"')))
    assert (denied.file.path, denied.file.access) == ("/etc/shadow", ["read", "write"])
    assert _event(_one(SELINUX_AVC)).file.path == "/var/www/html/file1"  # getattr is not one of the accesses
    assert _event(_one(APPARMOR_CAPABILITY)).file.path == ""
