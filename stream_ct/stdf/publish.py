"""Publish the parts of STDF files to a Kafka topic, one message per part.

Messages are keyed ``lot/wafer/part`` and stamped with the part's event time; the producer
waits for every acknowledgement (``acks="all"``) and flushes after each file, so the counts
in ``PublishResult`` are parts the broker has acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from stream_ct.stdf.convert import FileResult, open_reader, part_messages
from stream_ct.stdf.errors import StdfError


class PublishError(RuntimeError):
    """Kafka did not acknowledge some messages."""


@dataclass
class PublishResult:
    """What ``publish`` sent; ``error`` is set when a bad file stopped it."""

    topic: str
    files: list[FileResult] = field(default_factory=list)
    error: str | None = None

    @property
    def parts(self) -> int:
        return sum(f.parts for f in self.files)


def publish(paths: Iterable, topic: str, bootstrap_servers: str, progress: bool = True,
            producer=None, encoding: str = "json", key: str = "part") -> PublishResult:
    """Send the parts of STDF ``paths`` to ``topic`` (values in ``encoding``, keys by ``key``,
    as ``part_messages`` writes them); return the acknowledged count per file.

    A bad file raises ``StdfError`` saying how many parts were published before it (they
    stay published), carrying the partial ``PublishResult`` as ``.result``. ``producer``
    replaces the project's producer (``stream_ct.kafka_io``: acks="all", security settings
    from the environment) with ``linger_ms=20``.
    """
    if producer is None:
        from stream_ct.kafka_io import make_producer

        producer = make_producer(bootstrap_servers, linger_ms=20)
    result = PublishResult(topic)
    failures: list[BaseException] = []

    def acked(entry: FileResult, _metadata) -> None:
        entry.parts += 1

    try:
        for path in paths:
            reader, shown = open_reader(path, progress)
            entry = FileResult(reader.name, 0, reader.stats)
            result.files.append(entry)
            for message in part_messages(reader, encoding, key):
                future = producer.send(topic, key=message.key, value=message.value,
                                       timestamp_ms=message.timestamp, headers=message.headers)
                future.add_callback(acked, entry)
                future.add_errback(failures.append)
            producer.flush()
            if failures:
                raise PublishError(f"Kafka did not acknowledge {len(failures)} parts ({failures[0]}); "
                                   f"{result.parts} parts were published")
            if shown:
                shown.done(entry.summary("published"))
    except StdfError as exc:
        producer.flush()
        note = f"{result.parts} parts were published before the error"
        result.error = f"{exc}: {note}"
        raise exc.with_note(note, result) from exc
    finally:
        producer.close()
    return result
