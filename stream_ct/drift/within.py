"""Charts within wafers and lots: CUSUM on self-starting residuals (``residuals.py``).

On a floor every global chart compares the stream with the reference mean, so its thresholds
must carry the lot offsets. Each part against the earlier parts of its own wafer, and each
finished wafer against the earlier wafers of its own lot, carry none: a step that starts
inside a wafer or a lot is charted at the speed of i.i.d. parts. ``WithinCharts`` holds those
charts for ``DriftMonitor``: ``"cusum_wafer"`` (parts, subgroups ``within_subgroups``) and
``"cusum_lot"`` (one increment per whole wafer; also per level of every stratum key that is
constant within wafers and varies within lots, such as the tester: a self-starting chart,
``self_starting.py``, on that level's wafers, which learns the level's own offset against
the others with its error instead of bounding it).
"""

from __future__ import annotations

import numpy as np

from stream_ct.drift.calibration import chart_arl, chart_calibration, cusum_threshold, effective_rate, unless_unsafe
from stream_ct.drift.cusum import CusumBank
from stream_ct.drift.residuals import CompletedGroups, SelfStartingResiduals
from stream_ct.drift.self_starting import MIN_REFERENCE, SelfStartingChart
from stream_ct.drift.values import lots_of, run_starts


def calibrate(charted: np.ndarray, groups: np.ndarray, reference_strata: dict, strata, within_subgroups,
              wafer_records: int, block: int) -> dict:
    """The within charts' calibration on the reference's own residuals (``charted``: values
    less die offsets, NaN = missing; ``groups``: wafer ids in stream order): parts against
    the earlier parts of their wafer (``"wafer"``, sizes ``within_subgroups``) and, when the
    group ids are ``lot/wafer``, wafers against the earlier wafers of their lot (``"lot"``,
    one increment per wafer), also per level of every key of ``strata`` that is constant
    within wafers and varies within lots (``"lot_levels"``: the level's wafers' residuals,
    the reference of its self-starting chart; a tester's fixed offset against the others
    moves their mean). Residuals have mean 0 by construction (no reference-mean error);
    their sds and variance rates get the same upper bounds as the other charts, over
    horizons up to a lot (residuals of different groups are independent by construction)."""
    d, groups = charted.shape[1], np.asarray(groups)
    keys = sorted(reference_strata)
    labels = np.column_stack([reference_strata[k] for k in keys]) if keys else None
    parts, wafers = _residuals_in_chunks(charted, groups, labels)
    wafers = _whole(wafers, wafer_records / 2)  # not the reference's cut first and last
    out = {"wafer": _residual_calibration(parts[~run_starts(groups)], within_subgroups, block * wafer_records / 3),
           "lot_strata": []}
    lots = lots_of(wafers.ids) if len(wafers.ids) else None
    if lots is None or len(wafers.ids) < 8:
        return out
    res, _ = SelfStartingResiduals(d).update(wafers.means, lots, np.arange(len(lots)))
    res[run_starts(lots)] = np.nan  # a lot's first wafer: nothing to compare it with
    out["lot"] = _residual_calibration(res, (1,), block / 3)
    out["lot_levels"] = {}
    out["lot_strata"] = [key for j, key in enumerate(keys) if key in strata
                         and _constant_within(reference_strata[key], groups)
                         and _varies_within(wafers.labels[:, j], lots)]
    of_wafer = {key: wafers.labels[:, keys.index(key)].astype(str) for key in out["lot_strata"]}
    compared = ~np.isnan(res).all(axis=1)  # not a lot's first wafer
    for key, levels in of_wafer.items():
        for level in np.unique(levels).tolist():
            rows = res[(levels == level) & compared]
            if (~np.isnan(rows)).sum(axis=0).min() >= MIN_REFERENCE:
                out["lot_levels"][f"{key}={level}"] = {"residuals": rows}
    return out


