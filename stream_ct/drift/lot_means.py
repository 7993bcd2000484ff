"""Each whole lot's mean against the earlier lots': a self-starting CUSUM (Hawkins 1987).

On a test floor lot offsets are normal variation, so a persistent shift that starts at a lot
boundary looks like one more lot offset to every chart against the reference mean, and the
charts within wafers and lots never see it. Its unit is the lot: a self-starting chart
(``self_starting.py``) takes each whole lot's mean against the earlier lots' (the
reference's, then the stream's), whose mean and sd it estimates with their error, so it
needs no bound on the reference mean's. A lot is whole when it holds at least half the
reference's median lot size (pieces of lots spread over partitions are not lots); it is
complete when the first record of the next lot arrives, or, where testers that share a
partition interleave their lots, of another lot once it has been away for longer than
their turns (``lot_gap``, learned from the reference). Group ids are ``lot/wafer``.

A lot joins the estimates ``lag`` whole lots after it is charted, so a step is not taken
into the mean it is measured against before it is seen: joining at once, a shift of 0.83
lot sds after a 20-lot reference leaves the chart (``k`` 0.5) with a largest expected sum
of about 1.7, far below its threshold, and 2 in 3 such shifts go unseen for 50 lots. With
``lag`` 20 (default) and a per-chart ARL of 3,333 lots (50 tests, ARL0 100,000 records,
10,000-record lots) that shift goes unseen for 50 lots in 1 of 3 cases, one of 1.67 lot
sds is seen after 9.3 lots instead of 10.6 and one of 3.3 after 4.2 instead of 4.0
(simulated chart alone, the step right after the reference). Small lots give larger
per-chart ARLs and thresholds further above Siegmund's (17.7 against 9.9 at 133,333 lots
from 19 reference lots). As the estimates grow the thresholds come down (``relax`` of
``SelfStartingChart``), so a step long after the reference is found about as soon as
without the lag: 300 lots after a 20-lot reference, one of 1.67 lot sds after 6.3 lots
(5.8 without lag, 7.5 at the first threshold; ``docs/drift.md``, Calibration).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> lots = rng.normal(0, 0.3, (20, 2))                           # 20 reference lots, 2 tests
>>> chart = LotMeanChart(lots, lot_records=100, k=0.5, arl0=10_000, share=1.0, lag=0)
>>> X = np.vstack([rng.normal(lots[i % 20], 0.1, (100, 2)) + [0.0, 1.5 * (i >= 3)] for i in range(8)])
>>> groups = np.repeat([f"L{i}/1" for i in range(8)], 100)    # test 1 moves 5 lot sds from lot 3
>>> [(a.position, a.feature, a.side) for a in chart.update(X, groups, np.arange(800))]
[(400, 1, 1), (700, 1, 1)]

Lot 3 is complete when lot 4's first record (400) arrives; the restarted chart fires again
while the shift lasts and before the running mean has taken it in.
"""

from __future__ import annotations

import numpy as np

from stream_ct.drift.calibration import chart_arl
from stream_ct.drift.self_starting import SelfStartingChart
from stream_ct.drift.values import lots_of, mean_or_nan, run_starts

#: Whole lots a reference needs for the chart (Student-t with at least 7 degrees of freedom).
MIN_LOTS = 8


def lot_runs(groups) -> tuple[np.ndarray, np.ndarray] | None:
    """Where each run of records of one lot starts in ``groups`` (``lot/wafer`` ids, stream
    order) and its lot; None unless every id names a lot.

    >>> lot_runs(np.array(["A/1", "A/1", "A/2", "B/1"]))
    (array([0, 3]), array(['A', 'B'], dtype=object))
    """
    g = np.asarray(groups)
    starts = np.flatnonzero(run_starts(g))
    lots = lots_of(g[starts])
    if lots is None:
        return None
    new = run_starts(lots)
    return starts[new], lots[new]


def lot_gap(groups) -> int:
    """Records a lot may be away and still go on, learned from ``groups`` (``lot/wafer`` ids,
    stream order): 0 when each lot's records arrive together; when testers that share a
    partition interleave their lots (most lots come in several runs), twice the 99th
    percentile of the records between one lot's runs, at most half the median lot's records
    (a lot away that long is done).

    >>> lot_gap(np.repeat(["A/1", "B/1", "C/1"], 10))
    0
    >>> lot_gap(np.tile(np.repeat(["A/1", "B/1"], 4), 20))  # two testers, 4 records each in turn
    8
    """
    runs = lot_runs(groups)
    if runs is None:
        return 0
    starts, lots = runs
    ends = np.r_[starts[1:], len(groups)]
    order = np.lexsort((starts, lots.astype(str)))
    same = lots[order][1:] == lots[order][:-1]
    gaps = (starts[order][1:] - ends[order][:-1])[same]
    n_lots = len(set(lots.tolist()))
    if gaps.size < n_lots:  # a lot tested again later is no interleaving
        return 0
    sizes = np.bincount(np.unique(lots.astype(str), return_inverse=True)[1], weights=ends - starts)
    return int(min(2 * np.quantile(gaps, 0.99), np.median(sizes) / 2))


