"""Thresholds for a target false-alarm rate, from a block bootstrap of the reference.

Null streams are built by resampling whole wafers (``reference_groups``) with replacement and
concatenating them in their original part order, each replicate starting at a random part of
its first wafer, so windows and subgroups straddle wafers as they do on the floor. Each
replicate also re-estimates the reference mean from a wafer resample, which puts the
reference's own estimation error into the null. Null statistics are extrapolated to the tiny
per-look error rates a large ARL0 needs by an exponential tail fitted to their exceedances
over the 90th percentile (exact for the Kolmogorov tail in ``D**2``, conservative for chi-square
and half-normal shapes), further out with the slope all columns' exceedances show together
(``tail_quantile``: windows holding a mixture of lots have heavier tails), never below the
i.i.d. value.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> float(np.round(tail_quantile(rng.exponential(size=(20000, 1)), 1e-6)[0], 0))
14.0
>>> round(siegmund_h(0.5, 10_000), 2)
7.35
"""

from __future__ import annotations

import numpy as np
from scipy import fft, stats

from stream_ct.drift.values import lots_of


def wafer_blocks(groups: np.ndarray | None, n: int) -> list[np.ndarray]:
    """Row indices of each group, in order of first appearance (one row each if ``None``)."""
    if groups is None:
        return [np.array([i]) for i in range(n)]
    groups = np.asarray(groups)
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse))[:-1]
    blocks = np.split(order, bounds)
    return [blocks[i] for i in np.argsort(first)]


