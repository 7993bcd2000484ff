"""Events: every check, decision, gate result, deploy, rollback and alert, on ``ct.events``.

An event is a flat JSON object with ``type``, ``ts`` (epoch seconds), ``source`` (which
process), ``consumer``, ``host``, ``pid``, ``run`` (one id per process start: a container's
serve restarts as pid 1 on the same host) and the event's own fields. It is also appended to
the audit log when one is configured, so a decision is on disk even when the broker is not
reachable.
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from stream_ct.kafka_io import EVENTS_TOPIC

#: This process's run: tells apart the events of two starts with the same host and pid.
RUN = uuid.uuid4().hex[:12]


def _default(obj: Any):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):  # non-contiguous arrays, which orjson will not take directly
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def to_json(obj: Any, indent: bool = False) -> bytes:
    """JSON bytes for events and registry metadata: numpy values as plain numbers, NaN as null."""
    option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(obj, default=_default, option=option)


def encode_event(event: dict[str, Any]) -> bytes:
    return to_json(event)


class EventLog:
    """Publishes events with a shared producer; ``emit`` never blocks on the broker."""

    def __init__(self, producer, source: str, consumer: str, audit_path: str | Path | None = None,
                 topic: str = EVENTS_TOPIC, webhook=None, listeners: tuple = (), audit_failed=None):
        self.producer, self.topic, self.webhook = producer, topic, webhook
        self.listeners = tuple(listeners)  # called with every event, e.g. to update metrics
        self.base = {"source": source, "consumer": consumer, "host": socket.gethostname(), "pid": os.getpid(),
                     "run": RUN}
        self.audit_path = Path(audit_path) if audit_path else None
        # told (event, error) of an event the audit log could not take, which is sent all the
        # same; without it the error raises
        self.audit_failed = audit_failed
        if self.audit_path:
            self.audit_path.parent.mkdir(parents=True, exist_ok=True)

    def with_audit_log(self, path: str | Path, failed) -> "EventLog":
        """This log with ``path`` as its audit log, telling ``failed(event, error)`` of each event
        it could not append there (a relative path is relative to the working directory)."""
        log = copy.copy(self)
        log.audit_path, log.audit_failed = Path(path), failed
        # a folder that cannot be made fails each append, which tells (ValueError: a NUL in the path)
        with contextlib.suppress(OSError, ValueError):
            log.audit_path.parent.mkdir(parents=True, exist_ok=True)
        return log

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, "ts": time.time(), **self.base, **fields}
        data = encode_event(event)
        # on disk first: a send that raises (buffer full, producer closed) must not lose the
        # decision from the audit log, which is there for when Kafka is not reachable
        if self.audit_path:
            try:
                with open(self.audit_path, "ab") as f:
                    f.write(data + b"\n")
            except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
                if self.audit_failed is None:
                    raise
                self.audit_failed(event, exc)
        self.producer.send(self.topic, key=type_.encode(), value=data)
        if type_ == "alert" and self.webhook is not None:
            self.webhook.post(event)
        for listener in self.listeners:
            listener(event)
        return event
