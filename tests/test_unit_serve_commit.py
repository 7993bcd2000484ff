"""Serve's broker calls across an outage (no broker: a consumer that fails, then works): the poll,
the offset commit (sent without waiting, made again synchronously when it failed), and the
offsets lookup a retrain request needs."""

from __future__ import annotations

import collections
import types

import pytest
from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaConnectionError, KafkaTimeoutError

import stream_ct.reconnect as reconnect
from stream_ct.serve import ForgetRevoked, Server


PART = TopicPartition("parts", 0)
OTHER = TopicPartition("parts", 1)


class FlakyConsumer:
    """One assigned partition; its synchronous commits raise the given errors first, then
    commit; its asynchronous commits are answered when the test says so (``answer``)."""

    def __init__(self, *errors):
        self.errors, self.commits, self.async_commits = list(errors), [], []
        self.assigned = {PART}

    def assignment(self):
        return set(self.assigned)

    def commit_async(self, offsets, callback):
        self.async_commits.append(({tp: o.offset for tp, o in offsets.items()}, callback))

    def answer(self, response=None):
        """kafka-python's callback for the last asynchronous commit (an exception: it failed)."""
        offsets, callback = self.async_commits[-1]
        callback(offsets, response)

    def commit(self, offsets, timeout_ms=None):
        if self.errors:
            raise self.errors.pop(0)
        self.commits.append({tp: o.offset for tp, o in offsets.items()})


def _server(stopping=False):
    server = Server.__new__(Server)  # only the state these calls use
    server.counts, server.stopping = collections.Counter(), stopping
    server.consumed, server.commit_offsets, server.commits_sent, server.last_commit = {}, {}, 0, "none"
    server.consumed_at = {}
    return server


def _batch(server, consumer, next_offset):
    """A batch read up to ``next_offset`` whose outputs were acknowledged: committed."""
    server.consumed[PART] = next_offset
    server._commit(consumer)


class FlakyOffsets:
    """A consumer whose offset lookups fail with the given errors first; 2 partitions."""

    def __init__(self, *errors):
        self.errors = list(errors)

    def partitions_for_topic(self, topic):
        return {0, 1}

    def beginning_offsets(self, parts, timeout_ms=None):
        if self.errors:
            raise self.errors.pop(0)
        return {tp: 0 for tp in parts}

    def end_offsets(self, parts, timeout_ms=None):
        return {tp: 100 + tp.partition for tp in parts}


class Published(list):
    def __call__(self, reason, start_ts_ms, end_offsets, window_records, **extra):
        self.append((reason, end_offsets, extra))
        self.start_ts_ms = start_ts_ms


def _requesting_server(consumer, stopping=False):
    server = _server(stopping)
    server.config = types.SimpleNamespace(consumer=types.SimpleNamespace(input_topic="parts"))
    # (timestamp, partition, offset) of the last three records read
    server.consumer, server.read_marks = consumer, collections.deque([(1, 0, 7), (2, 0, 8), (3, 0, 9)])
    server._publish_request = Published()
    return server


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(reconnect.time, "sleep", lambda s: None)


def test_commit_goes_out_without_waiting_for_the_answer():
    consumer, server = FlakyConsumer(), _server()
    _batch(server, consumer, 10)
    consumer.answer()
    _batch(server, consumer, 20)
    assert [offsets for offsets, _ in consumer.async_commits] == [{PART: 10}, {PART: 20}]
    assert consumer.commits == []


def test_a_failed_commit_is_made_again_synchronously_waiting_out_an_unreachable_broker(capsys):
    consumer = FlakyConsumer(KafkaConnectionError("111 ECONNREFUSED"), KafkaTimeoutError("metadata"))
    server = _server()
    _batch(server, consumer, 10)
    consumer.answer(KafkaConnectionError("111 ECONNREFUSED"))
    _batch(server, consumer, 20)  # the next batch: covers both
    assert consumer.commits == [{PART: 20}] and server.counts["commit_retries"] == 2
    assert server.counts["async_commit_failures"] == 1 and len(consumer.async_commits) == 1
    out = capsys.readouterr().out
    assert "retrying until Kafka is back" in out and "Kafka reachable again" in out
    _batch(server, consumer, 30)  # answered: back to not waiting
    assert consumer.async_commits[-1][0] == {PART: 30}


def test_only_the_latest_commit_s_answer_counts():
    consumer, server = FlakyConsumer(), _server()
    _batch(server, consumer, 10)
    first = consumer.async_commits[0][1]
    _batch(server, consumer, 20)
    first({PART: 10}, KafkaTimeoutError("late"))  # an older commit failing: the newer one covers it
    _batch(server, consumer, 30)
    assert consumer.commits == [] and len(consumer.async_commits) == 3


