"""A seeded simulator of STDF-like part records with known drift onsets.

The stream looks like a test floor's: lots (one fab each) of wafers (one tester each) of
parts with die coordinates, tested in wafer order. Each parametric test has a nominal mean
and a part-to-part sigma; results share a few latent factors, carry lot, wafer, fab and
tester offsets and a radial (edge) pattern, and some are quantized so ties occur. Limits sit
4-6 stationary sigmas from the mean and ride on each wafer's first record only.

``passed`` comes from a logistic model of a few tests (one of them squared) plus a hard fail
whenever a test is outside its limits. A scenario changes the stream at the exact record
index ``onset``; ``Simulator.ground_truth`` says what changed, where and by how much.

Generation is vectorized per lot and draws the same random numbers whatever the scenario,
so two scenarios with the same seed agree record for record before the onset. ``seed``
fixes the process (test means, sigmas, fab and tester offsets, die patterns) and, unless
``stream_seed`` is given, the parts; another ``stream_seed`` draws other lots, wafers and
parts of the same process (independent trials against one reference).

>>> sim = Simulator(scenario="mean-shift", seed=1, n_tests=10, onset=500)
>>> batch = sim.generate(1000)
>>> batch.X.shape, int(batch.index[-1])
((1000, 10), 999)
>>> shift = batch.X[500:, 7].mean() - batch.X[:500, 7].mean()
>>> bool(0.5 < shift / sim.stationary_sd[7] < 1.5)
True
>>> rec = next(batch.records())
>>> rec["lot_id"], rec["wafer_id"], rec["part_id"], "limits" in rec
('LOT00001', 'W01', '1', True)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import orjson

from stream_ct.binary_record import ENCODERS, add_encoding_argument
from stream_ct.record import part_key
from stream_ct.recording import Message, write_recording
from stream_ct.words import counted

SCENARIOS = ("none", "mean-shift", "variance-change", "tester-offset", "concept", "process-change")

#: Event time of the first part (epoch seconds).
EPOCH = 1_780_000_000
TEST_PROGRAM = "YLD_PROG"
TEST_PROGRAM_REV = "1.0"
SITES = 4
#: Logistic model of functional failure: coefficients of (u1, u2**2 - 1, u3) on tests
#: standardized by their stationary mean and sd, plus a weight on the drift test.
OUTCOME_COEF = (1.2, 0.9, -0.8)
DRIFT_TEST_COEF = 0.5
#: After a process change the drift test drives failures the other way.
PROCESS_CHANGE_COEF = -2.5

# (name, units, nominal mean, part-to-part sigma); tests cycle through these.
_BASE_TESTS = (
    ("VDD_LEAK", "uA", 1.2, 0.15),
    ("IDDQ", "uA", 35.0, 4.0),
    ("VTH_N", "mV", 420.0, 9.0),
    ("VTH_P", "mV", -445.0, 10.0),
    ("RING_OSC", "MHz", 812.0, 14.0),
    ("IOH", "mA", -8.5, 0.35),
    ("IOL", "mA", 9.2, 0.4),
    ("FMAX", "MHz", 1450.0, 38.0),
    ("VREF", "V", 1.2, 0.006),
    ("CONT", "V", -0.55, 0.02),
    ("IDD_DYN", "mA", 48.0, 2.5),
    ("TEMP_SENSE", "C", 25.0, 0.8),
)

_ARRAYS = ("index", "X", "lot_id", "wafer_id", "part_id", "wafer_index", "x", "y", "head",
           "site", "tester", "fab", "ts", "passed", "hard_bin", "soft_bin", "test_time_ms")
_RECORD_ARRAYS = ("lot_id", "wafer_id", "part_id", "x", "y", "head", "site", "tester", "fab", "ts", "passed",
                  "hard_bin", "soft_bin", "test_time_ms")


@dataclass
class SimBatch:
    """Consecutive records of a simulated stream as numpy arrays (one row per part).

    ``X`` holds the test results (columns in ``feature_names`` order); ``index`` is the global
    record index; ``wafer_index`` numbers wafers across the stream; ``ts`` is in epoch
    seconds (whole milliseconds).
    """

    index: np.ndarray
    X: np.ndarray
    lot_id: np.ndarray
    wafer_id: np.ndarray
    part_id: np.ndarray
    wafer_index: np.ndarray
    x: np.ndarray
    y: np.ndarray
    head: np.ndarray
    site: np.ndarray
    tester: np.ndarray
    fab: np.ndarray
    ts: np.ndarray
    passed: np.ndarray
    hard_bin: np.ndarray
    soft_bin: np.ndarray
    test_time_ms: np.ndarray
    feature_names: list[str]
    limits: dict[str, dict[str, Any]]

    def __len__(self) -> int:
        return len(self.index)

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield the parts as record dicts; ``limits`` only on each wafer's first part."""
        names = self.feature_names
        cols = [getattr(self, name).tolist() for name in _RECORD_ARRAYS]
        for (lot, wafer, part, x, y, head, site, tester, fab, ts, passed, hard, soft, ttime), values in zip(
            zip(*cols), self.X.tolist()
        ):
            rec = {
                "lot_id": lot, "wafer_id": wafer, "part_id": part, "x": x, "y": y, "head": head,
                "site": site, "tester": tester, "fab": fab, "test_program": TEST_PROGRAM,
                "test_program_rev": TEST_PROGRAM_REV, "ts": ts, "tests": dict(zip(names, values)),
            }
            if part == "1":
                rec["limits"] = {name: dict(lim) for name, lim in self.limits.items()}
            rec["hard_bin"] = hard
            rec["soft_bin"] = soft
            rec["passed"] = passed
            rec["test_time_ms"] = ttime
            yield rec


