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
and thresholds that hold ARL0 on this process ("ARL0 here": the lowest threshold of a
grid under which the chart, restarted after each crossing, raises at most n/ARL0 alarms on
the no-drift stream; one common threshold for the 2d charts), their delays measured on the
same drift streams as stream-ct. The simulated
parts carry die patterns, lot and wafer offsets, so the N(0,1) thresholds can false-alarm
more often than ARL0 allows. On the floor
stream, where lot offsets are normal variation, a further optimum row runs the union on
lot means (known shift, fab means and lot-to-lot sd from 200 no-drift lots of the same
process), measured on the same streams: the delay no detector at this false-alarm rate
can beat there without knowing more than the process.

Each onset is a trial of its own: the stream after the reference is drawn with its own
``stream_seed`` (same process, other lots, wafers and parts), so the trials are independent
given the reference, and none of them runs on the lots the no-drift stream calibrated the
"ARL0 here" thresholds on.

Two kinds of stream: "iid" parts (the simulator with its lot, wafer, fab and tester offsets
set to 0) and "floor" (the simulator's defaults: lot and wafer offsets of 0.3 part sigma,
fixed fab and tester offsets). The monitor's reference is 200,000 records on both (the size
the product recommends: 20 lots of the floor), with wafer ids as groups, tester/site/fab
as strata and die positions (x, y), as serve builds it. A third kind, "small" (not in the
default plan), is the floor with lots of 5 wafers of 50 dies, as the demo's, after a
10,000-record (40-lot) reference, missed after 300,000 records.

    python benchmarks/drift_detection.py --speed   # records/s of the detection layer only (~2 min)
    python benchmarks/drift_detection.py --windows # serve's former windows vs the defaults, floor (~4 min)
    python benchmarks/drift_detection.py --calibration  # the monitor's construction, exact-map baseline (~2 min)
    python benchmarks/drift_detection.py --quick   # 50 features, fewer onsets (~5 min)
    python benchmarks/drift_detection.py           # 50 and 300 features, 1M no-drift records (~1 hour)
    python benchmarks/drift_detection.py --streams floor:50 --floor-reference 1000000  # a 100-lot reference
    python benchmarks/drift_detection.py --streams floor:50 --lot-lag 0  # lots join at once
    python benchmarks/drift_detection.py --streams small:50  # 250-record lots (~4 min)
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
from stream_ct.drift.cusum import CusumBank
from stream_ct.drift.die_pattern import DiePattern
from stream_ct.drift.lot_means import LotMeanChart, reference_lots
from stream_ct.simulate import Simulator

ARL0 = 100_000
HORIZONS = {"iid": 50_000, "floor": 500_000, "small": 300_000}  # records watched after an onset until missed
PARAMS = {  # simulator arguments of each stream kind
    "iid": dict(lot_sd=0.0, wafer_sd=0.0, fab_sd=0.0, tester_sd=0.0),
    "floor": {},
    "small": dict(parts_per_wafer=50, wafers_per_lot=5),
}
LOT_RECORDS = {"floor": 10_000, "small": 250}
REFERENCES = {"iid": 200_000, "floor": 200_000, "small": 10_000}  # records: floor 20 lots, small 40
ONSET_STEPS = {"iid": 1_013, "floor": 7_013, "small": 163}  # records between trials' onset phases
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


