"""False alarms from retests: the drift reference as serve charts the stream against the
window's last results only.

A floor retests some parts (STDF ``PART_FLG``): their first result is out on a failing test,
the retest is normal. Serve charts both results as they come; the retrain worker trains on the
last one only. This benchmark builds both references from one simulated window with retests,
then runs the drift monitor over a longer stream with retests at the same rate, side by side:

* ``as charted`` (stream-ct): every record of the window, first results and retests;
* ``last results``: each retested part's last result only (stream-ct before 2026-11-29).

    python benchmarks/retest_reference.py                         # 5 % retests, 5 sd out, seed 2 (~2 min)
    python benchmarks/retest_reference.py --rate 0.03 --shift 3 --seeds 1 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt_table  # noqa: E402
from stream_ct.drift import DriftMonitor  # noqa: E402
from stream_ct.features import die_ids, feature_matrix, select_features, strata_levels, wafer_ids  # noqa: E402
from stream_ct.retests import latest_results  # noqa: E402
from stream_ct.simulate import Simulator  # noqa: E402

REFERENCE, STREAM, BATCH, ARL0 = 100_000, 500_000, 2_000, 100_000


def with_retests(records, test: str, shift: float, rate: float, rng) -> list[dict]:
    """``records`` with a retest after a ``rate`` share of them, whose first result is ``shift``
    (in the test's own units) out on ``test``."""
    out = []
    for record in records:
        if rng.random() < rate:
            out.append(dict(record, tests={**record["tests"], test: record["tests"][test] + shift}))
            out.append(dict(record, supersedes="part"))
        else:
            out.append(record)
    return out


def monitor_for(reference: list[dict], names: list[str]) -> DriftMonitor:
    """The monitor the retrain worker calibrates (``calibrated_monitor``), on ``reference``."""
    return DriftMonitor(feature_matrix(reference, names), names, reference_groups=wafer_ids(reference),
                        reference_strata=strata_levels(reference), reference_dies=die_ids(reference),
                        arl0=ARL0, window=BATCH, stride=BATCH)


def signals_over(monitor: DriftMonitor, stream: list[dict], names: list[str]) -> list:
    signals = []
    for lo in range(0, len(stream), BATCH):
        batch = stream[lo:lo + BATCH]
        signals += monitor.update(feature_matrix(batch, names), strata=strata_levels(batch), dies=die_ids(batch),
                                  groups=wafer_ids(batch) if monitor.needs_groups else None)
    return signals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=0.05, help="share of parts retested")
    p.add_argument("--shift", type=float, default=5.0, help="a first result's offset on the failing test, in sd")
    p.add_argument("--seeds", type=int, nargs="+", default=[2])
    args = p.parse_args()
    rows = []
    for seed in args.seeds:
        records = list(Simulator(scenario="none", seed=seed).generate(REFERENCE + STREAM).records())
        names = select_features(records[:1000])
        test = names[5]
        shift = args.shift * float(np.nanstd(feature_matrix(records[:20_000], [test])))
        rng = np.random.default_rng(seed)
        window = with_retests(records[:REFERENCE], test, shift, args.rate, rng)
        stream = with_retests(records[REFERENCE:], test, shift, args.rate, rng)
        for label, reference in (("as charted", window), ("last results", latest_results(window))):
            signals = signals_over(monitor_for(reference, names), stream, names)
            on_test = sum(test in s.features for s in signals)
            rows.append([seed, label, len(reference), len(stream), len(signals),
                         f"{len(signals) / len(stream) * 1e6:.1f}", on_test])
    print(f"retests: {args.rate:.0%} of parts, first result {args.shift:g} sd out on one test; "
          f"ARL0 {ARL0:,} (at most {1e6 / ARL0:g} false alarms per 1M records)")
    print(fmt_table(["seed", "reference", "reference rows", "stream records", "signals", "per 1M",
                     "on the retested test"], rows))


if __name__ == "__main__":
    main()
