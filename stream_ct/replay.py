"""Replay a recording onto a topic, and record a topic into a recording.

Keys, values, timestamps and headers round-trip exactly; ``record`` also keeps the partition.
Two things Kafka allows kafka-python cannot send: a header value that is null is replayed
empty (with a note), and a message with neither key nor value stops the replay at its line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import signal
import sys
import time
from typing import Iterable, Iterator

from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from stream_ct.kafka_io import (ACK_WAIT_S, bootstrap_servers, ensure_topics, grow_partitions, make_consumer,
                                make_producer, records_topic, topic_partitions)
from stream_ct.progress import Progress
from stream_ct.recording import Message, numbered_recording, write_recording
from stream_ct.words import counted, were

#: How long ``record`` waits for a message while short of the end offsets before it gives up.
STALL_S = 30.0


def replay(messages: Iterable[Message], topic: str, bootstrap: str | None = None, *,
           rate: float | None = None, keep_partitions: bool = False, progress: Progress | None = None) -> int:
    """Send messages to ``topic`` in order; ``rate`` paces them (records per second);
    ``keep_partitions`` sends each to its recorded partition.

    Raises ``ValueError`` when the broker rejected any of them, or before a message whose
    recorded partition ``topic`` does not have or that is over the producer's request size
    (saying how many went out before it), or when ``topic`` does not exist and the broker does
    not create it.
    """
    producer = make_producer(bootstrap)
    started = time.monotonic()
    count = 0
    failures: list[Exception] = []
    try:
        partitions = producer.partitions_for(topic) if keep_partitions else None
        for count, msg in enumerate(messages, start=1):
            if partitions is not None and msg.partition is not None and msg.partition not in partitions:
                raise ValueError(f"record {count} was recorded on partition {msg.partition}, which {topic} does "
                                 f"not have ({counted(len(partitions), 'partition')}; --partitions "
                                 f"{msg.partition + 1} adds them); {were(count - 1, 'record')} sent before it")
            try:
                future = producer.send(topic, key=msg.key, value=msg.value, timestamp_ms=msg.timestamp,
                                       headers=list(msg.headers),
                                       partition=msg.partition if keep_partitions else None)
            except MessageSizeTooLargeError as exc:  # checked by kafka-python before sending
                raise ValueError(f"record {count} is too large to send ({exc}); "
                                 f"{were(count - 1, 'record')} sent before it") from exc
            future.add_errback(failures.append)
            if rate:
                ahead = count / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if progress:
                progress.update(count)
    except KafkaTimeoutError as exc:  # kafka-python waited max_block_ms (60 s) for the topic's metadata
        if count <= 1 and not topic_partitions(topic, bootstrap):
            raise ValueError(f"topic {topic!r} does not exist at {bootstrap_servers(bootstrap)}, which does not "
                             "create topics on first use: create it with --partitions N, or check --topic") from exc
        raise
    finally:
        # waits for the sends, also those before an error or Ctrl-C; raises KafkaTimeoutError (exit 3)
        # after ACK_WAIT_S: untimed, it waited forever for a broker away longer than that
        producer.close(timeout=ACK_WAIT_S)
    # close() does not raise for the records the broker rejected.
    if failures:
        raise ValueError(f"Kafka rejected {len(failures)} of {count} records; first error: {failures[0]}")
    return count


@dataclasses.dataclass
class NullHeaders:
    """Header values of a replay that were null and went out empty: how many, the first one's place."""

    count: int = 0
    first: str = ""


def sendable(numbered: Iterable[tuple[int, Message]], path: str, nulls: NullHeaders) -> Iterator[Message]:
    """The messages of a recording (with their line numbers) as kafka-python can send them.

    Kafka allows a header without a value, and ``record`` keeps one as null, but kafka-python
    refuses to send one: it goes out as ``b""``, counted in ``nulls``. A message with neither
    key nor value (another client may have produced one) cannot be sent by kafka-python at
    all: ``ValueError`` naming its line, as for a line that is not a recording line; either
    says how many messages went out before it.
    """
    sent = 0
    try:
        for number, msg in numbered:
            if msg.key is None and msg.value is None:
                raise ValueError(f"{path}:{number}: the message has neither key nor value, which kafka-python "
                                 "cannot send; give it a key or leave the line out")
            if any(value is None for _, value in msg.headers):
                names = [name for name, value in msg.headers if value is None]
                nulls.first = nulls.first or f"header {names[0]!r} at {path}:{number}"
                nulls.count += len(names)
                msg = dataclasses.replace(msg, headers=[(name, b"" if value is None else value)
                                                        for name, value in msg.headers])
            sent += 1
            yield msg
    except ValueError as exc:  # a truncated recording: the lines before it went out
        raise ValueError(f"{exc} (messages sent before it: {sent:,})") from exc