def turn_taking(groups) -> tuple[int, int]:
    """How many testers take turns in ``groups`` (``lot/wafer`` ids, stream order) and their
    usual turn in records: the median lot's span over its records, rounded, and the median
    run of one lot; (1, 0) when lots arrive whole (one tester).

    >>> turn_taking(np.repeat(["A/1", "B/1", "C/1"], 10))
    (1, 0)
    >>> turn_taking(np.tile(np.repeat(["A/1", "B/1"], 4), 20))
    (2, 4)
    """
    runs = lot_runs(groups)
    if runs is None:
        return 1, 0
    starts, lots = runs
    ends = np.r_[starts[1:], len(groups)]
    _, lot = np.unique(lots.astype(str), return_inverse=True)
    first = np.full(lot.max() + 1, len(groups))
    np.minimum.at(first, lot, starts)
    last = np.zeros(lot.max() + 1, dtype=np.int64)
    np.maximum.at(last, lot, ends)
    records = np.bincount(lot, weights=ends - starts)
    testers = int(round(np.median((last - first) / records)))
    return (testers, int(np.median(ends - starts))) if testers > 1 else (1, 0)


class LotAccumulator:
    """Sums of the lots in progress, by lot; ``update`` returns the lots a batch completed.

    A lot is complete at the first record of another lot once it has been away for ``gap``
    records (``lot_gap``): with 0, as soon as another lot's record arrives; with testers
    interleaving their lots, after their usual turns. A lot seen again after it was complete
    starts over (a lot tested again later is a lot of its own; a piece is not charted); seen
    again within ``horizon`` records it was taking turns, so ``gap`` grows to twice its
    absence (testers that began taking turns after the reference was taken).
    """

    def __init__(self, d: int, gap: int = 0, horizon: float = 0.0):
        self.d, self.gap, self.horizon = d, int(gap), float(horizon)
        self.open: dict[str, list] = {}  # lot -> [sum, count, rows, position of its last record]
        self.done: dict[str, int] = {}  # lots completed lately -> position of their last record

    def update(self, X, groups, positions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per completed lot: its mean per feature (NaN: no value; ``X`` holds NaN where a
        value is missing), its records, and the position of the record that completed it."""
        X = np.asarray(X, dtype=float)
        if not len(X):
            return np.empty((0, self.d)), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        runs = lot_runs(groups)
        if runs is None:
            raise ValueError("lot means need lot/wafer group ids")
        starts, lots = runs
        positions = np.asarray(positions)
        valid = ~np.isnan(X)
        sums = np.add.reduceat(np.where(valid, X, 0.0), starts, axis=0)
        counts = np.add.reduceat(valid, starts, axis=0).astype(float)
        rows = np.diff(np.r_[starts, len(X)])
        first, last = positions[starts].tolist(), positions[starts + rows - 1].tolist()
        means, sizes, ends = [], [], []
        for i, lot in enumerate(lots.tolist()):
            for other in [o for o, acc in self.open.items() if o != lot and first[i] - acc[3] - 1 >= self.gap]:
                total, count, n, seen = self.open.pop(other)
                means.append(mean_or_nan(total, count))
                sizes.append(n)
                ends.append(first[i])
                if self.horizon:
                    self.done[other] = seen
            acc = self.open.get(lot)
            if acc is None:
                self._back_soon(lot, first[i])
                self.open[lot] = [sums[i].copy(), counts[i].copy(), int(rows[i]), last[i]]
            else:
                acc[0] += sums[i]
                acc[1] += counts[i]
                acc[2] += int(rows[i])
                acc[3] = last[i]
        return (np.array(means, dtype=float).reshape(-1, self.d), np.array(sizes, dtype=np.int64),
                np.array(ends, dtype=np.int64))

    def _back_soon(self, lot: str, position: int) -> None:
        """A completed ``lot`` seen again at ``position`` within ``horizon``: wait longer from now on."""
        seen = self.done.pop(lot, None)
        if seen is not None and position - seen - 1 < self.horizon:
            self.gap = max(self.gap, 2 * (position - seen - 1))
        if len(self.done) > 256:
            self.done = {o: p for o, p in self.done.items() if position - p < self.horizon}

    def state_dict(self) -> dict:
        return {"gap": self.gap, "open": [[lot, *acc] for lot, acc in self.open.items()], "done": self.done}

    def load_state(self, s: dict) -> None:
        """Resume from ``state_dict()`` (or the one-lot state before lots were followed by id)."""
        self.gap = int(s.get("gap", 0))
        self.done = {str(lot): int(p) for lot, p in s.get("done", {}).items()}
        entries = s["open"] if "open" in s else [] if s["lot"] is None else [[s["lot"], s["sum"], s["count"],
                                                                              s["rows"], -1]]
        self.open = {lot: [np.array(total, dtype=float), np.array(count, dtype=float), int(n), int(p)]
                     for lot, total, count, n, p in entries}


def reference_lots(X: np.ndarray, groups, gap: int = 0, chunk: int = 20_000) -> tuple[np.ndarray, float] | None:
    """The means of the whole lots of a reference (rows ``X``, NaN = missing; ``lot/wafer``
    ``groups``, lots away up to ``gap`` records going on: ``lot_gap``) and its median lot
    size; None unless the ids name lots and ``MIN_LOTS`` whole lots are there. The lots
    still open at the end count as cut."""
    groups = np.asarray(groups)
    if lot_runs(groups) is None:
        return None
    acc, means, sizes = LotAccumulator(X.shape[1], gap), [], []
    for a in range(0, len(X), chunk):
        m, s, _ = acc.update(X[a:a + chunk], groups[a:a + chunk], np.arange(a, min(a + chunk, len(X))))
        means.append(m)
        sizes.append(s)
    means, sizes = np.vstack(means), np.concatenate(sizes)
    if not len(sizes):
        return None
    lot_records = float(np.median(sizes))
    whole = means[sizes >= lot_records / 2]
    return (whole, lot_records) if len(whole) >= MIN_LOTS else None


class LotMeanChart:
    """Self-starting two-sided CUSUM charts (``SelfStartingChart``) on whole lots' means,
    started from the ``reference_means`` (lots x d) of lots of ``lot_records`` records; a lot
    joins the running estimates ``lag`` whole lots after it is charted. One bank of charts
    per slack in ``k`` (a number or a ladder, in lot sds), each at a per-record false-alarm
    rate ``share / arl0`` spread over all features and both sides (``share``: one per slack,
    each a number or one per feature; 0 leaves that feature's chart of that slack off).
    ``thresholds``: as ``SelfStartingChart`` takes them; ``gap``: as ``LotAccumulator``."""

    def __init__(self, reference_means, lot_records: float, k, arl0: float, share,
                 lag: int = 20, thresholds=None, gap: int = 0):
        ref = np.asarray(reference_means, dtype=float)
        d = ref.shape[1]
        self.lot_records = float(lot_records)
        shares = [share] if np.ndim(k) == 0 else list(share)
        arls = [chart_arl(arl0, 2 * d, f, self.lot_records) for f in shares]  # in lots, per chart
        self.chart = SelfStartingChart(ref, k, arls[0] if np.ndim(k) == 0 else arls, lag, thresholds)
        self.lots = LotAccumulator(d, gap, horizon=self.lot_records / 2)
        self.completed, self.whole = 0, 0  # lots completed on the stream, and those charted
        self.warned = False

    @property
    def lag(self) -> int:
        return self.chart.lag

    @property
    def banks(self) -> list:
        return self.chart.banks

    @property
    def thresholds(self) -> list[np.ndarray]:
        """Per bank (slack), the per-feature thresholds (inf: off)."""
        return self.chart.thresholds

    @property
    def detectors(self) -> list[str]:
        """Each bank's detector name: ``"cusum_lot_mean"``, then ``"cusum_lot_mean_large"``."""
        return ["cusum_lot_mean", "cusum_lot_mean_large"][:len(self.banks)]

    def update(self, X, groups, positions, signals=None) -> list:
        """Consume records (``X`` with NaN where missing, ``lot/wafer`` ``groups``, stream
        ``positions``); chart every whole lot they complete. Returns ``signals(banks, values,
        valid, positions, stratum, detector)`` (the monitor's) per bank, or without it the alarms."""
        means, sizes, ends = self.lots.update(X, groups, positions)
        whole = sizes >= self.lot_records / 2
        self.completed, self.whole = self.completed + len(sizes), self.whole + int(whole.sum())
        return self.chart.update(means[whole], ends[whole], signals, None, self.detectors)

    def pieces_warning(self, min_lots: int = 5) -> str | None:
        """What to do, said once, when most lots completed on the stream were pieces (under
        half the reference's lot size, never charted: an instance that reads some of the
        partitions a lot's wafers went to), once ``min_lots`` have; else None."""
        if self.warned or self.completed < min_lots or 2 * self.whole >= self.completed:
            return None
        self.warned = True
        return (f"drift: lots arrive in pieces ({self.completed - self.whole} of {self.completed} lots completed "
                f"here held under half the reference's {self.lot_records:.0f} records): the lot-mean charts skip "
                "pieces, so a step at a lot boundary is found late or not at all. Key the input by lot "
                "(stream-ct stdf publish --key lot) so each serve instance sees whole lots "
                "(docs/operate.md, 'Keys and partitions')")

    def state_dict(self) -> dict:
        return {**self.chart.state_dict(), "lots": self.lots.state_dict()}

    def load_state(self, s: dict) -> None:
        """Resume from ``state_dict()`` (older states: as ``SelfStartingChart.load_state``)."""
        self.chart.load_state(s)
        self.lots.load_state(s["lots"])