def lot_blocks(blocks: list[np.ndarray], groups) -> list[np.ndarray]:
    """Row indices of each lot: its wafers' ``blocks`` (``wafer_blocks``) one after the
    other, lots in order of first appearance (testers taking turns make the first records of
    their wafers alternate, so consecutive wafer blocks are not one lot's)."""
    lots = lots_of([groups[b[0]] for b in blocks]).astype(str)
    _, first, inverse = np.unique(lots, return_index=True, return_inverse=True)
    order = np.argsort(first[inverse], kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return [np.concatenate([blocks[i] for i in lot]) for lot in np.split(order, bounds)]


def bootstrap_stream(blocks: list[np.ndarray], length: int, rng,
                     run: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Reference row indices of one null stream of ``length`` records, and each row's run.

    Runs of ``run`` consecutive groups (wafers; consecutive wafers share a lot) are drawn
    with replacement, circularly, and concatenated; the stream starts at a random record of
    its first group so subgroups and windows straddle wafers.
    """
    n_groups = len(blocks)
    run = max(1, min(run, n_groups))
    rows, labels, have, r = [], [], 0, 0
    first = None
    while have < length + (0 if first is None else len(first)):
        start = int(rng.integers(0, n_groups))
        part = np.concatenate([blocks[(start + i) % n_groups] for i in range(run)])
        first = blocks[start] if first is None else first
        rows.append(part)
        labels.append(np.full(len(part), r))
        have, r = have + len(part), r + 1
    offset = int(rng.integers(0, len(first)))
    return (np.concatenate(rows)[offset:offset + length],
            np.concatenate(labels)[offset:offset + length])


def turn_order(each: int, turn: int, testers: int) -> np.ndarray:
    """Order of the records of ``testers`` streams of ``each`` records laid end to end, taking
    turns of ``turn`` records (each stream's records in their order).

    >>> turn_order(4, 2, 2).tolist()
    [0, 1, 4, 5, 2, 3, 6, 7]
    """
    turns = np.concatenate([np.arange(each) // turn * testers + i for i in range(testers)])
    return np.lexsort((np.tile(np.arange(each), testers), turns))


def interleaved_stream(blocks: list[np.ndarray], length: int, rng, run: int, testers: int,
                       turn: int) -> tuple[np.ndarray, np.ndarray]:
    """``bootstrap_stream`` of testers that share a partition: ``testers`` null streams of
    their own (``blocks`` of whole lots, ``lot_blocks``, with ``run`` 1: a tester keeps its
    lot as long as on the floor), taking turns of ``turn`` records; runs numbered apart.
    Windows then hold several testers' lots drawn independently, as on the floor, not only
    the pairs the reference happened to hold."""
    each = -(-length // testers) + turn
    streams = [bootstrap_stream(blocks, each, rng, run) for _ in range(testers)]
    order = turn_order(each, turn, testers)[:length]
    rows = np.concatenate([r for r, _ in streams])[order]
    runs = np.concatenate([labels * testers + i for i, (_, labels) in enumerate(streams)])[order]
    return rows, np.unique(runs, return_inverse=True)[1]


def spread_inflation(n_runs: float, level: float = 0.1) -> float:
    """Factor on run-mean deviations for a reference holding only ``n_runs`` independent runs.

    The square root of ``(L - 1) / chi2.ppf(level, L - 1)``: an upper confidence bound on the
    between-run (lot-to-lot) standard deviation relative to its estimate from ``L`` runs.
    """
    df = max(1.0, n_runs - 1)
    return float(np.sqrt(df / stats.chi2.ppf(level, df)))


def grid_step(sorted_values: np.ndarray) -> float:
    """Resolution of a quantized feature: its smallest gap between distinct values (0 if none)."""
    gaps = np.diff(np.unique(sorted_values))
    return float(gaps.min()) if gaps.size else 0.0


def tail_quantile(samples: np.ndarray, p: float | np.ndarray, q: float = 0.9) -> np.ndarray:
    """Per-column level exceeded with probability ``p`` by a non-negative statistic (n x d
    ``samples``): an exponential tail per column over its ``q`` quantile, and further out
    the tail's slope as all columns together show it.

    Each column's tail scale is its mean excess over its ``q`` quantile ``u`` (maximum
    likelihood), shrunk toward the columns' median ``scale / u`` as far as that ratio is
    unreliable: by one minus the split-half reliability of the ratios (their correlation
    between the even and the odd rows, Spearman-Brown), so a column whose few exceedances
    happen to lie close together does not get a level far too low. The
    exceedances, in units of their column's scale, are pooled, and the pooled top ``1 - q``
    gets an exponential tail of its own: a tail heavier than exponential (windows holding a
    mixture of lots) is extrapolated with the slope it shows there, never less steeply than
    the column's own fit. For ``p`` above ``1 - q`` the empirical quantile is returned.
    """
    samples = np.asarray(samples, dtype=float)
    u, p_u, scale = _exponential_tail(samples, q)
    if samples.shape[1] >= 10:  # enough columns to tell their ratios' spread from noise
        ratio = [s / np.where(v > 0, v, np.nan) for v, _, s in (_exponential_tail(samples[i::2], q) for i in (0, 1))]
        both = np.isfinite(ratio[0]) & np.isfinite(ratio[1]) & (u > 0)
        with np.errstate(invalid="ignore", divide="ignore"):  # ratios all equal: no spread, shrink fully
            agree = np.corrcoef(ratio[0][both], ratio[1][both])[0, 1] if both.sum() > 2 else 1.0
        weight = 2 * agree / (1 + agree) if agree > 0 else 0.0  # reliability of the full-sample ratio
        scale = np.where(both, weight * scale + (1 - weight) * np.median(scale[both] / u[both]) * u, scale)
    p = np.broadcast_to(np.asarray(p, dtype=float), u.shape)
    out = np.log(np.maximum(p_u, 1e-300) / p)  # in units of scale over u: exponential per column
    pooled = ((samples - u) / np.where(scale > 0, scale, np.inf))[(samples > u) & (scale > 0)]
    if pooled.size:
        u2 = np.quantile(pooled, q)
        further = pooled[pooled > u2]
        if further.size:
            far = p < p_u * (1 - q)  # beyond the pooled quantile
            slope = (further - u2).mean()
            out = np.where(far, np.maximum(out, u2 + slope * np.log(np.maximum(p_u * (1 - q), 1e-300) / p)), out)
    tail = u + scale * out
    if (p < p_u).all():
        return tail
    empirical = np.array([np.quantile(col, min(1.0, 1 - pj)) for col, pj in zip(samples.T, p)])
    return np.where(p < p_u, tail, empirical)


def _exponential_tail(samples: np.ndarray, q: float):
    """Per column: the ``q`` quantile ``u``, the share above it, their mean excess over it."""
    u = np.quantile(samples, q, axis=0)
    above = samples > u
    with np.errstate(invalid="ignore"):
        scale = np.where(above, samples - u, 0.0).sum(axis=0) / np.maximum(above.sum(axis=0), 1)
    return u, above.mean(axis=0), scale


def chart_arl(arl0: float, charts: int, share, records_per_step: float):
    """In-control ARL, in steps, of each of ``charts`` one-sided charts that share the
    per-record false-alarm rate ``share / arl0`` equally, one step (a subgroup mean, a wafer,
    a lot) standing for ``records_per_step`` records; inf where ``share`` is 0 (chart off).

    >>> chart_arl(100_000, 2 * 50, 0.3, 250)  # 50 tests' two-sided lot-mean charts, lots of 250
    133333.33333333334
    """
    share = np.asarray(share, dtype=float)
    with np.errstate(divide="ignore"):
        arl = np.where(share > 0, arl0 * charts / (share * records_per_step), np.inf)
    return float(arl) if arl.ndim == 0 else arl


def siegmund_arl(k: float, h: float) -> float:
    """Siegmund's in-control ARL of a one-sided CUSUM on N(0, 1) with slack ``k``."""
    b = h + 1.166
    return (np.exp(2 * k * b) - 2 * k * b - 1) / (2 * k * k)


def siegmund_h(k, arl: float):
    """Threshold giving a one-sided N(0, 1) CUSUM with slack ``k`` (a number or an array) the
    in-control ARL ``arl`` (Siegmund): Newton on ``y = 2 k (h + 1.166)``, which solves
    ``exp(y) - y - 1 = 2 k^2 arl`` (convex: from above, monotone)."""
    kk = np.asarray(k, dtype=float)
    a = 2 * kk * kk * arl
    y = np.log1p(a) + np.log(2 + np.log1p(a))
    for _ in range(100):
        step = (np.expm1(y) - y - a) / np.expm1(y)
        y = y - step
        if np.all(np.abs(step) < 1e-12 * np.maximum(y, 1)):
            break
    h = y / (2 * kk) - 1.166
    return float(h) if h.ndim == 0 else h


def siegmund_delay(shift: float, k: float, h: float) -> float:
    """Siegmund's out-of-control ARL (mean delay) of that chart under a mean ``shift``."""
    delta = shift - k
    b = h + 1.166
    if abs(delta) < 1e-9:
        return b * b
    return (np.exp(-2 * delta * b) + 2 * delta * b - 1) / (2 * delta * delta)


def variance_rate_curve(z: np.ndarray, max_lag: int, level: float = 0.01,
                        ratio: float = 1.1) -> tuple[np.ndarray, np.ndarray]:
    """Upper bounds on the variance rate ``Var(sum of L values) / L`` for ``L = 1..max_lag``,
    as an envelope over a geometric grid of horizons.

    ``z`` is (n x d), standardized per column. Shared offsets (a wafer's die pattern, lot
    offsets) make partial sums vary more than ``L`` i.i.d. values would. Each rate's excess
    over 1 is raised to its chi-square upper confidence bound (``level``) for the
    ``1.5 n / L`` degrees of freedom of a Bartlett estimate at that horizon, floored at 1.
    Returns ``starts`` (the first horizon of each cell; cells grow by ``ratio`` and the last
    ends at ``max_lag``) and ``bound`` (cells x d), each cell's largest bound, so a chart can
    weigh horizons by how much they matter to it (``effective_rate``) without storing every
    lag.
    """
    n = z.shape[0]
    max_lag = int(max(1, min(max_lag, n // 2)))
    # zero padding to n + max_lag: no wrap-around up to max_lag; a length of small factors: fast
    size = fft.next_fast_len(n + max_lag, real=True)
    f = np.fft.rfft(z - z.mean(axis=0), n=size, axis=0)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=0)[: max_lag + 1] / n
    rho = acov[1:] / np.maximum(acov[0], 1e-300)  # lags 1..max_lag
    lags = np.arange(1, max_lag + 1)[:, None]
    a = np.vstack([np.zeros((1, z.shape[1])), np.cumsum(rho, axis=0)])[:-1]  # sum_{l<L}
    b = np.vstack([np.zeros((1, z.shape[1])), np.cumsum(lags * rho, axis=0)])[:-1]
    rate = 1.0 + 2.0 * (a - b / lags)  # L = 1..max_lag
    df = np.maximum(1.0, 1.5 * n / lags[:, 0] - 1)
    factor = (df / stats.chi2.ppf(level, df))[:, None]
    bound = np.maximum(1.0 + (rate - 1.0) * factor, 1.0)
    starts = np.unique(np.floor(ratio ** np.arange(int(np.log(max_lag) / np.log(ratio)) + 2)
                                ).astype(np.int64))
    starts = starts[starts <= max_lag]
    return starts, np.maximum.reduceat(bound, starts - 1, axis=0)


def variance_rate(z: np.ndarray, max_lag: int, level: float = 0.01) -> np.ndarray:
    """Per-column worst variance rate over ``L = 1..max_lag`` (see ``variance_rate_curve``):
    the largest of the per-horizon upper bounds, at least 1."""
    return variance_rate_curve(z, max_lag, level)[1].max(axis=0)


def effective_rate(starts: np.ndarray, bound: np.ndarray, k: float, arl: float,
                   mean_sd: np.ndarray | float = 0.0) -> np.ndarray:
    """Variance rate ``V`` per column for ``cusum_threshold``, from a curve of rate bounds.

    A one-sided CUSUM (slack ``k``, threshold ``h``) crosses over a horizon of ``T``
    increments when their sum exceeds ``h + k T``: a ``z = (h + k T) / sqrt(T v(T))``
    standard-deviation event. The chart calibrated as if the rate were a constant ``V``
    (``h_V = cusum_threshold(k, arl, V, mean_sd)``) is least safe at its own horizon
    ``T_V = h_V / slack``, where ``z`` is smallest; at a longer horizon the slack adds
    ``k T`` and ``z`` stays at least that large while ``v(T) <= V g(T / T_V)`` with
    ``g(x) = (1 + x)**2 / (4 x)``. Shorter horizons get no such allowance (``v(T) <= V``:
    they hold more chances per record). ``V`` is the smallest value (bisection) meeting both
    at every cell of the curve, and never more than the curve's maximum: so a rate noisy or
    raised far beyond the chart's horizon (a few degrees of freedom at three lots, from an
    i.i.d. reference) no longer sets the threshold, while an offset that persists long
    enough to cross a chart (lot offsets) still does.
    """
    starts = np.asarray(starts, dtype=float)
    bound = np.asarray(bound, dtype=float)
    ends = np.r_[starts[1:] - 1, np.inf]  # the last cell runs to the curve's end
    mean_sd = np.broadcast_to(np.asarray(mean_sd, dtype=float), bound.shape[1:])
    slack = chart_slack(k, mean_sd)

    def ok(v):
        t_v = np.maximum(cusum_threshold(k, arl, v, mean_sd) / slack, 1.0)  # its own horizon
        t = np.clip(t_v[None, :], starts[:, None], ends[:, None])  # cell's point nearest T_V
        x = t / t_v[None, :]
        g = np.where(x > 1, (1 + x) ** 2 / (4 * x), 1.0)
        return (bound <= v[None, :] * g * (1 + 1e-9)).all(axis=0)

    hi = np.maximum(bound.max(axis=0), 1.0)
    lo = np.ones_like(hi)
    done = ok(lo)
    hi = np.where(done, lo, hi)
    for _ in range(40):
        mid = np.sqrt(lo * hi)
        good = ok(mid)
        hi, lo = np.where(good, mid, hi), np.where(good, lo, mid)
    return hi


def chart_slack(k: float, mean_sd):
    """The slack ``k`` less ``mean_sd``, the sd of the reference mean's error (in the same
    units; that error acts as a persistent shift), and never below 5 % of ``k``."""
    return np.maximum(k - np.asarray(mean_sd, dtype=float), 0.05 * k)


def cusum_threshold(k: float, arl: float, variance=1.0, mean_sd=0.0):
    """Threshold of a one-sided CUSUM with slack ``k`` on increments of long-run ``variance``
    (``variance`` and ``mean_sd`` numbers or arrays, one per chart).

    Brownian scaling of Siegmund's formula: ``h = s * siegmund_h(chart_slack(k, mean_sd) / s,
    arl)`` with ``s = sqrt(variance)``.
    """
    s = np.sqrt(variance)
    return s * siegmund_h(chart_slack(k, mean_sd) / s, arl)


def ks_shift(sorted_ref: np.ndarray, delta: float) -> float:
    """KS distance between a sample's ECDF and the same ECDF shifted by ``delta``."""
    n = len(sorted_ref)
    moved = np.searchsorted(sorted_ref, sorted_ref + abs(delta), "right")
    return float((moved - np.searchsorted(sorted_ref, sorted_ref, "right")).max() / n)


def chart_calibration(x: np.ndarray, sizes, mean: np.ndarray, run_records: float,
                      level: float = 0.01) -> dict:
    """sd of subgroup means (upper bound at ``level``), worst variance rate and the curve of
    rate bounds over horizons (``curve``: ``starts``, ``bound``), and reference-mean error
    per subgroup size."""
    out = {"sigma": {}, "v": {}, "mean_sd": {}, "curve": {}}
    for m in sizes:
        g = x[: len(x) // m * m].reshape(-1, m, x.shape[1]).mean(axis=1)
        df = max(1, len(g) - 1)  # sd from few subgroups: its 99 % upper bound
        sigma = g.std(axis=0) * np.sqrt(df / stats.chi2.ppf(level, df))
        sigma[~(sigma > 0)] = 1.0
        starts, bound = variance_rate_curve((g - mean) / sigma, int(3 * run_records / m), level)
        v = bound.max(axis=0)  # the worst rate: the reference mean's error (below)
        out["sigma"][str(m)], out["v"][str(m)] = sigma, v
        out["curve"][str(m)] = {"starts": starts, "bound": bound}
        out["mean_sd"][str(m)] = np.sqrt(v / len(g))
    return out


def with_rate_floor(cal: dict, pooled: dict) -> dict:
    """``cal`` (``chart_calibration`` of a stratum level's rows) with each variance-rate
    bound raised to at least ``pooled``'s (of all levels' rows, each less its level's mean)
    at the same horizon, in the data's units (rates times squared subgroup sds), and the
    worst rate and reference-mean error raised with them. Horizons beyond the level's own
    curve take its last cell.

    >>> one = {"sigma": {"1": np.array([1.0])}, "v": {"1": np.array([1.0])},
    ...        "mean_sd": {"1": np.array([0.1])},
    ...        "curve": {"1": {"starts": np.array([1, 2]), "bound": np.array([[1.0], [1.0]])}}}
    >>> pooled = dict(one, curve={"1": {"starts": np.array([1, 2, 4]), "bound": np.array([[1.0], [2.0], [4.0]])}})
    >>> out = with_rate_floor(one, pooled)
    >>> out["v"]["1"].tolist(), out["mean_sd"]["1"].tolist()
    ([4.0], [0.2])
    """
    out = {"sigma": dict(cal["sigma"]), "v": {}, "mean_sd": {}, "curve": {}}
    for m, sigma in cal["sigma"].items():
        own, floor = cal["curve"][m], pooled["curve"][m]
        cell = np.clip(np.searchsorted(own["starts"], floor["starts"], side="right") - 1, 0, len(own["starts"]) - 1)
        bound = np.maximum(own["bound"][cell], floor["bound"] * (pooled["sigma"][m] / sigma) ** 2)
        out["curve"][m] = {"starts": floor["starts"], "bound": bound}
        out["v"][m] = np.maximum(cal["v"][m], bound.max(axis=0))
        out["mean_sd"][m] = cal["mean_sd"][m] * np.sqrt(out["v"][m] / cal["v"][m])
    return out


def unless_unsafe(h: np.ndarray, k: float, mean_sd) -> np.ndarray:
    """``h``, infinite (the chart off) where the reference mean's error leaves the chart
    less than 5 % of its slack: an error that large, persisting, would cross any threshold."""
    return np.where(np.asarray(mean_sd) >= 0.95 * k, np.inf, h)
