"""Kafka clients configured one way for every command, plus the topics stream-ct owns.

Connection settings come from the environment so that one consumer definition runs
unchanged on a laptop broker and on a secured cluster:

=============================  =====================================
``STREAM_CT_BOOTSTRAP``        bootstrap servers (default 127.0.0.1:9092)
``STREAM_CT_SECURITY_PROTOCOL`` PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
``STREAM_CT_SASL_MECHANISM``   PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
``STREAM_CT_SASL_USERNAME``    SASL user
``STREAM_CT_SASL_PASSWORD``    SASL password
``STREAM_CT_SSL_CAFILE``       CA bundle for SSL
=============================  =====================================
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Iterator

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewPartitions, NewTopic
from kafka.errors import AuthorizationError, CoordinatorNotAvailableError, KafkaTimeoutError, TopicAlreadyExistsError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
RETRAIN_TOPIC = "ct.retrain"
MODELS_TOPIC = "ct.models"
EVENTS_TOPIC = "ct.events"
CONTROL_TOPIC = "ct.control"
#: stream-ct's own topics: no records are published to them from outside.
OWN_TOPICS = (RETRAIN_TOPIC, MODELS_TOPIC, EVENTS_TOPIC, CONTROL_TOPIC)
#: The retrain workers' consumer group.
WORKER_GROUP = "stream-ct-retrain"
#: How long a new client of a one-shot command tries to reach the broker (see ``one_shot``).
ONE_SHOT_BOOTSTRAP_MS = 5_000
#: How long a command waits for Kafka to acknowledge what it sent: kafka-python's delivery
#: timeout, by which a record is delivered or failed. An untimed ``flush`` waited forever for
#: a broker gone with requests in flight.
ACK_WAIT_S = 120.0
_bootstrap_timeout_ms: int | None = None  # None: kafka-python's 30 s


def records_topic(name: str) -> str:
    """``name``, as the ``--topic`` that records are published to (an argparse ``type``):
    stream-ct's own topics are refused.

    >>> records_topic("ct.models")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: ct.models is stream-ct's own topic (model announcements); publish records to another
    """
    if name in OWN_TOPICS:
        what = {RETRAIN_TOPIC: "retrain requests", MODELS_TOPIC: "model announcements", EVENTS_TOPIC: "events",
                CONTROL_TOPIC: "operator commands"}[name]
        raise argparse.ArgumentTypeError(f"{name} is stream-ct's own topic ({what}); publish records to another")
    return name


def shadow_key(model: str) -> str:
    """The ``ct.models`` key of a model's shadow candidate (the champion's key is the model's name)."""
    return f"{model}.shadow"


def judging_key(model: str) -> str:
    """The ``ct.models`` key of a new champion's post-deploy check: the level before its
    deployment and whether it was judged, for an instance restarted before it was."""
    return f"{model}.judging"


_ENV_SETTINGS = {
    "STREAM_CT_SECURITY_PROTOCOL": "security_protocol",
    "STREAM_CT_SASL_MECHANISM": "sasl_mechanism",
    "STREAM_CT_SASL_USERNAME": "sasl_plain_username",
    "STREAM_CT_SASL_PASSWORD": "sasl_plain_password",
    "STREAM_CT_SSL_CAFILE": "ssl_cafile",
}


def bootstrap_servers(explicit: str | None = None) -> str:
    """The bootstrap address: an explicit value, else ``$STREAM_CT_BOOTSTRAP``, else the default."""
    return explicit or os.environ.get("STREAM_CT_BOOTSTRAP") or DEFAULT_BOOTSTRAP


@contextlib.contextmanager
def one_shot() -> Iterator[None]:
    """Within it, a new client gives up on an unreachable broker after ``ONE_SHOT_BOOTSTRAP_MS``
    (``KafkaTimeoutError``): an operator's command says so at once, where the services keep
    kafka-python's 30 s and wait out a broker restart."""
    global _bootstrap_timeout_ms
    _bootstrap_timeout_ms = ONE_SHOT_BOOTSTRAP_MS
    try:
        yield
    finally:
        _bootstrap_timeout_ms = None


def connection_settings(bootstrap: str | None = None) -> dict:
    """kafka-python keyword arguments shared by producers, consumers and admin clients."""
    settings = {"bootstrap_servers": bootstrap_servers(bootstrap).split(",")}
    if _bootstrap_timeout_ms is not None:
        settings["bootstrap_timeout_ms"] = _bootstrap_timeout_ms
    for env, key in _ENV_SETTINGS.items():
        if os.environ.get(env):
            settings[key] = os.environ[env]
    return settings


