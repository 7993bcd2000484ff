"""Unit tests for stream_ct.replay with a stub producer (no broker)."""

from __future__ import annotations

import argparse
import types

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from kafka.future import Future

import stream_ct.kafka_io as kafka_io
import stream_ct.replay as replay_module
from stream_ct.cli import main
from stream_ct.recording import Message, message_to_line, read_recording, write_recording


class StubProducer:
    """Acknowledges every send except those whose value is ``b"too big"``, as a broker would."""

    def __init__(self):
        self.sent, self.headers = [], []

    def send(self, topic, **kwargs):
        # what kafka-python's KafkaProducer.send checks before anything else
        if kwargs.get("key") is None and kwargs.get("value") is None:
            raise ValueError("Need at least one: key or value")
        if not all(isinstance(k, str) and isinstance(v, bytes) for k, v in kwargs.get("headers") or []):
            raise TypeError("All headers items must be (str, bytes) tuples")
        if kwargs["value"] == b"over max_request_size":
            raise MessageSizeTooLargeError("The message is 3000090 bytes when serialized")
        self.sent.append(kwargs["value"])
        self.headers.append(kwargs.get("headers"))
        future = Future()
        if kwargs["value"] == b"too big":
            future.failure(MessageSizeTooLargeError("broker rejected record"))
        else:
            future.success(None)
        return future

    def partitions_for(self, topic):
        return {0, 1}

    def close(self, timeout=None):  # like kafka-python: waits for the sends, never raises for rejected records
        pass


@pytest.fixture
def producer(monkeypatch):
    stub = StubProducer()
    monkeypatch.setattr(replay_module, "make_producer", lambda bootstrap: stub)
    return stub


def test_replay_counts_acknowledged_sends(producer):
    assert replay_module.replay([Message(b"k", b"v", 1)] * 3, "t") == 3
    assert producer.sent == [b"v"] * 3


def test_replay_raises_when_the_broker_rejects_a_send(producer):
    messages = [Message(b"k", b"v", 1), Message(b"k", b"too big", 2), Message(b"k", b"too big", 3)]
    with pytest.raises(ValueError, match=r"Kafka rejected 2 of 3 records; first error: .*MessageSizeTooLarge"):
        replay_module.replay(messages, "t")
    assert len(producer.sent) == 3


def test_a_recorded_partition_the_topic_lacks_stops_the_replay_saying_how_far_it_got(producer):
    """kafka-python refused it with a bare 'Unrecognized partition 2', not saying that the
    records before it had gone out."""
    messages = [Message(b"k", b"v", 1, partition=p) for p in (0, 1, 2, 0)]
    with pytest.raises(ValueError, match=r"^record 3 was recorded on partition 2, which t does not have "
                                         r"\(2 partitions; --partitions 3 adds them\); 2 records were sent before it"):
        replay_module.replay(messages, "t", keep_partitions=True)
    assert producer.sent == [b"v", b"v"]
    assert replay_module.replay(messages, "t") == 4  # without --keep-partitions the partitioner picks


