"""The event a drift detector emits.

>>> s = DriftSignal(position=1200, detector="cusum", features=["vdd"], statistic={"vdd": 14.2},
...                 threshold={"vdd": 12.0}, p_value=None, effect_size=0.8, stratum={"tester": "T2"})
>>> s.to_event()["stratum"]
{'tester': 'T2'}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class DriftSignal:
    """One alarm: where it fired (0-based stream position), which detector, which features.

    ``statistic`` and ``threshold`` are floats or per-feature dicts; ``effect_size`` is the
    detector's effect measure (KS D, PSI, or the estimated mean shift in reference sigmas
    for CUSUM); ``stratum`` is ``None`` for the whole stream or e.g. ``{"tester": "T2"}``;
    ``positions`` (CUSUM) maps each feature to its own first crossing, ``position`` being the
    earliest (one signal gathers a batch's crossings of a chart family).
    """

    position: int
    detector: str
    features: list[str]
    statistic: Any
    threshold: Any
    p_value: float | None = None
    effect_size: float | None = None
    stratum: dict[str, str] | None = field(default=None)
    positions: dict[str, int] | None = None

    def to_event(self) -> dict[str, Any]:
        """A JSON-safe dict (numpy scalars unwrapped, non-finite floats as null)."""
        return _json_safe({
            "type": "drift", "position": int(self.position), "detector": self.detector,
            "features": list(self.features), "statistic": self.statistic,
            "threshold": self.threshold, "p_value": self.p_value,
            "effect_size": self.effect_size, "stratum": self.stratum, "positions": self.positions,
        })
