import orjson
import pytest

from vigil.alert import Alert
from vigil.config import ConfigError, load_settings
from vigil.event import Activity, Actor, Container, Event, File, K8sContext, Network, Request, SchemaError


def test_environment_overrides_file_and_secrets_come_from_files(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    config = tmp_path / "vigil.toml"
    config.write_text(f'cluster = "from-file"\n[kafka]\nbootstrap = "file:9092"\nsasl_password_file = "{secret}"\n'
                      '[clickhouse]\nbatch_rows = 7\n')
    settings = load_settings(config, env={"VIGIL_KAFKA_BOOTSTRAP": "env:9092"})
    assert settings.cluster == "from-file"
    assert settings.kafka.bootstrap == "env:9092"
    assert settings.clickhouse.batch_rows == 7
    assert settings.kafka.sasl_password == "s3cret"
    assert "s3cret" not in repr(settings)


def test_bad_values_name_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="VIGIL_CLICKHOUSE_BATCH_ROWS"):
        load_settings(env={"VIGIL_CLICKHOUSE_BATCH_ROWS": "many"})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml", env={})


def test_event_roundtrips_through_json():
    event = Event(id="e1", time_ns=1_700_000_000_123_456_789, source="k8s-audit", kind="k8s.api", action="create",
                  cluster="c", k8s=K8sContext(namespace="ns", pod="p"), actor=Actor(user="alice", groups=["g"]),
                  raw={"auditID": "a"})
    again = Event.from_json(event.to_json())
    assert again == event
    assert again.correlation_key == "c/ns/p"


@pytest.mark.parametrize("payload", [b"[1]", b"{}", b'{"schema": 99, "id": "x"}', b"not json"])
def test_foreign_or_broken_events_are_refused(payload):
    with pytest.raises(SchemaError):
        Event.from_json(payload)


def test_correlation_key_falls_back_to_namespace_then_identity():
    assert Event(id="1", time_ns=1, source="s", kind="k8s.api", cluster="c",
                 k8s=K8sContext(namespace="ns")).correlation_key == "c/ns"
    assert Event(id="1", time_ns=1, source="s", kind="k8s.api", cluster="c",
                 actor=Actor(user="bob")).correlation_key == "c/~bob"


def test_alert_id_is_stable_for_the_same_evidence_and_time_is_rfc3339():
    a = Alert(detection="k8s.x", title="t", severity="high", time_ns=1_700_000_000_000_000_000, evidence=["a1"])
    b = Alert(detection="k8s.x", title="t", severity="high", time_ns=1_700_000_000_500_000_000, evidence=["a1"])
    assert a.id == b.id
    assert orjson.loads(a.to_json())["time"] == "2023-11-14T22:13:20Z"
    with pytest.raises(ValueError):
        Alert(detection="k8s.x", title="t", severity="urgent", time_ns=1)


def test_the_model_parts_roundtrip_through_json():
    event = Event(id="e", time_ns=1, source="falco", kind="net.connect",
                  actor=Actor(pid=3, euid=0, auid=1000, tty=34816, exe_flags=["writable"], parent_args=["sh"],
                              extra={"scopes": ["a"]}, token_pod="web-1", env={"LD_PRELOAD": "/tmp/x.so"}),
                  container=Container(id="c0", runtime="containerd", name="app", image="nginx"),
                  file=File(path="/etc/x", access=["read"], mode=0o600, other_path="/etc/y"),
                  network=Network(family="inet", direction="outbound", remote_address="8.8.8.8", remote_class="public"),
                  request=Request(stage="ResponseComplete", decision="allow", object={"spec": {}}, response=None),
                  activity=Activity(interval_s=30.0, counts={"fork": 2}, syscalls=["read"], processes=4))
    assert Event.from_json(event.to_json()) == event


def test_an_event_written_before_the_model_parts_loads_with_their_defaults():
    before = {"schema": 1, "id": "old", "time_ns": 5, "source": "ebpf", "kind": "process.exec",
              "k8s": {"container_id": "c0"}, "actor": {"pid": 7, "exe": "/bin/sh"}, "target": {}, "outcome": {},
              "raw": {"type": "exec"}}
    event = Event.from_dict(before)
    assert (event.actor.pid, event.actor.euid, event.actor.exe_flags, event.actor.extra) == (7, -1, [], {})
    assert (event.container, event.file, event.network, event.request, event.activity) == (
        Container(), File(), Network(), Request(), Activity())
    assert (event.file.mode, event.activity.processes) == (-1, -1)


def test_unknown_fields_in_a_part_are_refused():
    with pytest.raises(SchemaError):
        Event.from_dict({"id": "x", "time_ns": 1, "source": "s", "kind": "k", "network": {"bogus": 1}})


def test_cluster_ranges_are_settings(tmp_path):
    config = tmp_path / "vigil.toml"
    config.write_text('service_cidrs = "10.96.0.0/12"\n')
    settings = load_settings(config, env={"VIGIL_POD_CIDRS": "10.244.0.0/16"})
    assert (settings.service_cidrs, settings.pod_cidrs) == ("10.96.0.0/12", "10.244.0.0/16")
