import orjson
import pytest

from vigil.alert import Alert
from vigil.config import ConfigError, load_settings
from vigil.event import Actor, Event, K8sContext, SchemaError


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
