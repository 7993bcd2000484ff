"""No-drift false alarms of the full drift monitor on other simulated processes, per detector
family against the share of ARL0 the family gets.

The drift benchmark's no-drift rows watch one process per width; this one watches several
(other seeds: other test means, offsets, die patterns), as serve builds the monitor: a
reference of 20 lots, lot/wafer groups, tester/site/fab strata, die positions.

    python benchmarks/drift_false_alarms.py                       # 20-test floors, seeds 11-16, 2M records each (~5 min)
    python benchmarks/drift_false_alarms.py --seeds 11 --records 500000   # one quick floor
    python benchmarks/drift_false_alarms.py --small-lots   # 5-wafer lots of 50 dies, 8 seeds x 400,000 (~4 min)
    python benchmarks/drift_false_alarms.py --testers 2 --turn 32 --seeds 11 --tests 50 --records 1000000
        # two testers share the partition, taking turns of 32 records (their producers' batches
        # interleave), against the monitor as it was before it followed their turns

With ``--testers N`` every tester is a stream of its own process seed (other lots, wafers and
parts), its lot ids prefixed by the tester, and the reference is interleaved the same way.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drift_detection import ARL0, _dies, _groups, _strata  # noqa: E402
from stream_ct.drift import DriftMonitor, monitor  # noqa: E402
from stream_ct.drift.calibration import turn_order  # noqa: E402
from stream_ct.simulate import Simulator  # noqa: E402

#: Detector -> the budget family whose share it spends.
FAMILY = {"ks": "ks", "psi": "psi", "cusum": "cusum", "cusum_wafer": "within", "cusum_lot": "within",
          "cusum_lot_mean": "lots", "cusum_lot_mean_large": "cusum"}  # the latter spends off global charts' share


def alarms_by_family(seed: int, records: int, n_ref: int, **params) -> tuple[collections.Counter, dict]:
    """Signals per budget family over ``records`` no-drift records after an ``n_ref`` reference,
    and the monitor's budget."""
    sim = Simulator(scenario="none", seed=seed, **params)
    ref = sim.generate(n_ref)
    mon = DriftMonitor(ref.X, ref.feature_names, reference_groups=_groups(ref), reference_strata=_strata(ref),
                       reference_dies=_dies(ref), arl0=ARL0, seed=0)
    batches = (sim.generate(min(10_000, records - a)) for a in range(0, records, 10_000))
    return _count(mon, ((b.X, _strata(b), _dies(b), _groups(b)) for b in batches)), mon.budget


def _count(mon: DriftMonitor, batches) -> collections.Counter:
    """Signals per budget family over ``batches`` of (X, strata, dies, groups)."""
    counts = collections.Counter()
    for X, strata, dies, groups in batches:
        for s in mon.update(X, strata, dies, groups):
            counts["strata" if s.stratum and s.detector == "cusum" else FAMILY.get(s.detector, s.detector)] += 1
    return counts


def taking_turns(seed: int, stream_seeds, n_each: int, turn: int, **params):
    """``n_each`` records of each tester (its own ``stream_seed``), taking turns of ``turn``
    records on one partition: (X, strata, dies, lot/wafer ids prefixed by the tester)."""
    parts = [Simulator(scenario="none", seed=seed, stream_seed=s, **params).generate(n_each) for s in stream_seeds]
    order = turn_order(n_each, turn, len(parts))
    column = lambda values: np.concatenate(values)[order]  # noqa: E731
    strata = {s: column([_strata(b)[s] for b in parts]) for s in ("tester", "site", "fab")}
    groups = column([np.char.add(f"S{i}-", _groups(b)) for i, b in enumerate(parts)])
    return column([b.X for b in parts]), strata, column([_dies(b) for b in parts]), groups


def alarms_taking_turns(seed: int, records: int, n_ref: int, testers: int, turn: int, by_id: bool = True,
                        **params) -> tuple[collections.Counter, dict]:
    """As ``alarms_by_family`` with ``testers`` taking turns (reference too); ``by_id`` False:
    the monitor as before it followed testers' turns (a lot ends where another's record
    arrives, ``lot_gap`` 0; KS/PSI calibrated on one tester's null stream)."""
    X, strata, dies, groups = taking_turns(seed, range(1, testers + 1), n_ref // testers, turn, **params)
    with mock.patch.object(monitor, "lot_gap", monitor.lot_gap if by_id else lambda groups: 0):  # 0: no turns
        mon = DriftMonitor(X, [f"t{j}" for j in range(X.shape[1])], reference_groups=groups, reference_strata=strata,
                           reference_dies=dies, arl0=ARL0, seed=0)
    X, strata, dies, groups = taking_turns(seed, range(101, 101 + testers), records // testers, turn, **params)
    rows = [slice(a, a + 2000) for a in range(0, len(X), 2000)]
    return _count(mon, ((X[r], {k: v[r] for k, v in strata.items()}, dies[r], groups[r]) for r in rows)), mon.budget


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", help="simulator seeds (default 11-16; 0-7 with --small-lots)")
    ap.add_argument("--records", type=int, help="no-drift records per seed (default 2,000,000; 400,000 small lots)")
    ap.add_argument("--tests", type=int, default=20)
    ap.add_argument("--small-lots", action="store_true", help="5-wafer lots of 50 dies, 50 tests")
    ap.add_argument("--testers", type=int, default=1, metavar="N",
                    help="testers sharing the partition, taking turns (reference too); with 2 or more, each "
                         "seed runs twice: the monitor following their turns, and as before")
    ap.add_argument("--turn", type=int, default=32, metavar="R", help="records per tester's turn (default 32)")
    ap.add_argument("--reference", type=int, metavar="N",
                    help="reference records (default 200,000 = 20 lots; 10,000 = 40 lots with --small-lots)")
    args = ap.parse_args(argv)
    if args.small_lots:
        params, n_ref = dict(n_tests=50, parts_per_wafer=50, wafers_per_lot=5), args.reference or 10_000
        seeds, records = args.seeds or list(range(8)), args.records or 400_000
    else:
        params, n_ref = dict(n_tests=args.tests), args.reference or 200_000
        seeds, records = args.seeds or list(range(11, 17)), args.records or 2_000_000
    variants = {"": lambda seed: alarms_by_family(seed, records, n_ref, **params)} if args.testers < 2 else {
        f"{label}, {args.testers} testers taking turns of {args.turn}": (
            lambda seed, by_id=by_id: alarms_taking_turns(seed, records, n_ref, args.testers, args.turn, by_id,
                                                          **params))
        for label, by_id in (("turns followed", True), ("before: lots end at another lot's record", False))}
    for label, run in variants.items():
        total, budget = collections.Counter(), {}
        for seed in seeds:
            counts, budget = run(seed)
            total += counts
            print(f"seed {seed}: {sum(counts.values())} alarms {dict(counts)}", flush=True)
        n = len(seeds) * records
        print(f"\n{label + ': ' if label else ''}{len(seeds)} processes x {records:,} no-drift records after "
              f"{n_ref:,} reference records, ARL0 {ARL0:,}: {sum(total.values())} alarms, "
              f"{sum(total.values()) / n * 1e6:.2f} per 1M (target {1e6 / ARL0:.0f})\n")
        print(f"{'family':8s} {'share':>6s} {'alarms':>7s} {'budget allows':>14s}")
        for family, share in budget.items():
            print(f"{family:8s} {share:6.2f} {total[family]:7d} {share * n / ARL0:14.1f}")
        print()


if __name__ == "__main__":
    main()
