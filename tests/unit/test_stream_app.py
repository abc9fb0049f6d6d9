"""The Faust worker's Kafka consumer: the fetch wait that bounds how long new records can sit behind a fetch."""

from vigil.config import Settings
from vigil.streams.app import FETCH_MAX_WAIT_MS, create_app


async def test_the_worker_consumer_waits_at_most_the_short_fetch_wait(tmp_path):
    settings = Settings()
    settings.data_dir = str(tmp_path)
    app = create_app(settings)
    consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
    try:
        # Faust builds it with 1500 ms: under load new records of busy partitions waited that long (streams.app).
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500
    finally:
        await consumer.stop()
