"""A per-file progress line on stderr, driven by the bytes read (no dependency).

On a terminal the line is redrawn in place (at most five times a second); otherwise only
the final line of each file is printed.

>>> import io
>>> out = io.StringIO()
>>> p = FileProgress("lot2.stdf.gz", stream=out)
>>> p(50, 100, 7); p.done("14 parts written")
>>> out.getvalue()
'lot2.stdf.gz: 14 parts written\\n'
"""

from __future__ import annotations

import sys
import time


class FileProgress:
    """Callable as the reader's ``progress(bytes_read, file_size, parts)``."""

    def __init__(self, name: str, stream=None, interval_s: float = 0.2):
        self.name, self.interval_s = name, interval_s
        self.stream = sys.stderr if stream is None else stream
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int, parts: int) -> None:
        now = time.monotonic()
        if not self._tty or now - self._last < self.interval_s:
            return
        self._last = now
        pct = f"{100 * done / total:3.0f}%" if total else f"{done / 1e6:.1f} MB"
        print(f"\r{self.name}: {pct} {parts} parts", end="", file=self.stream, flush=True)

    def done(self, summary: str) -> None:
        """The final line of the file: what was done."""
        prefix = "\r\033[K" if self._tty else ""
        print(f"{prefix}{self.name}: {summary}", file=self.stream, flush=True)
