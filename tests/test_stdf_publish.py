"""``stdf publish`` on the real broker: one acknowledged message per part, event-time stamps,
and an exact count when a bad file stops it; and, with a fake producer, the count when Kafka
fails mid-file."""

from __future__ import annotations

import gzip
import threading

import orjson
import pytest
from kafka.errors import KafkaTimeoutError

from stdf_support import STDF_DIR, main, needs_data
from stream_ct.kafka_io import ensure_topics
from stream_ct.record import part_key, validate_record
from stream_ct.replay import record
from stream_ct.stdf import StdfError
from stream_ct.stdf.publish import ACK_WAIT_S, SETTLE_TIMEOUT_S, PublishError, publish


class FakeFuture:
    def __init__(self):
        self.callbacks = []

    def add_callback(self, fn, *args):
        self.callbacks.append((fn, args))

    def add_errback(self, fn, *args):
        pass


class FakeProducer:
    """Acknowledges at each flush what was sent, up to ``acks`` messages in all, then raises
    ``KafkaTimeoutError`` for the rest; ``send`` raises it once ``sends`` were sent."""

    def __init__(self, sends: int | None = None, acks: int | None = None):
        self.sends, self.acks = sends, acks
        self.pending, self.flush_timeouts, self.closed = [], [], False

    def send(self, topic, key, value, timestamp_ms, headers):
        if self.sends == 0:
            raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")
        if self.sends is not None:
            self.sends -= 1
        self.pending.append(FakeFuture())
        return self.pending[-1]

    def flush(self, timeout=None):
        self.flush_timeouts.append(timeout)
        while self.pending and self.acks != 0:
            for fn, args in self.pending.pop(0).callbacks:
                fn(*args, None)
            if self.acks is not None:
                self.acks -= 1
        if self.pending:
            raise KafkaTimeoutError("Timeout waiting for future")

    def close(self, timeout=None):
        self.flush(timeout)
        self.closed = True


class StuckProducer(FakeProducer):
    """kafka-python's sender stuck after the broker went away with requests in flight: nothing
    is acknowledged, and a ``flush()`` without a timeout never returns."""

    def flush(self, timeout=None):
        self.flush_timeouts.append(timeout)
        threading.Event().wait(timeout)
        if self.pending:
            raise KafkaTimeoutError("Timeout waiting for future")


@needs_data
def test_a_send_that_raises_mid_file_says_how_many_parts_were_acknowledged():
    producer = FakeProducer(sends=1 + 120)
    with pytest.raises(PublishError) as info:
        publish([STDF_DIR / "makechip_d10_1.std", STDF_DIR / "lot2.stdf.gz"], "t", "unused",
                progress=False, producer=producer)
    result = info.value.result
    assert [(f.file, f.parts) for f in result.files] == [("makechip_d10_1.std", 1), ("lot2.stdf.gz", 120)]
    assert str(info.value) == result.error == (
        "Kafka failed while publishing lot2.stdf.gz (KafkaTimeoutError: Failed to update metadata after 60.0 "
        "secs.): 121 parts were acknowledged, 120 of them from lot2.stdf.gz; parts sent but not acknowledged "
        "are not counted, so publishing again from there may repeat a few")
    assert isinstance(info.value.__cause__, KafkaTimeoutError)
    assert producer.flush_timeouts == [ACK_WAIT_S, SETTLE_TIMEOUT_S, 0] and producer.closed


@needs_data
def test_the_count_from_the_file_in_flight_has_thousands_separators_like_the_total(tmp_path):
    """It said "1,200 parts were acknowledged, 1200 of them from ..."."""
    raw = gzip.decompress((STDF_DIR / "lot2.stdf.gz").read_bytes())
    (tmp_path / "two.stdf").write_bytes(raw + raw)  # a second FAR is a known record: 1,568 parts
    with pytest.raises(PublishError, match="1,200 parts were acknowledged, 1,200 of them from two.stdf; "):
        publish([tmp_path / "two.stdf"], "t", "unused", progress=False, producer=FakeProducer(sends=1200))


@needs_data
def test_a_flush_that_raises_counts_only_the_acknowledged_parts():
    producer = FakeProducer(acks=300)
    with pytest.raises(PublishError) as info:
        publish([STDF_DIR / "lot2.stdf.gz"], "t", "unused", progress=False, producer=producer)
    assert [(f.file, f.parts) for f in info.value.result.files] == [("lot2.stdf.gz", 300)]
    assert str(info.value).startswith("Kafka failed while publishing lot2.stdf.gz (KafkaTimeoutError: Timeout "
                                      "waiting for future): 300 parts were acknowledged, 300 of them from ")
    assert producer.pending and producer.flush_timeouts == [ACK_WAIT_S, SETTLE_TIMEOUT_S, 0]


@needs_data
def test_a_broker_gone_with_parts_in_flight_fails_the_publish_instead_of_hanging(monkeypatch):
    monkeypatch.setattr("stream_ct.stdf.publish.ACK_WAIT_S", 0.2)
    monkeypatch.setattr("stream_ct.stdf.publish.SETTLE_TIMEOUT_S", 0.2)
    producer, raised = StuckProducer(), []

    def run():
        with pytest.raises(PublishError) as info:
            publish([STDF_DIR / "makechip_d10_1.std"], "t", "unused", progress=False, producer=producer)
        raised.append(info.value)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), f"publish still waiting after 10 s (flush timeouts {producer.flush_timeouts})"
    assert str(raised[0]).startswith("Kafka failed while publishing makechip_d10_1.std (KafkaTimeoutError: "
                                     "Timeout waiting for future): 0 parts were acknowledged")


