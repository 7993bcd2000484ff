"""Prediction messages on ``<input>.predictions``: one per part, or one per input partition and poll.

``[consumer] prediction_messages = "part"`` (the default) sends one message per part, keyed by
the part's key. ``"batch"`` sends one message per input partition and poll (at most
``PARTS_PER_MESSAGE`` parts and ``MAX_MESSAGE_BYTES`` each), keyed ``<input topic>/<partition>`` so a partition's
predictions stay in order: kafka-python's producer costs ~30 µs per message, more than
everything else serve does per part. ``unpack`` turns either kind back into per-part
predictions, so readers need not care which one a consumer writes.

>>> part = {"key": "W1/1/3/4", "model": "yield", "version": 2, "source": "champion", "score": 0.75,
...         "prediction": True, "partition": 0, "offset": 17, "ts": 1700000000.25}
>>> key, value = batch_message("parts", 0, "yield", 2, "champion", ["W1/1/3/4"], [0.75], [True], [17],
...                            [1700000000.25])
>>> key, unpack(value) == [part]
(b'parts/0', True)
>>> unpack(orjson.dumps(part)) == [part]
True
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

FORMATS = ("part", "batch")
#: Parts per batched message: 1,000 parts are ~80 kB, well under Kafka's 1 MB message limit.
PARTS_PER_MESSAGE = 1000
#: A batched message larger than this (very long part keys) is split in halves until it fits.
MAX_MESSAGE_BYTES = 900_000
#: The per-part fields a batched message carries as lists, in one-part message names.
COLUMNS = {"keys": "key", "scores": "score", "predictions": "prediction", "offsets": "offset", "ts": "ts"}


def batch_messages(input_topic: str, partition: int, model: str, version: int | None, source: str,
                   keys, scores, predictions, offsets, ts) -> list[tuple[tuple[bytes, bytes], int]]:
    """``((key, value), parts)`` of the batched messages for parts read from one input
    ``partition`` (the per-part fields are equal-length lists, at most ``PARTS_PER_MESSAGE``
    long), in order: one message, or halves while a message exceeds ``MAX_MESSAGE_BYTES``."""
    message = batch_message(input_topic, partition, model, version, source, keys, scores, predictions, offsets, ts)
    if len(message[1]) <= MAX_MESSAGE_BYTES or len(keys) == 1:
        return [(message, len(keys))]
    half = len(keys) // 2
    fields = (keys, scores, predictions, offsets, ts)
    return [part for lo, hi in ((0, half), (half, len(keys)))
            for part in batch_messages(input_topic, partition, model, version, source, *(f[lo:hi] for f in fields))]


def batch_message(input_topic: str, partition: int, model: str, version: int | None, source: str,
                  keys, scores, predictions, offsets, ts) -> tuple[bytes, bytes]:
    """``(key, value)`` of one batched message for parts read from one input ``partition``; the
    per-part fields are equal-length lists."""
    return f"{input_topic}/{partition}".encode(), orjson.dumps({
        "format": "batch", "model": model, "version": version, "source": source, "partition": partition,
        "keys": keys, "scores": scores, "predictions": predictions, "offsets": offsets, "ts": ts})


def unpack(value: bytes) -> list[dict[str, Any]]:
    """The per-part predictions in a message of either kind."""
    message = orjson.loads(value)
    if message.get("format") != "batch":
        return [message]
    head = {name: message[name] for name in ("model", "version", "source", "partition")}
    columns = [message[plural] for plural in COLUMNS]
    return [{**head, **dict(zip(COLUMNS.values(), row))} for row in zip(*columns)]


def unpack_all(values) -> list[dict[str, Any]]:
    """The per-part predictions in a sequence of message values, in order."""
    return list(itertools.chain.from_iterable(unpack(v) for v in values))