def run_no_drift(method, sim, n, batch):
    """Signals of ``method`` on ``n`` no-drift records and its busy time."""
    method.fresh()
    batch = min(batch, n)
    alarms, t_busy = 0, 0.0
    for _ in range(n // batch):
        b = sim.generate(batch)
        t = time.perf_counter()
        alarms += len(method.update(b))
        t_busy += time.perf_counter() - t
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

    For the second, ``calibrate`` runs every chart under each threshold of a grid, restarted
    after each crossing exactly as a detector is, and keeps the lowest threshold that lets at
    most ``n / ARL0`` alarms through: of the drifting test's upward chart alone (1 chart), or
    of all ``2d`` charts under one common threshold (the union). Two passes over the same
    no-drift records: a grid of ratio 2 from half Siegmund's threshold, then one of ratio
    2^(1/12) (6 %) below the threshold the first found. A grid threshold that has raised
    more alarms than that already is retired (set infinite)."""

    GRID = 12

    def __init__(self, ref, test, shifts):
        self.pattern = DiePattern(ref.X, _dies(ref))
        self.mean, self.sd, self.test = ref.X.mean(axis=0), ref.X.std(axis=0), test
        d = len(self.mean)
        self.shifts = [s for s in shifts if s > 0]
        self.sets = [(s, charts) for s in self.shifts for charts in (1, 2 * d)]
        t = slice(test, test + 1)  # the single chart watches the drifting test only
        self.cols = {1: t, 2 * d: slice(None)}
        self.siegmund = {(s, charts): CusumBank(self.mean[self.cols[charts]], self.sd[self.cols[charts]], s / 2,
                                                np.full(len(self.mean[self.cols[charts]]), optimum_h(s, charts)))
                         for s, charts in self.sets}
        self.alarms = {key: 0 for key in self.siegmund}
        self.h = {}
        self.n = 0

    def calibrate(self, stream, n):
        """Both passes over ``n`` records of the no-drift streams ``stream()`` returns (each
        the same records, from the end of the reference)."""
        coarse = {key: optimum_h(key[0], key[1]) / 2 * 2.0 ** np.arange(self.GRID) for key in self.sets}
        found = self._pass(stream(), n, coarse, siegmund=True)
        fine = {key: found[key] / 2.0 ** (np.arange(self.GRID)[::-1] / self.GRID) for key in self.sets}
        self.h = self._pass(stream(), n, fine)

    def _pass(self, sim, n, grids, siegmund=False):
        """The lowest threshold of each grid with at most ``n / ARL0`` alarms (the top one if none)."""
        target, banks, counts = n / ARL0, {}, {}
        for (s, charts), grid in grids.items():
            cols = self.cols[charts]
            width = len(self.mean[cols])  # charts of grid threshold g: features g * width + j
            banks[(s, charts)] = CusumBank(np.tile(self.mean[cols], len(grid)), np.tile(self.sd[cols], len(grid)),
                                           s / 2, np.repeat(grid, width))
            counts[(s, charts)] = np.zeros(len(grid), dtype=np.int64)
        for start in range(0, n, 2000):
            b = sim.generate(min(2000, n - start))
            x = self.values(b)
            positions = start + np.arange(len(b))
            if siegmund:
                for (s, charts), bank in self.siegmund.items():
                    alarms = bank.update(x[:, self.cols[charts]], None, positions)
                    self.alarms[(s, charts)] += len(alarms) if charts > 1 else sum(a.side == 1 for a in alarms)
            for (s, charts), bank in banks.items():
                xs = x[:, self.cols[charts]]
                width = xs.shape[1]
                alarms = [a.feature // width for a in bank.update(np.tile(xs, self.GRID), None, positions)
                          if charts > 1 or a.side == 1]
                c = counts[(s, charts)]
                c += np.bincount(alarms, minlength=self.GRID)
                bank.h[np.repeat(c > target, width)] = np.inf  # retired: too many already
        if siegmund:
            self.n = n
        found = {}
        for key, grid in grids.items():
            ok = np.flatnonzero(counts[key] <= target)
            found[key] = float(grid[ok[0]] if len(ok) else grid[-1])
        return found

    def values(self, b):
        """The batch's values less their dies' offsets."""
        return self.pattern.remove(b.X, _dies(b))

    def false_alarms_per_million(self, shift, charts):
        """Alarms of Siegmund's thresholds (the drifting test's upward chart, or all charts)."""
        return self.alarms[(shift, charts)] / self.n * 1e6

    def calibrated_h(self, shift, charts):
        return self.h[(shift, charts)]


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

    def __init__(self, process, kind, d, n_ref):
        """``process``: the no-drift simulator of the stream ``kind`` (``d`` tests) past its
        ``n_ref`` reference records; the next 200 lots give the known means and sd."""
        self.test = process.drift_test
        means, self.lot_size = lot_means(process, 200 * LOT_RECORDS[kind], self.test)
        fabs = sorted({f for _, f, _ in means})
        self.fab_mean = {f: np.mean([m for m, g, _ in means if g == f]) for f in fabs}
        self.sd = np.std([m - self.fab_mean[f] for m, f, _ in means], ddof=len(fabs))
        self.raw_sd = np.std([m for m, _, _ in means], ddof=1)  # fabs not told apart
        self.d, self.params, self.n_ref = d, PARAMS[kind], n_ref
        self.stationary_sd = process.stationary_sd[self.test]

    def delay(self, shift, onset, horizon, stream_seed):
        """Records from ``onset`` to the end of the lot whose mean first crosses (None: missed)."""
        delta = shift * self.stationary_sd / self.sd
        k = delta / 2
        h = siegmund_h(k, 2 * self.d * ARL0 / self.lot_size)
        start, s = onset - self.n_ref, 0.0
        for mean, fab, last in lot_means(self.drift_stream(shift, onset, stream_seed), start + horizon, self.test)[0]:
            s = max(0.0, s + (mean - self.fab_mean[fab]) / self.sd - k)
            if s > h:
                if last >= start:
                    return last - start
                s = 0.0  # a false alarm before the onset
        return None

    def drift_stream(self, shift, onset, stream_seed):
        """The trial's mean-shift stream of this process, past its reference."""
        sim = Simulator(scenario="mean-shift", seed=100, n_tests=self.d, onset=onset, shift_sigma=shift,
                        stream_seed=stream_seed, **self.params)
        sim.generate(self.n_ref)
        return sim


