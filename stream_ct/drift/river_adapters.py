"""river detectors where they add value: ADWIN on a 0/1 model-error stream.

Labels arrive late and one at a time, so this is a small per-element loop (river's ADWIN
is inherently sequential); the parametric features go through ``DriftMonitor`` instead.

>>> import numpy as np
>>> det = ErrorStreamDetector(delta=0.002)
>>> rng = np.random.default_rng(0)
>>> errors = np.concatenate([rng.random(3000) < 0.05, rng.random(3000) < 0.30])
>>> signals = det.update(errors)
>>> s = signals[0]
>>> s.detector, 3000 <= s.position < 3400, s.effect_size > 0
('adwin_error', True, True)
"""

from __future__ import annotations

import math

import numpy as np
from river import drift

from stream_ct.drift.signal import DriftSignal


class ErrorStreamDetector:
    """river ``ADWIN`` over model errors (1 = wrong prediction), positions counted from 0.

    A signal's ``statistic`` is the error rate ADWIN estimates after the change,
    ``effect_size`` its change from the estimate just before, ``threshold`` ADWIN's
    ``delta`` (its confidence parameter). Only increases are reported unless
    ``report_improvements`` is set.
    """

    def __init__(self, delta: float = 0.002, report_improvements: bool = False):
        self.delta = delta
        self.report_improvements = report_improvements
        self.adwin = drift.ADWIN(delta=delta)
        self.n_seen = 0

    def update(self, errors) -> list[DriftSignal]:
        out = []
        for e in np.asarray(errors, dtype=float).ravel().tolist():
            if not math.isfinite(e):  # no error to count (one NaN would make ADWIN's estimate NaN for good)
                self.n_seen += 1
                continue
            before = self.adwin.estimation
            self.adwin.update(e)
            if self.adwin.drift_detected:
                change = self.adwin.estimation - before
                if change > 0 or self.report_improvements:
                    out.append(DriftSignal(
                        position=self.n_seen, detector="adwin_error", features=["error"],
                        statistic=float(self.adwin.estimation), threshold=self.delta,
                        p_value=None, effect_size=float(change), stratum=None))
            self.n_seen += 1
        return out
