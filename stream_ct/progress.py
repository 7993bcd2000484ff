"""A progress line on stderr for long-running commands (no dependency, quiet when piped).

>>> import io
>>> out = io.StringIO()
>>> p = Progress("replay", unit="record", stream=out)
>>> p.update(10); p.stopped()
>>> out.getvalue().split(" (")[0]
'replay: 10 records'
"""

from __future__ import annotations

import sys
import time

from stream_ct.words import counted


#: ``Progress``'s default stream: ``sys.stderr`` as it is when the progress starts (one bound
#: at import kept writing to a stderr replaced since, e.g. by a test's capture)
STDERR = "stderr"


class Progress:
    """Prints ``label: N units (R/s)`` at most every ``interval_s`` seconds (default: every second
    in place on a terminal, every 10 s as a new line in a log), and a final line."""

    def __init__(self, label: str, *, unit: str = "item", total: int | None = None,
                 interval_s: float | None = None, stream=STDERR):
        self.label, self.unit, self.total = label, unit, total
        self.stream = sys.stderr if stream == STDERR else stream
        self.started = self._last = time.monotonic()
        self.count = 0  # the last count given
        self._tty = bool(stream) and hasattr(stream, "isatty") and stream.isatty()
        self.interval_s = interval_s if interval_s is not None else (1.0 if self._tty else 10.0)

    def _line(self, count: int) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        counts = f"{count:,}/{counted(self.total, self.unit)}" if self.total else counted(count, self.unit)
        return f"{self.label}: {counts} ({count / elapsed:,.0f}/s)"

    def update(self, count: int) -> None:
        self.count = count
        now = time.monotonic()
        if self.stream is None or now - self._last < self.interval_s:
            return
        self._last = now
        end = "\r" if self._tty else "\n"
        print(self._line(count), end=end, file=self.stream, flush=True)

    def done(self, count: int) -> None:
        if self.stream is not None:
            print(self._line(count) + " done", file=self.stream, flush=True)

    def stopped(self) -> None:
        """The last line of a command stopped before the end (Ctrl-C): how far it got."""
        if self.stream is not None:
            print(("\r\033[K" if self._tty else "") + self._line(self.count) + " stopped", file=self.stream,
                  flush=True)