def test_stopping_during_an_outage_leaves_the_batch_uncommitted(capsys):
    consumer = FlakyConsumer(KafkaConnectionError("111 ECONNREFUSED"))
    server = _server(stopping=True)
    _batch(server, consumer, 10)
    consumer.answer(KafkaConnectionError("111 ECONNREFUSED"))
    _batch(server, consumer, 20)
    assert consumer.commits == []
    assert "read again on restart" in capsys.readouterr().out


@pytest.mark.parametrize("answer", ["none yet", "failed"])
def test_the_last_commit_is_made_sure_of_before_the_consumer_closes(answer):
    consumer, server = FlakyConsumer(), _server()
    _batch(server, consumer, 10)
    if answer == "failed":
        consumer.answer(KafkaTimeoutError("commit"))
    server.consumed[PART] = 30  # a batch read but not committed (its outputs failed)
    server._settle_commit(consumer)
    assert consumer.commits == [{PART: 10}]


def test_an_answered_commit_is_not_made_again():
    consumer, server = FlakyConsumer(), _server()
    _batch(server, consumer, 10)
    consumer.answer()
    server._settle_commit(consumer)
    assert consumer.commits == []


def test_a_refused_last_commit_does_not_stop_the_shutdown(capsys):
    consumer, server = FlakyConsumer(CommitFailedError("the group rebalanced")), _server()
    _batch(server, consumer, 10)
    consumer.answer(CommitFailedError("the group rebalanced"))
    server._settle_commit(consumer)
    assert consumer.commits == [] and "its batch will be read again" in capsys.readouterr().out


def test_partitions_no_longer_assigned_are_not_committed():
    consumer, server = FlakyConsumer(), _server()
    server.consumed[TopicPartition("parts", 1)] = 7  # revoked in a rebalance
    _batch(server, consumer, 10)
    assert consumer.async_commits[-1][0] == {PART: 10}


def test_other_errors_are_not_swallowed():
    consumer, server = FlakyConsumer(ValueError("bug")), _server()
    _batch(server, consumer, 10)
    consumer.answer(KafkaTimeoutError("commit"))
    with pytest.raises(ValueError):
        _batch(server, consumer, 20)


def test_retrain_request_waits_for_the_input_offsets(capsys):
    server = _requesting_server(FlakyOffsets(KafkaConnectionError("111 ECONNREFUSED")))
    server._request("manual: check", 3, command_id="c-1")
    assert server._publish_request == [("manual: check", {0: 100, 1: 101},
                                        {"start_offsets": {0: 7}, "command_id": "c-1"})]
    assert server.counts["read_input_offsets_retries"] == 1
    assert "Kafka reachable again" in capsys.readouterr().out


def test_a_window_starts_at_the_offset_of_its_first_record_on_each_partition_read():
    """Parts that share a timestamp (an STDF file without test times) all fell in a window read
    by time: a 300-record retrain of lot2 trained on its 784 parts."""
    server = _requesting_server(FlakyOffsets())
    server.read_marks = collections.deque([(5, 0, 10), (5, 1, 20), (5, 0, 11), (5, 1, 21)])
    server._request("drift", 3)
    assert server._publish_request == [("drift", {0: 100, 1: 101}, {"start_offsets": {0: 11, 1: 20}})]


def test_a_partition_read_again_from_its_commit_starts_the_window_at_its_smallest_offset():
    """Assigned back after a rebalance, partition 0 is read again from offset 150 after 180..181."""
    server = _requesting_server(FlakyOffsets())
    server.read_marks = collections.deque([(9, 0, 180), (9, 0, 181), (8, 1, 20), (7, 0, 150), (8, 0, 151)])
    server._request("drift", 5)
    assert server._publish_request == [("drift", {0: 100, 1: 101}, {"start_offsets": {0: 150, 1: 20}})]
    assert server._publish_request.start_ts_ms == 7  # the earliest timestamp: its labels are read from there


def test_missing_partition_metadata_counts_as_unreachable():
    consumer = FlakyOffsets()
    consumer.partitions_for_topic = lambda topic: None
    server = _requesting_server(consumer, stopping=True)
    server._request("drift", 3)
    assert server._publish_request == [] and server.counts["read_input_offsets_retries"] == 1


def test_stopping_during_an_outage_says_which_request_was_not_made(capsys):
    server = _requesting_server(FlakyOffsets(KafkaTimeoutError("offsets")), stopping=True)
    server._request("manual: check", 3, command_id="c-2")
    assert server._publish_request == []
    assert "retrain (manual: check) not requested (command_id=c-2)" in capsys.readouterr().out


