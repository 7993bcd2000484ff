"""Service log lines: readable text by default, one JSON object per line on request.

``stream-ct --log-json serve ...`` (or ``STREAM_CT_LOG_FORMAT=json``) makes every line a JSON
object with ``ts``, ``source``, ``msg`` and the line's fields, for log shippers.

>>> import io; out = io.StringIO()
>>> log("serve", "now serving", stream=out, fmt="json", version=3)
>>> sorted(__import__("json").loads(out.getvalue()))
['msg', 'source', 'ts', 'version']
>>> out = io.StringIO(); log("serve", "now serving", stream=out, fmt="text", version=3); out.getvalue()
'serve: now serving (version=3)\\n'
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from stream_ct.events import to_json


def log(source: str, msg: str, *, stream=None, fmt: str | None = None, **fields: Any) -> None:
    """Write one log line to stdout (or ``stream``)."""
    stream = stream or sys.stdout
    fmt = fmt or os.environ.get("STREAM_CT_LOG_FORMAT", "text")
    if fmt == "json":
        line = to_json({"ts": time.time(), "source": source, "msg": msg, **fields}).decode()
    else:
        extra = ", ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{source}: {msg}" + (f" ({extra})" if extra else "")
    print(line, file=stream, flush=True)


def audit_failure_logger(source: str, path: str, **fields: Any) -> Callable[[dict[str, Any], Exception], None]:
    """An ``EventLog`` ``audit_failed``: says in ``source``'s log which event the audit log at
    ``path`` did not take (a full disk), and that it is on ct.events all the same."""
    def failed(event: dict[str, Any], exc: Exception) -> None:
        log(source, f"{event['type']} not appended to the audit log {Path(path).absolute()} "
                    f"({type(exc).__name__}: {exc}); it is on ct.events", **fields)
    return failed
