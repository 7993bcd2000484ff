"""A broker away for longer than the producer's delivery timeout loses no output.

kafka-python fails a record it could not deliver within ``delivery_timeout_ms`` and its
``flush()`` returns normally; serve sends its outputs through ``Outbox``, which sends the
failed records again once the broker is back. Here a dedicated broker is stopped before
300 records are sent with a 3 s delivery timeout and started again 8 s later (about 20 s).
"""

from __future__ import annotations

import threading
import time

import pytest

from harness import record, report_line

from stream_ct.kafka_io import ensure_topics, make_producer
from stream_ct.outbox import Outbox

pytestmark = pytest.mark.integration


def test_records_expired_while_the_broker_is_away_are_sent_again(topic, restartable_broker):
    started = time.monotonic()
    broker, bootstrap = restartable_broker, restartable_broker.bootstrap
    producer = None
    try:
        ensure_topics({topic: {"partitions": 1}}, bootstrap)
        producer = make_producer(bootstrap, request_timeout_ms=1000, delivery_timeout_ms=3000)
        producer.send(topic, value=b"warm-up").get(timeout=30)  # metadata cached
        broker.stop()
        box = Outbox(producer, flush_timeout_s=1.0, backoff_s=0.5, max_backoff_s=1.0)
        values = [str(i).encode() for i in range(300)]
        for v in values:
            box.send(topic, value=v)
        result = {}
        flusher = threading.Thread(target=lambda: result.setdefault("ok", box.flush()))
        flusher.start()
        time.sleep(8)  # > the delivery timeout: kafka-python has failed every record by now
        assert flusher.is_alive(), "flush returned while the broker was away"
        broker.start()
        flusher.join(timeout=120)
        assert result.get("ok") is True
        assert box.resent >= len(values)  # every record expired at least once
        got = [m.value for m in record(topic, bootstrap)]
    finally:
        if producer is not None:
            producer.close(timeout=5)
    assert set(got) == set(values) | {b"warm-up"}
    report_line("broker away past the delivery timeout", faults="broker stopped 8 s; producer delivery timeout 3 s",
                records_in=len(values), records_lost=len(set(values) - set(got)), resent=box.resent,
                duplicates=len(got) - len(set(got)), seconds=round(time.monotonic() - started, 1))
