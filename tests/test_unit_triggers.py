"""Unit tests for stream_ct.triggers: the policy language and TriggerPolicy (drift, performance,
schedule, cooldown, drift memory, busy), and the [triggers] config section."""

from __future__ import annotations

import itertools

import pytest

from stream_ct.config import ConfigError, ConsumerConfig, TriggerSection
from stream_ct.triggers import CONDITIONS, Decision, TriggerPolicy, parse_policy

ALL = [dict(zip(CONDITIONS, bits)) for bits in itertools.product([False, True], repeat=3)]
NONE = {"drift": False, "performance": False, "schedule": False}


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# --- parse_policy: valid expressions --------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("drift", lambda d, p, s: d),
    ("performance", lambda d, p, s: p),
    ("schedule", lambda d, p, s: s),
    ("drift or performance or schedule", lambda d, p, s: d or p or s),
    ("drift and performance", lambda d, p, s: d and p),
    # 'and' binds tighter than 'or'
    ("drift or performance and schedule", lambda d, p, s: d or (p and s)),
    ("drift and performance or schedule", lambda d, p, s: (d and p) or s),
    # parentheses override precedence
    ("(drift or performance) and schedule", lambda d, p, s: (d or p) and s),
    ("schedule or (drift and performance)", lambda d, p, s: s or (d and p)),
    # 'not' binds tightest and nests
    ("not drift", lambda d, p, s: not d),
    ("not drift and schedule", lambda d, p, s: (not d) and s),
    ("not (drift or schedule)", lambda d, p, s: not (d or s)),
    ("not not performance", lambda d, p, s: p),
    ("((drift))", lambda d, p, s: d),
    # case-insensitive, whitespace-tolerant
    ("DRIFT Or Schedule", lambda d, p, s: d or s),
    ("  NOT(drift)AND(performance)  ", lambda d, p, s: (not d) and p),
])
def test_parse_policy_truth_table(text, expected):
    fn = parse_policy(text)
    for c in ALL:
        assert fn(c) is bool(expected(c["drift"], c["performance"], c["schedule"])), (text, c)


@pytest.mark.parametrize("text, message", [
    ("drift or bogus",
     "unknown word 'bogus' in policy 'drift or bogus'; use drift, performance, schedule, and, or, not"),
    ("and drift", "unknown word 'and' in policy 'and drift'; use drift, performance, schedule, and, or, not"),
    ("(drift or schedule", "missing ')' in policy '(drift or schedule'"),
    ("not (drift", "missing ')' in policy 'not (drift'"),
    ("drift schedule", "unexpected 'schedule' in policy 'drift schedule'"),
    ("drift)", "unexpected ')' in policy 'drift)'"),
    ("drift or", "policy 'drift or' ends too early"),
    ("not", "policy 'not' ends too early"),
    ("", "empty policy; for example: drift or schedule"),
    ("   ", "empty policy; for example: drift or schedule"),
    ("drift & schedule", "cannot read ' & schedule'; use drift, performance, schedule, and, or, not, ( )"),
    ("drift or 2", "cannot read ' 2'; use drift, performance, schedule, and, or, not, ( )"),
    ("drift || schedule", "cannot read ' || schedule'; use drift, performance, schedule, and, or, not, ( )"),
])
def test_parse_policy_invalid_names_the_problem(text, message):
    with pytest.raises(ValueError) as exc:
        parse_policy(text)
    assert str(exc.value) == message


def test_unknown_word_is_reported_lowercased_with_original_text():
    with pytest.raises(ValueError, match=r"unknown word 'sometimes' in policy 'Drift OR Sometimes'"):
        parse_policy("Drift OR Sometimes")


# --- TriggerPolicy --------------------------------------------------------------------------------

def test_drift_only():
    t = TriggerPolicy("drift", cooldown_records=100, clock=FakeClock())
    assert t.check(10, performance_low=True, busy=False) == Decision(
        False, "policy 'drift' not met", {"drift": False, "performance": True, "schedule": False})
    t.note_drift(position=20)
    assert t.check(20, performance_low=False, busy=False) == Decision(
        True, "drift", {"drift": True, "performance": False, "schedule": False})


def test_performance_only():
    t = TriggerPolicy("performance", clock=FakeClock())
    t.note_drift(5)
    assert t.check(5, performance_low=False, busy=False).fire is False
    assert t.check(5, performance_low=False, busy=False).reason == "policy 'performance' not met"
    d = t.check(6, performance_low=True, busy=False)
    assert d.fire and d.reason == "drift+performance"  # the reason lists every condition that is on


def test_schedule_by_records():
    t = TriggerPolicy("schedule", cooldown_records=0, schedule_records=1000, clock=FakeClock())
    assert t.check(999, False, False) == Decision(False, "policy 'schedule' not met", NONE)
    assert t.check(1000, False, False) == Decision(True, "schedule", dict(NONE, schedule=True))
    t.dispatched(1000)
    assert t.check(1999, False, False).fire is False
    assert t.check(2000, False, False).fire is True


def test_schedule_off_when_zero():
    t = TriggerPolicy("schedule", cooldown_records=0, clock=FakeClock())
    assert t.check(10**9, False, False).fire is False


def test_schedule_by_seconds_with_fake_clock():
    clock = FakeClock(500.0)
    t = TriggerPolicy("schedule", cooldown_records=0, schedule_seconds=60.0, clock=clock)
    clock.t = 559.9
    assert t.check(1, False, False).fire is False
    clock.t = 560.0
    assert t.check(1, False, False) == Decision(True, "schedule", dict(NONE, schedule=True))
    t.dispatched(1)  # restarts the schedule clock
    clock.t = 619.0
    assert t.check(2, False, False).fire is False
    clock.t = 620.0
    assert t.check(2, False, False).fire is True


