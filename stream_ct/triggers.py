"""When to retrain: drift, performance and schedule conditions combined by a policy.

A policy is a boolean expression over ``drift``, ``performance`` and ``schedule`` (for
example ``"schedule or (drift and performance)"``). A manual request always fires. After a
retrain is dispatched, automatic triggers wait ``cooldown_records`` (hysteresis: one drift
episode yields one retrain), and a drift signal is remembered for ``drift_memory_records``
so that it can meet a performance drop that shows up later; ``drift_since`` is the first
signal of that episode (where the post-drift data begin).

>>> t = TriggerPolicy("drift", cooldown_records=100)
>>> t.note_drift(position=50)
>>> t.check(position=50, performance_low=False, busy=False).fire
True
>>> t.dispatched(position=50)
>>> t.note_drift(position=120)
>>> t.check(position=120, performance_low=False, busy=False).reason
'cooldown: 70 records since the last retrain < 100'
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

CONDITIONS = ("drift", "performance", "schedule")
_TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z_]+)")


def parse_policy(text: str) -> Callable[[dict[str, bool]], bool]:
    """Compile a policy expression; raises ValueError naming the offending word."""
    tokens: list[str] = []
    pos = 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"cannot read {text[pos:]!r}; use drift, performance, schedule, and, or, not, ( )")
        tokens.append(match.group(1).lower())
        pos = match.end()
    if not tokens:
        raise ValueError("empty policy; for example: drift or schedule")

    def expect_more(i: int) -> None:
        if i >= len(tokens):
            raise ValueError(f"policy {text!r} ends too early")

    def parse_or(i: int):
        left, i = parse_and(i)
        while i < len(tokens) and tokens[i] == "or":
            right, i = parse_and(i + 1)
            left = (lambda a, b: lambda c: a(c) or b(c))(left, right)
        return left, i

    def parse_and(i: int):
        left, i = parse_not(i)
        while i < len(tokens) and tokens[i] == "and":
            right, i = parse_not(i + 1)
            left = (lambda a, b: lambda c: a(c) and b(c))(left, right)
        return left, i

    def parse_not(i: int):
        expect_more(i)
        token = tokens[i]
        if token == "not":
            inner, i = parse_not(i + 1)
            return (lambda c: not inner(c)), i
        if token == "(":
            inner, i = parse_or(i + 1)
            if i >= len(tokens) or tokens[i] != ")":
                raise ValueError(f"missing ')' in policy {text!r}")
            return inner, i + 1
        if token in CONDITIONS:
            return (lambda c: bool(c[token])), i + 1
        raise ValueError(f"unknown word {token!r} in policy {text!r}; use {', '.join(CONDITIONS)}, and, or, not")

    fn, end = parse_or(0)
    if end != len(tokens):
        raise ValueError(f"unexpected {tokens[end]!r} in policy {text!r}")
    return fn


@dataclass(frozen=True)
class Decision:
    fire: bool
    reason: str
    conditions: dict[str, bool] = field(default_factory=dict)


class TriggerPolicy:
    """Decides, once per batch, whether to request a retrain."""

    def __init__(self, policy: str = "drift or performance or schedule", cooldown_records: int = 10_000,
                 schedule_records: int = 0, schedule_seconds: float = 0.0, drift_memory_records: int = 20_000,
                 clock: Callable[[], float] = time.monotonic):
        self.policy_text = policy
        self.policy = parse_policy(policy)
        self.cooldown_records, self.schedule_records = cooldown_records, schedule_records
        self.schedule_seconds, self.drift_memory_records = schedule_seconds, drift_memory_records
        self.clock = clock
        self.last_retrain_position: int | None = None
        self.last_retrain_time = clock()
        self.last_drift: int | None = None
        self.drift_since: int | None = None

    def note_drift(self, position: int) -> None:
        """A drift signal at ``position``; one after the memory has expired starts a new episode."""
        if self.last_drift is None or position - self.last_drift > self.drift_memory_records:
            self.drift_since = position
        self.last_drift = position

    def conditions(self, position: int, performance_low: bool) -> dict[str, bool]:
        drift = self.last_drift is not None and position - self.last_drift <= self.drift_memory_records
        since = position - (self.last_retrain_position or 0)
        schedule = bool((self.schedule_records and since >= self.schedule_records) or
                        (self.schedule_seconds and self.clock() - self.last_retrain_time >= self.schedule_seconds))
        return {"drift": drift, "performance": bool(performance_low), "schedule": schedule}

    def check(self, position: int, performance_low: bool, busy: bool) -> Decision:
        conditions = self.conditions(position, performance_low)
        if not self.policy(conditions):
            return Decision(False, f"policy {self.policy_text!r} not met", conditions)
        if busy:
            return Decision(False, "a retrain is already in flight", conditions)
        if self.last_retrain_position is not None and position - self.last_retrain_position < self.cooldown_records:
            return Decision(False, f"cooldown: {position - self.last_retrain_position} records since the last "
                                   f"retrain < {self.cooldown_records}", conditions)
        reasons = [name for name, on in conditions.items() if on]
        return Decision(True, "+".join(reasons), conditions)

    def retrained_ago(self, seconds: float) -> None:
        """The last retrain was ``seconds`` ago (before this policy existed: a restart), so a
        schedule in seconds counts from it rather than from now."""
        self.last_retrain_time = self.clock() - max(0.0, seconds)

    def forget_drift(self) -> None:
        """A new champion (and drift reference) is in place: earlier signals are moot."""
        self.last_drift = self.drift_since = None

    def dispatched(self, position: int) -> None:
        """A retrain was requested at ``position``: restart cooldown and schedule, forget the drift."""
        self.last_retrain_position = position
        self.last_retrain_time = self.clock()
        self.last_drift = self.drift_since = None
