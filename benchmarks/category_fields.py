"""Test-time champions with and without the tester learned beside the tests (``[features] fields``).

Each simulated tester adds its own overhead to a part's test time; a champion of the test
results alone cannot see it. Side by side, per simulator seed (5,000 parts, the retrain
worker's ``train_and_judge`` with ``consumers/test-time.toml``, drift calibration off): the
decision, holdout R² and MAPE, and the fairness gate's R² spread across testers.

    python benchmarks/category_fields.py                # seeds 1-5 (~1 min)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt_table  # noqa: E402
from stream_ct.config import ConsumerConfig  # noqa: E402
from stream_ct.registry import Registry  # noqa: E402
from stream_ct.retrain_worker import retrain_request, train_and_judge  # noqa: E402
from stream_ct.simulate import Simulator  # noqa: E402

DEFINITION = Path(__file__).resolve().parents[1] / "consumers" / "test-time.toml"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--parts", type=int, default=5000)
    args = p.parse_args()
    rows = []
    for seed in args.seeds:
        records = list(Simulator(scenario="none", seed=seed).generate(args.parts).records())
        for label, fields in (("tests only", "[]"), ("tests + tester", '["tester"]')):
            config = ConsumerConfig.load(DEFINITION, [f"features.fields={fields}", "drift.enabled=false"])
            with tempfile.TemporaryDirectory() as registry:
                outcome = train_and_judge(retrain_request(config, "benchmark", 0, {0: args.parts}), records,
                                          Registry(registry))
            fairness = next(g for g in outcome.gates if g["name"] == "fairness")
            metrics = outcome.metrics["candidate"]
            rows.append([seed, label, outcome.decision, f"{metrics['r2']:.3f}", f"{metrics['mape']:.4f}",
                         f"{fairness['value']:.3f}"])
    print(f"test time, {args.parts:,} simulated parts per seed; fairness gate: R² spread by tester <= "
          f"{ConsumerConfig.load(DEFINITION).gates.max_group_spread}")
    print(fmt_table(["seed", "champion inputs", "decision", "R²", "MAPE", "R² spread by tester"], rows))


if __name__ == "__main__":
    main()