def _die_map(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Die x, y (non-negative) in serpentine test order for ``n`` dies on a round wafer,
    and each die's centred squared radius (r**2 - mean, r = 1 at the outermost die)."""
    radius = max(1, int(np.ceil(np.sqrt(n / np.pi))))
    while True:
        i, j = np.meshgrid(np.arange(-radius, radius + 1), np.arange(-radius, radius + 1))
        i, j = i.ravel(), j.ravel()
        r2 = i * i + j * j
        if np.count_nonzero(r2 <= radius * radius) >= n:
            break
        radius += 1
    keep = np.lexsort((i, j, r2))[:n]  # the n dies nearest the centre (edge exclusion)
    i, j, r2 = i[keep], j[keep], r2[keep]
    order = np.lexsort((np.where(j % 2 == 0, i, -i), j))  # row by row, alternating direction
    i, j, r2 = i[order], j[order], r2[order].astype(float)
    r2 = r2 / r2.max() if r2.max() > 0 else r2
    return (i + radius).astype(np.int64), (j + radius).astype(np.int64), r2 - r2.mean()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class Simulator:
    """A stateful, seeded stream of part records; ``generate(n)`` continues where it stopped.

    Variation per test, in units of its part-to-part sigma: latent factors plus noise
    (unit variance within a wafer), lot offset (``lot_sd``), wafer offset (``wafer_sd``),
    fixed fab (``fab_sd``) and tester (``tester_sd``) offsets, and a radial pattern on about
    a third of the tests. ``stationary_sd`` is the resulting total sd per test; drift
    magnitudes (``shift_sigma``) are in those units. ``onset`` is required unless the
    scenario is ``none``.

    >>> sim = Simulator(scenario="tester-offset", seed=3, onset=2000, parts_per_wafer=100)
    >>> a = sim.generate(1500); b = sim.generate(1500)
    >>> int(b.index[0]), sim.ground_truth["onsets"][0]["stratum"]
    (1500, {'tester': 'T2'})
    >>> other = Simulator(seed=3, stream_seed=4, parts_per_wafer=100)
    >>> bool((other.mu == sim.mu).all()), bool((other.generate(1500).X == a.X).all())
    (True, False)
    """

    def __init__(self, scenario: str = "none", seed: int = 0, n_tests: int = 50,
                 onset: int | None = None, shift_sigma: float = 1.0, drift_test: int = 7,
                 drift_tester: str = "T2", variance_factor: float = 2.0,
                 parts_per_wafer: int = 400, wafers_per_lot: int = 25, n_testers: int = 4,
                 n_fabs: int = 2, lot_sd: float = 0.3, wafer_sd: float = 0.3,
                 fab_sd: float = 0.2, tester_sd: float = 0.1, n_factors: int = 4,
                 target_yield: float = 0.89, stream_seed: int | None = None):
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
        if n_tests < 8:
            raise ValueError("n_tests must be at least 8 (the outcome model uses 7 tests besides the drift test)")
        if not 0 <= drift_test < n_tests:
            raise ValueError(f"drift_test must be a test index in 0..{n_tests - 1}")
        for name, value in (("parts_per_wafer", parts_per_wafer), ("wafers_per_lot", wafers_per_lot),
                            ("n_testers", n_testers), ("n_fabs", n_fabs), ("n_factors", n_factors)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        self.testers = [f"T{t + 1}" for t in range(n_testers)]
        if drift_tester not in self.testers:
            raise ValueError(f"drift_tester {drift_tester!r} is not one of {', '.join(self.testers)}")
        if scenario != "none" and (onset is None or onset < 0):
            raise ValueError(f"scenario {scenario!r} needs an onset record index >= 0")
        if variance_factor <= 0:
            raise ValueError("variance_factor must be positive")
        if not 0.5 < target_yield < 1:
            raise ValueError("target_yield must be between 0.5 and 1")

        self.scenario, self.seed, self.stream_seed, self.n_tests = scenario, seed, stream_seed, n_tests
        self.onset = None if scenario == "none" else int(onset)
        self.shift_sigma, self.drift_test, self.drift_tester = shift_sigma, drift_test, drift_tester
        self.variance_factor = variance_factor
        self.parts_per_wafer, self.wafers_per_lot = parts_per_wafer, wafers_per_lot
        self.n_testers, self.n_fabs = n_testers, n_fabs
        self.lot_sd, self.wafer_sd, self.fab_sd, self.tester_sd = lot_sd, wafer_sd, fab_sd, tester_sd
        self.n_factors, self.target_yield = n_factors, target_yield
        self.fabs = [f"FAB{f + 1}" for f in range(n_fabs)]
        self._init_tests(np.random.default_rng([seed, 0]))
        self._rng = np.random.default_rng([seed, 1] if stream_seed is None else [seed, 2, stream_seed])
        self._buffer: SimBatch | None = None
        self._scratch: np.ndarray | None = None
        self._lots = 0
        self._last_ms = EPOCH * 1000

    def _init_tests(self, rng: np.random.Generator) -> None:
        d, k = self.n_tests, self.n_factors
        base = [_BASE_TESTS[j % len(_BASE_TESTS)] for j in range(d)]
        self.feature_names = [f"{1000 + j}:{b[0]}_{j}" for j, b in enumerate(base)]
        self.units = [b[1] for b in base]
        self.mu = np.array([b[2] for b in base]) * rng.uniform(0.9, 1.1, d)
        self.sigma = np.array([b[3] for b in base]) * rng.uniform(0.8, 1.25, d)
        loadings = rng.normal(0.0, 0.45, (d, k)) * (rng.random((d, k)) < 0.5)
        norms = np.linalg.norm(loadings, axis=1, keepdims=True)
        self._loadings = loadings * np.minimum(1.0, 0.85 / np.maximum(norms, 1e-12))
        self._unique_sd = np.sqrt(1.0 - (self._loadings ** 2).sum(axis=1))
        self._tester_off = rng.normal(0.0, self.tester_sd, (self.n_testers, d))
        self._fab_off = rng.normal(0.0, self.fab_sd, (self.n_fabs, d))
        radial = rng.uniform(0.6, 1.2, d) * rng.choice([-1.0, 1.0], d) * (rng.random(d) < 1 / 3)
        self.x_die, self.y_die, g = _die_map(self.parts_per_wafer)
        self._radial = np.outer(g, radial)  # (parts_per_wafer, d), in sigma units
        self._tester_time = rng.normal(0.0, 20.0, self.n_testers)

        # Results are rounded to a decimal resolution: fine for most tests (sigma/10^5 ..
        # sigma/10^4), coarse for every fifth (sigma/20 .. sigma/2), so ties occur there.
        self.quantized = np.arange(d) % 5 == 3
        fine = np.floor(np.log10(self.sigma)) - 4
        coarse = np.floor(np.log10(self.sigma / 2))
        self.resolution = 10.0 ** np.where(self.quantized, coarse, fine)
        exponent = -np.log10(self.resolution).round()
        self._round_mul = np.where(exponent >= 0, 10.0 ** exponent, 1.0)
        self._round_div = np.where(exponent < 0, 10.0 ** -exponent, 1.0)

        var_sigma = (1.0 + self.lot_sd ** 2 + self.wafer_sd ** 2 + self._tester_off.var(axis=0)
                     + self._fab_off.var(axis=0) + self._radial.var(axis=0))
        self.stationary_mean = self.mu + self.sigma * (self._tester_off.mean(axis=0) + self._fab_off.mean(axis=0))
        self.stationary_sd = np.sqrt(self.sigma ** 2 * var_sigma + self.resolution ** 2 / 12)
        half_width = rng.uniform(4.0, 6.0, (2, d)) * self.stationary_sd
        lo = self._round(self.stationary_mean - half_width[0])
        hi = self._round(self.stationary_mean + half_width[1])
        self.limits = {name: {"lo": float(a), "hi": float(b), "units": u}
                       for name, a, b, u in zip(self.feature_names, lo, hi, self.units)}
        self._lo, self._hi = lo, hi

        others = [j for j in range(d) if j != self.drift_test]
        self._drivers = others[0:3]
        self._concept_drivers = others[3:6]
        self._grade_test = others[6]
        self._time_tests = (others[6], others[1])
        self._outcome_cols = sorted({*self._drivers, *self._concept_drivers, self.drift_test, self._grade_test,
                                     *self._time_tests})
        # Intercepts that give the target yield, from a Monte Carlo of the standardized tests.
        corr_part = self._loadings @ self._loadings.T + np.diag(self._unique_sd ** 2)
        cov = corr_part * np.outer(self.sigma, self.sigma)
        cov[np.diag_indices(d)] = self.stationary_sd ** 2
        cov /= np.outer(self.stationary_sd, self.stationary_sd)
        sample = rng.multivariate_normal(np.zeros(d), cov, size=50_000, method="cholesky")
        u = dict(enumerate(sample.T))
        fail_rate = 1.0 - self.target_yield
        self._c0 = self._intercept(self._terms(u, self._drivers, DRIFT_TEST_COEF), fail_rate)
        self._c0_concept = self._intercept(self._terms(u, self._concept_drivers, DRIFT_TEST_COEF), fail_rate)
        self._c0_process = self._intercept(self._terms(u, self._drivers, PROCESS_CHANGE_COEF), fail_rate)

    def _round(self, values: np.ndarray) -> np.ndarray:
        """Round to each test's resolution (exact decimals: short JSON, real ties)."""
        values = values * self._round_mul
        values /= self._round_div
        np.rint(values, out=values)
        values *= self._round_div
        values /= self._round_mul
        return values

    def _terms(self, u: dict[int, np.ndarray], drivers: list[int], drift_coef: float) -> np.ndarray:
        """Per-part contributions to the failure logit (columns: 3 drivers, drift test) from
        standardized test columns ``u[j]``."""
        a, b, c = drivers
        return np.column_stack([OUTCOME_COEF[0] * u[a], OUTCOME_COEF[1] * (u[b] ** 2 - 1.0),
                                OUTCOME_COEF[2] * u[c], drift_coef * u[self.drift_test]])

    @staticmethod
    def _intercept(terms: np.ndarray, fail_rate: float) -> float:
        lo, hi = -20.0, 20.0
        total = terms.sum(axis=1)
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _sigmoid(mid + total).mean() < fail_rate else (lo, mid)
        return (lo + hi) / 2

    @property
    def ground_truth(self) -> dict[str, Any]:
        """What the scenario changes, where (record index) and by how much."""
        drift_key = self.feature_names[self.drift_test]
        shift = {"record": self.onset, "kind": "mean-shift", "tests": [drift_key], "stratum": None,
                 "magnitude_sigma": float(self.shift_sigma)}
        concept = {"record": self.onset, "kind": "concept", "stratum": None, "magnitude_sigma": 0.0}
        onsets = {
            "none": [],
            "mean-shift": [shift],
            "variance-change": [dict(shift, kind="variance-change", magnitude_sigma=0.0,
                                     sd_factor=float(self.variance_factor))],
            "tester-offset": [dict(shift, kind="tester-offset", stratum={"tester": self.drift_tester})],
            "concept": [dict(concept, tests=[self.feature_names[j] for j in self._concept_drivers])],
            "process-change": [shift, dict(concept, tests=[drift_key])],
        }[self.scenario]
        params = {name: getattr(self, name) for name in (
            "onset", "shift_sigma", "drift_test", "drift_tester", "variance_factor", "parts_per_wafer",
            "wafers_per_lot", "n_testers", "n_fabs", "lot_sd", "wafer_sd", "fab_sd", "tester_sd",
            "n_factors", "target_yield")}
        params["outcome_tests"] = [self.feature_names[j] for j in self._drivers]
        return {"scenario": self.scenario, "seed": self.seed, "stream_seed": self.stream_seed,
                "n_tests": self.n_tests, "params": params,
                "onsets": onsets,
                "stationary_sd": dict(zip(self.feature_names, self.stationary_sd.tolist()))}

    def generate(self, n: int) -> SimBatch:
        """The next ``n`` records of the stream."""
        if n < 0:
            raise ValueError("n must be >= 0")
        out: SimBatch | None = None
        have = 0
        while True:
            if self._buffer is None or len(self._buffer) == 0:
                self._buffer = self._lot()
            take = min(n - have, len(self._buffer))
            part = _slice(self._buffer, 0, take)
            self._buffer = _slice(self._buffer, take, len(self._buffer))
            if take == n:
                return part
            if out is None:  # filled lot by lot: peak memory stays near the output's size
                out = dataclasses.replace(part, **{name: np.empty((n,) + getattr(part, name).shape[1:],
                                                                  getattr(part, name).dtype)
                                                   for name in _ARRAYS})
            for name in _ARRAYS:
                getattr(out, name)[have:have + take] = getattr(part, name)
            have += take
            if have == n:
                return out

    def _lot(self) -> SimBatch:
        """Generate one whole lot (always whole lots, so batch sizes never change the stream)."""
        rng, d = self._rng, self.n_tests
        n_w, n_p = self.wafers_per_lot, self.parts_per_wafer
        n = n_w * n_p
        lot = self._lots
        start = lot * n
        index = np.arange(start, start + n, dtype=np.int64)
        wafer_of = np.repeat(np.arange(n_w), n_p)

        # Every draw happens in every scenario, in the same order.
        fab = int(rng.integers(self.n_fabs))
        lot_off = rng.normal(0.0, self.lot_sd, d)
        tester = rng.integers(self.n_testers, size=n_w)
        wafer_off = rng.normal(0.0, self.wafer_sd, (n_w, d))
        factors = rng.standard_normal((n, self.n_factors))
        if self._scratch is None:  # reused: fresh lot-sized arrays cost page faults every lot
            self._scratch = np.empty((2, n, d))
        values, common = self._scratch
        rng.standard_normal(out=values)
        u_outcome = rng.random(n)
        time_noise = rng.normal(0.0, 15.0, n)
        wafer_gap = rng.integers(30_000, 120_000, n_w)
        lot_gap = int(rng.integers(300_000, 1_800_000))

        values *= self._unique_sd
        values += np.matmul(factors, self._loadings.T, out=common)
        after = np.zeros(n, dtype=bool) if self.onset is None else index >= self.onset
        t = self.drift_test
        if self.scenario == "variance-change":
            values[after, t] *= self.variance_factor
        by_wafer = values.reshape(n_w, n_p, d)
        by_wafer += (lot_off + wafer_off + self._tester_off[tester] + self._fab_off[fab])[:, None, :]
        by_wafer += self._radial[None, :, :]
        values *= self.sigma
        values += self.mu
        tester_row = tester[wafer_of]
        step = self.shift_sigma * self.stationary_sd[t]
        if self.scenario in ("mean-shift", "process-change"):
            values[after, t] += step
        elif self.scenario == "tester-offset":
            values[after & (tester_row == self.testers.index(self.drift_tester)), t] += step
        X = self._round(values)

        u = {j: (X[:, j] - self.stationary_mean[j]) / self.stationary_sd[j] for j in self._outcome_cols}
        terms = self._terms(u, self._drivers, DRIFT_TEST_COEF)
        c0 = np.full(n, self._c0)
        if self.scenario == "concept":
            terms[after] = self._terms({j: u[j][after] for j in u}, self._concept_drivers, DRIFT_TEST_COEF)
            c0[after] = self._c0_concept
        elif self.scenario == "process-change":
            u[t] = np.where(after, u[t] - self.shift_sigma, u[t])
            terms[after] = self._terms({j: u[j][after] for j in u}, self._drivers, PROCESS_CHANGE_COEF)
            c0[after] = self._c0_process
        functional = u_outcome < _sigmoid(c0 + terms.sum(axis=1))
        below, above = X < self._lo, X > self._hi
        out_of_limits = below | above
        limit_fail = out_of_limits.any(axis=1)
        passed = ~(functional | limit_fail)

        # Bins: 1 pass (soft 11/12 by speed grade), 2 limit fail (soft 21 low / 22 high),
        # 3-5 functional fail by the largest logit term (soft x1 / x2 by that test's sign).
        dominant = terms.argmax(axis=1)
        hard = np.where(passed, 1, np.where(limit_fail, 2, 3 + np.minimum(dominant, 2)))
        dominant_u = np.choose(dominant, [u[j] for j in self._drivers + [t]])
        sub = np.where(passed, np.where(u[self._grade_test] >= 0, 1, 2), np.where(dominant_u < 0, 1, 2))
        first_fail = out_of_limits.argmax(axis=1)
        sub = np.where(limit_fail, np.where(below[np.arange(n), first_fail], 1, 2), sub)
        soft = 10 * hard + sub

        a, b = self._time_tests
        tester_time = self._tester_time[tester_row]
        test_time = np.rint(800.0 + 35.0 * u[a] + 20.0 * u[b] ** 2 + tester_time + time_noise)
        test_time = np.maximum(test_time, 50).astype(np.int64)
        inc = test_time * 5 // 8  # the handler indexes while the next part is tested
        inc[::n_p] = wafer_gap
        inc[0] = lot_gap if lot else 0
        ts_ms = self._last_ms + np.cumsum(inc)
        self._last_ms = int(ts_ms[-1])
        self._lots += 1

        wafer_names = np.array([f"W{w + 1:02d}" for w in range(n_w)])
        part_names = np.array([str(p + 1) for p in range(n_p)])
        return SimBatch(
            index=index, X=X, lot_id=np.full(n, f"LOT{lot + 1:05d}", dtype="<U16"), wafer_id=wafer_names[wafer_of],
            part_id=np.tile(part_names, n_w), wafer_index=lot * n_w + wafer_of,
            x=np.tile(self.x_die, n_w), y=np.tile(self.y_die, n_w), head=np.ones(n, dtype=np.int64),
            site=np.tile(np.arange(n_p, dtype=np.int64) % SITES, n_w),
            tester=np.array(self.testers)[tester_row], fab=np.full(n, self.fabs[fab]),
            ts=ts_ms / 1000.0, passed=passed, hard_bin=hard.astype(np.int64), soft_bin=soft.astype(np.int64),
            test_time_ms=test_time, feature_names=self.feature_names, limits=self.limits,
        )


def _slice(batch: SimBatch, a: int, b: int) -> SimBatch:
    return dataclasses.replace(batch, **{name: getattr(batch, name)[a:b] for name in _ARRAYS})


def simulate_to_recording(scenario: str, n_records: int, seed: int, out_path: str, encoding: str = "json",
                          **params: Any) -> int:
    """Write ``n_records`` simulated parts as a recording and the ground truth next to it.

    Messages: key ``lot/wafer/part``, value the record (JSON, or ``encoding="binary"``:
    ``stream_ct.binary_record``), timestamp ``ts`` in ms,
    headers ``source=simulate`` and ``scenario``. The truth goes to ``out_path + ".truth.json"``.
    ``onset`` defaults to ``n_records // 2`` and must fall among the records written; other
    ``params`` go to ``Simulator``. Returns the number of records written.
    """
    params.setdefault("onset", n_records // 2)
    if scenario != "none" and params["onset"] is not None and params["onset"] >= n_records:
        raise ValueError(f"onset {params['onset']} is not before the end of the {n_records} records written: "
                         "the recording would hold no drift while its truth names one")
    sim = Simulator(scenario=scenario, seed=seed, **params)
    encode = ENCODERS[encoding]
    headers = [("source", b"simulate"), ("scenario", scenario.encode())]
    chunk = 20_000
    report_every = max(n_records // 10, 1)
    show_progress = n_records >= 200_000

    def messages() -> Iterator[Message]:
        done = 0
        while done < n_records:
            batch = sim.generate(min(chunk, n_records - done))
            for rec, ts_ms in zip(batch.records(), np.rint(batch.ts * 1000).astype(np.int64).tolist()):
                yield Message(part_key(rec).encode(), encode(rec), ts_ms, headers, None)
            before, done = done, done + len(batch)
            if show_progress and done // report_every > before // report_every:
                print(f"simulate: {done:,}/{n_records:,} records ({100 * done // n_records}%)",
                      file=sys.stderr, flush=True)

    count = write_recording(out_path, messages())
    with open(f"{out_path}.truth.json", "wb") as out:
        out.write(orjson.dumps(sim.ground_truth, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return count


_EPILOG = """\
example:
  stream-ct simulate --scenario mean-shift --records 200000 --seed 7 --out sim.jsonl.gz
      writes sim.jsonl.gz (replay it with stream-ct replay) and sim.jsonl.gz.truth.json,
      with test 7 shifted by 1 sigma from record 100000 on.
"""


def _run(args: argparse.Namespace) -> int:
    params = {"n_tests": args.tests, "shift_sigma": args.shift_sigma, "drift_test": args.drift_test,
              "drift_tester": args.drift_tester, "variance_factor": args.variance_factor,
              "parts_per_wafer": args.parts_per_wafer, "wafers_per_lot": args.wafers_per_lot}
    if args.onset is not None:
        params["onset"] = args.onset
    if args.records < 1:
        print("stream-ct simulate: error: --records must be at least 1", file=sys.stderr)
        return 2
    try:
        count = simulate_to_recording(args.scenario, args.records, args.seed, args.out, args.encoding, **params)
    except ValueError as exc:
        print(f"stream-ct simulate: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"stream-ct simulate: error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    with open(f"{args.out}.truth.json", "rb") as src:
        onsets = json.load(src)["onsets"]
    where = ", ".join(f"{o['kind']} at record {o['record']:,}" for o in onsets) or "no drift"
    print(f"wrote {counted(count, 'record')} to {args.out} (scenario {args.scenario}: {where}; "
          f"truth in {args.out}.truth.json)")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``simulate`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "simulate",
        description="Write a seeded stream of STDF-like part records as a recording, "
                    "plus its ground truth (drift onsets) as JSON next to it.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=SCENARIOS, default="none", help="drift scenario (default: none)")
    parser.add_argument("--records", type=int, default=100_000, metavar="N", help="records to write (default: 100000)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    parser.add_argument("--out", required=True, metavar="FILE", help="recording to write (.gz compresses)")
    parser.add_argument("--tests", type=int, default=50, metavar="N", help="parametric tests per part (default: 50)")
    parser.add_argument("--onset", type=int, metavar="RECORD", help="record index of the drift onset (default: N/2)")
    parser.add_argument("--shift-sigma", type=float, default=1.0, metavar="SD",
                        help="shift in stationary sds of the drift test (default: 1.0)")
    parser.add_argument("--drift-test", type=int, default=7, metavar="I", help="index of the drifting test (default: 7)")
    parser.add_argument("--drift-tester", default="T2", metavar="T", help="tester for tester-offset (default: T2)")
    parser.add_argument("--variance-factor", type=float, default=2.0, metavar="F",
                        help="within-wafer sd factor for variance-change (default: 2.0)")
    parser.add_argument("--parts-per-wafer", type=int, default=400, metavar="N", help="parts per wafer (default: 400)")
    parser.add_argument("--wafers-per-lot", type=int, default=25, metavar="N", help="wafers per lot (default: 25)")
    add_encoding_argument(parser)
    parser.set_defaults(func=_run)
    return parser