class FlakyPoll:
    """A consumer whose polls raise the given errors first, then return one record."""

    def __init__(self, *errors):
        self.errors = list(errors)

    def poll(self, timeout_ms):
        if self.errors:
            raise self.errors.pop(0)
        return {PART: ["record"]}


def test_a_poll_that_meets_a_restarting_broker_is_waited_out():
    server = _server()
    server.config = types.SimpleNamespace(consumer=types.SimpleNamespace(poll_timeout_ms=100))
    polled = server._poll(FlakyPoll(KafkaConnectionError("111 ECONNREFUSED"), KafkaTimeoutError("coordinator")))
    assert polled == (True, {PART: ["record"]}) and server.counts["poll_retries"] == 2
    server.stopping = True  # stopping during an outage: no batch, the loop ends
    assert server._poll(FlakyPoll(KafkaConnectionError("111 ECONNREFUSED"))) == (False, None)


def test_a_partition_revoked_and_regained_is_not_committed_back_to_where_this_instance_left_it():
    """Read to 10 on PART; PART revoked, read on by another instance, and given back; the next
    batch holds only OTHER: its commit leaves PART's committed offset alone."""
    consumer, server = FlakyConsumer(), _server()
    consumer.assigned = {PART, OTHER}
    _batch(server, consumer, 10)
    consumer.answer()
    ForgetRevoked(server).on_partitions_revoked({PART, OTHER})
    assert server.consumed == {} and server.commit_offsets == {}
    server.consumed[OTHER] = 5
    server._commit(consumer)
    assert consumer.async_commits[-1][0] == {OTHER: 5}


def test_a_commit_refused_mid_stream_is_made_again_with_the_next_batch(capsys):
    """A broker away past the session timeout drops serve from its group: the synchronous
    commit is refused (a test run saw serve exit there after a broker restart); the next batch,
    after the poll has rejoined, commits synchronously and covers it."""
    consumer = FlakyConsumer(CommitFailedError("UnknownMemberIdError"))
    server = _server()
    _batch(server, consumer, 10)
    consumer.answer(KafkaConnectionError("111 ECONNREFUSED"))
    _batch(server, consumer, 20)  # refused
    assert consumer.commits == [] and server.counts["commits_refused"] == 1
    assert "commit refused" in capsys.readouterr().out
    _batch(server, consumer, 30)
    assert consumer.commits == [{PART: 30}] and server.last_commit == "done"


class UnreachableProducer:
    """kafka-python's producer with the broker away: ``flush`` times out, and so does ``close``,
    which flushes first."""

    def __init__(self):
        self.calls = []

    def flush(self, timeout=None):
        self.calls.append("flush")
        raise KafkaTimeoutError("Timeout waiting for future")

    def close(self, timeout=None):
        self.calls.append("close")
        self.flush(timeout)


def test_the_events_left_undelivered_at_exit_do_not_end_serve_with_an_error(capsys):
    server = _server(stopping=True)
    server.producer = UnreachableProducer()
    server._flush_before_exit(timeout_s=0)
    # closed all the same: left open, kafka-python's exit hook closed it again and printed a traceback
    assert server.producer.calls == ["flush", "close", "flush"]
    assert "did not acknowledge the last events" in capsys.readouterr().out


class AwayBroker:
    """kafka-python's consumer with the broker away: a commit or an offsets lookup waits its
    ``timeout_ms`` (30 s when not given) and raises; what it waited is kept."""

    def __init__(self):
        self.waited_ms = []

    def _wait(self, timeout_ms):
        self.waited_ms.append(30_000 if timeout_ms is None else timeout_ms)
        raise KafkaTimeoutError("timed out")

    def assignment(self):
        return {PART}

    def partitions_for_topic(self, topic):
        return {0}

    def commit(self, offsets, timeout_ms=None):
        self._wait(timeout_ms)

    def beginning_offsets(self, parts, timeout_ms=None):
        self._wait(timeout_ms)

    end_offsets = beginning_offsets


def test_a_sigterm_during_an_outage_is_heard_within_seconds_at_a_commit_or_an_offsets_lookup():
    """The last commit and a bootstrap's offsets lookup each waited kafka-python's 30 s
    before serve could see it was told to stop (a SIGTERM during an outage: over a minute)."""
    consumer = AwayBroker()
    server = _requesting_server(consumer, stopping=True)
    server.commit_offsets, server.last_commit = {PART: OffsetAndMetadata(10, "", -1)}, "pending"
    server._settle_commit(consumer)
    server._request("drift", 3)
    assert len(consumer.waited_ms) == 2 and max(consumer.waited_ms) <= 5000
