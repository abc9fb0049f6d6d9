"""How vigil's topics are replicated: derived from the cluster's size unless the settings say otherwise."""

import pytest

from vigil import kafka
from vigil.config import ConfigError, KafkaSettings, load_settings


@pytest.mark.parametrize(("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))])
def test_derived_from_the_cluster_size_one_broker_may_fail(brokers, expected):
    wanted = kafka.replication(KafkaSettings(), brokers)
    assert (wanted.factor, wanted.min_insync) == expected
    assert wanted.topic_config == {"min.insync.replicas": str(expected[1])}


def test_settings_win_over_the_cluster_size():
    settings = load_settings(env={"VIGIL_KAFKA_REPLICATION_FACTOR": "4", "VIGIL_KAFKA_MIN_INSYNC_REPLICAS": "3"})
    wanted = kafka.replication(settings.kafka, 6)
    assert (wanted.factor, wanted.min_insync) == (4, 3)
    assert kafka.replication(KafkaSettings(replication_factor=5), 6).min_insync == 4


def test_a_min_isr_no_write_could_meet_is_refused_with_its_name():
    with pytest.raises(ConfigError, match="VIGIL_KAFKA_MIN_INSYNC_REPLICAS=3 is more than the replication factor 2"):
        kafka.replication(KafkaSettings(min_insync_replicas=3), 2)