class SelfStartingLotOptimum:
    """The known-shift CUSUM on the drifting test's lot means standardized as stream-ct's
    lot-mean charts did it up to the eighth round (each lot against the reference's lots and
    the stream's lots before it, joining at once: Hawkins' self-starting U), k = half the
    shift in lot sds, at ``2d * ARL0`` records per chart: what a detector that knows the
    shift and which test moves, but learns the in-control lots from the same 20-lot
    reference, can do on a step at a lot boundary."""

    name = "CUSUM optimum (self-starting lot means)"

    def __init__(self, ref, lot_optimum):
        self.test, self.lots = lot_optimum.test, lot_optimum
        self.reference = reference_lots(ref.X[:, [self.test]], _groups(ref))

    def delay(self, shift, onset, horizon, stream_seed):
        """Records from ``onset`` to the end of the lot whose U first crosses (None: missed)."""
        opt, (means, lot_records) = self.lots, self.reference
        k = shift * opt.stationary_sd / opt.raw_sd / 2
        chart = LotMeanChart(means, lot_records, k, ARL0, share=1 / opt.d, lag=0)
        sim = opt.drift_stream(shift, onset, stream_seed)
        start, seen = onset - opt.n_ref, 0
        while seen < start + horizon:
            b = sim.generate(100_000)
            alarms = chart.update(b.X[:, [self.test]], _groups(b), seen + np.arange(len(b)))
            hits = [a.position for a in alarms if a.side == 1 and a.position >= start]
            if hits:
                return hits[0] - start
            seen += len(b)
        return None


def trials(kind, n_ref, repeats, after=None):
    """(onset, stream seed) of each trial: each draws its own lots and parts of the process
    after the reference (the same seed's stream would put every trial on the same lots);
    floor onsets fall at every phase of the lots, i.i.d. ones at other dies of a wafer. The
    first onset comes ``after`` records after the reference (default 5,000 i.i.d., else 20,000)."""
    pre = after if after is not None else 5_000 if kind == "iid" else 20_000
    step, lot = ONSET_STEPS[kind], LOT_RECORDS.get(kind)
    return [(n_ref + pre + (step * r % lot if lot else step * r), 1 + r) for r in range(repeats)]


