"""Unit tests for stream_ct.progress.Progress."""

from __future__ import annotations

import io
import re

from stream_ct.progress import Progress


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_update_prints_line_when_interval_passed():
    out = io.StringIO()
    p = Progress("replay", unit="record", total=100, interval_s=0.0, stream=out)
    p.update(10)
    assert re.fullmatch(r"replay: 10/100 records \([\d,]+/s\)\n", out.getvalue())


def test_update_throttled_by_interval():
    out = io.StringIO()
    p = Progress("x", interval_s=3600, stream=out)
    for i in range(100):
        p.update(i)
    assert out.getvalue() == ""
    p.done(100)
    assert re.fullmatch(r"x: 100 items \([\d,]+/s\) done\n", out.getvalue())


def test_tty_uses_carriage_return():
    out = TTY()
    p = Progress("serve", unit="record", interval_s=0.0, stream=out)
    p.update(5)
    assert out.getvalue().endswith("\r") and out.getvalue().startswith("serve: 5 records (")


def test_quiet_without_stream():
    p = Progress("x", stream=None, interval_s=0.0)
    p.update(1)
    p.done(1)


def test_total_omitted_when_unknown():
    out = io.StringIO()
    Progress("x", unit="part", stream=out).done(7)
    assert out.getvalue().startswith("x: 7 parts (")


def test_one_is_singular():
    """A replay of one record ended with 'replay: 1 records (...) done'."""
    out = io.StringIO()
    Progress("replay", unit="record", stream=out).done(1)
    Progress("replay", unit="record", total=1, stream=out).done(1)
    assert re.fullmatch(r"replay: 1 record \([\d,]+/s\) done\nreplay: 1/1 record \([\d,]+/s\) done\n", out.getvalue())


def test_the_default_stream_is_stderr_when_the_progress_starts(capsys):
    """``stream=sys.stderr`` was bound at import: a stderr replaced since (a test's capture, a
    command redirecting it) never saw the lines."""
    Progress("record", unit="record").done(3)
    assert re.fullmatch(r"record: 3 records \([\d,]+/s\) done\n", capsys.readouterr().err)
