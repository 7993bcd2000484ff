"""Unit tests for stream_ct.labels.LabelJoiner (join by key, capacity, TTL, early labels, memory bound),
OnlineModel.learn for labels that arrive late, and the [labels] config section."""

from __future__ import annotations

import math
import time

import pytest

from stream_ct.config import ConfigError, ConsumerConfig, LabelSection
from stream_ct.labels import LabelJoiner
from stream_ct.online import OnlineModel


class FakeClock:
    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_joins_by_key_in_label_order():
    j = LabelJoiner(capacity=10, ttl_s=60)
    for key, s in (("L1/W1/1", 0.9), ("L1/W1/2", 0.2), ("L1/W1/3", 0.7)):
        j.add_prediction(key, {"score": s})
    joined = j.add_labels([("L1/W1/3", 0.0), ("L1/W1/1", 1.0)])
    assert joined == [({"score": 0.7}, 0.0), ({"score": 0.9}, 1.0)]
    assert len(j) == 1 and list(j.predictions) == ["L1/W1/2"]
    assert j.counts["joined"] == 2
    assert j.add_labels([("L1/W1/1", 1.0)]) == []  # already joined: waits as an early label
    assert list(j.early_labels) == ["L1/W1/1"]


def test_capacity_evicts_oldest_and_counts():
    j = LabelJoiner(capacity=3, ttl_s=60)
    for i in range(5):
        j.add_prediction(str(i), i)
    assert list(j.predictions) == ["2", "3", "4"]
    assert j.counts["evicted_predictions"] == 2
    assert j.add_labels([("0", 1.0), ("4", 0.0)]) == [(4, 0.0)]


def test_re_added_prediction_moves_to_newest():
    j = LabelJoiner(capacity=2, ttl_s=60)
    j.add_prediction("a", 1)
    j.add_prediction("b", 2)
    j.add_prediction("a", 3)  # re-scored: replaces and becomes the newest
    j.add_prediction("c", 4)
    assert list(j.predictions) == ["a", "c"]
    assert j.add_labels([("a", 1.0)]) == [(3, 1.0)]


def test_early_labels_capacity_counted():
    j = LabelJoiner(capacity=2, ttl_s=60)
    assert j.add_labels([("x", 1.0), ("y", 0.0), ("z", 1.0)]) == []
    assert list(j.early_labels) == ["y", "z"]
    assert j.counts["evicted_labels"] == 1


def test_ttl_expiry_counted_with_fake_clock():
    clock = FakeClock(100.0)
    j = LabelJoiner(capacity=100, ttl_s=10, clock=clock)
    j.add_prediction("a", 1)
    clock.t = 105.0
    j.add_prediction("b", 2)
    clock.t = 110.0
    j.add_prediction("c", 3)  # a is exactly ttl old: kept
    assert list(j.predictions) == ["a", "b", "c"] and j.counts["expired_predictions"] == 0
    clock.t = 110.5
    j.add_prediction("d", 4)  # a is older than ttl: dropped
    assert list(j.predictions) == ["b", "c", "d"]
    assert j.counts["expired_predictions"] == 1
    clock.t = 200.0
    j.add_labels([("q", 1.0)])  # labels expire the predictions they could have met
    assert len(j) == 0 and j.counts["expired_predictions"] == 4
    j.add_prediction("e", 5)
    assert list(j.predictions) == ["e"] and j.counts["expired_predictions"] == 4
    assert j.counts["evicted_predictions"] == 0


def test_a_full_buffer_expires_what_is_past_the_ttl_before_it_evicts():
    """The oldest prediction, already past the TTL, was counted as evicted by a full buffer:
    the counts blamed the capacity for what the TTL dropped."""
    clock = FakeClock(0.0)
    j = LabelJoiner(capacity=2, ttl_s=60, clock=clock)
    j.add_prediction("a", 1)
    clock.t = 30.0
    j.add_prediction("b", 2)
    clock.t = 70.0
    j.add_prediction("c", 3)
    assert list(j.predictions) == ["b", "c"]
    assert (j.counts["expired_predictions"], j.counts["evicted_predictions"]) == (1, 0)


