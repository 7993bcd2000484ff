"""The model watcher's catch-up check during a broker outage (no broker)."""

from kafka import TopicPartition
from kafka.errors import KafkaConnectionError

from stream_ct.model_watcher import _caught_up


class FakeConsumer:
    def __init__(self, positions, away=False):
        self.positions, self.away = positions, away

    def position(self, tp):
        if self.away:  # kafka-python 3 may refresh offsets from the broker here
            raise KafkaConnectionError("111 ECONNREFUSED")
        return self.positions[tp]


def test_catch_up_check_waits_out_an_unreachable_broker_instead_of_ending_the_watcher():
    tp = TopicPartition("ct.models", 0)
    assert _caught_up(FakeConsumer({tp: 5}), [tp], {tp: 5})
    assert not _caught_up(FakeConsumer({tp: 4}), [tp], {tp: 5})
    assert not _caught_up(FakeConsumer({tp: 5}, away=True), [tp], {tp: 5})  # raised before: the thread died
