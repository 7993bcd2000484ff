"""No-drift false alarms of the full drift monitor on other simulated processes, per detector
family against the share of ARL0 the family gets.

The drift benchmark's no-drift rows watch one process per width; this one watches several
(other seeds: other test means, offsets, die patterns), as serve builds the monitor: a
reference of 20 lots, lot/wafer groups, tester/site/fab strata, die positions.

    python benchmarks/drift_false_alarms.py                       # 20-test floors, seeds 11-16, 2M records each (~5 min)
    python benchmarks/drift_false_alarms.py --seeds 11 --records 500000   # one quick floor
    python benchmarks/drift_false_alarms.py --small-lots          # 5-wafer lots of 50 dies, 8 seeds x 400,000 (~4 min)
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drift_detection import ARL0, _dies, _groups, _strata  # noqa: E402
from stream_ct.drift import DriftMonitor  # noqa: E402
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
    counts = collections.Counter()
    while mon.n_seen < records:
        b = sim.generate(min(10_000, records - mon.n_seen))
        for s in mon.update(b.X, _strata(b), _dies(b), _groups(b)):
            counts["strata" if s.stratum and s.detector == "cusum" else FAMILY.get(s.detector, s.detector)] += 1
    return counts, mon.budget


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", help="simulator seeds (default 11-16; 0-7 with --small-lots)")
    ap.add_argument("--records", type=int, help="no-drift records per seed (default 2,000,000; 400,000 small lots)")
    ap.add_argument("--tests", type=int, default=20)
    ap.add_argument("--small-lots", action="store_true", help="5-wafer lots of 50 dies, 50 tests")
    ap.add_argument("--reference", type=int, metavar="N",
                    help="reference records (default 200,000 = 20 lots; 10,000 = 40 lots with --small-lots)")
    args = ap.parse_args(argv)
    if args.small_lots:
        params, n_ref = dict(n_tests=50, parts_per_wafer=50, wafers_per_lot=5), args.reference or 10_000
        seeds, records = args.seeds or list(range(8)), args.records or 400_000
    else:
        params, n_ref = dict(n_tests=args.tests), args.reference or 200_000
        seeds, records = args.seeds or list(range(11, 17)), args.records or 2_000_000
    total, budget = collections.Counter(), {}
    for seed in seeds:
        counts, budget = alarms_by_family(seed, records, n_ref, **params)
        total += counts
        print(f"seed {seed}: {sum(counts.values())} alarms {dict(counts)}", flush=True)
    n = len(seeds) * records
    print(f"\n{len(seeds)} processes x {records:,} no-drift records after {n_ref:,} reference records, ARL0 {ARL0:,}: "
          f"{sum(total.values())} alarms, {sum(total.values()) / n * 1e6:.2f} per 1M (target {1e6 / ARL0:.0f})\n")
    print(f"{'family':8s} {'share':>6s} {'alarms':>7s} {'budget allows':>14s}")
    for family, share in budget.items():
        print(f"{family:8s} {share:6.2f} {total[family]:7d} {share * n / ARL0:14.1f}")


if __name__ == "__main__":
    main()
