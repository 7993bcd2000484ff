"""Adaptive-test view: how well do the first K tests of the flow predict the final outcome?

The question a test engineer asks before cutting test time. Tests are taken in flow order
(the order they were executed in, as recorded), a model of the consumer definition is trained
on the first records of a recording with only the first K tests, and scored on the rest.
Only the tests the consumer definition's ``[features]`` include and exclude patterns select
are counted, in their flow order (as its models see them); K is 1 or more.

>>> records = [{"tests": {"a": i % 2, "b": 0.0}, "passed": bool(i % 2), "ts": i} for i in range(400)]
>>> rows = adaptive_table(records, "classification", "passed", ks=[1, 2])
>>> [(r["k"], round(r["auc"], 2)) for r in rows]
[(1, 1.0), (2, 1.0)]
>>> [(r["k"], r["last_test"], round(r["auc"], 2))
...  for r in adaptive_table(records, "classification", "passed", ks=[1], exclude=["a"])]
[(1, 'b', 0.5)]
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

from stream_ct.config import ConsumerConfig
from stream_ct.decode import decode_batch
from stream_ct.features import feature_matrix, select_features, target_vector
from stream_ct.recording import read_recording
from stream_ct.training import build_estimator, evaluate, fit


def flow_order(records: Sequence[dict[str, Any]]) -> list[str]:
    """Test keys in the order they first appear in the records' results (execution order)."""
    order: dict[str, None] = {}
    for record in records:
        order.update(dict.fromkeys(record["tests"]))
    return list(order)


def adaptive_table(records: Sequence[dict[str, Any]], task: str, target: str, ks: Sequence[int],
                   estimator: str = "hist_gradient_boosting", train_fraction: float = 0.7,
                   include: Sequence[str] = ("*",), exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per K: the holdout metrics of a model that sees only the first K selected tests."""
    labeled = sorted((r for r in records if r.get(target) is not None), key=lambda r: r["ts"])
    if task not in ("classification", "multiclass", "regression"):
        raise ValueError(f"the adaptive-test view needs labels; task {task!r} has none")
    if any(k < 1 for k in ks):
        raise ValueError(f"K is a number of tests, 1 or more (got {min(ks)}); the last row uses every test")
    if not labeled:  # else it read as patterns that match no test
        raise ValueError(f"no record has {target}: the adaptive-test view needs records that carry it")
    selected = set(select_features(labeled, include, exclude))
    order = [key for key in flow_order(labeled) if key in selected]
    if not order:
        raise ValueError(f"no test of the {len(labeled)} labeled records matches the [features] patterns "
                         f"(include {list(include)}, exclude {list(exclude)})")
    y = target_vector(labeled, target)
    split = int(len(labeled) * train_fraction)
    if split < 50 or len(labeled) - split < 20:
        raise ValueError(f"{len(labeled)} labeled records are too few for a train/holdout split")
    rows = []
    for k in sorted({min(k, len(order)) for k in ks}):
        X = feature_matrix(labeled, order[:k])
        model = fit(build_estimator(task, estimator), X[:split], y[:split])
        rows.append({"k": k, "last_test": order[k - 1], "train_rows": split, "holdout_rows": len(labeled) - split,
                     **evaluate(task, model, X[split:], y[split:])})
    return rows


def _run(args) -> int:
    config = ConsumerConfig.load(args.config)
    values = [m.value for m in read_recording(args.recording)]
    records = [rec for _, rec in decode_batch(values)[0]]
    ks = args.k + [len(flow_order(records))]  # the last row: every selected test
    rows = adaptive_table(records, config.model.task, config.model.target, ks, config.model.estimator,
                          include=config.features.include, exclude=config.features.exclude)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    metrics = [key for key in rows[0] if key not in ("k", "last_test", "train_rows", "holdout_rows")]
    print(f"{config.model.target} from the first K tests of the flow "
          f"({rows[0]['train_rows']} training, {rows[0]['holdout_rows']} holdout records)")
    print(f"{'K':>5}  " + "  ".join(f"{m:>9}" for m in metrics) + "  last test in the flow")
    for row in rows:
        print(f"{row['k']:>5}  " + "  ".join(f"{row[m]:>9.4f}" for m in metrics) + f"  {row['last_test']}")
    return 0


def _ks(text: str) -> list[int]:
    """``--k``: comma-separated numbers of tests, each 1 or more."""
    try:
        ks = [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated whole numbers of tests, e.g. 5,10,20") from None
    if min(ks) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: K is a number of tests, 1 or more (the last row uses every test)")
    return ks


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "adaptive",
        description="Train on the first records of a recording with only the first K tests of the flow "
                    "(of those the definition's [features] patterns select); score on the rest. The last row "
                    "uses every selected test.",
        epilog="example: stream-ct adaptive consumers/yield.toml lot2.jsonl --k 5,10,20,40")
    p.add_argument("config", help="consumer definition (TOML): task, target and estimator")
    p.add_argument("recording", help="a recording (for example from `stream-ct stdf convert`)")
    p.add_argument("--k", type=_ks, default="5,10,20", help="comma-separated numbers of tests (1 or more)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run)
