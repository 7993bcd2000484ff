"""Predictions still waiting for their labels when serve stopped, found again after a restart.

The label joiner lives in serve's memory, so a restart (or a partition handed over in a
rebalance) lost the predictions committed before it: their labels, arriving later, updated
neither the rolling metrics nor the online model. Serve now notes in each offset commit the
timestamp of the partition's last record read and when it read (and predicted) it
(``commit_note``); the instance that gets the partition reads back the records before the
committed offset whose prediction is younger than the joiner's TTL (``waiting_records``) and
lets them wait again. The labels that came before their parts, read and committed on the
co-partitioned labels topic, wait again for their parts the same way.

A record's age is the time since the last record was read plus how much older its timestamp
is than the last record's: exact on a live stream, and an over-estimate on a replay faster
than the original (an entry judged too old is not restored, never kept past its TTL). The
time is the last record's, not the commit's: a commit covers partitions that had no record
in its batch too.

>>> note = commit_note(last_timestamp_ms=1_000_000, read_at=5_000.0)
>>> note
'{"read_at":5000.0,"last_timestamp_ms":1000000}'
>>> read_note(note)
(5000.0, 1000000)
>>> read_note("") is None    # a commit from before these notes
True
>>> record_age_s(1_000_000 - 30_000, read_note(note), now=5_100.0)   # read 100 s ago, 30 s older
130.0
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, NamedTuple

from stream_ct.labels import unjoinable
from stream_ct.record import part_key
from stream_ct.retrain_worker import TopicWindow, read_topic, usable_label


def commit_note(last_timestamp_ms: int | None, read_at: float | None = None) -> str:
    """The metadata string of a partition's offset commit: the timestamp of the last record
    read before it and the wall time it was read (default: now; Kafka keeps up to 4,096 bytes
    per offset)."""
    return json.dumps({"read_at": round(time.time() if read_at is None else read_at, 3),
                       "last_timestamp_ms": last_timestamp_ms}, separators=(",", ":"))


def read_note(metadata: str | None) -> tuple[float, int] | None:
    """``(read_at, last_timestamp_ms)`` of a commit ``commit_note`` wrote, else None."""
    try:
        note = json.loads(metadata or "")
        return float(note["read_at"]), int(note["last_timestamp_ms"])
    except (ValueError, TypeError, KeyError):
        return None


def record_age_s(timestamp_ms: int, note: tuple[float, int], now: float | None = None) -> float:
    """Seconds since the record before the commit ``note`` describes was predicted."""
    read_at, last_timestamp_ms = note
    now = time.time() if now is None else now
    return max(0.0, now - read_at) + max(0, last_timestamp_ms - timestamp_ms) / 1000


class Waiting(NamedTuple):
    """What a partition's previous owner held in its label joiner, found again: ``(age_s,
    record)`` of its predictions waiting for their labels, and ``(age_s, part key, label)`` of
    the labels that came before their parts, each oldest first."""

    predictions: list[tuple[float, dict[str, Any]]]
    labels: list[tuple[float, str, float]]


def waiting_records(topic: str, partition: int, committed_offset: int, note: tuple[float, int] | None,
                    ttl_s: float, target: str, bootstrap: str | None = None, capacity: int | None = None,
                    labels: tuple[str, int, tuple[float, int] | None] | None = None) -> Waiting:
    """The records of ``partition`` before ``committed_offset`` that came without their
    ``target`` and were predicted less than ``ttl_s`` ago by the commit's ``note`` (None: a
    commit without one, whose predictions' ages are not known); of the last ``capacity``
    offsets only (the joiner's: more would be evicted on arrival, and an hour of a busy
    partition is millions of records held at once).

    ``labels``: the labels topic, its committed offset on the same partition and that commit's
    note. A part whose label came before that offset was joined already and does not wait
    again; a label read before that offset whose part was not (it comes later) waits for it
    again (``early_labels``), also on a partition where no part was committed yet."""
    labels_note = labels[2] if labels is not None else None
    # the parts' or the labels' (a partition without a part for longer than the TTL still has early labels)
    since = [ms for ms in (_since_ms(note, ttl_s), _since_ms(labels_note, ttl_s)) if ms is not None]
    if not since:
        return Waiting([], [])
    since_ms, ttl_ms = min(since), int(ttl_s * 1000)
    # with the labels' ages known, the parts up to a TTL before the oldest label too: those it may have joined
    start_ms = since_ms - (ttl_ms if labels_note is not None else 0)
    floor = None if capacity is None else {str(partition): max(0, committed_offset - capacity)}
    window = TopicWindow([]) if committed_offset <= 0 else read_topic(
        topic, start_ms, {str(partition): committed_offset}, bootstrap, stall_timeout_s=30.0, floor_offsets=floor)
    # the labels up to a TTL before the oldest part too: those that came first and joined it when it came
    read = [] if labels is None else labels_read(labels[0], labels[1], partition, since_ms - ttl_ms, target,
                                                 bootstrap, capacity)
    joined, now = {key for _, key, _ in read}, time.time()
    aged = () if note is None else ((record_age_s(ts, note, now), rec) for ts, rec in
                                    zip(window.timestamps, window.records)
                                    if _unlabeled(rec.get(target)) and part_key(rec) not in joined)
    predictions = [(age, rec) for age, rec in aged if age <= ttl_s]
    if labels_note is None:  # a commit from before these notes: the labels' ages are not known
        return Waiting(predictions, [])
    cut = capacity is not None and len(window.records) + window.invalid_records >= capacity
    # every part read here is in the window: none at all when none was committed
    parts_from_ms = window.timestamps[0] if cut and window.timestamps else \
        start_ms if committed_offset > 0 else -math.inf
    return Waiting(predictions, early_labels(read, window, parts_from_ms, labels_note, ttl_s, capacity, now))


def early_labels(read: list[tuple[int, str, float]], window: TopicWindow, parts_from_ms: float,
                 note: tuple[float, int], ttl_s: float, capacity: int | None = None,
                 now: float | None = None) -> list[tuple[float, str, float]]:
    """``(age_s, part key, label)`` of the labels ``read`` whose part is not in ``window``,
    which holds every part from ``parts_from_ms`` on: of those at least ``ttl_s`` after it
    only (an older part's label may have joined it; a part more than ``ttl_s`` before its
    label had expired, and its label waited as an early label then too). Younger than
    ``ttl_s`` by the labels commit's ``note``, the youngest ``capacity``.

    >>> window = TopicWindow([{"lot_id": "L", "wafer_id": "W", "part_id": "1"}], timestamps=[5_000])
    >>> read = [(4_000, "L/W/9", 1.0), (5_000, "L/W/1", 0.0), (6_000, "L/W/2", 1.0)]
    >>> early_labels(read, window, parts_from_ms=3_000, note=(100.0, 6_000), ttl_s=3.0, now=100.0)
    [(0.0, 'L/W/2', 1.0)]

    ``L/W/9``'s part may have come before 3,000 ms (not read) and been joined at 4,000.
    """
    read_parts = {part_key(rec) for rec in window.records}
    earliest_ms = parts_from_ms + ttl_s * 1000
    early = [(record_age_s(ts, note, now), key, value) for ts, key, value in read
             if key not in read_parts and ts >= earliest_ms]
    early = [entry for entry in early if entry[0] <= ttl_s]
    return early[max(0, len(early) - capacity):] if capacity is not None else early


def labels_read(topic: str, committed_offset: int, partition: int, since_ms: int, target: str,
                bootstrap: str | None = None, capacity: int | None = None) -> list[tuple[int, str, float]]:
    """``(timestamp_ms, part key, label)`` of the labels with a usable ``target`` on
    ``partition`` of the labels ``topic``, from ``since_ms`` up to ``committed_offset``: the
    labels the partition's previous owner had read, oldest first; of the last twice
    ``capacity`` offsets only (those of the parts read back and the early labels kept: an
    hour or two of a busy labels partition is millions of records held at once)."""
    if committed_offset <= 0:
        return []
    floor = None if capacity is None else {str(partition): max(0, committed_offset - 2 * capacity)}
    window = read_topic(topic, since_ms, {str(partition): committed_offset}, bootstrap, parts=False,
                        stall_timeout_s=30.0, floor_offsets=floor)
    return [(ts, part_key(label), float(label[target])) for ts, label in zip(window.timestamps, window.records)
            if target in label and unjoinable(label) is None and usable_label(label[target])]


def _since_ms(note: tuple[float, int] | None, ttl_s: float) -> int | None:
    """The timestamp before which the records of a commit ``note`` describes are older than
    ``ttl_s``; None when all of them are."""
    if note is None:
        return None
    left_s = ttl_s - max(0.0, time.time() - note[0])
    return int(note[1] - left_s * 1000) if left_s > 0 else None


def _unlabeled(value: Any) -> bool:
    """Serve's rule (``target_vector``): a null or absent target, or a NaN, is no label yet."""
    return value is None or (isinstance(value, float) and math.isnan(value))
