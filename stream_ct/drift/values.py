"""Which values are measurements: NaN, infinities and STDF sentinels (|v| >= 1e30) are not.

>>> import numpy as np
>>> valid_mask(np.array([[1.0, np.nan], [9.9e37, -2.0]])).tolist()
[[True, False], [False, True]]
"""

from __future__ import annotations

import numpy as np

from stream_ct.record import SENTINEL_ABS


def valid_mask(X: np.ndarray) -> np.ndarray:
    """True where ``X`` holds a finite measurement below the sentinel magnitude."""
    with np.errstate(invalid="ignore"):
        return np.abs(X) < SENTINEL_ABS