class WithinCharts:
    """The within-wafer and within-lot charts of a monitor of ``d`` features, built from
    ``calibrate``'s result for a per-record false-alarm rate ``share / arl0``: half to the
    wafer charts, the rest to the lot charts, shared equally with their stratum levels when
    a key has them (all of it to the wafer charts when the group ids name no lots)."""

    def __init__(self, cal: dict, d: int, k: float, arl0: float, share: float, within_subgroups,
                 wafer_records: int, lag: int = 20):
        self.cal, self.d, self.k, self.arl0, self.share = cal, d, k, arl0, share
        self.wafer_records, self.lag = wafer_records, int(lag)
        self.lot_strata = list(cal["lot_strata"])
        self.wafer_residuals = SelfStartingResiduals(d)
        self.wafer_banks = self._banks(cal["wafer"], share / 2 if "lot" in cal else share, within_subgroups, 1)
        self.lot_residuals, self.lot_banks, self.lot_strata_charts = None, [], {}
        if "lot" in cal:
            self.lot_residuals = SelfStartingResiduals(d)
            self.lot_banks = self._banks(cal["lot"], share / (4 if self.lot_strata else 2), (1,), wafer_records)
            for name in cal["lot_levels"]:
                key, level = name.split("=", 1)
                self.lot_strata_charts[(key, level)] = self._level_chart(key, level)

    def _level_chart(self, key: str, level: str):
        """Within-lot charts of one stratum level: self-starting on the level's reference
        wafers (thresholds kept in its calibration, so a restored monitor does not simulate
        them again); a level without them (first seen on the stream, or calibrated before
        the self-starting level charts) gets CUSUM banks on its calibration, else the global one."""
        share = self.share / 4 / len(self.lot_strata)
        cal = self.cal["lot_levels"].get(f"{key}={level}", self.cal["lot"])
        if "residuals" not in cal:
            return self._banks(cal, share, (1,), self.wafer_records)
        arl = chart_arl(self.arl0, 2 * self.d, share, self.wafer_records)  # in the level's wafers
        chart = SelfStartingChart(cal["residuals"], self.k, arl, self.lag, cal.get("h"))
        cal.setdefault("h", [h.copy() for h in chart.thresholds])
        return chart

    def _banks(self, cal: dict, share: float, sizes, records_per_increment: float) -> list[CusumBank]:
        """Charts on residuals for a per-record rate ``share / arl0`` split over ``sizes``
        (subgroups of increments; an increment stands for ``records_per_increment`` records)."""
        banks = []
        for m in sizes:
            arl = chart_arl(self.arl0, 2 * self.d * len(sizes), share, m * records_per_increment)
            e, curve = cal["mean_sd"][str(m)], cal["curve"][str(m)]
            v = effective_rate(curve["starts"], curve["bound"], self.k, arl, e)
            h = unless_unsafe(np.asarray(cusum_threshold(self.k, arl, v, e), dtype=float), self.k, e)
            banks.append(CusumBank(cal["mean"], cal["sigma"][str(m)], self.k, h, m))
        return banks

    def update(self, X, complete, groups, positions, strata, signals) -> list:
        """Charts on each part against the earlier parts of its wafer ("cusum_wafer") and on
        each finished wafer's mean against the earlier wafers of its lot ("cusum_lot", also
        per level of the stratum keys constant within wafers); ``complete``: ``X`` has no
        missing value; ``signals(banks, X, valid, positions, stratum, detector)`` turns the
        charts' crossings into the monitor's signals. A wafer's first part charts as 0, a
        lot's first wafer not at all."""
        b = len(X)
        labels = None if not self.lot_strata else np.column_stack(
            [np.asarray(strata[key]).astype(str) if strata is not None and key in strata else np.full(b, "")
             for key in self.lot_strata])
        parts, wafers = self.wafer_residuals.update(X, np.asarray(groups), positions, labels)
        out = signals(self.wafer_banks, parts, None if complete else ~np.isnan(parts), positions, None,
                      "cusum_wafer")
        # pieces of a wafer (its parts spread over several input partitions) are not wafers
        wafers = _whole(wafers, self.wafer_records / 2)
        lots = lots_of(wafers.ids) if self.lot_residuals is not None and len(wafers.ids) else None
        if lots is None:
            return out
        first = lots != np.r_[np.array([self.lot_residuals.group], dtype=object), lots[:-1]]
        res, _ = self.lot_residuals.update(wafers.means, lots, wafers.positions)
        res[first] = np.nan
        valid = ~np.isnan(res)
        out += signals(self.lot_banks, res, valid, wafers.positions, None, "cusum_lot")
        compared = valid.any(axis=1)  # not a lot's first wafer
        for j, key in enumerate(self.lot_strata):
            levels = wafers.labels[:, j].astype(str)
            for level in np.unique(levels).tolist():
                if not level:
                    continue
                rows = (levels == level) & compared
                chart = self.lot_strata_charts.get((key, level))
                if chart is None:
                    chart = self.lot_strata_charts[(key, level)] = self._level_chart(key, level)
                if isinstance(chart, SelfStartingChart):
                    out += chart.update(res[rows], wafers.positions[rows], signals, {key: level}, ["cusum_lot"])
                else:
                    out += signals(chart, res[rows], valid[rows], wafers.positions[rows], {key: level}, "cusum_lot")
        return out

    def state_dict(self) -> dict:
        return {"wafer_residuals": self.wafer_residuals.state_dict(),
                "lot_residuals": None if self.lot_residuals is None else self.lot_residuals.state_dict(),
                "wafer_banks": [b.state_dict() for b in self.wafer_banks],
                "lot_banks": [b.state_dict() for b in self.lot_banks],
                "lot_strata_banks": [{"key": k, "level": v, **({"chart": c.state_dict()} if isinstance(c, SelfStartingChart)
                                                               else {"banks": [b.state_dict() for b in c]})}
                                     for (k, v), c in self.lot_strata_charts.items()]}

    def load_state(self, s: dict) -> None:
        """Resume from ``state_dict()`` (the charts' thresholds come with it)."""
        self.wafer_residuals = SelfStartingResiduals.from_state(s["wafer_residuals"])
        self.lot_residuals = (None if s["lot_residuals"] is None
                              else SelfStartingResiduals.from_state(s["lot_residuals"]))
        self.wafer_banks = [CusumBank.from_state(b) for b in s["wafer_banks"]]
        self.lot_banks = [CusumBank.from_state(b) for b in s["lot_banks"]]
        self.lot_strata_charts = {}
        for e in s["lot_strata_banks"]:
            if "chart" in e:
                chart = self._level_chart(e["key"], e["level"])
                chart.load_state(e["chart"])
            else:
                chart = [CusumBank.from_state(b) for b in e["banks"]]
            self.lot_strata_charts[(e["key"], e["level"])] = chart