def test_early_label_ttl_expiry_counted():
    clock = FakeClock(0.0)
    j = LabelJoiner(capacity=100, ttl_s=10, clock=clock)
    j.add_labels([("a", 1.0)])
    clock.t = 5.0
    j.add_labels([("b", 0.0)])
    clock.t = 11.0
    j.add_prediction("a", 0.3)  # its label expired (no newer label trimmed it): the prediction waits
    assert j.take_early_matches() == [] and list(j.predictions) == ["a"]
    assert list(j.early_labels) == ["b"] and j.counts["expired_labels"] == 1 and j.counts["joined"] == 0


def test_label_for_a_prediction_past_its_ttl_is_not_joined():
    clock = FakeClock(0.0)
    j = LabelJoiner(capacity=100, ttl_s=10, clock=clock)
    j.add_prediction("a", 0.3)
    clock.t = 5.0
    j.add_prediction("b", 0.6)
    clock.t = 11.0
    assert j.add_labels([("a", 1.0), ("b", 0.0)]) == [(0.6, 0.0)]  # no newer prediction trimmed a
    assert j.counts["expired_predictions"] == 1 and j.counts["joined"] == 1
    assert len(j) == 0 and list(j.early_labels) == ["a"]  # a's label waits, like any label without a prediction


def test_resent_early_label_does_not_shield_older_ones_from_ttl():
    clock = FakeClock(0.0)
    j = LabelJoiner(capacity=100, ttl_s=50, clock=clock)
    j.add_labels([("a", 1.0)])
    clock.t = 10.0
    j.add_labels([("b", 0.0)])
    clock.t = 100.0
    j.add_labels([("a", 1.0)])  # a re-sent label (e.g. a retest)
    clock.t = 105.0
    j.add_labels([("z", 1.0)])  # b is 95 s old, ttl 50 s
    assert "b" not in j.early_labels
    assert j.counts["expired_labels"] == 1


def test_labels_before_predictions_matched_later():
    j = LabelJoiner(capacity=10, ttl_s=60)
    assert j.add_labels([("k1", 1.0), ("k2", 0.0)]) == []
    assert j.counts["joined"] == 0 and len(j.early_labels) == 2
    j.add_prediction("k2", {"score": 0.1})
    j.add_prediction("k3", {"score": 0.5})
    assert len(j) == 1  # k2 was matched, not buffered
    assert j.take_early_matches() == [({"score": 0.1}, 0.0)]
    assert j.take_early_matches() == []  # drained
    assert list(j.early_labels) == ["k1"] and j.counts["joined"] == 1


def test_memory_bound_after_a_million_predictions():
    j = LabelJoiner(capacity=1000, ttl_s=3600)
    for i in range(1_000_000):
        j.add_prediction(f"L/W/{i}", i)
    assert len(j) <= 1000
    assert len(j) == 1000 and j.counts["evicted_predictions"] == 999_000
    assert next(iter(j.predictions)) == "L/W/999000"


# --- OnlineModel.learn: a label that arrives after its prediction -------------------------------

def test_online_learn_from_late_labels():
    m = OnlineModel("classification", learning_rate=0.1)
    rows = [{"a": float(v)} for v in (-2, -1, 1, 2)] * 50
    scores = m.predict_learn(rows, [math.nan] * len(rows))  # no labels yet: nothing learned
    assert m.n_learned == 0 and all(s == 0.5 for s in scores)
    for row in rows:
        m.learn(row, 1.0 if row["a"] > 0 else 0.0)
    assert m.n_learned == 200
    p = m.predict_learn([{"a": 2.0}, {"a": -2.0}], [math.nan, math.nan])
    assert p[0] > 0.7 and p[1] < 0.3


def test_online_learn_regression_and_length_check():
    m = OnlineModel("regression", learning_rate=0.05)
    for _ in range(20):
        for v in (-1.0, 0.0, 1.0):
            m.learn({"a": v}, 3.0 * v + 1.0)
    assert m.n_learned == 60
    assert m.predict_learn([{"a": 1.0}], [math.nan])[0] == pytest.approx(4.0, abs=0.6)
    with pytest.raises(ValueError, match="2 rows but 1 labels"):
        m.predict_learn([{"a": 1.0}, {"a": 2.0}], [1.0])


