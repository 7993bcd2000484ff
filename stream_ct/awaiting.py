"""Predictions still waiting for their labels when serve stopped, found again after a restart.

The label joiner lives in serve's memory, so a restart (or a partition handed over in a
rebalance) lost the predictions committed before it: their labels, arriving later, updated
neither the rolling metrics nor the online model. Serve now notes in each offset commit when
it committed and the timestamp of the partition's last record read (``commit_note``); the
instance that gets the partition reads back the records before the committed offset whose
prediction is younger than the joiner's TTL (``waiting_records``) and lets them wait again.

A record's age is the time since that commit plus how much older its timestamp is than the
last record's: exact on a live stream, and an over-estimate on a replay faster than the
original (an entry judged too old is not restored, never kept past its TTL).

>>> note = commit_note(last_timestamp_ms=1_000_000, now=5_000.0)
>>> note
'{"committed_at":5000.0,"last_timestamp_ms":1000000}'
>>> read_note(note)
(5000.0, 1000000)
>>> read_note("") is None    # a commit from before these notes
True
>>> record_age_s(1_000_000 - 30_000, read_note(note), now=5_100.0)   # 100 s since the commit, 30 s older
130.0
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from stream_ct.retrain_worker import read_topic


def commit_note(last_timestamp_ms: int | None, now: float | None = None) -> str:
    """The metadata string of a partition's offset commit: the wall time of the commit and the
    timestamp of the last record read before it (Kafka keeps up to 4,096 bytes per offset)."""
    return json.dumps({"committed_at": round(time.time() if now is None else now, 3),
                       "last_timestamp_ms": last_timestamp_ms}, separators=(",", ":"))


def read_note(metadata: str | None) -> tuple[float, int] | None:
    """``(committed_at, last_timestamp_ms)`` of a commit ``commit_note`` wrote, else None."""
    try:
        note = json.loads(metadata or "")
        return float(note["committed_at"]), int(note["last_timestamp_ms"])
    except (ValueError, TypeError, KeyError):
        return None


def record_age_s(timestamp_ms: int, note: tuple[float, int], now: float | None = None) -> float:
    """Seconds since the record before the commit ``note`` describes was predicted."""
    committed_at, last_timestamp_ms = note
    now = time.time() if now is None else now
    return max(0.0, now - committed_at) + max(0, last_timestamp_ms - timestamp_ms) / 1000


def waiting_records(topic: str, partition: int, committed_offset: int, note: tuple[float, int], ttl_s: float,
                    target: str, bootstrap: str | None = None) -> list[tuple[float, dict[str, Any]]]:
    """``(age_s, record)`` of the records of ``partition`` before ``committed_offset`` that came
    without their ``target`` and were predicted less than ``ttl_s`` ago, oldest first."""
    left_s = ttl_s - max(0.0, time.time() - note[0])
    if left_s <= 0 or committed_offset <= 0:
        return []
    window = read_topic(topic, int(note[1] - left_s * 1000), {str(partition): committed_offset}, bootstrap,
                        stall_timeout_s=30.0)
    now = time.time()
    aged = ((record_age_s(ts, note, now), rec) for ts, rec in zip(window.timestamps, window.records)
            if _unlabeled(rec.get(target)))
    return [(age, rec) for age, rec in aged if age <= ttl_s]


def _unlabeled(value: Any) -> bool:
    """Serve's rule (``target_vector``): a null or absent target, or a NaN, is no label yet."""
    return value is None or (isinstance(value, float) and math.isnan(value))
