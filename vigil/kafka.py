"""Kafka I/O for every vigil component: client construction, topics, the record format, dead letters.

Transport details (security settings, idempotence, compression, the batch record format) live here and
nowhere else. Components ask for a producer or consumer and speak in records.

Record format on vigil's data topics (``raw.<source>``, ``events``): the value is a JSON array of records
sharing one key. Kafka's per-message cost dominates a Python pipeline (FACTS.md: ~54 us per Faust event),
so the edge packs the records of one flush that share a key into one Kafka message. Alert topics carry
one alert per message, as SIEMs expect.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import faust
import msgspec
import orjson
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.protocol.metadata import MetadataRequest
from faust.types.auth import CredentialsT

from vigil import metrics
from vigil.config import ConfigError, KafkaSettings, Settings
from vigil.event import now_ns

#: Topic names (without the configured prefix) and their partition counts for a fresh cluster.
TOPICS: dict[str, int] = {
    "raw.k8s-audit": 6,
    "raw.ebpf": 6,
    "raw.containerd": 6,
    "raw.tetragon": 6,
    "raw.falco": 6,
    "raw.kernel-audit": 6,
    "events": 6,
    "alerts": 3,
    "alerts.ocsf": 3,
    "alerts.ecs": 3,
    "alerts.cef": 3,
    "deadletter": 1,
}


@dataclass(frozen=True, slots=True)
class Replication:
    """How vigil's topics are replicated: copies of each partition, and how many of them must hold a record
    before a producer's acks=all is answered (the topic's ``min.insync.replicas``). With 3 and 2, one broker can
    die with nothing acknowledged lost and writes going on; a second one stops writes rather than keep a single
    copy."""

    factor: int
    min_insync: int

    @property
    def topic_config(self) -> dict[str, str]:
        return {"min.insync.replicas": str(self.min_insync)}


def replication(kafka: KafkaSettings, brokers: int) -> Replication:
    """The replication the settings ask for on a cluster of ``brokers`` live brokers. A setting of 0 is derived:
    3 copies (as many as there are brokers on a smaller cluster), all but one of them in sync."""
    factor = kafka.replication_factor or min(3, max(brokers, 1))
    min_insync = kafka.min_insync_replicas or max(1, factor - 1)
    if min_insync > factor:
        raise ConfigError(f"VIGIL_KAFKA_MIN_INSYNC_REPLICAS={min_insync} is more than the replication factor "
                          f"{factor}: no write could ever be acknowledged")
    return Replication(factor, min_insync)


def topic_partitions(settings: Settings, name: str) -> int:
    """Partitions vigil creates topic ``name`` with: the pod-keyed topics (``raw.<source>``, ``events``) have
    ``kafka.partitions``, the others as :data:`TOPICS` says."""
    if name.startswith("raw.") or name == "events":
        return settings.kafka.partitions
    return TOPICS.get(name, 1)


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection and security keyword arguments shared by producers, consumers and the admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "security_protocol": kafka.security_protocol,
    }
    context = ssl_context(kafka)
    if context:
        options["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=str(kafka.sasl_password),
        )
    return options


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=kafka.ssl_cafile or None)
    if kafka.ssl_certfile:
        context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile or None)
    return context


def faust_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """The same security settings in the form Faust's ``broker_credentials`` takes."""
    context = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(username=kafka.sasl_username, password=str(kafka.sasl_password),
                                     mechanism=kafka.sasl_mechanism, ssl_context=context)
    return faust.SSLCredentials(context) if context else None


def producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent, compressed, batching producer (acks=all: a record acknowledged is a record kept)."""
    kafka = settings.kafka
    options = client_options(kafka) | {
        "enable_idempotence": True,
        "acks": "all",
        "compression_type": kafka.compression or None,
        "linger_ms": kafka.linger_ms,
        "max_batch_size": kafka.max_batch_bytes,
        "max_request_size": kafka.max_message_bytes,
        "request_timeout_ms": 15_000,
    }
    return AIOKafkaProducer(**(options | overrides))


def consumer(settings: Settings, *topics: str, group_id: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer that never commits on its own: callers commit after their output is durable."""
    options = client_options(settings.kafka) | {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    return AIOKafkaConsumer(*topics, **(options | overrides))


async def ensure_topics(settings: Settings, names: Iterable[str] = TOPICS) -> Replication:
    """Create vigil's topics if they are missing (idempotent; an existing topic is left as it is), replicated as
    :func:`replication` says for the cluster as it is now; returns that replication, for the topics that
    components create themselves (the stream worker's changelog)."""
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        wanted = replication(settings.kafka, len((await admin.describe_cluster())["brokers"]))
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(settings.topic(name), num_partitions=topic_partitions(settings, name),
                     replication_factor=wanted.factor, topic_configs=wanted.topic_config)
            for name in names
            if settings.topic(name) not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # created concurrently elsewhere
                await admin.create_topics(missing)
        return wanted
    finally:
        await admin.close()


async def known_by_every_broker(client: AIOKafkaClient, topic: str, poll_seconds: float = 0.1) -> None:
    """Return once every live broker of ``client``'s cluster has ``topic``, with a leader for each partition.

    Brokers learn of a new topic each on its own time (0.6 to 3 s apart after a creation, measured on a 3-broker
    cluster here), and aiokafka refreshes its metadata from any one broker, dropping a topic that one does not know
    yet: a producer that knew the topic forgets it again for a while. A broker that does not answer is skipped.
    """
    request = MetadataRequest([topic], allow_auto_topic_creation=False)
    while True:
        unaware = []
        for broker in client.cluster.brokers():
            with contextlib.suppress(KafkaError, OSError):
                response = await client.send(broker.nodeId, request)
                if not all(_has_leaders(entry) for entry in response.topics):
                    unaware.append(broker.nodeId)
        if not unaware:
            return
        await asyncio.sleep(poll_seconds)


def _has_leaders(topic_entry: tuple[Any, ...]) -> bool:
    """Whether a MetadataResponse topic entry (error, name, internal, partitions) has every partition led."""
    error, _, _, partitions = topic_entry[:4]
    return error == 0 and bool(partitions) and all(partition[2] >= 0 for partition in partitions)


#: Room for the key and Kafka's record framing: the producer counts them, not only the value, against its
#: max_request_size, so a value of exactly max_message_bytes would be refused.
RECORD_FRAMING_BYTES = 16_384


#: Encodes records of any kind vigil sends: dicts, the event envelope's Structs, dataclasses, and ``msgspec.Raw``
#: (JSON kept as the bytes it arrived as, spliced in without being parsed and serialized again).
_ENCODER = msgspec.json.Encoder()


def encode_batch(records: list[Any]) -> bytes:
    return _ENCODER.encode(records)


def encode_batches(records: list[Any], max_bytes: int) -> list[bytes]:
    """``records`` as JSON arrays that each fit a Kafka message of ``max_bytes`` with its key: one array when it
    fits, as almost always, else split (a collector's full message normalizes into more bytes than it had, as an
    event carries its raw record and more; the producer would refuse it whole)."""
    whole = _ENCODER.encode(records)
    room = max_bytes - RECORD_FRAMING_BYTES
    if len(whole) <= room:
        return [whole]
    return json_arrays([_ENCODER.encode(record) for record in records], room)


def json_arrays(values: Iterable[bytes], room: int) -> list[bytes]:
    """Encoded JSON values joined into JSON arrays of at most ``room`` bytes each (a value larger than ``room``
    gets an array of its own). Byte concatenation: nothing is serialized again."""
    arrays: list[bytes] = []
    chunk: list[bytes] = []
    size = 2
    for value in values:
        if chunk and size + len(value) + 1 > room:
            arrays.append(b"[" + b",".join(chunk) + b"]")
            chunk, size = [], 2
        chunk.append(value)
        size += len(value) + 1
    if chunk:
        arrays.append(b"[" + b",".join(chunk) + b"]")
    return arrays


def packed_arrays(arrays: Iterable[bytes], max_bytes: int) -> list[bytes]:
    """Encoded JSON arrays (of one key) joined into as few arrays as fit a Kafka message of ``max_bytes`` with its
    key: the stream worker packs the events of every message of a key in a batch into one message. Byte
    concatenation of the arrays' contents: nothing is parsed or serialized again."""
    return json_arrays((array[1:-1] for array in arrays if len(array) > 2), max_bytes - RECORD_FRAMING_BYTES)


def decode_batch(value: bytes) -> list[Any]:
    """Decode one data-topic message; raises ValueError for anything but a JSON array."""
    records = orjson.loads(value)
    if not isinstance(records, list):
        raise ValueError("record batch is not a JSON array")
    return records


#: Room kept in a dead-letter message for its JSON wrapper around the original bytes.
_DEADLETTER_OVERHEAD = 4096


class DeadLetters:
    """The one builder of dead-letter messages, for every component that refuses input.

    A message says why it was refused, by whom and from which source, and keeps the original bytes losslessly:
    as text when they are valid UTF-8 (readable in any consumer), as base64 otherwise. Bytes beyond what one
    Kafka message can hold are cut, and the detail says so. Building one counts the refusal
    (``vigil_records_rejected_total`` by reason, ``vigil_records_deadlettered_total``): every refusal is
    dead-lettered, so the two counts move together.
    """

    def __init__(self, settings: Settings, component: str) -> None:
        self.topic = settings.topic("deadletter")
        self.component = component
        self._room = settings.kafka.max_message_bytes - _DEADLETTER_OVERHEAD

    def build(self, source: str, reason: str, detail: str, raw: bytes) -> bytes:
        """The dead-letter message of one refused input (counted as refused and dead-lettered)."""
        if len(raw) > self._room // 2:  # base64 or JSON escaping can double the size
            detail = f"{detail} (original {len(raw)} bytes, first {self._room // 2} kept)"
            raw = raw[: self._room // 2]
        doc: dict[str, Any] = {
            "component": self.component,
            "source": source,
            "reason": reason,
            "detail": detail,
            "time_ns": now_ns(),
        }
        try:
            doc["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            doc["raw_base64"] = base64.b64encode(raw).decode("ascii")
        metrics.REJECTED.labels(self.component, source, reason).inc()
        metrics.DEADLETTERED.labels(self.component).inc()
        return orjson.dumps(doc)

    async def send(self, sender: AIOKafkaProducer, source: str, reason: str, detail: str, raw: bytes) -> None:
        """Build and send one dead letter, returning once Kafka acknowledged it."""
        await sender.send_and_wait(self.topic, self.build(source, reason, detail, raw))


async def assigned_offsets(consumer: AIOKafkaConsumer) -> list[tuple[str, int, int]]:
    """``(topic, end offset, position)`` of each partition assigned to ``consumer`` whose end is known; a
    partition revoked meanwhile is left to its next owner."""
    offsets = []
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        if end is None:
            continue
        with contextlib.suppress(KafkaError):
            offsets.append((tp.topic, end, await consumer.position(tp)))
    return offsets


def report_lag(component: str, offsets: Iterable[tuple[str, int, int]], topics: Iterable[str] = ()) -> None:
    """Set ``vigil_consumer_lag_records{component,topic}``: records behind each topic's end, summed over the
    ``(topic, end offset, next position)`` of the partitions this process reads. ``topics`` are reported even
    with no partition assigned (as 0), so a gauge never keeps a stale value after a rebalance."""
    lag = dict.fromkeys(topics, 0)
    for topic, end, position in offsets:
        lag[topic] = lag.get(topic, 0) + max(0, end - position)
    for topic, records in lag.items():
        metrics.CONSUMER_LAG.labels(component, topic).set(records)


async def seek_to_time(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition], since_ms: int | None) -> None:
    """Position ``consumer`` on each partition at its first message stamped at or after ``since_ms``, or at the
    partition's current end when it has none (or with ``since_ms`` None).

    The end is read and sought explicitly: aiokafka's ``seek_to_end`` only marks the partition for a reset that
    the next fetch resolves, so records produced in between (on a fresh topic: the first ones) were skipped.
    """
    partitions = list(partitions)
    found = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms)) if since_ms is not None else {}
    ends = await consumer.end_offsets(partitions)
    for partition in partitions:
        stamped = found.get(partition)
        consumer.seek(partition, stamped.offset if stamped is not None else ends[partition])