@needs_data
def test_the_cli_prints_the_acknowledged_count_when_kafka_fails_mid_file(monkeypatch, capsys):
    monkeypatch.setattr("stream_ct.kafka_io.make_producer", lambda *args, **kwargs: FakeProducer(sends=200))
    code = main(["stdf", "publish", str(STDF_DIR / "lot2.stdf.gz"), "--topic", "t",
                 "--bootstrap-servers", "127.0.0.1:1", "--quiet"])
    assert code == 3
    err = capsys.readouterr().err
    assert err.startswith("error: Kafka at 127.0.0.1:1: Kafka failed while publishing lot2.stdf.gz "
                          "(KafkaTimeoutError: Failed to update metadata after 60.0 secs.): 200 parts were "
                          "acknowledged, 200 of them from lot2.stdf.gz; ")
    assert err.count("\n") == 1


class InterruptedProducer(FakeProducer):
    """Ctrl-C comes while the part after ``sends`` parts is sent."""

    def send(self, topic, key, value, timestamp_ms, headers):
        if self.sends == 0:
            raise KeyboardInterrupt
        return super().send(topic, key, value, timestamp_ms, headers)


@needs_data
def test_ctrl_c_says_how_many_parts_were_acknowledged(monkeypatch, capsys):
    """It exited 130 without a word, though thousands of parts could have gone out."""
    producer = InterruptedProducer(sends=1 + 120)
    monkeypatch.setattr("stream_ct.kafka_io.make_producer", lambda *args, **kwargs: producer)
    with pytest.raises(KeyboardInterrupt):  # stream_ct.cli turns it into exit 130
        main(["stdf", "publish", str(STDF_DIR / "makechip_d10_1.std"), str(STDF_DIR / "lot2.stdf.gz"),
              "--topic", "t", "--quiet"])
    assert capsys.readouterr().err == ("stopped during lot2.stdf.gz: 121 parts were published (acknowledged by "
                                       "Kafka), 120 of them from lot2.stdf.gz\n")
    assert producer.flush_timeouts == [ACK_WAIT_S, SETTLE_TIMEOUT_S, 0] and producer.closed


@needs_data
def test_publishing_a_file_without_its_mrr_warns_and_exits_0(monkeypatch, capsys, tmp_path):
    """A copy of lot2 with its last record, the MRR, cut off: published as complete, not a word."""
    raw = gzip.decompress((STDF_DIR / "lot2.stdf.gz").read_bytes())
    pos = last = 0
    while pos < len(raw):  # big-endian record headers
        last, pos = pos, pos + 4 + int.from_bytes(raw[pos:pos + 2], "big")
    assert raw[last + 2:last + 4] == b"\x01\x14"  # MRR
    (tmp_path / "copy.stdf").write_bytes(raw[:last])
    monkeypatch.setattr("stream_ct.kafka_io.make_producer", lambda *args, **kwargs: FakeProducer())
    assert main(["stdf", "publish", str(tmp_path / "copy.stdf"), "--topic", "t", "--quiet"]) == 0
    assert capsys.readouterr().err == ("warning: copy.stdf: no MRR, so the file may be incomplete (a partial copy, "
                                       "or still being written); 0 parts were left open (a PIR without its PRR)\n")


@pytest.mark.integration
@needs_data
def test_publish_sends_every_part_keyed_and_stamped(kafka_bootstrap, topic):
    ensure_topics({topic: {"partitions": 3}}, kafka_bootstrap)
    files = [STDF_DIR / "lot2.stdf.gz", STDF_DIR / "makechip_d10_1.std"]
    result = publish(files, topic, kafka_bootstrap, progress=False)
    assert [(f.file, f.parts) for f in result.files] == [("lot2.stdf.gz", 784), ("makechip_d10_1.std", 1)]
    assert result.error is None
    back = list(record(topic, kafka_bootstrap))
    assert len(back) == 785
    by_file = {}
    for message in back:
        rec = orjson.loads(message.value)
        assert validate_record(rec) is None
        assert message.key == part_key(rec).encode()
        assert message.timestamp == round(rec["ts"] * 1000)
        assert message.headers[0] == ("source", b"stdf")
        by_file[message.headers[1][1]] = by_file.get(message.headers[1][1], 0) + 1
    assert by_file == {b"lot2.stdf.gz": 784, b"makechip_d10_1.std": 1}


@pytest.mark.integration
@needs_data
def test_publish_stops_at_a_bad_file_and_says_how_many_went_out(kafka_bootstrap, topic, tmp_path, capsys):
    ensure_topics({topic: {"partitions": 1}}, kafka_bootstrap)
    raw = gzip.decompress((STDF_DIR / "lot2.stdf.gz").read_bytes())
    (tmp_path / "cut.stdf.gz").write_bytes(gzip.compress(raw[:1_000_000]))
    with pytest.raises(StdfError) as info:
        publish([STDF_DIR / "makechip_d10_1.std", tmp_path / "cut.stdf.gz"], topic, kafka_bootstrap, progress=False)
    sent = info.value.result.parts
    assert [(f.file, f.parts) for f in info.value.result.files][0] == ("makechip_d10_1.std", 1)
    assert str(info.value).endswith(f": {sent} parts were published before the error")
    assert len(list(record(topic, kafka_bootstrap))) == sent > 1
    code = main(["stdf", "publish", str(tmp_path / "cut.stdf.gz"), "--topic", topic,
                 "--bootstrap-servers", kafka_bootstrap, "--quiet"])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: cut.stdf.gz: truncated record at byte ")