def _constant_within(levels: np.ndarray, groups: np.ndarray) -> bool:
    """Whether every run of equal ``groups`` holds one level."""
    same_group = groups[1:] == groups[:-1]
    return not (levels[1:] != levels[:-1])[same_group].any()


def _varies_within(levels: np.ndarray, lots: np.ndarray) -> bool:
    """Whether some lot holds groups of two or more levels."""
    same_lot = lots[1:] == lots[:-1]
    return bool((levels[1:] != levels[:-1])[same_lot].any())


def _residuals_in_chunks(X: np.ndarray, groups: np.ndarray, labels, chunk: int = 20_000):
    """``SelfStartingResiduals(d).update`` over all of ``X`` in chunks of rows (bounded
    memory on wide references): the residuals and every completed group."""
    tracker, parts, done = SelfStartingResiduals(X.shape[1]), [], []
    for a in range(0, len(X), chunk):
        b = min(a + chunk, len(X))
        r, completed = tracker.update(X[a:b], groups[a:b], np.arange(a, b), None if labels is None else labels[a:b])
        parts.append(r)
        done.append(completed)
    return np.vstack(parts), CompletedGroups(*(np.concatenate([getattr(c, f) for c in done])
                                               for f in ("means", "ids", "positions", "labels", "sizes")))


def _whole(groups: CompletedGroups, min_size: float) -> CompletedGroups:
    """The completed groups of at least ``min_size`` records."""
    keep = groups.sizes >= min_size
    if keep.all():
        return groups
    return CompletedGroups(groups.means[keep], groups.ids[keep], groups.positions[keep], groups.labels[keep],
                           groups.sizes[keep])


def _residual_calibration(residuals: np.ndarray, sizes, run_increments: float) -> dict:
    """``chart_calibration`` of a stream of residuals within groups (rows without any value
    dropped, a missing value counted as 0), whose mean is 0 by construction: no
    reference-mean error. Variance rates over horizons up to 3 x ``run_increments``."""
    rows = residuals[~np.isnan(residuals).all(axis=1)]
    mean = np.zeros(rows.shape[1])
    cal = chart_calibration(np.where(np.isnan(rows), 0.0, rows), sizes, mean, run_increments)
    cal["mean_sd"] = {m: np.zeros_like(e) for m, e in cal["mean_sd"].items()}
    return dict(cal, mean=mean)