# --- [labels] config section ----------------------------------------------------------------------

def test_labels_section():
    base = {"consumer": {"name": "y", "input_topic": "parts"}}
    assert ConsumerConfig.from_dict(base).labels == LabelSection(topic="", buffer_size=200_000, ttl_seconds=3600.0)
    cfg = ConsumerConfig.from_dict(dict(base, labels={"topic": "parts.labels", "buffer_size": 1000,
                                                      "ttl_seconds": 60}))
    assert cfg.labels == LabelSection("parts.labels", 1000, 60.0)
    with pytest.raises(ConfigError) as exc:
        ConsumerConfig.from_dict(dict(base, labels={"buffer_size": "big"}))
    assert str(exc.value) == "<dict>: [labels] buffer_size = 'big' must be an integer"


@pytest.mark.parametrize("labels", [{"buffer_size": 0}, {"buffer_size": -5}, {"ttl_seconds": -1.0}])
def test_labels_section_rejects_non_positive_bounds(labels):
    with pytest.raises(ConfigError, match=r"\[labels\]"):
        ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "parts"}, "labels": labels})


def test_capacity_zero_joiner_never_joins():
    """What an unvalidated ``[labels] buffer_size = 0`` leads to."""
    j = LabelJoiner(capacity=0, ttl_s=60)
    j.add_prediction("a", 0.9)
    assert len(j) == 0 and j.counts["evicted_predictions"] == 1
    assert j.add_labels([("a", 1.0)]) == []


def test_a_restored_prediction_expires_on_its_own_time_and_meets_a_label_that_came_first():
    clock = FakeClock(1000.0)
    j = LabelJoiner(capacity=100, ttl_s=60, clock=clock)
    j.add_labels([("early", 1.0)])
    j.add_prediction("fresh", "p-fresh")
    j.restore([("early", "p-early", 20.0), ("aged", "p-aged", 50.0), ("at-ttl", "p-ttl", 60.0), ("past", "p", 61.0)])
    assert j.take_early_matches() == [("p-early", 1.0)]
    assert list(j.predictions) == ["at-ttl", "aged", "fresh"]  # oldest first, as if added then
    assert j.counts["restored_predictions"] == 3 and j.counts["expired_predictions"] == 1
    clock.t = 1011.0  # "aged" was made 61 s ago now, "at-ttl" 71 s ago
    assert j.add_labels([("aged", 0.0)]) == [] and list(j.predictions) == ["fresh"]
    assert j.counts["expired_predictions"] == 3


def test_a_part_whose_label_the_previous_owner_read_does_not_wait_again(monkeypatch):
    """Read back without the labels topic, every part committed before a handover waited
    again, those already joined too: on a stream whose labels come minutes after their parts,
    most of them, filling the joiner until their TTL."""
    from stream_ct import awaiting
    from stream_ct.retrain_worker import TopicWindow

    records = [{"lot_id": "L", "wafer_id": "W", "part_id": str(i), "passed": None} for i in range(4)]
    labels = [{"lot_id": "L", "wafer_id": "W", "part_id": "1", "passed": 1},
              {"lot_id": "L", "wafer_id": "W", "part_id": "2", "soft_bin": 3},  # another consumer's label
              {"lot_id": "L", "part_id": "3", "passed": 0}]                      # joins no part
    reads = []

    def read_topic(topic, since_ms, end_offsets, bootstrap, parts=True, **kw):
        reads.append((topic, end_offsets))
        return TopicWindow(records if parts else labels, timestamps=[1_000_000] * (4 if parts else 3))

    monkeypatch.setattr(awaiting, "read_topic", read_topic)
    note = (time.time(), 1_000_000)
    waiting = awaiting.waiting_records("in", 2, 4, note, 3600, "passed", labels=("in.labels", 3, None))
    assert [rec["part_id"] for _, rec in waiting.predictions] == ["0", "2", "3"]
    assert reads == [("in", {"2": 4}), ("in.labels", {"2": 3})]
    reads.clear()
    assert len(awaiting.waiting_records("in", 2, 4, note, 3600, "passed", labels=("in.labels", 0, None)).predictions) == 4
    assert reads == [("in", {"2": 4})]  # nothing read on the labels partition yet: none joined


