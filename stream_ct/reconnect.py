"""Broker calls retried across an outage instead of ending the process.

A broker restart makes kafka-python's calls that need an answer from it (offset commits,
offset lookups) raise ``KafkaConnectionError`` or ``KafkaTimeoutError``. A long-lived
consumer waits it out: it has nothing to do without the broker anyway, and exiting would
only add a restart.

>>> calls = iter([KafkaTimeoutError("metadata"), 42])
>>> def lookup():
...     answer = next(calls)
...     if isinstance(answer, Exception):
...         raise answer
...     return answer
>>> while_unreachable("look up", lookup, should_stop=lambda: False, source="demo", first_delay_s=0)
demo: cannot look up (KafkaTimeoutError: KafkaTimeoutError: metadata); retrying until Kafka is back
demo: Kafka reachable again (look up done)
(True, 42)
"""

from __future__ import annotations

import time
from typing import Any, Callable

from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from stream_ct.logs import log


def while_unreachable(what: str, call: Callable[[], Any], should_stop: Callable[[], bool], source: str,
                      on_retry: Callable[[], None] = lambda: None,
                      first_delay_s: float = 0.5) -> tuple[bool, Any]:
    """``(True, call())``, retried with backoff (``first_delay_s`` doubling to 5 s) while the
    broker is unreachable rather than failing; ``(False, None)`` once ``should_stop()``.
    Logs the outage once as ``source`` and the recovery; ``on_retry`` counts the retries."""
    delay, reported = first_delay_s, False
    while True:
        try:
            result = call()
        except (KafkaConnectionError, KafkaTimeoutError) as exc:
            on_retry()
            if not reported:
                log(source, f"cannot {what} ({type(exc).__name__}: {exc}); retrying until Kafka is back")
                reported = True
            if should_stop():
                return False, None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        if reported:
            log(source, f"Kafka reachable again ({what} done)")
        return True, result
