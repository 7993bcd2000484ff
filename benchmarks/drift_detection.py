"""Drift detection on simulated streams with known onsets: delay, misses, false alarms, speed.

Rows, side by side on the same streams: stream-ct's DriftMonitor; the seed notebook's check
(scipy ks_2samp per feature on windows of 1,000 against the last 1,000 reference records,
p < 0.05 each, no correction); river KSWIN per feature; and the CUSUM optimum: the chart that
knows the shift (k = shift/2 on the test standardized by the reference, each value less
its die's offset learned on the reference, as stream-ct's charts see it), on the drifting
test alone ("1 chart") or as a stream monitor must, up and down on every test ("2d
charts"), each at ``2d * ARL0`` so that the union false-alarms once per ARL0 records.
Two versions of each: Siegmund's thresholds and delays for N(0, 1) values ("N(0,1)"), with
the false alarms those thresholds really raise on the no-drift stream in the FA/1M column;
and thresholds that hold ARL0 on this process ("ARL0 here": the threshold that lets
n/ARL0 excursions of the no-drift stream through, one common threshold for the 2d
charts), their delays measured on the same drift streams as stream-ct. The simulated
parts carry die patterns, lot and wafer offsets, so the N(0,1) thresholds can false-alarm
more often than ARL0 allows. On the floor
stream, where lot offsets are normal variation, a further optimum row runs the union on
lot means (known shift, fab means and lot-to-lot sd from 200 no-drift lots of the same
process), measured on the same streams: the delay no detector at this false-alarm rate
can beat there without knowing more than the process.

Two kinds of stream: "iid" parts (the simulator with its lot, wafer, fab and tester offsets
set to 0) and "floor" (the simulator's defaults: lot and wafer offsets of 0.3 part sigma,
fixed fab and tester offsets). The monitor's reference is 200,000 records on both (the size
the product recommends: 20 lots of the floor), with wafer ids as groups, tester/site/fab
as strata and die positions (x, y), as serve builds it.

    python benchmarks/drift_detection.py --speed   # records/s of the detection layer only (~2 min)
    python benchmarks/drift_detection.py --windows # serve's former windows vs the defaults, floor (~4 min)
    python benchmarks/drift_detection.py --quick   # 50 features, fewer onsets (~5 min)
    python benchmarks/drift_detection.py           # 50 and 300 features, 1M no-drift records (~1 hour)
    python benchmarks/drift_detection.py --streams floor:50 --floor-reference 1000000  # a 100-lot reference
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from river import drift as river_drift
from scipy import stats

from stream_ct.drift import DriftMonitor
from stream_ct.drift.calibration import siegmund_delay, siegmund_h
from stream_ct.drift.cusum import CusumBank, lindley
from stream_ct.drift.die_pattern import DiePattern
from stream_ct.simulate import Simulator

ARL0 = 100_000
IID = dict(lot_sd=0.0, wafer_sd=0.0, fab_sd=0.0, tester_sd=0.0)
SCENARIOS = [  # (label, scenario, shift in sigma, extra simulator arguments)
    ("mean 0.25 sd", "mean-shift", 0.25, {}),
    ("mean 0.5 sd", "mean-shift", 0.5, {}),
    ("mean 1 sd", "mean-shift", 1.0, {}),
    ("variance x2", "variance-change", 0.0, {}),
    ("tester T2 +1 sd", "tester-offset", 1.0, {}),
]


def _strata(b):
    return {"tester": b.tester, "site": b.site, "fab": b.fab}


def _dies(b):
    return b.x * 65536 + b.y


def _groups(b):
    """Wafer ids as serve makes them, ``lot/wafer``."""
    return np.char.add(np.char.add(b.lot_id, "/"), b.wafer_id)


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


class StreamCt:
    name = "stream-ct"

    def __init__(self, ref, seed=0, **monitor_args):
        t = time.perf_counter()
        self.mon = DriftMonitor(ref.X, ref.feature_names, reference_groups=_groups(ref),
                                reference_strata=_strata(ref), reference_dies=_dies(ref),
                                arl0=ARL0, seed=seed, **monitor_args)
        self.calibration_s = time.perf_counter() - t
        self.state = self.mon.state_dict()

    def fresh(self, cols=None):  # all features always: the monitor is what is measured
        self.mon = DriftMonitor.from_state(self.state)
        return self

    def update(self, b):
        """Stream positions and feature indices of the signals this batch raised."""
        names = {n: j for j, n in enumerate(b.feature_names)}
        return [(s.position, [names[f] for f in s.features]) for s in self.mon.update(b.X, _strata(b), _dies(b), _groups(b))]


class SeedKS:
    """The seed notebook: ks_2samp per feature, window of 1,000 vs a reference window, p < 0.05."""
    name = "seed ks_2samp p<0.05"

    def __init__(self, ref, window=1000):
        self.ref, self.window = ref.X[-window:], window

    def fresh(self, cols=None):
        self.buf, self.n_seen = [], 0
        self.cols = list(range(self.ref.shape[1])) if cols is None else list(cols)
        return self

    def update(self, b):
        out = []
        for row0 in range(0, len(b), self.window):
            chunk = b.X[row0:row0 + self.window]
            self.buf.append(chunk)
            have = sum(len(c) for c in self.buf)
            if have >= self.window:
                win = np.vstack(self.buf)[: self.window]
                rest = np.vstack(self.buf)[self.window:]
                self.buf = [rest] if len(rest) else []
                hit = [j for j in self.cols
                       if stats.ks_2samp(self.ref[:, j], win[:, j]).pvalue < 0.05]
                pos = self.n_seen + self.window - 1
                self.n_seen += self.window
                if hit:
                    out.append((pos, hit))
        return out


class Kswin:
    """river KSWIN per feature (defaults: alpha 0.005, window 100, stat size 30)."""
    name = "river KSWIN"

    def __init__(self, ref, seed=0):
        self.seed, self.ref = seed, ref.X[-100:]

    def fresh(self, cols=None):
        self.cols = list(range(self.ref.shape[1])) if cols is None else list(cols)
        self.dets = [river_drift.KSWIN(seed=self.seed, window=self.ref[:, j].tolist())
                     for j in self.cols]
        self.n_seen = 0
        return self

    def update(self, b):
        out = []
        cols = b.X[:, self.cols].T.tolist()
        for i in range(len(b)):
            hit = []
            for c, det in enumerate(self.dets):
                det.update(cols[c][i])
                if det.drift_detected:
                    hit.append(self.cols[c])
            if hit:
                out.append((self.n_seen + i, hit))
        self.n_seen += len(b)
        return out


def run_detection(method, sim, n_ref, onset, horizon, batch):
    """Delay (records after onset) of the first signal naming the drifting test, or None.

    Per-feature baselines run on the drifting test only (their other features cannot name
    it), which gives the same delay in a fraction of the time."""
    method.fresh(cols=[sim.drift_test])
    target = sim.drift_test
    seen, t_busy = 0, 0.0
    while seen < onset - n_ref + horizon:
        b = sim.generate(batch)
        t = time.perf_counter()
        signals = method.update(b)
        t_busy += time.perf_counter() - t
        for pos, feats in signals:
            if pos >= onset - n_ref and target in feats:
                return pos - (onset - n_ref), seen + len(b), t_busy
        seen += len(b)
    return None, seen, t_busy


def run_no_drift(method, sim, n, batch, also=None):
    """Signals of ``method`` on ``n`` no-drift records and its busy time; ``also`` sees the
    same batches (untimed)."""
    method.fresh()
    batch = min(batch, n)
    alarms, t_busy = 0, 0.0
    for _ in range(n // batch):
        b = sim.generate(batch)
        t = time.perf_counter()
        alarms += len(method.update(b))
        t_busy += time.perf_counter() - t
        if also is not None:
            also.update(b)
    return alarms, t_busy


def optimum_h(shift, charts=1):
    """Siegmund's threshold of each of ``charts`` one-sided CUSUMs with the known shift
    (k = shift/2) whose union has the in-control ARL ``ARL0`` on N(0, 1) values."""
    return siegmund_h(shift / 2, charts * ARL0)


def optimum_name(charts, thresholds):
    """Row name of a known-shift optimum: how many charts, whose thresholds."""
    return f"CUSUM optimum ({charts} chart{'s' * (charts > 1)}, {thresholds})"


def optimum(shift, charts=1):
    """Mean delay of those charts under the shift (Siegmund)."""
    return siegmund_delay(shift, shift / 2, optimum_h(shift, charts))


class KnownShiftCharts:
    """The known-shift CUSUMs of the optimum rows (k = shift/2 on tests standardized by the
    reference, each value less its die's offset as stream-ct's charts see it) run over the
    no-drift stream: how often Siegmund's N(0, 1) thresholds really false-alarm there, and
    thresholds that hold ARL0 on it.

    Every chart (up and down on every test) also runs without a threshold and keeps the
    maximum of each excursion above 0. A chart with threshold ``h`` alarms about once per
    excursion whose maximum exceeds ``h`` (rare events: the restart after a crossing seldom
    crosses again before the excursion would have ended), so the calibrated ``h`` lets
    ``n / ARL0`` excursions through: of the drifting test's upward chart alone (1 chart), or
    of all ``2d`` charts under one common ``h`` (the union)."""

    def __init__(self, ref, test, shifts):
        self.pattern = DiePattern(ref.X, _dies(ref))
        self.mean, self.sd, self.test = ref.X.mean(axis=0), ref.X.std(axis=0), test
        d = len(self.mean)
        self.shifts = [s for s in shifts if s > 0]
        self.state = {s: np.zeros(2 * d) for s in self.shifts}
        self.peak = {s: np.zeros(2 * d) for s in self.shifts}  # maximum of the open excursion
        self.floor = {s: siegmund_h(s / 2, 1_000) for s in self.shifts}  # far below any h used
        self.maxima = {s: [] for s in self.shifts}  # (chart, maximum) of completed excursions
        t = slice(test, test + 1)  # the single chart watches the drifting test only
        self.siegmund = {(s, charts): CusumBank(self.mean[cols], self.sd[cols], s / 2,
                                                np.full(len(self.mean[cols]), optimum_h(s, charts)))
                         for s in self.shifts for charts, cols in ((1, t), (2 * d, slice(None)))}
        self.alarms = {key: 0 for key in self.siegmund}
        self.n = 0

    def update(self, b):
        if not np.isfinite(b.X).all():
            raise ValueError("the simulator's values are expected finite")
        x = self.values(b)
        z = (x - self.mean) / self.sd
        positions = self.n + np.arange(len(b))
        for (shift, charts), bank in self.siegmund.items():
            alarms = bank.update(x if charts > 1 else x[:, self.test:self.test + 1], None, positions)
            self.alarms[(shift, charts)] += len(alarms) if charts > 1 else sum(a.side == 1 for a in alarms)
        for shift in self.shifts:
            path = lindley(np.hstack([z - shift / 2, -z - shift / 2]), self.state[shift])
            self.state[shift] = path[-1]
            self._excursions(shift, path)
        self.n += len(b)

    def values(self, b):
        """The batch's values less their dies' offsets."""
        return self.pattern.remove(b.X, _dies(b))

    def _excursions(self, shift, path):
        """Keep the maxima of the excursions ``path`` (rows x charts) completes; carry the open ones."""
        t, n_charts = path.shape
        flat = path.T.ravel()  # chart after chart
        zero = flat <= 0  # a zero ends the excursion before it
        col_start = np.arange(n_charts) * t
        starts = np.union1d(col_start, np.flatnonzero(zero))
        seg_max, seg_col = np.maximum.reduceat(flat, starts), starts // t
        is_first = starts == col_start[seg_col]
        is_last = np.r_[seg_col[1:] != seg_col[:-1], True]
        peak = self.peak[shift]
        ended = is_first & zero[starts]  # the carried excursion ended at this batch's first row
        merge = is_first & ~zero[starts]  # ... or goes on into it
        seg_max[merge] = np.maximum(seg_max[merge], peak[seg_col[merge]])
        cols = np.r_[seg_col[ended], seg_col[~is_last]]
        maxima = np.r_[peak[seg_col[ended]], seg_max[~is_last]]
        keep = maxima > self.floor[shift]
        self.maxima[shift].append((cols[keep], maxima[keep]))
        peak[seg_col[is_last]] = seg_max[is_last]

    def false_alarms_per_million(self, shift, charts):
        """Alarms of Siegmund's thresholds (the drifting test's upward chart, or all charts)."""
        return self.alarms[(shift, charts)] / self.n * 1e6

    def calibrated_h(self, shift, charts):
        """The threshold that lets ``n / ARL0`` excursions through (open ones counted as ended)."""
        cols = np.concatenate([c for c, _ in self.maxima[shift]] + [np.arange(len(self.peak[shift]))])
        maxima = np.concatenate([m for _, m in self.maxima[shift]] + [self.peak[shift]])
        if charts == 1:
            maxima = maxima[cols == self.test]
        target = int(round(self.n / ARL0))
        ranked = np.sort(maxima)[::-1]
        return float(ranked[target]) if len(ranked) > target else self.floor[shift]


class KnownShiftChart:
    """The drifting test's upward CUSUM with the known shift (k = shift/2) and threshold ``h``,
    run like a detector: from the end of the reference, restarted after every crossing."""

    def __init__(self, name, calibration, shift, h):
        self.name, self.cal, self.k, self.h = name, calibration, shift / 2, h

    def fresh(self, cols=None):
        t = self.cal.test
        self.bank = CusumBank(self.cal.mean[t:t + 1], self.cal.sd[t:t + 1], self.k, np.array([self.h]))
        self.n_seen = 0
        return self

    def update(self, b):
        t = self.cal.test
        alarms = self.bank.update(self.cal.values(b)[:, t:t + 1], None, self.n_seen + np.arange(len(b)))
        self.n_seen += len(b)
        return [(a.position, [t]) for a in alarms if a.side == 1]


def lot_means(sim, n, test, chunk=100_000):
    """(mean of ``test``, fab, position of the last record) of each complete lot among the
    next ``n`` records of ``sim`` (lots arrive whole, in order)."""
    lots, pos = {}, 0
    while pos < n:
        b = sim.generate(min(chunk, n - pos))
        names, first = np.unique(b.lot_id, return_index=True)
        for name in names[np.argsort(first)].tolist():
            rows = np.flatnonzero(b.lot_id == name)
            acc = lots.setdefault(name, [0.0, 0, b.fab[rows[0]], 0])
            acc[0] += b.X[rows, test].sum()
            acc[1] += len(rows)
            acc[3] = pos + rows[-1]
        pos += len(b)
    size = max(acc[1] for acc in lots.values())
    return [(acc[0] / acc[1], acc[2], acc[3]) for acc in lots.values() if acc[1] == size], size


class LotMeanOptimum:
    """Known-shift CUSUM on the drifting test's lot means, fab means and lot-to-lot sd known
    (from 200 no-drift lots of the process), each chart at ``2d * ARL0`` records."""

    name = "CUSUM optimum (lot means)"

    def __init__(self, process, d, params, n_ref):
        """``process``: the no-drift simulator (``d`` tests, ``params``) past its ``n_ref``
        reference records; the next 200 lots give the known means and sd."""
        self.test = process.drift_test
        means, self.lot_size = lot_means(process, 200 * 10_000, self.test)
        fabs = sorted({f for _, f, _ in means})
        self.fab_mean = {f: np.mean([m for m, g, _ in means if g == f]) for f in fabs}
        self.sd = np.std([m - self.fab_mean[f] for m, f, _ in means], ddof=len(fabs))
        self.d, self.params, self.n_ref = d, params, n_ref
        self.stationary_sd = process.stationary_sd[self.test]

    def delay(self, shift, onset, horizon):
        """Records from ``onset`` to the end of the lot whose mean first crosses (None: missed)."""
        delta = shift * self.stationary_sd / self.sd
        k = delta / 2
        h = siegmund_h(k, 2 * self.d * ARL0 / self.lot_size)
        sim = Simulator(scenario="mean-shift", seed=100, n_tests=self.d, onset=onset, shift_sigma=shift,
                        **self.params)
        sim.generate(self.n_ref)
        start, s = onset - self.n_ref, 0.0
        for mean, fab, last in lot_means(sim, start + horizon, self.test)[0]:
            s = max(0.0, s + (mean - self.fab_mean[fab]) / self.sd - k)
            if s > h:
                if last >= start:
                    return last - start
                s = 0.0  # a false alarm before the onset
        return None


def bench(kind, d, repeats, n_nodrift, kswin_records, seed_records, n_ref=200_000):
    """Table rows of one stream kind and width; ``repeats`` maps the kind to its onsets;
    ``n_ref`` reference records."""
    params = IID if kind == "iid" else {}
    pre = 5_000 if kind == "iid" else 20_000
    horizon = 50_000 if kind == "iid" else 200_000
    rows = []
    base = Simulator(scenario="none", seed=100, n_tests=d, **params)
    ref = base.generate(n_ref)
    _log(f"[{kind} d={d}] calibrating on {n_ref:,} reference records ...")
    ours = StreamCt(ref)
    _log(f"[{kind} d={d}] calibration {ours.calibration_s:.1f} s")
    methods = [ours, SeedKS(ref), Kswin(ref)]
    lot_optimum = LotMeanOptimum(base, d, params, n_ref) if kind == "floor" else None
    repeats = repeats[kind]
    # floor repeats see different lots; i.i.d. ones (detected within a few thousand records,
    # so many are cheap) start at other dies of a wafer
    onsets = [n_ref + pre + (37_013 if kind == "floor" else 1_013) * r for r in range(repeats)]
    no_drift_rows, known = [], KnownShiftCharts(ref, base.drift_test, [s for _, _, s, _ in SCENARIOS])
    for m in methods:  # false alarms: every feature (first: the optimum rows are calibrated on it)
        n = n_nodrift if m is ours else (max(200, kswin_records * 50 // d) if m.name == Kswin.name
                                         else seed_records)
        sim = Simulator(scenario="none", seed=100, n_tests=d, **params)  # the same process
        sim.generate(n_ref)
        alarms, t = run_no_drift(m, sim, n, 2000 if m is ours else 1000, also=known if m is ours else None)
        no_drift_rows.append((kind, d, "no drift", m.name, None, None, alarms / n * 1e6, n / t))
        _log(f"  no drift ({n:,} records) {m.name:22s} alarms {alarms} ({n / t:,.0f} rec/s)")
    for label, scenario, shift, extra in SCENARIOS:
        mean_shift = shift > 0 and scenario == "mean-shift"
        calibrated = [KnownShiftChart(optimum_name(charts, "ARL0 here"), known,
                                      shift, known.calibrated_h(shift, charts))
                      for charts in (1, 2 * d)] if mean_shift else []
        for m in methods + calibrated:
            delays, misses, recs, busy = [], 0, 0, 0.0
            reps = repeats if m is ours or m in calibrated else 1
            for onset in onsets[:reps]:
                sim = Simulator(scenario=scenario, seed=100, n_tests=d, onset=onset,
                                shift_sigma=shift or 1.0, **params, **extra)
                sim.generate(n_ref)
                delay, n, t = run_detection(m, sim, n_ref, onset, horizon, 2000)
                recs, busy = recs + n, busy + t
                if delay is None:
                    misses += 1
                else:
                    delays.append(delay)
            rows.append((kind, d, label, m.name, np.mean(delays) if delays else None,
                         misses / reps, None, recs / busy if busy and m is ours else None))
            _log(f"  {label:16s} {m.name:22s} delays {delays} misses {misses}/{reps}")
        if mean_shift:
            for charts in (1, 2 * d):
                rows.append((kind, d, label, optimum_name(charts, "N(0,1)"),
                             optimum(shift, charts), 0.0, known.false_alarms_per_million(shift, charts), None))
            if lot_optimum is not None:
                delays = [lot_optimum.delay(shift, onset, horizon) for onset in onsets]
                found = [x for x in delays if x is not None]
                rows.append((kind, d, label, lot_optimum.name, np.mean(found) if found else None,
                             1 - len(found) / repeats, None, None))
    rows += no_drift_rows
    return rows, ours.calibration_s


def speed(d=50, n=100_000, repeats=3):
    """Records/s of ``DriftMonitor.update`` alone on the floor stream, configurations side by side
    (interleaved, best of ``repeats``), with the seed check on the same batches."""
    base = Simulator(scenario="none", seed=100, n_tests=d)
    ref = base.generate(200_000)
    batches = [base.generate(2000) for _ in range(n // 2000)]
    variants = {  # name: (monitor arguments, strata, die patterns)
        "stream-ct defaults (window 2,000, stride 2,000), strata, dies": ({}, True, True),
        "stream-ct defaults without the lot-mean charts, strata, dies":
            (dict(budget={"ks": 0.2, "psi": 0.2, "cusum": 0.2, "strata": 0.2, "within": 0.2}), True, True),
        "stream-ct defaults without the within and lot-mean charts, strata, dies":
            (dict(budget={"ks": 0.2, "psi": 0.2, "cusum": 0.3, "strata": 0.3, "within": 0.0}), True, True),
        "stream-ct defaults, strata, no dies": ({}, True, False),
        "stream-ct defaults, no strata, no dies": ({}, False, False),
        "stream-ct with serve's windows before the sixth round (1,000 / 250), strata, dies":
            (dict(window=1000, stride=250), True, True),
    }
    states = {}
    for name, (kw, _, with_dies) in variants.items():
        _log(f"[speed d={d}] calibrating: {name}")
        states[name] = DriftMonitor(ref.X, ref.feature_names, reference_groups=_groups(ref),
                                    reference_strata=_strata(ref), reference_dies=_dies(ref) if with_dies else None,
                                    arl0=ARL0, seed=0, **kw).state_dict()
    best = {name: 0.0 for name in variants}
    for _ in range(repeats):
        for name, (_, with_strata, with_dies) in variants.items():
            mon = DriftMonitor.from_state(states[name])
            t = time.perf_counter()
            for b in batches:
                mon.update(b.X, _strata(b) if with_strata else None, _dies(b) if with_dies else None, _groups(b))
            best[name] = max(best[name], n / (time.perf_counter() - t))
    seed, few = SeedKS(ref).fresh(), batches[: max(1, len(batches) // 5)]  # the seed check is slow
    t = time.perf_counter()
    for b in few:
        seed.update(b)
    best["seed ks_2samp p<0.05 (per feature per window)"] = len(few) * 2000 / (time.perf_counter() - t)
    print(f"\nDetection layer alone, {d} tests, {n:,} no-drift floor records in batches of 2,000 "
          f"(best of {repeats}, interleaved)\n")
    for name, rate in best.items():
        print(f"{name:66s} {rate:>10,.0f} rec/s")
    print(f"\ngoal >= 100,000 rec/s at 50 tests (defaults, strata, dies): "
          f"{'MET' if best[next(iter(variants))] >= 100_000 else 'NOT MET'}")


def windows(d=50, n_ref=200_000, onsets=3, n_nodrift=300_000):
    """The KS/PSI windows serve used before the sixth round (1,000 / stride 250) against the
    monitor's defaults, serve's since (2,000 / 2,000), on the floor stream: delays of a
    variance change and a 1-sd shift, false alarms, records/s of the layer."""
    base = Simulator(scenario="none", seed=100, n_tests=d)
    ref = base.generate(n_ref)
    rows = []
    for window, stride in ((1000, 250), (2000, 2000)):
        ours = StreamCt(ref, window=window, stride=stride)
        for label, scenario, shift in (("variance x2", "variance-change", 1.0), ("mean 1 sd", "mean-shift", 1.0)):
            delays = []
            for r in range(onsets):
                onset = n_ref + 20_000 + 37_013 * r
                sim = Simulator(scenario=scenario, seed=100, n_tests=d, onset=onset, shift_sigma=shift)
                sim.generate(n_ref)
                delays.append(run_detection(ours, sim, n_ref, onset, 200_000, 2000)[0])
            rows.append([f"{window:,} / {stride:,}", label, ", ".join("missed" if x is None else f"{x:,}"
                                                                   for x in delays), "-", "-"])
            _log(f"  window {window} stride {stride} {label}: {delays}")
        sim = Simulator(scenario="none", seed=100, n_tests=d)
        sim.generate(n_ref)
        alarms, busy = run_no_drift(ours, sim, n_nodrift, 2000)
        rows.append([f"{window:,} / {stride:,}", f"no drift ({n_nodrift:,})", "-", alarms, f"{n_nodrift / busy:,.0f}"])
    print(f"\nfloor stream, {d} tests, reference {n_ref:,} records, {onsets} onsets\n")
    head = f"{'window / stride':16s} {'scenario':20s} {'delays (records)':28s} {'alarms':>7s} {'rec/s':>9s}"
    print(head)
    print("-" * len(head))
    for row in rows:
        print(f"{row[0]:16s} {row[1]:20s} {row[2]:28s} {str(row[3]):>7s} {row[4]:>9s}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="50 features, fewer onsets, 300k no-drift records")
    ap.add_argument("--speed", action="store_true", help="only the detection layer's records/s at 50 features")
    ap.add_argument("--windows", action="store_true",
                    help="serve's former KS/PSI windows (1,000 / 250) against the defaults (2,000 / 2,000), floor")
    ap.add_argument("--floor-reference", type=int, default=200_000, metavar="N",
                    help="reference records on the floor stream (default 200,000 = 20 lots)")
    ap.add_argument("--streams", nargs="+", metavar="KIND:D",
                    help="only these streams, e.g. floor:50 (kinds iid, floor)")
    args = ap.parse_args(argv)
    if args.speed:
        return speed()
    if args.windows:
        return windows()
    t0 = time.perf_counter()
    if args.quick:
        plan = [("iid", 50), ("floor", 50)]
        repeats, n_nodrift, kswin_records, seed_records = {"iid": 4, "floor": 2}, 300_000, 2_000, 50_000
    else:
        plan = [("iid", 50), ("floor", 50), ("iid", 300), ("floor", 300)]
        repeats, n_nodrift, kswin_records, seed_records = {"iid": 10, "floor": 3}, 1_000_000, 2_000, 100_000
    if args.streams:
        plan = [(kind, int(d)) for kind, d in (x.split(":") for x in args.streams)]
    rows, calib = [], {}
    for kind, d in plan:
        r, c = bench(kind, d, repeats, n_nodrift, kswin_records, seed_records,
                     args.floor_reference if kind == "floor" else 200_000)
        rows += r
        calib[(kind, d)] = c
    print(f"ARL0 target {ARL0:,} records = {1e6 / ARL0:.0f} false alarms per 1M no-drift records\n")
    head = (f"{'stream':6s} {'d':>4s} {'scenario':16s} {'method':38s} {'mean delay':>11s} {'miss':>5s} "
            f"{'FA/1M':>8s} {'rec/s':>9s}")
    print(head)
    print("-" * len(head))
    for kind, d, label, name, delay, miss, fa, rate in rows:
        print(f"{kind:6s} {d:4d} {label:16s} {name:38s} "
              f"{'-' if delay is None else f'{delay:,.0f}':>11s} "
              f"{'-' if miss is None else f'{miss:.0%}':>5s} "
              f"{'-' if fa is None else f'{fa:,.0f}':>8s} "
              f"{'-' if rate is None else f'{rate:,.0f}':>9s}")
    print()
    for (kind, d), c in calib.items():
        print(f"calibration ({kind}, d={d}): {c:.1f} s")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
