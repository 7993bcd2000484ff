"""Retrain triggers with a cooldown, so that one drift episode yields one retrain.

>>> t = DriftTrigger(cooldown_records=100)
>>> t.check(position=50, n_signals=2, busy=False).fire
True
>>> t.check(position=120, n_signals=3, busy=False).reason
'cooldown: 70 records since the last trigger < 100'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    fire: bool
    reason: str


class DriftTrigger:
    """Fires on drift signals unless a retrain is in flight or the cooldown has not passed."""

    def __init__(self, cooldown_records: int):
        self.cooldown_records = cooldown_records
        self.last_fired: int | None = None

    def check(self, position: int, n_signals: int, busy: bool) -> Decision:
        if n_signals == 0:
            return Decision(False, "no drift signal")
        if busy:
            return Decision(False, "a retrain is already in flight")
        if self.last_fired is not None and position - self.last_fired < self.cooldown_records:
            return Decision(False, f"cooldown: {position - self.last_fired} records since the last trigger "
                                   f"< {self.cooldown_records}")
        self.last_fired = position
        return Decision(True, f"{n_signals} drift signal(s)")