def record(topic: str, bootstrap: str | None = None, *, follow_s: float = 0.0,
           progress: Progress | None = None) -> Iterator[Message]:
    """Every message of ``topic`` up to its end offsets as they were when called.

    With ``follow_s`` > 0, keep reading until no message arrived for that many seconds. A missing
    topic raises ``ValueError`` here, before the caller opens (and empties) the file to write.
    """
    consumer = make_consumer(group_id=None, bootstrap=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            raise ValueError(f"topic {topic!r} does not exist at {bootstrap_servers(bootstrap)}; "
                             "check --bootstrap-servers or STREAM_CT_BOOTSTRAP")
        # here, not when the generator first runs (the caller opens its file first)
        end = consumer.end_offsets(partitions)
    except BaseException:
        consumer.close()
        raise
    return _read(consumer, partitions, end, follow_s, progress)


def _read(consumer, partitions: list[TopicPartition], end: dict, follow_s: float,
          progress: Progress | None) -> Iterator[Message]:
    """Without ``follow_s``, only the messages below ``end``: a fetch also brings those produced
    since, and a partition read to its end is paused while the others catch up.

    Raises ``KafkaTimeoutError`` when no message came for ``STALL_S`` short of ``end`` (the
    broker went away: kafka-python's poll keeps returning nothing)."""
    try:
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        idle_since = time.monotonic()
        count = 0
        while True:
            batch = consumer.poll(timeout_ms=500, max_records=5000)
            for tp, records in sorted(batch.items(), key=lambda item: item[0].partition):
                for rec in records:
                    if follow_s <= 0 and rec.offset >= end[tp]:
                        break
                    count += 1
                    yield Message(rec.key, rec.value, rec.timestamp, [(k, v) for k, v in rec.headers], tp.partition)
                    if progress:  # each message: the count a Ctrl-C is told is the one written
                        progress.update(count)
            if batch:
                idle_since = time.monotonic()
            read = [tp for tp in partitions if consumer.position(tp) >= end[tp]]
            caught_up = len(read) == len(partitions)
            if follow_s <= 0 and read and not caught_up:
                consumer.pause(*read)
            if caught_up and (follow_s <= 0 or time.monotonic() - idle_since > follow_s):
                return
            if not caught_up and time.monotonic() - idle_since > STALL_S:
                raise KafkaTimeoutError(f"no message came for {STALL_S:.0f} s short of the end offsets "
                                        f"({counted(count, 'message')} read)")
    finally:
        consumer.close()


def partition_count(text: str) -> int:
    """``--partitions``: a whole number, 1 or more (an argparse ``type``)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of partitions, 1 or more")
    return int(text)


def records_per_second(text: str) -> float:
    """``--rate``: a number above 0 (an argparse ``type``).

    >>> records_per_second("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: '0': records per second, above 0 (leave --rate out for as fast as possible)
    """
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not rate > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: records per second, above 0 "
                                         "(leave --rate out for as fast as possible)")
    return rate


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay",
        description="Publish every message of a recording to a topic with its key, value, timestamp and headers.",
        epilog="example: stream-ct replay demo.jsonl --topic parts --partitions 3 --rate 5000")
    p.add_argument("file")
    p.add_argument("--topic", required=True, type=records_topic)
    p.add_argument("--bootstrap-servers", default=None)
    p.add_argument("--partitions", type=partition_count, default=None,
                   help="create the topic with this many partitions, or add partitions up to this many")
    p.add_argument("--rate", type=records_per_second, default=None,
                   help="records per second (default: as fast as possible)")
    p.add_argument("--keep-partitions", action="store_true", help="send each message to its recorded partition")
    p.set_defaults(func=_run_replay)

    r = subparsers.add_parser(
        "record",
        description="Read a topic from the beginning to its current end and write a recording.",
        epilog="example: stream-ct record --topic parts.predictions predictions.jsonl")
    r.add_argument("file")
    r.add_argument("--topic", required=True)
    r.add_argument("--bootstrap-servers", default=None)
    r.add_argument("--follow", type=float, default=0.0, metavar="SECONDS",
                   help="keep recording until the topic is idle this long")
    r.set_defaults(func=_run_record)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within it, SIGTERM (``timeout``, ``kill``, ``docker stop``) stops the command as Ctrl-C
    does: a recording is closed whole (a .gz with its end), what was sent is flushed, exit 130."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def said_when_stopped(progress: Progress) -> Iterator[None]:
    """Within it, Ctrl-C (or SIGTERM, ``sigterm_as_interrupt``) ends with ``progress``'s last
    line: how many records went out or were written before it (then exit 130)."""
    try:
        yield
    except KeyboardInterrupt:
        progress.stopped()
        raise


def _run_replay(args) -> int:
    open(args.file, "rb").close()  # a missing file is said before a topic is made for it
    if args.partitions:
        ensure_topics({args.topic: {"partitions": args.partitions}}, args.bootstrap_servers)
        had = grow_partitions(args.topic, args.partitions, args.bootstrap_servers)
        if 0 < had < args.partitions:  # e.g. serve created it first, with one
            print(f"{args.topic} had {counted(had, 'partition')}; now {args.partitions}")
    progress = Progress("replay", unit="record")
    nulls = NullHeaders()
    try:
        with sigterm_as_interrupt(), said_when_stopped(progress):
            count = replay(sendable(numbered_recording(args.file), args.file, nulls), args.topic,
                           args.bootstrap_servers, rate=args.rate, keep_partitions=args.keep_partitions,
                           progress=progress)
    finally:  # also when the replay stopped: the ones before went out empty
        if nulls.count:
            print(f"replay: {were(nulls.count, 'header value')} null in the "
                  f"recording (first: {nulls.first}), sent as empty: kafka-python cannot send a null header value",
                  file=sys.stderr)
    progress.done(count)
    print(f"replayed {counted(count, 'record')} from {args.file} to {args.topic}")
    return 0


def _run_record(args) -> int:
    progress = Progress("record", unit="record")
    with sigterm_as_interrupt(), said_when_stopped(progress):
        count = write_recording(args.file, record(args.topic, args.bootstrap_servers, follow_s=args.follow,
                                                  progress=progress))
    progress.done(count)
    print(f"recorded {counted(count, 'record')} from {args.topic} to {args.file}", file=sys.stdout)
    return 0
