"""Batched prediction messages carry exactly the per-part predictions, in order, chunked."""

from __future__ import annotations

import collections
import types

import numpy as np
import pytest

from stream_ct.config import ConfigError, ConsumerConfig
from stream_ct import prediction_messages
from stream_ct.prediction_messages import PARTS_PER_MESSAGE, unpack, unpack_all
from stream_ct.serve import Server


class RecordingOutbox:
    def __init__(self):
        self.sent = []

    def send(self, topic, **kwargs):
        self.sent.append((topic, kwargs))


class Producer:
    def partitions_for(self, topic):
        return {0, 1, 2}


def _server(prediction_messages: str) -> Server:
    server = Server.__new__(Server)  # only the state the emit path uses
    server.config = ConsumerConfig.from_dict({
        "consumer": {"name": "yield", "input_topic": "parts", "prediction_messages": prediction_messages}})
    server.task, server.counts = "classification", collections.Counter()
    server.outbox, server.producer = RecordingOutbox(), Producer()
    return server


def _batch(n_per_partition):
    """Records and their source messages from several input partitions, sorted by partition
    as ``Server._process`` gathers them."""
    records, sources = [], []
    for partition, n in enumerate(n_per_partition):
        for i in range(n):
            records.append({"lot_id": "L1", "wafer_id": f"W{partition}", "part_id": i,
                            "ts": 1_700_000_000 + i / 1000})
            sources.append(types.SimpleNamespace(partition=partition, offset=100 + i, key=None,
                                                 timestamp=1_700_000_000_000 + i))
    return records, sources


@pytest.mark.parametrize("sizes", [[3], [1, 0, 7], [PARTS_PER_MESSAGE * 2 + 5, 4]])
def test_batched_messages_unpack_to_the_per_part_predictions(sizes):
    records, sources = _batch(sizes)
    scores = np.random.default_rng(0).random(len(records))
    per_part, batched = _server("part"), _server("batch")
    for server in (per_part, batched):
        server._emit_predictions(records, sources, scores, "champion", 3)
    assert unpack_all(kw["value"] for _, kw in batched.outbox.sent) == \
        unpack_all(kw["value"] for _, kw in per_part.outbox.sent)
    assert len(per_part.outbox.sent) == len(records)
    expected = sum(-(-n // PARTS_PER_MESSAGE) for n in sizes)
    assert len(batched.outbox.sent) == expected
    assert batched.counts["predictions_champion"] == per_part.counts["predictions_champion"] == len(records)
    for topic, kw in batched.outbox.sent:  # keyed by input partition: its predictions stay in order
        parts = unpack(kw["value"])
        assert topic == "parts.predictions" and kw["key"] == f"parts/{parts[0]['partition']}".encode()
        assert {p["partition"] for p in parts} == {parts[0]["partition"]}
        assert 0 < len(parts) <= PARTS_PER_MESSAGE
        last = [s for s in sources if (s.partition, s.offset) == (parts[-1]["partition"], parts[-1]["offset"])]
        assert kw["timestamp_ms"] == last[0].timestamp


def test_a_batch_too_large_for_one_message_is_split(monkeypatch):
    """Very long part keys: halves until each message fits, the parts and their order kept."""
    monkeypatch.setattr(prediction_messages, "MAX_MESSAGE_BYTES", 3_000)
    records, sources = _batch([50, 3])
    for r in records:
        r["part_id"] = "p" * 100 + str(r["part_id"])
    scores = np.linspace(0, 1, len(records))
    per_part, batched = _server("part"), _server("batch")
    for server in (per_part, batched):
        server._emit_predictions(records, sources, scores, "champion", 1)
    values = [kw["value"] for _, kw in batched.outbox.sent]
    assert len(values) > 2 and all(len(v) <= 3_000 for v in values)
    assert unpack_all(values) == unpack_all(kw["value"] for _, kw in per_part.outbox.sent)
    for _, kw in batched.outbox.sent:
        last = unpack(kw["value"])[-1]
        assert kw["timestamp_ms"] == next(s.timestamp for s in sources
                                          if (s.partition, s.offset) == (last["partition"], last["offset"]))


def test_unknown_prediction_message_format_is_refused():
    with pytest.raises(ConfigError, match=r"prediction_messages = 'parts'; use one of part, batch"):
        ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "t", "prediction_messages": "parts"}})
