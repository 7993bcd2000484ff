"""Record fields as model inputs besides the test results (``[features] fields``), one
indicator column per level.

A part's test time depends on its tester as much as on its results; a champion that sees only
the results is off by each tester's overhead. The levels a champion learned are kept with it
(``categories`` in its registry record), so serve encodes a record as training did; a level
it never learned, or a record without the field, has none of the field's columns set.

>>> categories = field_categories([{"tester": "T2"}, {"tester": "T1"}, {}], ["tester"])
>>> categories
{'tester': ['T1', 'T2']}
>>> model_matrix(np.array([[0.5], [0.7], [0.9]]), [{"tester": "T2"}, {"tester": "T9"}, {}], categories).tolist()
[[0.5, 0.0, 1.0], [0.7, 0.0, 0.0], [0.9, 0.0, 0.0]]
"""

from __future__ import annotations

import collections
from typing import Any, Sequence

import numpy as np

from stream_ct.features import field_levels

#: Levels of one field a model learns (a column each): the most frequent; a part at another
#: level counts as at none of them.
MAX_LEVELS = 64


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
    """``X`` (the test results) followed by, per field of ``categories`` and per level of it,
    a column that is 1 where a record is at that level and 0 elsewhere. ``X`` itself when
    there are no categories."""
    if not categories:
        return X
    columns = [X]
    for field, levels in categories.items():
        values = field_levels(records, field)
        columns.extend((values == level).astype(float) for level in levels)
    return np.column_stack(columns)