def test_a_label_read_before_its_part_waits_for_it_again(monkeypatch):
    """A label the previous owner read before its part (held as an early label) was lost with
    its joiner: the part, read after the restart, waited for a label that had come already."""
    from stream_ct import awaiting
    from stream_ct.retrain_worker import TopicWindow

    part = {"lot_id": "L", "wafer_id": "W", "part_id": "1", "passed": None}
    labels = [{"lot_id": "L", "wafer_id": "W", "part_id": "1", "passed": 1},   # its part was read: joined
              {"lot_id": "L", "wafer_id": "W", "part_id": "7", "passed": 0},   # its part comes later
              {"lot_id": "L", "wafer_id": "W", "part_id": "8", "passed": 1},   # too old by the labels' note
              {"lot_id": "L", "wafer_id": "W", "part_id": "9", "passed": "x"}]  # not a label (dead-lettered)
    stamps = [1_000_000, 1_000_000, 1_000_000 - 3_595_000, 1_000_000]

    def read_topic(topic, since_ms, end_offsets, bootstrap, parts=True, **kw):
        if parts:
            return TopicWindow([part], timestamps=[1_000_000])
        kept = [i for i, ts in enumerate(stamps) if ts >= since_ms]
        return TopicWindow([labels[i] for i in kept], timestamps=[stamps[i] for i in kept])

    monkeypatch.setattr(awaiting, "read_topic", read_topic)
    now = time.time()
    waiting = awaiting.waiting_records("in", 0, 1, (now, 1_000_000), 3600, "passed",
                                       labels=("in.labels", 4, (now - 10, 1_000_000)))
    assert waiting.predictions == []
    assert [(key, label) for _, key, label in waiting.labels] == [("L/W/7", 0.0)]
    assert 10 <= waiting.labels[0][0] < 20
    assert awaiting.waiting_records("in", 0, 1, (now, 1_000_000), 3600, "passed",
                                    labels=("in.labels", 4, None)).labels == []  # no note: ages unknown
    # the read stopped at the joiner's capacity: the label's part may be older than the parts read, and joined
    assert awaiting.waiting_records("in", 0, 1, (now, 1_000_000), 3600, "passed", capacity=1,
                                    labels=("in.labels", 4, (now - 10, 1_000_000))).labels == []


def test_a_restored_label_joins_a_prediction_made_since_and_waits_in_time_order():
    clock = FakeClock(1000.0)
    j = LabelJoiner(capacity=100, ttl_s=60, clock=clock)
    j.add_prediction("served-since", "p")
    j.add_labels([("new", 1.0)])
    j.restore([], [("served-since", 0.0, 5.0), ("old", 1.0, 50.0), ("past", 0.0, 61.0)])
    assert j.take_early_matches() == [("p", 0.0)]
    assert list(j.early_labels) == ["old", "new"]
    assert j.counts["restored_labels"] == 2 and j.counts["expired_labels"] == 1
    j.add_prediction("old", "p-old")
    assert j.take_early_matches() == [("p-old", 1.0)]
    clock.t = 1061.0
    j.add_prediction("new", "p-new")  # its label was added 61 s ago
    assert j.take_early_matches() == [] and j.counts["expired_labels"] == 2


def test_a_label_waits_again_when_its_partition_had_no_part_within_the_ttl(monkeypatch):
    """The read-back returned nothing when the partition's last part was read more than
    ``ttl_seconds`` ago: labels read since, younger than the TTL by their own commit's note
    and waiting for parts still to come, were lost (the parts' tester paused for an hour)."""
    from stream_ct import awaiting
    from stream_ct.retrain_worker import TopicWindow

    part = {"lot_id": "L", "wafer_id": "W", "part_id": "1", "passed": None}
    labels = [{"lot_id": "L", "wafer_id": "W", "part_id": "1", "passed": 1},   # may have joined its part
              {"lot_id": "L", "wafer_id": "W", "part_id": "7", "passed": 0}]   # its part comes later
    stamps = [2_000_000, 5_000_000]

    def read_topic(topic, since_ms, end_offsets, bootstrap, parts=True, **kw):
        if parts:
            return TopicWindow([part], timestamps=[1_000_000]) if since_ms <= 1_000_000 else TopicWindow([])
        kept = [i for i, ts in enumerate(stamps) if ts >= since_ms]
        return TopicWindow([labels[i] for i in kept], timestamps=[stamps[i] for i in kept])

    monkeypatch.setattr(awaiting, "read_topic", read_topic)
    now = time.time()
    waiting = awaiting.waiting_records("in", 0, 1, (now - 4_000, 1_000_000), 3600, "passed",
                                       labels=("in.labels", 2, (now - 10, 5_000_000)))
    assert waiting.predictions == []  # read 4,000 s ago: past its TTL
    assert [(key, label) for _, key, label in waiting.labels] == [("L/W/7", 0.0)]
    assert 10 <= waiting.labels[0][0] < 20


