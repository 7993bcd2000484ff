"""The retrain worker's window read (``read_topic``): by timestamp, up to end offsets, in
timestamp order, and never waiting forever. On the real broker, and with a consumer that never
moves for the stall (no broker can be made to hold a partition still on cue)."""

from __future__ import annotations

import time
import types

import orjson
import pytest
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from stream_ct import retrain_worker
from stream_ct.kafka_io import ensure_topics, make_producer
from stream_ct.retrain_worker import read_topic


def label(i: int) -> dict:
    return {"lot_id": "L1", "wafer_id": "W1", "part_id": i, "passed": i % 2}


@pytest.mark.integration
def test_a_window_is_read_by_time_in_time_order_and_an_end_past_the_log_reads_to_its_end(kafka_bootstrap, topic):
    ensure_topics({topic: {"partitions": 2}}, kafka_bootstrap)
    producer = make_producer(kafka_bootstrap)
    for i in range(10):  # part i stamped at (i + 1) s, alternating partitions
        producer.send(topic, value=orjson.dumps(label(i)), partition=i % 2, timestamp_ms=(i + 1) * 1000)
    producer.flush()
    producer.close()
    started = time.monotonic()
    window = read_topic(topic, 5000, {"0": 1000, "1": 1000}, kafka_bootstrap, parts=False).records
    assert [rec["part_id"] for rec in window] == [4, 5, 6, 7, 8, 9]
    assert time.monotonic() - started < 30  # it read to the end of the log, and stopped there
    assert [rec["part_id"] for rec in read_topic(topic, 0, {"0": 2}, kafka_bootstrap, parts=False).records] == [0, 2]
    assert read_topic(topic, 11_000, None, kafka_bootstrap, parts=False).records == []


@pytest.mark.integration
def test_a_window_starts_at_its_start_offsets_where_given_and_by_time_elsewhere(kafka_bootstrap, topic):
    """Parts that share one timestamp: by time, a window takes them all."""
    ensure_topics({topic: {"partitions": 2}}, kafka_bootstrap)
    producer = make_producer(kafka_bootstrap)
    for i in range(10):
        producer.send(topic, value=orjson.dumps(label(i)), partition=i % 2, timestamp_ms=1000)
    producer.flush()
    producer.close()
    window = read_topic(topic, 1000, {"0": 5, "1": 5}, kafka_bootstrap, parts=False, start_offsets={"0": 3}).records
    assert sorted(rec["part_id"] for rec in window) == [1, 3, 5, 6, 7, 8, 9]