def bench(kind, d, repeats, n_nodrift, kswin_records, seed_records, n_ref=200_000, horizons=None,
          monitor_args=None, onset_after=None):
    """Table rows of one stream kind and width; ``repeats`` maps the kind to its onsets,
    ``horizons`` to the records watched after each onset; ``n_ref`` reference records;
    ``monitor_args`` for stream-ct's monitor; ``onset_after`` as in ``trials``."""
    params = PARAMS[kind]
    horizon = (horizons or HORIZONS)[kind]
    rows = []
    base = Simulator(scenario="none", seed=100, n_tests=d, **params)
    ref = base.generate(n_ref)
    _log(f"[{kind} d={d}] calibrating on {n_ref:,} reference records ...")
    ours = StreamCt(ref, **(monitor_args or {}))
    _log(f"[{kind} d={d}] calibration {ours.calibration_s:.1f} s")
    methods = [ours, SeedKS(ref), Kswin(ref)]
    lot_optimum = LotMeanOptimum(base, kind, d, n_ref) if kind in LOT_RECORDS else None
    lot_optima = [] if lot_optimum is None else [lot_optimum, SelfStartingLotOptimum(ref, lot_optimum)]
    repeats = repeats[kind]
    onsets = trials(kind, n_ref, repeats, onset_after)

    def no_drift():  # the process after the reference: the no-drift stream every method sees
        sim = Simulator(scenario="none", seed=100, n_tests=d, **params)
        sim.generate(n_ref)
        return sim

    known = KnownShiftCharts(ref, base.drift_test, [s for _, _, s, _ in SCENARIOS])
    _log(f"[{kind} d={d}] calibrating the known-shift charts on {n_nodrift:,} no-drift records ...")
    known.calibrate(no_drift, n_nodrift)
    no_drift_rows = []
    for m in methods:  # false alarms: every feature
        n = n_nodrift if m is ours else (max(200, kswin_records * 50 // d) if m.name == Kswin.name
                                         else seed_records)
        alarms, t = run_no_drift(m, no_drift(), n, 2000 if m is ours else 1000)
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
            for onset, stream_seed in onsets[:reps]:
                sim = Simulator(scenario=scenario, seed=100, n_tests=d, onset=onset,
                                shift_sigma=shift or 1.0, stream_seed=stream_seed, **params, **extra)
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
            for opt in lot_optima:
                delays = [opt.delay(shift, onset, horizon, stream_seed) for onset, stream_seed in onsets]
                found = [x for x in delays if x is not None]
                rows.append((kind, d, label, opt.name, np.mean(found) if found else None,
                             1 - len(found) / repeats, None, None))
                _log(f"  {label:16s} {opt.name:22s} delays {delays}")
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


def calibration(repeats=2):
    """Seconds to build (calibrate) the monitor on the demo's small-lot reference (10,000
    records, 40 lots) and on 100,000 floor records (a retrain window), the shipped monitor
    against a baseline in the same run whose threshold simulations map t onto the normal
    exactly (``t_to_normal_exact``, as before the twelfth round), best of ``repeats``,
    with the largest difference between the two in the self-starting charts' thresholds (the
    lot-mean and the testers' within-lot charts)."""
    from stream_ct.drift import self_starting

    shipped, exact = self_starting.t_to_normal, self_starting.t_to_normal_exact

    references = {"small-lot reference (10,000 records, 40 lots)": ("small", 10_000),
                  "retrain window (100,000 floor records)": ("floor", 100_000)}
    rows = []
    for label, (kind, n) in references.items():
        ref = Simulator(scenario="none", seed=5, n_tests=50, **PARAMS[kind]).generate(n)
        best, thresholds = {}, {}
        for _ in range(repeats):
            for name, transform in (("exact map (baseline)", exact), ("grid map (shipped)", shipped)):
                self_starting.t_to_normal = transform
                self_starting.null_maxima.cache_clear()
                self_starting.lagged_threshold.cache_clear()
                _log(f"[calibration] {label}: {name}")
                t = time.perf_counter()
                mon = DriftMonitor(ref.X, ref.feature_names, reference_groups=_groups(ref),
                                   reference_strata=_strata(ref), reference_dies=_dies(ref), arl0=ARL0, seed=0)
                best[name] = min(best.get(name, np.inf), time.perf_counter() - t)
                charts = [mon.lot_means, *(c for c in mon.within.lot_strata_charts.values()
                                           if hasattr(c, "thresholds"))]
                thresholds[name] = np.concatenate([np.ravel(h) for c in charts for h in c.thresholds])
        self_starting.t_to_normal = shipped
        a, b = thresholds.values()
        finite = np.isfinite(a) & np.isfinite(b)
        diff = float(np.abs(a[finite] - b[finite]).max()) if finite.any() else 0.0
        base, ours = best["exact map (baseline)"], best["grid map (shipped)"]
        rows.append((label, base, ours, base / ours, diff))
    print(f"\n{'reference':48s} {'baseline s':>11s} {'shipped s':>10s} {'speed-up':>9s} {'max |dh|':>10s}")
    for label, base, ours, ratio, diff in rows:
        print(f"{label:48s} {base:11.1f} {ours:10.1f} {ratio:8.2f}x {diff:10.1e}")


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
            for onset, stream_seed in trials("floor", n_ref, onsets):
                sim = Simulator(scenario=scenario, seed=100, n_tests=d, onset=onset, shift_sigma=shift,
                                stream_seed=stream_seed)
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
    ap.add_argument("--calibration", action="store_true",
                    help="the monitor's construction time, against the exact t-to-normal map in the same run")
    ap.add_argument("--windows", action="store_true",
                    help="serve's former KS/PSI windows (1,000 / 250) against the defaults (2,000 / 2,000), floor")
    ap.add_argument("--floor-reference", type=int, default=REFERENCES["floor"], metavar="N",
                    help="reference records on the floor stream (default 200,000 = 20 lots)")
    ap.add_argument("--small-reference", type=int, default=REFERENCES["small"], metavar="N",
                    help="reference records on the small-lot stream (default 10,000 = 40 lots)")
    ap.add_argument("--floor-onsets", type=int, metavar="N",
                    help="onsets per floor scenario (default 6; 2 with --quick), each on a stream of its own, "
                         "at phases 7,013 records apart in the 10,000-record lots")
    ap.add_argument("--small-onsets", type=int, metavar="N",
                    help="onsets per small-lot scenario (default 6), each on a stream of its own, at phases "
                         "163 records apart in the 250-record lots")
    ap.add_argument("--floor-horizon", type=int, default=HORIZONS["floor"], metavar="N",
                    help="records watched after a floor onset before it counts as missed (default 500,000)")
    ap.add_argument("--lot-lag", type=int, metavar="N",
                    help="whole lots before a lot joins the lot-mean charts' estimates (default the "
                         "monitor's, 20; 0: at once, as up to the eighth round)")
    ap.add_argument("--onset-after", type=int, metavar="N",
                    help="records from the reference's end to the first trial's onset (default 5,000 iid, "
                         "20,000 floor and small: 2 floor lots, 80 small ones)")
    ap.add_argument("--streams", nargs="+", metavar="KIND:D",
                    help="only these streams, e.g. floor:50 (kinds iid, floor, small)")
    args = ap.parse_args(argv)
    if args.speed:
        return speed()
    if args.windows:
        return windows()
    if args.calibration:
        return calibration()
    t0 = time.perf_counter()
    if args.quick:
        plan = [("iid", 50), ("floor", 50)]
        repeats, n_nodrift, kswin_records, seed_records = {"iid": 4, "floor": 2, "small": 2}, 300_000, 2_000, 50_000
    else:
        plan = [("iid", 50), ("floor", 50), ("iid", 300), ("floor", 300)]
        repeats, n_nodrift, kswin_records, seed_records = {"iid": 10, "floor": 6, "small": 6}, 1_000_000, 2_000, 100_000
    if args.streams:
        plan = [(kind, int(d)) for kind, d in (x.split(":") for x in args.streams)]
    if args.floor_onsets:
        repeats["floor"] = args.floor_onsets
    if args.small_onsets:
        repeats["small"] = args.small_onsets
    horizons = {**HORIZONS, "floor": args.floor_horizon}
    rows, calib = [], {}
    for kind, d in plan:
        r, c = bench(kind, d, repeats, n_nodrift, kswin_records, seed_records,
                     {**REFERENCES, "floor": args.floor_reference, "small": args.small_reference}[kind], horizons,
                     None if args.lot_lag is None else {"lot_lag": args.lot_lag}, args.onset_after)
        rows += r
        calib[(kind, d)] = c
    print(f"ARL0 target {ARL0:,} records = {1e6 / ARL0:.0f} false alarms per 1M no-drift records")
    print("onsets per scenario: " + ", ".join(f"{kind} {n} (missed after {horizons[kind]:,} records)"
                                              for kind, n in repeats.items() if kind in dict(plan)) + "\n")
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
