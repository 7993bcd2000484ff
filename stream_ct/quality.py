"""Data-quality checks on a training window, before any training is attempted.

Each check returns a ``GateResult`` named ``quality:<check>``; a window that fails any of
them is not trained on, and the reasons go with the decision.

>>> import numpy as np
>>> X = np.array([[1.0, np.nan], [2.0, 5.0], [3.0, 5.0]]); y = np.array([1.0, 0.0, 1.0])
>>> [r.name for r in check_window("classification", X, y, ["a", "b"], sentinels=0, values=6,
...                                min_rows=2, min_minority=1, max_missing=0.5, max_sentinel=0.1,
...                                max_constant=0.6)]
['quality:rows', 'quality:schema', 'quality:missing', 'quality:sentinels', 'quality:constant', 'quality:labels']
"""

from __future__ import annotations

import numpy as np

from stream_ct.gates import GateResult


def check_window(task: str, X: np.ndarray, y: np.ndarray, feature_names: list[str], *, sentinels: int,
                 values: int, min_rows: int, min_minority: int, max_missing: float, max_sentinel: float,
                 max_constant: float, train_rows: int | None = None, target: str = "target") -> list[GateResult]:
    """Rows, schema, missing and sentinel fractions, constant columns, labels (pass/fail ones 0
    or 1) and their balance.

    ``train_rows``: the training split is the window's first (oldest) ``train_rows`` rows, the
    rest its holdout. A classifier cannot be fitted on one class, so the labels check also
    fails when every row of the other class(es) falls in the holdout (all of a window's
    failing parts at its end, say), naming ``target`` and the one class the training split has;
    for pass/fail, also when the holdout has one class (the AUC gate could not be measured), and
    for regression when the holdout's target is constant (nor could the R² gate).
    """
    rows, d = X.shape
    why = f" (no record in the window has a usable {target})" if rows == 0 and task != "anomaly" else ""
    kind = "rows" if task == "anomaly" else "labeled rows"  # an outlier model learns without labels
    results = [GateResult("quality:rows", rows >= min_rows, rows, min_rows,
                          f"{rows} {kind} {'>=' if rows >= min_rows else '<'} minimum {min_rows}{why}")]
    if rows == 0:  # no row to take features from: the schema is not what is wrong
        return results
    results.append(GateResult("quality:schema", d > 0, d, 1,
                              f"{d} features" if d else "no test matched the feature patterns with a measured result"))
    sentinel_share = sentinels / max(values, 1)
    sentinel_gate = GateResult("quality:sentinels", sentinel_share <= max_sentinel, sentinel_share, max_sentinel,
                               f"{sentinels} sentinel results (inf or |v| >= 1e30, e.g. 9.9e37) = {sentinel_share:.2%}; "
                               f"limit {max_sentinel:.0%}")
    if d == 0:  # results that were all sentinels leave no feature: say so
        return results + ([sentinel_gate] if values else [])
    missing = float(np.isnan(X).mean())
    worst = feature_names[int(np.argmax(np.isnan(X).mean(axis=0)))]
    results.append(GateResult("quality:missing", missing <= max_missing, missing, max_missing,
                              f"{missing:.1%} of values missing (worst: {worst}); limit {max_missing:.0%}"))
    results.append(sentinel_gate)
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(X, axis=0) - np.nanmin(X, axis=0) if rows else np.zeros(d)
    constant = np.isnan(spread) | (spread == 0)
    share = float(constant.mean())
    names = [n for n, c in zip(feature_names, constant) if c][:5]
    results.append(GateResult("quality:constant", share <= max_constant, share, max_constant,
                              f"{int(constant.sum())} of {d} features constant or empty"
                              + (f" ({', '.join(names)})" if names else "") + f"; limit {max_constant:.0%}"))
    other = y[(y != 0) & (y != 1)] if task == "classification" else y[:0]
    if len(other):  # the gates take label 1 as the positive class: a perfect model on 1/5 measured AUC 0
        shown = ", ".join(f"{v:g}" for v in np.unique(other)[:5])
        results.append(GateResult("quality:labels", False, len(other), 0,
                                  f"pass/fail labels are 0 (fail) and 1 (pass), but {len(other)} rows have "
                                  f'{target} = {shown}; learn bins with task = "multiclass"'))
    elif task in ("classification", "multiclass"):
        counts = np.unique(y, return_counts=True)[1]
        minority = int(np.sort(counts)[-2]) if len(counts) > 1 else 0  # the second-largest class
        which = "minority class" if task == "classification" else f"second-largest of {len(counts)} classes"
        ok = minority >= min_minority
        detail = f"{which} has {minority} rows; minimum {min_minority}"
        trained = np.unique(y[:train_rows]) if ok and train_rows is not None else None
        if trained is not None and len(trained) < 2:
            ok = False
            only = f"{target} = {trained[0]:g}" if len(trained) else "no label"
            detail = (f"training window has one class (all {train_rows} oldest rows {only}; every other "
                      f"class falls in the holdout, the newest {rows - train_rows}); need "
                      f"{'both' if task == 'classification' else 'two or more'}")
        held_out = np.unique(y[train_rows:]) if ok and train_rows is not None and task == "classification" else None
        if held_out is not None and len(held_out) < 2:
            ok = False
            only = f"{target} = {held_out[0]:g}" if len(held_out) else "no label"
            detail = (f"holdout has one class (all {rows - train_rows} newest rows {only}; every other "
                      f"class falls in the training window, the oldest {train_rows}); the AUC gate needs both")
        results.append(GateResult("quality:labels", ok, minority, min_minority, detail))
    elif task == "regression":
        ok = bool(np.nanstd(y) > 0)
        detail = "target varies" if ok else "target is constant"
        held_out = y[train_rows:] if ok and train_rows is not None else None
        if held_out is not None and len(np.unique(held_out)) == 1:
            ok = False
            detail = (f"holdout's {target} is constant (all {rows - train_rows} newest rows = {held_out[0]:g}); "
                      "the R² gate needs it to vary (R² is 0 there for any error short of none)")
        results.append(GateResult("quality:labels", ok, float(np.nanstd(y)), 0.0, detail))
    return results
