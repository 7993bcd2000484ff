"""Unit tests for stream_ct.triggers.DriftTrigger: signal, busy, cooldown."""

from __future__ import annotations

from stream_ct.triggers import Decision, DriftTrigger


def test_no_signal_never_fires():
    t = DriftTrigger(cooldown_records=100)
    assert t.check(position=0, n_signals=0, busy=False) == Decision(False, "no drift signal")
    assert t.check(position=10**6, n_signals=0, busy=True) == Decision(False, "no drift signal")
    assert t.last_fired is None


def test_first_signal_fires():
    t = DriftTrigger(cooldown_records=100)
    assert t.check(position=50, n_signals=2, busy=False) == Decision(True, "2 drift signal(s)")
    assert t.last_fired == 50


def test_busy_does_not_fire_nor_start_cooldown():
    t = DriftTrigger(cooldown_records=100)
    assert t.check(position=50, n_signals=1, busy=True) == Decision(False, "a retrain is already in flight")
    assert t.last_fired is None
    assert t.check(position=60, n_signals=1, busy=False).fire is True


def test_cooldown_then_fires_again():
    t = DriftTrigger(cooldown_records=100)
    assert t.check(50, 2, False).fire
    assert t.check(120, 3, False) == Decision(False, "cooldown: 70 records since the last trigger < 100")
    assert t.check(149, 1, False) == Decision(False, "cooldown: 99 records since the last trigger < 100")
    assert t.last_fired == 50  # a refused check does not restart the cooldown
    assert t.check(150, 4, False) == Decision(True, "4 drift signal(s)")  # exactly the cooldown: fires
    assert t.last_fired == 150
    assert t.check(200, 1, False).reason == "cooldown: 50 records since the last trigger < 100"


def test_busy_checked_before_cooldown():
    t = DriftTrigger(cooldown_records=100)
    t.check(0, 1, False)
    assert t.check(10, 1, True).reason == "a retrain is already in flight"


def test_zero_cooldown_fires_every_signal():
    t = DriftTrigger(cooldown_records=0)
    assert [t.check(p, 1, False).fire for p in (5, 5, 6)] == [True, True, True]
