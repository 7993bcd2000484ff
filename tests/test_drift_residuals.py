"""Self-starting residuals within groups: equal to a per-record loop, batch-split invariant,
blind to group offsets."""

import numpy as np

from stream_ct.drift.residuals import SelfStartingResiduals


def _loop(X, groups):
    """Per record: (x - mean of the group's earlier values) * sqrt(n / (n + 1)), 0 for a group's
    first value, NaN where missing; group means."""
    out, means, group, seen = np.full(X.shape, np.nan), [], None, None
    for i, (row, g) in enumerate(zip(X, groups)):
        if g != group:
            if group is not None:
                means.append([np.mean(v) if v else np.nan for v in seen])
            group, seen = g, [[] for _ in row]
        for j, x in enumerate(row):
            if np.isnan(x):
                continue
            n = len(seen[j])
            out[i, j] = (x - np.mean(seen[j])) * np.sqrt(n / (n + 1)) if n else 0.0
            seen[j].append(x)
    return out, np.array(means)


def _stream(seed=0, n=3000, d=3):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n // 40 + 1), rng.integers(20, 60, n // 40 + 1))[:n]
    X = rng.normal(size=(n, d)) + rng.normal(0, 5, (groups.max() + 1, d))[groups]
    X[rng.random(X.shape) < 0.05] = np.nan
    X[groups == 3, 1] = np.nan  # a group without any value of a feature
    return X, groups, rng


def test_equal_to_a_per_record_loop_in_any_batches():
    X, groups, rng = _stream()
    want, want_means = _loop(X, groups)
    tracker, got, means, ends, sizes = SelfStartingResiduals(3), [], [], [], []
    cuts = np.r_[0, np.sort(rng.choice(np.arange(1, len(X)), 60, replace=False)), len(X)]
    for a, b in zip(cuts[:-1], cuts[1:]):
        r, done = tracker.update(X[a:b], groups[a:b], np.arange(a, b))
        got.append(r)
        means.append(done.means)
        ends += done.positions.tolist()
        sizes += done.sizes.tolist()
    np.testing.assert_allclose(np.vstack(got), want, atol=1e-9)
    np.testing.assert_allclose(np.vstack(means), want_means, atol=1e-9)
    assert ends == (np.flatnonzero(np.diff(groups)) + 1).tolist()  # each group ends at the next one's start
    assert sizes == np.bincount(groups)[:-1].tolist()  # records of every group but the last, unfinished


def test_blind_to_group_offsets_and_unit_variance_within():
    X, groups, _ = _stream(seed=1, n=20_000)
    r, _ = SelfStartingResiduals(3).update(X, groups, np.arange(len(X)))
    shifted, _ = SelfStartingResiduals(3).update(X + 100.0 * (groups % 7)[:, None], groups, np.arange(len(X)))
    np.testing.assert_allclose(shifted, r, atol=1e-8)
    assert np.all(np.abs(np.nanmean(r, axis=0)) < 0.03)
    assert np.all(np.abs(np.nanstd(r, axis=0) - 1) < 0.03)  # group offsets of sd 5 are gone


def test_labels_follow_each_group_and_state_round_trips():
    X, groups, _ = _stream(seed=2, n=500)
    labels = np.where(groups % 2, "T1", "T2")[:, None]
    a = SelfStartingResiduals(3)
    a.update(X[:123], groups[:123], np.arange(123), labels[:123])
    b = SelfStartingResiduals.from_state(a.state_dict())
    ra, da = a.update(X[123:], groups[123:], np.arange(123, 500), labels[123:])
    rb, db = b.update(X[123:], groups[123:], np.arange(123, 500), labels[123:])
    np.testing.assert_array_equal(ra, rb)
    assert da.ids.tolist() == db.ids.tolist()
    assert [lab[0] for lab in da.labels] == ["T1" if g % 2 else "T2" for g in da.ids]