def close_producer(producer: KafkaProducer, timeout_s: float) -> bool:
    """Deliver what ``producer`` still holds, waiting at most ``timeout_s``, and close it; False
    when Kafka did not acknowledge all of it in time (a broker away; closed all the same, where
    kafka-python's ``close`` raised and left it open for its exit hook to close again, loudly)."""
    try:
        producer.flush(timeout=timeout_s)
        delivered = True
    except KafkaTimeoutError:
        delivered = False
    close_at_once(producer)
    return delivered


def close_at_once(producer: KafkaProducer) -> None:
    """Close ``producer`` without waiting for what it still holds (after a flush that timed
    out): kafka-python's ``close()`` waits for it forever, and with a timeout raises again."""
    with contextlib.suppress(KafkaTimeoutError):
        producer.close(timeout=0)


def make_producer(bootstrap: str | None = None, **overrides) -> KafkaProducer:
    """A producer that waits for the broker's acknowledgement of every record."""
    options = dict(acks="all", linger_ms=5, batch_size=256 * 1024, max_request_size=2 * 1024 * 1024,
                   retries=10, compression_type=None)
    options.update(overrides)
    return KafkaProducer(**connection_settings(bootstrap), **options)


def make_consumer(*topics: str, group_id: str | None, bootstrap: str | None = None, **overrides) -> KafkaConsumer:
    """A consumer with manual offset commits, reading from the earliest offset of a new group."""
    options = dict(group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                   allow_auto_create_topics=False,
                   # a member that died hands its partitions over in 10 s, not kafka-python's 45 s
                   session_timeout_ms=10_000, heartbeat_interval_ms=3_000,
                   max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)
    options.update(overrides)
    return KafkaConsumer(*topics, **connection_settings(bootstrap), **options)


def topic_size(topic: str, bootstrap: str | None = None) -> int:
    """How many messages ``topic`` holds (end minus beginning offsets over its partitions; 0 if
    it does not exist)."""
    consumer = make_consumer(group_id=None, bootstrap=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not parts:
            return 0
        end, begin = consumer.end_offsets(parts), consumer.beginning_offsets(parts)
        return sum(end[tp] - begin[tp] for tp in parts)
    finally:
        consumer.close()


def group_members(group: str, bootstrap: str | None = None) -> int | None:
    """How many members consumer ``group`` has now (0 for a group the broker does not know);
    None when the broker does not say (e.g. the client may not describe groups)."""
    admin = KafkaAdminClient(**connection_settings(bootstrap))
    try:
        info = admin.describe_groups([group]).get(group) or {}
    except (AuthorizationError, CoordinatorNotAvailableError):  # may not describe it; no coordinator yet
        return None
    finally:
        admin.close()
    if info.get("error") and "GroupIdNotFound" not in str(info["error"]):
        return None
    return len(info.get("members") or [])


def ensure_topics(topics: dict[str, dict], bootstrap: str | None = None) -> list[str]:
    """Create missing topics: ``{name: {"partitions": n, "config": {...}}}``; the names of those
    this call created."""
    admin = KafkaAdminClient(**connection_settings(bootstrap))
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(name, spec.get("partitions", 1), 1, topic_configs=spec.get("config", {}))
               for name, spec in topics.items() if name not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                return []  # another instance created it between list and create
    finally:
        admin.close()
    return [topic.name for topic in new]


def topic_partitions(topic: str, bootstrap: str | None = None) -> int:
    """How many partitions ``topic`` has (0 if it does not exist)."""
    consumer = make_consumer(group_id=None, bootstrap=bootstrap)
    try:
        return len(consumer.partitions_for_topic(topic) or ())
    finally:
        consumer.close()


def grow_partitions(topic: str, partitions: int, bootstrap: str | None = None) -> int:
    """Give an existing ``topic`` at least ``partitions`` partitions (Kafka never removes any);
    return how many it had (0 if it does not exist)."""
    had = topic_partitions(topic, bootstrap)
    if 0 < had < partitions:
        admin = KafkaAdminClient(**connection_settings(bootstrap))
        try:
            admin.create_partitions({topic: NewPartitions(partitions)})
        finally:
            admin.close()
    return had


def ensure_control_topics(bootstrap: str | None = None) -> None:
    """The topics every stream-ct process uses; ``ct.models`` is compacted (latest per model)."""
    ensure_topics({
        RETRAIN_TOPIC: {"partitions": 1},
        MODELS_TOPIC: {"partitions": 1, "config": {"cleanup.policy": "compact"}},
        EVENTS_TOPIC: {"partitions": 1},
        CONTROL_TOPIC: {"partitions": 1},
    }, bootstrap)
