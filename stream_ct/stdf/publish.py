"""Publish the parts of STDF files to a Kafka topic, one message per part.

Messages are keyed ``lot/wafer/part`` and stamped with the part's event time; the producer
waits for every acknowledgement (``acks="all"``) and flushes after each file, so the counts
in ``PublishResult`` are parts the broker has acknowledged. When Kafka fails mid-file, parts
sent but not yet acknowledged are not counted: publishing again from the count may repeat a
few (Kafka delivers at least once).
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from typing import Iterable

from kafka.errors import KafkaError

from stream_ct.kafka_io import ACK_WAIT_S
from stream_ct.stdf.convert import FileResult, file_done, open_reader, part_messages, say, stopped
from stream_ct.stdf.errors import StdfError
from stream_ct.words import counted, were

#: How long a failed publish waits for the parts already sent to be acknowledged.
SETTLE_TIMEOUT_S = 10.0


class PublishError(RuntimeError):
    """Kafka failed or did not acknowledge some messages; ``result`` is the partial
    ``PublishResult``."""

    def __init__(self, message: str, result: PublishResult):
        super().__init__(message)
        self.result = result


@dataclass
class PublishResult:
    """What ``publish`` sent; ``error`` is set when a bad file or Kafka stopped it."""

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
    stay published), carrying the partial ``PublishResult`` as ``.result``; a Kafka error
    raised by ``send`` or ``flush`` becomes a ``PublishError`` that says, and carries, how
    many parts were acknowledged in all and from the file in flight; Ctrl-C waits up to
    ``SETTLE_TIMEOUT_S`` for the parts sent, says as much on stderr, and goes on
    (``KeyboardInterrupt``). ``producer``
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
            producer.flush(timeout=ACK_WAIT_S)
            if failures:
                result.error = (f"Kafka did not acknowledge {counted(len(failures), 'part')} ({failures[0]}); "
                                f"{were(result.parts, 'part')} published")
                raise PublishError(result.error, result)
            file_done(entry, shown, "published")
    except StdfError as exc:
        with suppress(KafkaError):  # the file's error is the one to report; the count is of acknowledged parts
            producer.flush(timeout=ACK_WAIT_S)
        note = f"{were(result.parts, 'part')} published before the error"
        result.error = f"{exc}: {note}"
        raise exc.with_note(note, result) from exc
    except KafkaError as exc:
        with suppress(KafkaError):  # the parts sent may still be acknowledged; a gone broker times out
            producer.flush(timeout=SETTLE_TIMEOUT_S)
        entry = result.files[-1]
        result.error = (f"Kafka failed while publishing {entry.file} ({exc}): {were(result.parts, 'part')} "
                        f"acknowledged, {entry.parts:,} of them from {entry.file}; parts sent but not "
                        f"acknowledged are not counted, so publishing again from there may repeat a few")
        raise PublishError(result.error, result) from exc
    except KeyboardInterrupt:
        with suppress(KafkaError, KeyboardInterrupt):  # the parts sent may still be acknowledged; Ctrl-C again stops
            producer.flush(timeout=SETTLE_TIMEOUT_S)
        result.error = stopped(result, "published (acknowledged by Kafka)")
        say(result.error)
        raise
    finally:
        with suppress(KafkaError):  # after an error, waits no more for what is left unacknowledged
            producer.close(timeout=0 if result.error else None)
    return result