@pytest.mark.integration
def test_a_window_whose_front_retention_deleted_is_read_from_what_is_left_and_says_how_much_is_gone(
        kafka_bootstrap, topic):
    ensure_topics({topic: {"partitions": 2}}, kafka_bootstrap)
    producer = make_producer(kafka_bootstrap)
    for i in range(20):  # parts 0, 2, ..., 18 at offsets 0..9 of partition 0; the odd ones on 1
        producer.send(topic, value=orjson.dumps(label(i)), partition=i % 2, timestamp_ms=1000 * (i + 1))
    producer.flush()
    producer.close()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:  # as retention does: partition 0 now begins at offset 6
        admin.delete_records({TopicPartition(topic, 0): 6})
    finally:
        admin.close()
    window = read_topic(topic, 0, {"0": 10, "1": 10}, kafka_bootstrap, parts=False,
                        start_offsets={"0": 2, "1": 2})
    assert sorted(rec["part_id"] for rec in window.records) == [5, 7, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    assert window.deleted == {"0": 4}


class StillConsumer:
    """A consumer whose partition holds offsets 0..9 and never delivers any of them."""

    def __init__(self, *args, **kwargs):
        self.position_of = {}

    def partitions_for_topic(self, topic):
        return {0}

    def end_offsets(self, partitions):
        return {tp: 10 for tp in partitions}

    def beginning_offsets(self, partitions):
        return {tp: 0 for tp in partitions}

    def offsets_for_times(self, query):
        return {tp: type("OffsetAndTimestamp", (), {"offset": 3})() for tp in query}

    def assign(self, partitions):
        pass

    def seek(self, tp, offset):
        self.position_of[tp] = offset

    def pause(self, *partitions):
        pass

    def poll(self, timeout_ms, max_records):
        time.sleep(0.05)
        return {}

    def position(self, tp):
        return self.position_of[tp]

    def close(self):
        pass


def test_a_read_that_makes_no_progress_fails_with_the_partitions_named(monkeypatch):
    monkeypatch.setattr(retrain_worker, "make_consumer", StillConsumer)
    started = time.monotonic()
    with pytest.raises(TimeoutError) as exc:
        read_topic("parts", 0, {"0": 10}, stall_timeout_s=0.3)
    assert str(exc.value) == "reading parts: no progress for 0.3 s (partition 0 at offset 3 of 10)"
    assert time.monotonic() - started < 5


class AgedOutConsumer(StillConsumer):
    """Two partitions whose first 500 offsets Kafka's retention has deleted."""

    def partitions_for_topic(self, topic):
        return {0, 1}

    def end_offsets(self, partitions):
        return {tp: 1000 for tp in partitions}

    def beginning_offsets(self, partitions):
        return {tp: 500 for tp in partitions}

    def offsets_for_times(self, query):
        return {tp: None for tp in query}  # read nothing: the test is about what is refused


def test_a_window_retention_deleted_is_refused_naming_it(monkeypatch):
    """A request read after its window aged out of the topic was trained on nothing and skipped
    as '0 labeled rows < minimum; no test matched the feature patterns'."""
    monkeypatch.setattr(retrain_worker, "make_consumer", AgedOutConsumer)
    with pytest.raises(retrain_worker.WindowGone) as exc:
        read_topic("parts", 0, {"0": 300, "1": 400})
    assert str(exc.value) == ("the window is no longer in parts: retention deleted it (partition 0 ended at "
                              "offset 300, begins at 500 now; partition 1 ended at offset 400, begins at 500 now)")
    assert read_topic("parts", 0, {"0": 300, "1": 700}).records == []  # partition 1 still holds its part


PART = {"lot_id": "L1", "wafer_id": "W1", "part_id": 1, "ts": 1.0, "tests": {"1:VDD": 1.2}}


class MixedConsumer(StillConsumer):
    """A partition holding two parts and, between them, two records serve dead-letters."""

    values = [orjson.dumps(PART), b'{"lot_id": "L1", oops', orjson.dumps(dict(PART, tests={})),
              orjson.dumps(dict(PART, part_id=2))]

    def end_offsets(self, partitions):
        return {tp: len(self.values) for tp in partitions}

    def offsets_for_times(self, query):
        return {tp: types.SimpleNamespace(offset=0) for tp in query}

    def poll(self, timeout_ms, max_records):
        end = len(self.values)
        out = {tp: [types.SimpleNamespace(offset=o, timestamp=1000 + o, value=self.values[o]) for o in range(at, end)]
               for tp, at in self.position_of.items() if at < end}
        self.position_of = dict.fromkeys(self.position_of, end)
        return out


def test_records_that_do_not_decode_are_left_out_of_a_window_and_counted(monkeypatch):
    """Serve dead-letters them; the window dropped them without a word, so a retrain could not
    say how many of its records it had lost that way."""
    monkeypatch.setattr(retrain_worker, "make_consumer", MixedConsumer)
    window = read_topic("parts", 0, {"0": 4})
    assert [rec["part_id"] for rec in window.records] == [1, 2] and window.timestamps == [1000, 1003]
    assert window.invalid_records == 2


@pytest.mark.integration
def test_the_predictions_read_back_after_a_restart_are_at_most_the_joiners_capacity(kafka_bootstrap, topic):
    """The read-back took every record of the partition younger than ``ttl_seconds``: at 1,000
    parts a second and the default hour, 3.6 million decoded records held at once, though the
    joiner keeps 200,000 of them at most. It reads the last ``capacity`` offsets at most."""
    from stream_ct.awaiting import commit_note, read_note, waiting_records

    ensure_topics({topic: {"partitions": 1}}, kafka_bootstrap)
    producer = make_producer(kafka_bootstrap)
    now_ms = int(time.time() * 1000)
    for i in range(50):
        part = {"lot_id": "L1", "wafer_id": "W1", "part_id": str(i), "ts": 1.0 + i, "tests": {"a": 1.0}}
        producer.send(topic, value=orjson.dumps(part), partition=0, timestamp_ms=now_ms - 50 + i)
    producer.flush()
    producer.close()
    note = read_note(commit_note(now_ms - 1))
    found = waiting_records(topic, 0, 50, note, 3600, "passed", kafka_bootstrap, capacity=10).predictions
    assert [rec["part_id"] for _, rec in found] == [str(i) for i in range(40, 50)]
    assert len(waiting_records(topic, 0, 50, note, 3600, "passed", kafka_bootstrap).predictions) == 50
