"""Record fields as categorical model inputs (``[features] fields``), after the test results.

A part's test time depends on its tester as much as on its results; a champion that sees only
the results is off by each tester's overhead. The levels a champion learned are kept with it
(``categories`` in its registry record), so serve encodes a record as training did; a level
it never learned, or a record without the field, is a missing value.

>>> categories = field_categories([{"tester": "T2"}, {"tester": "T1"}, {}], ["tester"])
>>> categories
{'tester': ['T1', 'T2']}
>>> model_matrix(np.array([[0.5], [0.7], [0.9]]), [{"tester": "T2"}, {"tester": "T9"}, {}], categories).tolist()
[[0.5, 1.0], [0.7, nan], [0.9, nan]]
"""

from __future__ import annotations

import collections
from typing import Any, Sequence

import numpy as np

from stream_ct.features import field_levels

#: Levels of one field a model learns (HistGradientBoosting bins a category in at most 255
#: bins, one of them for missing values); the most frequent are kept, the rest are missing.
MAX_LEVELS = 254


def field_categories(records: Sequence[dict[str, Any]], fields: Sequence[str]) -> dict[str, list[str]]:
    """Per field, the levels ``records`` hold (``field_levels``: a site is ``head/site``),
    sorted; at most ``MAX_LEVELS``, the most frequent."""
    out = {}
    for field in fields:
        counts = collections.Counter(field_levels(records, field).tolist())
        counts.pop("", None)
        out[field] = sorted(level for level, _ in counts.most_common(MAX_LEVELS))
    return out


def model_matrix(X: np.ndarray, records: Sequence[dict[str, Any]], categories: dict[str, list[str]] | None
                 ) -> np.ndarray:
    """``X`` (the test results) followed by one column per field of ``categories``: a
    record's level as its index in the field's levels, NaN where it has none of them.
    ``X`` itself when there are no categories."""
    if not categories:
        return X
    codes = np.full((len(records), len(categories)), np.nan)
    for j, (field, levels) in enumerate(categories.items()):
        index = {level: float(i) for i, level in enumerate(levels)}
        codes[:, j] = [index.get(level, np.nan) for level in field_levels(records, field).tolist()]
    return np.column_stack([X, codes])