def test_a_record_over_the_request_size_stops_the_replay_saying_how_far_it_got(producer, tmp_path, capsys):
    """kafka-python refuses it in send(): a MessageSizeTooLargeError traceback and exit code 1."""
    path = tmp_path / "rec.jsonl"
    write_recording(str(path), [Message(b"k", v, 1) for v in (b"v", b"over max_request_size", b"w")])
    assert main(["replay", str(path), "--topic", "parts"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: record 2 is too large to send (") and "3000090 bytes" in line
    assert line.endswith("; 1 record was sent before it")
    assert producer.sent == [b"v"]


class GoneBrokerProducer(StubProducer):
    """kafka-python once the broker went away mid-replay: its sends are never acknowledged."""

    def flush(self, timeout=None):
        if timeout is None:
            raise AssertionError("waits forever")
        raise KafkaTimeoutError("Timeout waiting for future")

    close = flush


def test_a_broker_gone_before_the_sends_were_acknowledged_ends_the_replay_with_exit_code_3(monkeypatch, tmp_path,
                                                                                           capsys):
    """kafka-python's untimed flush never returned when the broker went away mid-replay for longer
    than its delivery timeout (it did not even when the broker came back)."""
    monkeypatch.setattr(replay_module, "make_producer", lambda bootstrap: GoneBrokerProducer())
    path = tmp_path / "rec.jsonl"
    write_recording(str(path), [Message(b"k", b"v", 1)] * 3)
    assert main(["replay", str(path), "--topic", "parts", "--bootstrap-servers", "10.1.2.3:9092"]) == 3
    assert capsys.readouterr().err.startswith("error: cannot reach Kafka at 10.1.2.3:9092 (KafkaTimeoutError")


class NoAutoCreateProducer(StubProducer):
    """kafka-python writing to a topic the broker does not have and will not create."""

    def send(self, topic, **kwargs):
        raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")


def test_a_topic_the_broker_does_not_create_is_named_not_an_unreachable_broker(monkeypatch, tmp_path, capsys):
    """After 60 s it said 'cannot reach Kafka ... start a broker' (exit 3) of a broker that answered."""
    monkeypatch.setattr(replay_module, "make_producer", lambda bootstrap: NoAutoCreateProducer())
    monkeypatch.setattr(kafka_io, "make_consumer", lambda **kw: NoTopicConsumer())  # topic_partitions asks
    path = tmp_path / "rec.jsonl"
    write_recording(str(path), [Message(b"k", b"v", 1)] * 3)
    assert main(["replay", str(path), "--topic", "partz", "--bootstrap-servers", "10.1.2.3:9092"]) == 2
    assert capsys.readouterr().err == ("error: topic 'partz' does not exist at 10.1.2.3:9092, which does not create "
                                       "topics on first use: create it with --partitions N, or check --topic\n")


@pytest.mark.parametrize("option", [["--rate", "-5"], ["--rate", "0"], ["--partitions", "-2"], ["--partitions", "0"]])
def test_a_rate_or_partition_count_below_one_is_refused(producer, tmp_path, capsys, option):
    """--rate -5 replayed at full speed, --partitions 0 was ignored and --partitions -2 ended
    in an InvalidPartitionsError traceback (exit 1)."""
    path = tmp_path / "rec.jsonl"
    write_recording(str(path), [Message(b"k", b"v", 1)])
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(path), "--topic", "parts", *option])
    assert exc.value.code == 2 and f"argument {option[0]}: '{option[1]}': " in capsys.readouterr().err
    assert producer.sent == []


def test_a_missing_recording_is_said_before_the_topic_is_made(monkeypatch, tmp_path, capsys):
    """A misspelt file name created the topic (--partitions 3) and only then failed."""
    made = []
    monkeypatch.setattr(replay_module, "ensure_topics", lambda topics, bootstrap: made.append(topics))
    missing = tmp_path / "strem.jsonl"
    assert main(["replay", str(missing), "--topic", "parts", "--partitions", "3"]) == 2
    assert capsys.readouterr().err == f"error: [Errno 2] No such file or directory: '{missing}'\n"
    assert made == []


def _replay_args(path):
    return argparse.Namespace(file=str(path), topic="parts", bootstrap_servers=None, partitions=None, rate=None,
                              keep_partitions=False)


def test_replay_sends_a_null_header_value_as_empty_and_says_so_once(producer, tmp_path, capsys):
    """``record`` keeps a header without a value as null; kafka-python refuses to send one, so
    replaying such a recording ended in a TypeError traceback."""
    path = tmp_path / "rec.jsonl"
    write_recording(str(path), [Message(b"k1", b"v1", 1, [("trace", None), ("source", b"sim")]),
                                Message(b"k2", b"v2", 2, [("source", b"sim")]),
                                Message(b"k3", b"v3", 3, [("trace", None)])])
    assert replay_module._run_replay(_replay_args(path)) == 0
    assert producer.sent == [b"v1", b"v2", b"v3"]
    assert producer.headers == [[("trace", b""), ("source", b"sim")], [("source", b"sim")], [("trace", b"")]]
    notes = [line for line in capsys.readouterr().err.splitlines() if "null" in line]
    assert notes == [f"replay: 2 header values were null in the recording (first: header 'trace' at {path}:1), "
                     "sent as empty: kafka-python cannot send a null header value"]


def test_replay_of_a_message_with_neither_key_nor_value_names_its_line(producer, tmp_path, capsys):
    """kafka-python cannot send one ('Need at least one: key or value', which did not say where)."""
    path = tmp_path / "rec.jsonl"
    path.write_bytes(message_to_line(Message(b"k", b"v", 1)) + b"\n\n"
                     + message_to_line(Message(None, None, 2)) + b"\n")
    assert main(["replay", str(path), "--topic", "parts"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == (f"error: {path}:3: the message has neither key nor value, which kafka-python cannot send; "
                    "give it a key or leave the line out (messages sent before it: 1)")
    assert producer.sent == [b"v"]


def test_a_bad_line_mid_recording_says_how_many_messages_went_out_before_it(producer, tmp_path, capsys):
    """A recording cut off mid-line (record stopped while writing) sent every line before the
    cut and said only that the last line was bad."""
    path = tmp_path / "rec.jsonl"
    path.write_bytes(b"".join(message_to_line(Message(b"k", b"v", t)) + b"\n" for t in range(3))
                     + message_to_line(Message(b"k", b"v", 3))[:20])
    assert main(["replay", str(path), "--topic", "parts"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {path}:4: not a recording line (")
    assert line.endswith(" (messages sent before it: 3)")
    assert producer.sent == [b"v"] * 3


class NoTopicConsumer:
    """A broker that knows no such topic."""

    closed = False

    def partitions_for_topic(self, topic):
        return None

    def close(self):
        NoTopicConsumer.closed = True


def test_record_of_a_missing_topic_leaves_an_existing_recording_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(replay_module, "make_consumer", lambda **kw: NoTopicConsumer())
    kept = tmp_path / "events.jsonl"
    kept.write_bytes(b"yesterday's recording\n")
    args = argparse.Namespace(topic="ct.event", bootstrap_servers=None, follow=0.0, file=str(kept))
    with pytest.raises(ValueError, match="topic 'ct.event' does not exist"):
        replay_module._run_record(args)
    assert kept.read_bytes() == b"yesterday's recording\n" and NoTopicConsumer.closed


def test_a_missing_topic_names_the_broker_asked(monkeypatch):
    # the usual cause is the wrong broker (STREAM_CT_BOOTSTRAP not set), not lost data
    monkeypatch.setattr(replay_module, "make_consumer", lambda **kw: NoTopicConsumer())
    monkeypatch.setenv("STREAM_CT_BOOTSTRAP", "10.1.2.3:9092")
    with pytest.raises(ValueError, match=r"topic 'ct.events' does not exist at 10.1.2.3:9092; "
                                         r"check --bootstrap-servers or STREAM_CT_BOOTSTRAP"):
        replay_module.record("ct.events")


class GrowingTopic:
    """A two-partition topic that producers keep writing to: after ``record`` is called, and
    while its first fetch is on the way."""

    def __init__(self):
        self.log = {0: [b"a0", b"a1", b"a2"], 1: [b"b0", b"b1"]}
        self.position_of, self.paused, self.polls = {}, set(), 0

    def partitions_for_topic(self, topic):
        return set(self.log)

    def end_offsets(self, partitions):
        return {tp: len(self.log[tp.partition]) for tp in partitions}

    def assign(self, partitions):
        self.position_of = {tp: 0 for tp in partitions}

    def seek_to_beginning(self, *partitions):
        for tp in partitions:
            self.position_of[tp] = 0

    def poll(self, timeout_ms, max_records):
        self.polls += 1
        if self.polls == 1:
            self.log[1].append(b"b2 (produced during the fetch)")
        out = {}
        for tp, at in self.position_of.items():
            if tp not in self.paused and at < len(self.log[tp.partition]):
                out[tp] = [types.SimpleNamespace(offset=o, key=None, value=v, timestamp=o, headers=[])
                           for o, v in enumerate(self.log[tp.partition][at:], start=at)]
                self.position_of[tp] = len(self.log[tp.partition])
        return out

    def position(self, tp):
        return self.position_of[tp]

    def pause(self, *partitions):
        self.paused.update(partitions)

    def close(self):
        pass


def test_record_stops_at_the_end_offsets_taken_when_it_was_called(monkeypatch):
    """It took them only when the generator first ran, and kept every message a fetch brought,
    so messages produced after 'stream-ct record' started ended up in the recording."""
    topic = GrowingTopic()
    monkeypatch.setattr(replay_module, "make_consumer", lambda **kw: topic)
    messages = replay_module.record("parts")
    topic.log[0] += [b"a3 (produced after record started)", b"a4"]
    assert [(m.partition, m.value) for m in messages] == [(0, b"a0"), (0, b"a1"), (0, b"a2"), (1, b"b0"), (1, b"b1")]


def test_record_with_follow_keeps_what_was_produced_since(monkeypatch):
    topic = GrowingTopic()
    monkeypatch.setattr(replay_module, "make_consumer", lambda **kw: topic)
    messages = replay_module.record("parts", follow_s=0.01)
    topic.log[0].append(b"a3")
    assert sorted(m.value for m in messages) == [b"a0", b"a1", b"a2", b"a3", b"b0", b"b1",
                                                 b"b2 (produced during the fetch)"]


class BrokerGoneAfterOneFetch(GrowingTopic):
    """The broker stopped after the first fetch: kafka-python's poll returns nothing from then on."""

    def poll(self, timeout_ms, max_records):
        if self.polls:
            return {}
        self.paused = {tp for tp in self.position_of if tp.partition == 1}  # its fetch was still on the way
        out = super().poll(timeout_ms, max_records)
        self.paused = set()
        return out


def test_record_gives_up_when_the_broker_went_away_before_the_end(monkeypatch, tmp_path, capsys):
    """It polled forever, saying nothing, with the recording open (found with the broker stopped
    after 72,541 of 120,000 messages)."""
    monkeypatch.setattr(replay_module, "make_consumer", lambda **kw: BrokerGoneAfterOneFetch())
    monkeypatch.setattr(replay_module, "STALL_S", 0.2)
    out = tmp_path / "parts.jsonl"
    assert main(["record", "--topic", "parts", "--bootstrap-servers", "10.1.2.3:9092", str(out)]) == 3
    assert capsys.readouterr().err.startswith("error: cannot reach Kafka at 10.1.2.3:9092 (KafkaTimeoutError")
    assert [m.value for m in read_recording(str(out))] == [b"a0", b"a1", b"a2"]  # whole lines, up to the stop
