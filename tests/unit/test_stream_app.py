"""The Faust worker's Kafka clients: the fetch wait that bounds how long new records can sit behind a fetch, and a
producer that writes a record once however often it re-sends it."""

from vigil import kafka
from vigil.config import Settings
from vigil.streams.app import FETCH_MAX_WAIT_MS, create_app


async def test_the_worker_consumer_waits_at_most_the_short_fetch_wait(tmp_path):
    settings = Settings()
    settings.data_dir = str(tmp_path)
    app = create_app(settings, kafka.Replication(1, 1))
    consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
    try:
        # Faust builds it with 1500 ms: under load new records of busy partitions waited that long (streams.app).
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500
    finally:
        await consumer.stop()


async def test_the_worker_producer_is_idempotent_and_its_topics_replicated_as_asked(tmp_path):
    settings = Settings()
    settings.data_dir = str(tmp_path)
    app = create_app(settings, kafka.Replication(3, 2))
    producer = app.producer._new_producer()
    # Faust turns idempotence on only in exactly_once mode; without it a re-sent batch is written twice.
    assert producer._txn_manager is not None  # aiokafka's sequence numbering: idempotence on
    assert producer._sender._acks == -1  # all in-sync replicas
    assert app.conf.topic_replication_factor == 3
    changelog = app.tables["detection-state"].changelog_topic
    assert (changelog.replicas or app.conf.topic_replication_factor, changelog.config) == (
        3, {"min.insync.replicas": "2"})
