"""PSI bins from reference quantiles: ties, empty bins, out-of-range values, invalid values."""

import numpy as np

from stream_ct.drift.psi import PsiBins, psi


def _hand_psi(ref_counts, win_counts, eps=0.5):
    r = (np.asarray(ref_counts, float) + eps)
    w = (np.asarray(win_counts, float) + eps)
    r, w = r / r.sum(), w / w.sum()
    return float(((w - r) * np.log(w / r)).sum())


def test_edges_from_quantiles_and_open_outer_bins():
    ref = np.arange(1, 11, dtype=float)[:, None]  # 1..10
    bins = PsiBins(ref, n_bins=5)
    assert bins.edges[0].tolist() == [2.0, 4.0, 6.0, 8.0]
    assert bins.ref_counts[0].tolist() == [2, 2, 2, 2, 2]
    win = np.array([[-100.0], [1.0], [2.0], [2.5], [9.0], [1e6]])  # outside both ends
    assert bins.counts(win)[0].tolist() == [3, 1, 0, 0, 2]
    assert abs(psi(bins.ref_counts, bins.counts(win))[0] - _hand_psi([2] * 5, [3, 1, 0, 0, 2])) < 1e-12


def test_edge_at_reference_maximum_is_dropped():
    ref = np.array([0.0] * 5 + [1.0] * 95)[:, None]
    bins = PsiBins(ref, n_bins=10)
    assert bins.edges[0].tolist() == [0.0] and bins.ref_counts[0, :2].tolist() == [5, 95]


def test_ties_merge_duplicate_edges_and_keep_reference_bins_non_empty():
    ref = np.array([0.0] * 70 + [1.0] * 20 + [2.0] * 10)[:, None]
    bins = PsiBins(ref, n_bins=10)
    # nine quantile edges collapse to {0, 1}: bins (-inf, 0], (0, 1], (1, inf)
    assert bins.n_bins.tolist() == [3] and bins.edges[0].tolist() == [0.0, 1.0]
    assert bins.ref_counts[0, :3].tolist() == [70, 20, 10]
    win = np.array([2.0] * 50)[:, None]
    counts = bins.counts(win)[0, : bins.n_bins[0]].tolist()
    assert sum(counts) == 50
    ref_counts = bins.ref_counts[0, : bins.n_bins[0]].tolist()
    assert abs(psi(bins.ref_counts, bins.counts(win), n_bins=bins.n_bins)[0]
               - _hand_psi(ref_counts, counts)) < 1e-12


def test_quantized_reference_every_bin_holds_its_upper_edge():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 6, size=(1000, 1)).astype(float)
    bins = PsiBins(ref, n_bins=10)
    k = bins.n_bins[0]
    assert k == 6 and (bins.ref_counts[0, :k] > 0).all()


def test_empty_window_bins_are_smoothed_and_identical_is_zero():
    ref = np.arange(100, dtype=float)[:, None]
    bins = PsiBins(ref, n_bins=4)
    assert abs(psi(bins.ref_counts, bins.ref_counts)[0]) < 1e-15
    win = np.full((40, 1), 10.0)  # everything in the first bin, the rest empty
    value = psi(bins.ref_counts, bins.counts(win))[0]
    assert np.isfinite(value) and abs(value - _hand_psi([25] * 4, [40, 0, 0, 0])) < 1e-12


def test_invalid_values_are_excluded_per_feature():
    ref = np.arange(20, dtype=float).reshape(10, 2)
    bins = PsiBins(ref, n_bins=2)
    win = np.array([[np.nan, 1.0], [np.inf, 3.0], [-9.9e37, 5.0], [1.0, np.nan]])
    counts = bins.counts(win)
    assert counts[0].sum() == 1 and counts[1].sum() == 3
    all_invalid = np.full((3, 2), np.nan)
    assert np.isnan(psi(bins.ref_counts, bins.counts(all_invalid))).all()


def test_histogram_has_the_bins_psi_uses_with_open_outer_edges():
    """A drift event's histogram: the feature's own bins (not the padded width), the reference's
    counts and the window's, the same counts PSI is computed from; JSON-ready."""
    ref = np.column_stack([np.arange(1, 11, dtype=float), np.array([0.0] * 7 + [1.0] * 3)])
    bins = PsiBins(ref, n_bins=5)
    win = np.array([[-100.0, 0.0], [1.0, 1.0], [2.0, np.nan], [2.5, 5.0], [9.0, 9.9e37], [1e6, 0.0]])
    wide = bins.histogram(0, win[:, 0])
    assert wide == {"edges": [None, 2.0, 4.0, 6.0, 8.0, None], "reference": [2, 2, 2, 2, 2],
                    "current": [3, 1, 0, 0, 2]}
    assert wide["current"] == bins.counts(win)[0].tolist()
    tied = bins.histogram(1, win[:, 1])  # one edge: two bins; NaN and the sentinel skipped
    assert tied == {"edges": [None, 0.0, None], "reference": [7, 3], "current": [2, 2]}
    assert tied["current"] == bins.counts(win)[1, :2].tolist()
