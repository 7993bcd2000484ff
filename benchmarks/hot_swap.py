"""Hot-swap: per-batch latency in steady state and across a champion swap; records lost.

The real ``Server`` runs in-process on the benchmark broker with champion v1 announced before
it starts. Candidate v2 (trained on a later window of the same stream) is registered before
the run; its announcement is published on ``ct.models`` once half the records are served, so
the watcher thread has it verified and loaded (sha256, skops, drift monitor) while batches
keep flowing, and the loop swaps between batches. Batch latency = the swap itself (when one ran
before the batch) + processing + producer flush + offset commit. "Across the swap" = the
batches from the announcement until 3 batches after the deploy. Lost = input offsets with no
prediction on ``<topic>.predictions`` (read back after the run).

Runs alternate two loaders: serve's (verify, skops and monitor build in a child process;
only the unpickling of the result runs here) and the baseline, the same work in the watcher
thread, where it competes with the batch loop for the GIL.

    python benchmarks/hot_swap.py --tests 50 --records 40000 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import threading
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (BenchBroker, bench_config, broker_arguments, fmt_table, log, pct, publish, simulate_values,
                    tmpdir, train_champion, unique)
from serve_throughput import announce

LOADERS = ("child process", "watcher thread (baseline)")


@contextlib.contextmanager
def loader(kind: str):
    """Serve with ``kind`` of champion loading: its own (a child process) or in the watcher thread."""
    import stream_ct.serve as serve
    from stream_ct.champion_loader import load_version

    def in_thread(config):  # the baseline: the load runs in the watcher thread itself
        return functools.partial(load_version, config)

    own = serve.ChildLoader
    serve.ChildLoader = own if kind == LOADERS[0] else in_thread
    try:
        yield
    finally:
        serve.ChildLoader = own


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tests", type=int, default=50)
    p.add_argument("--records", type=int, default=40000)
    p.add_argument("--poll-max-records", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3, help="runs per loader, alternating")
    broker_arguments(p)
    args = p.parse_args()
    rows, met = [], True
    with BenchBroker(args) as bootstrap:
        for _ in range(args.repeat):  # alternating, so load changes on a shared machine hit both alike
            for kind in LOADERS:
                with loader(kind):
                    run = swap_run(args, bootstrap)
                if run is None:
                    print("the swap did not happen: see the log above")
                    return 1
                rows.append([kind] + run)
                met &= kind != LOADERS[0] or (run[-2] <= 2 and run[-1] == 0)
    print(f"\n## Hot-swap, {args.tests} tests, {args.records} records, batches of up to {args.poll_max_records}: "
          f"per-batch latency (ms), alternating runs\n")
    print(fmt_table(["champion loading", "steady p50", "steady p99", "across swap p50", "across swap p99",
                     "across max", "p99 across / steady", "records lost"], rows))
    print(f"\ngoal (serve's loading, every run): p99 across the swap <= 2x steady p99 and 0 lost: "
          f"{'MET' if met else 'NOT MET'}")
    return 0


def swap_run(args, bootstrap) -> list | None:
    """One served topic with a swap half-way: the row of figures, or None if no swap ran."""
    from stream_ct.kafka_io import MODELS_TOPIC, make_producer
    from stream_ct.prediction_messages import unpack_all
    from stream_ct.registry import Registry
    from stream_ct.replay import record
    from stream_ct.retrain_worker import announcement
    from stream_ct.serve import Server

    n = args.records
    values = simulate_values(10000 + n, args.tests, seed=3)
    registry = tmpdir("hot-swap")
    topic = unique(f"bench-swap-{args.tests}")
    config = bench_config(topic, registry, args.tests, poll_max_records=args.poll_max_records,
                          triggers={"policy": "schedule", "schedule_records": 0})
    log("bench: training v1 and v2 ...")
    v1 = train_champion(config, [orjson.loads(v) for v in values[:5000]]).version
    v2 = train_champion(config, [orjson.loads(v) for v in values[5000:10000]]).version
    Registry(registry).set_champion(config.model.name, v1)
    values = values[10000:]
    publish(topic, values, bootstrap)
    announce(config, v1, bootstrap)

    # v2's announcement, and the producer that sends it mid-run, made before serve starts: a
    # producer's start-up (metadata, threads) in this process would land in serve's batches
    announcer = make_producer(bootstrap)
    v2_announcement = announcement(Registry(registry), config.model.name, v2, "benchmark")

    def announce_v2():
        announcer.send(MODELS_TOPIC, key=config.model.name.encode(), value=v2_announcement)
        announcer.flush()

    server = Server(config, bootstrap, exit_when_idle_s=3.0)
    process, swap, batch_done = server._process, server._swap_if_ready, server.sm.batch_done
    rows: list[dict] = []
    state = {"swap_s": 0.0, "announced_at": None, "deployed_at": None}

    def timed_swap():
        t = time.perf_counter()
        before = server.champion.version if server.champion else None
        swap()
        if server.champion and server.champion.version != before and before is not None:
            state["swap_s"] = time.perf_counter() - t
            state["deployed_at"] = len(rows)

    def timed_process(batch):
        process(batch)
        if state["announced_at"] is None and server.position >= n // 2:
            state["announced_at"] = len(rows) + 1
            threading.Thread(target=announce_v2, daemon=True).start()

    def timed_done(*a, **kw):
        rows.append({"seconds": kw["seconds"] + state["swap_s"], "records": kw["records"]})
        state["swap_s"] = 0.0
        batch_done(*a, **kw)

    server._swap_if_ready, server._process, server.sm.batch_done = timed_swap, timed_process, timed_done
    server.run()
    announcer.close()
    predictions = {p["offset"] for p in unpack_all(m.value for m in record(config.predictions_topic, bootstrap))}
    lost = n - len(predictions & set(range(n)))

    ms = np.array([r["seconds"] for r in rows]) * 1000
    a, d = state["announced_at"], state["deployed_at"]
    if d is None or server.champion.version != v2:
        return None
    steady = np.concatenate([ms[1:a], ms[d + 4:]])  # skip the first (warm-up) batch
    across = ms[a:d + 4]
    log(f"bench: v{v1} -> v{v2} announced at batch {a}, deployed at {d}; per-batch ms around the swap: "
        f"{[round(x) for x in ms[max(a - 2, 0):d + 5]]}")
    return [round(pct(steady, 50), 1), round(pct(steady, 99), 1), round(pct(across, 50), 1),
            round(pct(across, 99), 1), round(float(across.max()), 1), round(pct(across, 99) / pct(steady, 99), 2),
            lost]


if __name__ == "__main__":
    sys.exit(main())