def test_a_part_that_met_its_early_label_does_not_wait_again(monkeypatch):
    """The labels were read back from a TTL before the parts commit only: a part younger than
    that whose label had come before it, earlier (an early label, joined when the part came),
    waited again, filling the joiner until its TTL and joining a resent label a second time."""
    from stream_ct import awaiting
    from stream_ct.retrain_worker import TopicWindow

    part = {"lot_id": "L", "wafer_id": "W", "part_id": "1", "passed": None}
    label = {"lot_id": "L", "wafer_id": "W", "part_id": "1", "passed": 1}

    def read_topic(topic, since_ms, end_offsets, bootstrap, parts=True, **kw):
        record, ts = (part, 6_500_000) if parts else (label, 6_000_000)  # the label came 500 s first
        return TopicWindow([record], timestamps=[ts]) if ts >= since_ms else TopicWindow([])

    monkeypatch.setattr(awaiting, "read_topic", read_topic)
    now = time.time()
    for labels_note in (None, (now, 10_000_000)):
        waiting = awaiting.waiting_records("in", 0, 1, (now, 10_000_000), 3600, "passed",
                                           labels=("in.labels", 1, labels_note))
        assert waiting == ([], []), labels_note  # the part was predicted 3,500 s ago, and joined


def test_the_labels_read_back_are_bounded_like_the_parts(monkeypatch):
    """The labels read back reach twice the TTL back with no bound: an hour or two of a busy
    labels partition, millions of records held at once. They stop at twice the joiner's
    capacity before the committed offset (the parts read back and the early labels kept)."""
    from stream_ct import awaiting
    from stream_ct.retrain_worker import TopicWindow

    floors = {}

    def read_topic(topic, since_ms, end_offsets, bootstrap, parts=True, floor_offsets=None, **kw):
        floors[topic] = floor_offsets
        return TopicWindow([])

    monkeypatch.setattr(awaiting, "read_topic", read_topic)
    now = time.time()
    awaiting.waiting_records("in", 3, 50_000, (now, 1_000_000), 3600, "passed", capacity=1_000,
                             labels=("in.labels", 90_000, (now, 1_000_000)))
    assert floors == {"in": {"3": 49_000}, "in.labels": {"3": 88_000}}


def test_labels_of_a_partition_where_no_part_was_committed_wait_again(monkeypatch):
    """Labels read before any part of their partition (a stream whose labels lead) were
    committed with no parts commit beside them, and the restart read nothing back."""
    from stream_ct import awaiting
    from stream_ct.retrain_worker import TopicWindow

    labels = [{"lot_id": "L", "wafer_id": "W", "part_id": str(i), "passed": i % 2} for i in range(3)]
    read = []

    def read_topic(topic, since_ms, end_offsets, bootstrap, parts=True, **kw):
        read.append(topic)
        return TopicWindow([] if parts else labels, timestamps=[] if parts else [1_000_000] * 3)

    monkeypatch.setattr(awaiting, "read_topic", read_topic)
    now = time.time()
    waiting = awaiting.waiting_records("in", 0, 0, None, 3600, "passed", capacity=2,
                                       labels=("in.labels", 3, (now - 5, 1_000_000)))
    assert read == ["in.labels"] and waiting.predictions == []
    assert [(key, y) for _, key, y in waiting.labels] == [("L/W/1", 1.0), ("L/W/2", 0.0)]  # the youngest 2
