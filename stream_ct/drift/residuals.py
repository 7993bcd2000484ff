"""Self-starting residuals within consecutive groups (parts of a wafer, wafers of a lot).

A record that is the ``n + 1``-th of its group, after ``n`` earlier values of a feature with
mean ``mbar``, gets the residual ``r = (x - mbar) * sqrt(n / (n + 1))`` (the recursive residual
of a group mean). Within a group of exchangeable values with sd ``sigma`` the residuals have
mean 0 and sd ``sigma`` and are uncorrelated, whatever the group's offset: a chart on them
needs no reference mean and does not see wafer-to-wafer or lot-to-lot variation, while a
step inside a group moves them (until the group's running mean catches up). The first value
of a group has the residual 0 (nothing to compare it with), a missing value NaN. Groups are
runs of equal ids in stream order; the one in progress at the end of a batch continues in
the next.

>>> import numpy as np
>>> res = SelfStartingResiduals(1)
>>> r, done = res.update(np.array([[5.0], [7.0], [9.0], [1.0]]), np.array(["a", "a", "a", "b"]),
...                      np.arange(4))
>>> r[:, 0].round(3).tolist(), done.means[:, 0].tolist(), done.ids.tolist(), done.positions.tolist()
([0.0, 1.414, 2.449, 0.0], [7.0], ['a'], [3])
>>> r, done = res.update(np.array([[3.0]]), np.array(["b"]), np.array([4]))
>>> r[:, 0].round(3).tolist(), len(done.ids)
([1.414], 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream_ct.drift.values import mean_or_nan, run_starts


@dataclass(frozen=True)
class CompletedGroups:
    """Groups that ended in a batch: per-feature means (NaN: no value), ids, the stream
    position of the record that ended each (the next group's first), each group's
    ``labels`` (the row of ``update``'s ``labels`` at its first record) and ``sizes``
    (records)."""
    means: np.ndarray
    ids: np.ndarray
    positions: np.ndarray
    labels: np.ndarray
    sizes: np.ndarray


class SelfStartingResiduals:
    """Residuals of each record against the running mean of its group so far, per feature."""

    def __init__(self, d: int):
        self.d = int(d)
        self.group = None  # id of the group in progress, its label, records, sums and counts so far
        self.label = None
        self.rows = 0
        self.sum = np.zeros(self.d)
        self.count = np.zeros(self.d)

    def update(self, X, groups, positions, labels=None) -> tuple[np.ndarray, CompletedGroups]:
        """Residuals (b x d, NaN where missing) of the rows of ``X`` (NaN = missing) with group
        ids ``groups`` (length b, stream order), and the groups this batch completed.
        ``labels`` (b rows, optional: e.g. the tester of each record) go with the groups, the
        row at each one's first record."""
        X = np.asarray(X, dtype=float)
        groups, positions = np.asarray(groups), np.asarray(positions, dtype=np.int64)
        labels = np.empty((len(X), 0), dtype=object) if labels is None else np.asarray(labels, dtype=object)
        if labels.ndim == 1:
            labels = labels[:, None]
        if len(X) == 0:
            return np.empty((0, self.d)), self._completed([], [], [], [], [], labels.shape[1])
        b = len(X)
        starts = np.flatnonzero(run_starts(groups))  # runs of equal ids
        lengths = np.diff(np.r_[starts, b])
        first = lengths[0]  # rows of the first run, which may continue the carried group
        continues = self.group is not None and groups[0] == self.group
        valid = ~np.isnan(X)
        complete = bool(valid.all())
        x0 = X if complete else np.where(valid, X, 0.0)
        csum = np.cumsum(x0, axis=0)
        before_run = csum[starts] - x0[starts]  # sums of the batch's rows before each run
        total = csum - x0  # then: sums of the earlier rows of the same run (and carried group)
        total -= np.repeat(before_run, lengths, axis=0)
        if complete:
            n = (np.arange(b) - np.repeat(starts, lengths)).astype(float)[:, None]
            run_counts = np.repeat(lengths[:, None].astype(float), self.d, axis=1)
        else:
            ccount = np.cumsum(valid, axis=0, dtype=float)
            before_count = ccount[starts] - valid[starts]
            n = ccount - valid
            n -= np.repeat(before_count, lengths, axis=0)
            run_counts = ccount[starts + lengths - 1] - before_count
        run_sums = csum[starts + lengths - 1] - before_run
        if continues:
            total[:first] += self.sum
            if n.shape[1] == 1 and (self.count == self.count[0]).all():
                n[:first] += self.count[0]
            else:
                n = np.broadcast_to(n, (b, self.d)).copy()
                n[:first] += self.count
            run_sums[0] += self.sum
            run_counts[0] += self.count
        residuals = X - total / np.maximum(n, 1)
        residuals *= np.sqrt(n / (n + 1))  # 0 for a group's first value, NaN where missing
        run_labels = labels[starts]
        if continues:
            run_labels[0] = self.label
        run_rows = lengths.copy()
        if continues:
            run_rows[0] += self.rows
        means, ids, ends, done_labels, sizes = [], [], [], [], []
        if self.group is not None and not continues:  # the carried group ended before this batch
            means.append(mean_or_nan(self.sum, self.count))
            ids.append(self.group)
            ends.append(positions[0])
            done_labels.append(self.label)
            sizes.append(self.rows)
        means += list(mean_or_nan(run_sums[:-1], run_counts[:-1]))
        done = self._completed(means, ids + groups[starts[:-1]].tolist(), ends + positions[starts[1:]].tolist(),
                               done_labels + list(run_labels[:-1]), sizes + run_rows[:-1].tolist(),
                               labels.shape[1])
        last = groups[-1]
        self.group, self.label = (last.item() if isinstance(last, np.generic) else last), run_labels[-1]
        self.sum, self.count, self.rows = run_sums[-1].copy(), run_counts[-1].copy(), int(run_rows[-1])
        return residuals, done

    def _completed(self, means, ids, positions, labels, sizes, width: int) -> CompletedGroups:
        ids_array = np.empty(len(ids), dtype=object)
        ids_array[:] = ids
        return CompletedGroups(np.array(means, dtype=float).reshape(-1, self.d), ids_array,
                               np.array(positions, dtype=np.int64),
                               np.array(labels, dtype=object).reshape(len(ids), width),
                               np.array(sizes, dtype=np.int64))

    def state_dict(self) -> dict:
        return {"d": self.d, "group": self.group, "label": self.label, "rows": self.rows, "sum": self.sum,
                "count": self.count}

    @classmethod
    def from_state(cls, s: dict) -> "SelfStartingResiduals":
        out = cls(s["d"])
        out.group, out.label, out.rows = s["group"], s["label"], int(s["rows"])
        out.sum, out.count = np.array(s["sum"], dtype=float), np.array(s["count"], dtype=float)
        return out
