"""Records sent through a producer and kept until the broker has acknowledged them.

kafka-python gives up on a record it could not deliver within ``delivery_timeout_ms``
(two minutes by default): the future fails, ``flush()`` returns as usual, and a caller that
commits its input offsets next has lost that output. ``Outbox.flush`` returns only once every
record sent since the last flush is acknowledged, sending the failed ones again (at least
once; a resent record may follow later ones), or reports that it stopped trying.

>>> from kafka.future import Future
>>> class Producer:                      # the first send of "b" expires, its resend succeeds
...     def __init__(self): self.log = []
...     def send(self, topic, **kw):
...         self.log.append(kw["value"])
...         expired = kw["value"] == b"b" and self.log.count(b"b") == 1
...         return Future().failure(KafkaTimeoutError("expired")) if expired else Future().success(None)
...     def flush(self, timeout=None): pass
>>> box = Outbox(Producer(), backoff_s=0)
>>> for v in (b"a", b"b", b"c"): box.send("t", value=v)
>>> box.flush()
outbox: 1 records not acknowledged (KafkaTimeoutError: expired); sending them again until Kafka takes them
outbox: Kafka acknowledged again; 1 records were sent again in all
True
>>> box.producer.log
[b'a', b'b', b'c', b'b']
"""

from __future__ import annotations

import time
from typing import Callable

from kafka.errors import KafkaTimeoutError

from stream_ct.logs import log


class Outbox:
    """Wraps ``producer.send``; ``flush`` re-sends what failed with an error Kafka calls
    retriable (expired in the accumulator, broker unreachable, leader moved).

    ``should_stop`` is asked between attempts: when it turns true while records are still
    undelivered, ``flush`` returns False (the caller must not commit the input they came from).
    Other errors (a record over the broker's size limit) are raised.
    """

    def __init__(self, producer, should_stop: Callable[[], bool] = lambda: False,
                 flush_timeout_s: float = 5.0, backoff_s: float = 0.5, max_backoff_s: float = 5.0):
        self.producer, self.should_stop = producer, should_stop
        self.flush_timeout_s, self.backoff_s, self.max_backoff_s = flush_timeout_s, backoff_s, max_backoff_s
        self.pending: list[tuple[object, str, dict]] = []  # (future, topic, send arguments)
        self.resent = 0

    def send(self, topic: str, **kwargs) -> None:
        self.pending.append((self.producer.send(topic, **kwargs), topic, kwargs))

    def flush(self) -> bool:
        """True once every pending record is acknowledged; False if told to stop first."""
        delay, reported = self.backoff_s, False
        while True:
            if not self._wait():
                if self.should_stop():
                    return False
                continue
            failed = [(topic, kw, future.exception) for future, topic, kw in self.pending if future.failed()]
            if not failed:
                if reported:
                    log("outbox", f"Kafka acknowledged again; {self.resent} records were sent again in all")
                self.pending = []
                return True
            for _, _, exc in failed:
                if not getattr(exc, "retriable", False):
                    raise exc
            if not reported:
                log("outbox", f"{len(failed)} records not acknowledged ({failed[0][2]}); "
                              "sending them again until Kafka takes them")
                reported = True
            if self.should_stop():
                return False
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)
            self.resent += len(failed)
            self.pending = [(self.producer.send(topic, **kw), topic, kw) for topic, kw, _ in failed]

    def _wait(self) -> bool:
        """Flush the producer for at most ``flush_timeout_s``; False if it timed out."""
        try:
            self.producer.flush(timeout=self.flush_timeout_s)
            return True
        except KafkaTimeoutError:
            return False
