"""Whether the stream's wafers arrive whole: runs of equal wafer ids against the wafer size.

The subgroup charts average consecutive records and the within-wafer and within-lot charts
follow runs of equal wafer ids, so both assume that a wafer's parts arrive together, as
one tester sends them. An input keyed by part over several partitions spreads each wafer
over all of them (an instance reading some of them sees pieces of wafers interleaved), and
testers running at once that share a partition interleave their wafers: subgroups then mix
wafers (lot and wafer offsets inside a subgroup) and the within-wafer charts see pieces.
``WaferRuns`` notices that from the ids alone and says once what to do.

>>> runs = WaferRuns(wafer_records=100, min_wafers=2)
>>> whole = [runs.update(np.repeat(["L1/1", "L1/2"], 100)), runs.update(np.repeat(["L1/3"], 100))]
>>> whole, runs.mean_run
([None, None], 100.0)
>>> runs = WaferRuns(wafer_records=100, min_wafers=2)
>>> print(runs.update(np.tile(np.repeat(["L1/1", "L1/2"], 10), 10)))  # doctest: +ELLIPSIS
drift: wafers arrive in pieces (10 records ... against wafers of 100): ...
"""

from __future__ import annotations

import numpy as np

from stream_ct.drift.values import run_starts


class WaferRuns:
    """Mean run length of equal wafer ids over the stream (a run continues across batches);
    a warning, once, when it is under half of ``wafer_records`` after ``min_wafers``
    wafers' worth of records."""

    def __init__(self, wafer_records: int, min_wafers: int = 5):
        self.wafer_records, self.min_wafers = int(wafer_records), int(min_wafers)
        self.records, self.runs, self.last, self.warned = 0, 0, None, False

    @property
    def mean_run(self) -> float:
        return self.records / max(self.runs, 1)

    def update(self, groups) -> str | None:
        """Count the batch's runs (``groups``: its wafer ids in stream order); the warning
        text the first time the wafers look split, else None."""
        ids = np.asarray(groups)
        if not len(ids):
            return None
        self.runs += int(run_starts(ids).sum()) - int(ids[0] == self.last)  # a run the last batch began
        self.records += len(ids)
        self.last = ids[-1]
        if self.warned or self.records < self.min_wafers * self.wafer_records \
                or self.mean_run >= self.wafer_records / 2:
            return None
        self.warned = True
        return (f"drift: wafers arrive in pieces ({self.mean_run:.0f} records of one wafer in a row on average, "
                f"against wafers of {self.wafer_records}): the subgroup charts mix wafers and the within-wafer "
                "charts see pieces, so mean shifts are found later, and the KS/PSI windows of testers taking "
                "turns false-alarm above their share. A wafer's parts must arrive together: key the input by "
                "lot/wafer (not by part), and give testers that run at once partitions of their own "
                "(docs/operate.md, 'Keys and partitions')")