@pytest.mark.parametrize("drift, performance, schedule", list(itertools.product([False, True], repeat=3)))
def test_hybrid_policy_truth_table(drift, performance, schedule):
    t = TriggerPolicy("schedule or (drift and performance)", cooldown_records=0, schedule_records=100,
                      clock=FakeClock())
    position = 100 if schedule else 50
    if drift:
        t.note_drift(position)
    d = t.check(position, performance_low=performance, busy=False)
    expected = schedule or (drift and performance)
    assert d.fire is expected
    assert d.conditions == {"drift": drift, "performance": performance, "schedule": schedule}
    if expected:
        assert d.reason == "+".join(n for n, on in d.conditions.items() if on)
    else:
        assert d.reason == "policy 'schedule or (drift and performance)' not met"


def test_cooldown_after_dispatched():
    t = TriggerPolicy("drift", cooldown_records=100, clock=FakeClock())
    t.note_drift(50)
    assert t.check(50, False, False).fire
    t.dispatched(50)
    t.note_drift(120)
    assert t.check(120, False, False).reason == "cooldown: 70 records since the last retrain < 100"
    assert t.check(149, False, False).reason == "cooldown: 99 records since the last retrain < 100"
    assert t.last_retrain_position == 50  # a refused check does not restart the cooldown
    assert t.check(150, False, False) == Decision(True, "drift", dict(NONE, drift=True))


def test_no_cooldown_before_first_dispatch():
    t = TriggerPolicy("drift", cooldown_records=10_000, clock=FakeClock())
    t.note_drift(1)
    assert t.check(1, False, False).fire


def test_dispatched_forgets_drift():
    t = TriggerPolicy("drift", cooldown_records=0, clock=FakeClock())
    t.note_drift(10)
    t.dispatched(10)
    assert t.last_drift is None
    assert t.check(11, False, False).reason == "policy 'drift' not met"


def test_drift_memory_expires():
    t = TriggerPolicy("drift and performance", cooldown_records=0, drift_memory_records=500, clock=FakeClock())
    t.note_drift(100)
    assert t.conditions(600, False)["drift"] is True  # exactly the memory: still remembered
    assert t.check(600, performance_low=True, busy=False).fire is True
    assert t.conditions(601, False)["drift"] is False
    assert t.check(601, performance_low=True, busy=False).reason == "policy 'drift and performance' not met"
    t.note_drift(700)  # a new signal renews the memory
    assert t.check(701, performance_low=True, busy=False).fire is True


def test_drift_since_is_the_first_signal_of_the_episode():
    t = TriggerPolicy("drift and performance", cooldown_records=0, drift_memory_records=500, clock=FakeClock())
    t.note_drift(100)
    t.note_drift(400)
    assert t.drift_since == 100 and t.check(450, performance_low=True, busy=False).fire
    t.note_drift(1000)  # after the memory expired: a new episode
    assert t.drift_since == 1000
    t.dispatched(1000)
    assert t.drift_since is None


def test_busy_blocks_and_is_checked_before_cooldown():
    t = TriggerPolicy("drift", cooldown_records=100, clock=FakeClock())
    t.note_drift(0)
    assert t.check(0, False, busy=True) == Decision(False, "a retrain is already in flight", dict(NONE, drift=True))
    assert t.last_retrain_position is None
    t.dispatched(0)
    t.note_drift(10)
    assert t.check(10, False, busy=True).reason == "a retrain is already in flight"
    # busy is only reported when the policy is met
    t2 = TriggerPolicy("drift", clock=FakeClock())
    assert t2.check(10, False, busy=True).reason == "policy 'drift' not met"


def test_invalid_policy_raises_at_construction():
    with pytest.raises(ValueError, match="unknown word 'often'"):
        TriggerPolicy("drift or often")


# --- [triggers] config section --------------------------------------------------------------------

def test_triggers_section_defaults():
    cfg = ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "parts"}})
    assert cfg.triggers == TriggerSection()
    assert cfg.triggers.policy == "drift or performance or schedule"
    assert (cfg.triggers.schedule_records, cfg.triggers.schedule_seconds) == (0, 0.0)
    assert cfg.triggers.performance_min_labels == 500 and cfg.triggers.drift_memory_records == 20_000


def test_triggers_section_values_and_int_to_float():
    cfg = ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "parts"},
                                    "triggers": {"policy": "schedule or (drift and performance)",
                                                 "schedule_seconds": 3600, "schedule_records": 50_000,
                                                 "performance_floor": 0.8}})
    assert cfg.triggers.policy == "schedule or (drift and performance)"
    assert cfg.triggers.schedule_seconds == 3600.0 and isinstance(cfg.triggers.schedule_seconds, float)
    assert cfg.triggers.schedule_records == 50_000 and cfg.triggers.performance_floor == 0.8


def test_triggers_invalid_policy_is_a_config_error():
    with pytest.raises(ConfigError) as exc:
        ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "parts"},
                                  "triggers": {"policy": "drift or sometimes"}})
    assert str(exc.value) == ("<dict>: [triggers] policy: unknown word 'sometimes' in policy 'drift or sometimes'; "
                              "use drift, performance, schedule, and, or, not")


def test_triggers_wrong_type():
    with pytest.raises(ConfigError) as exc:
        ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "parts"},
                                  "triggers": {"schedule_records": 1.5}})
    assert str(exc.value) == "<dict>: [triggers] schedule_records = 1.5 must be an integer"
