"""Retrain to serving for a 100,000-row window: from the request until serve deploys the version.

``--instances`` (default 2) ``python -m stream_ct serve`` processes run in one group (on an
idle input topic, so they neither serve nor bootstrap; their watchers follow ``ct.models``
as in production). The window (100,000 simulated records, 50 tests) is on another topic. At t0 a manual retrain
request for that window is handled by the real ``RetrainWorker.handle`` (read the window back
from Kafka by time, quality checks, fit, gates against the champion, drift calibration,
registry write, announcement on ``ct.models``); the clock stops when every serve
instance's ``deploy`` event for the new version is on ``ct.events``. The breakdown is the
worker's own step clock (the ``retrain_decision`` event's ``step_seconds``), first with the
child's work run in-process; ``--real-child`` then runs the production path (a forkserver
child, preloaded with the imports, reads its own window and trains) on the same window.

    python benchmarks/retrain_to_serving.py --rows 100000 --tests 50 --real-child
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (BenchBroker, bench_config, broker_arguments, fmt_table, log, publish, simulate_values, tmpdir,
                    train_champion, unique)
from serve_throughput import announce


def toml_for(config, input_topic: str) -> str:
    d = config.to_dict()
    d["consumer"] = dict(d["consumer"], input_topic=input_topic)
    lines = []
    for section, values in d.items():
        if not isinstance(values, dict):
            continue
        lines.append(f"[{section}]")
        for k, v in values.items():
            if v is None:
                continue
            lines.append(f"{k} = {orjson.dumps(v).decode() if not isinstance(v, bool) else str(v).lower()}")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--tests", type=int, default=50)
    p.add_argument("--real-child", action="store_true",
                   help="also run the retrain in the worker's forkserver child, as in production (total only)")
    p.add_argument("--instances", type=int, default=2, help="serve instances that must all deploy")
    broker_arguments(p)
    args = p.parse_args()
    import stream_ct.retrain_worker as rw
    from stream_ct.events import EventLog
    from stream_ct.kafka_io import EVENTS_TOPIC, make_consumer, make_producer
    from stream_ct.outbox import Outbox

    with BenchBroker(args) as bootstrap:
        values = simulate_values(5000 + args.rows, args.tests, seed=5)
        registry = tmpdir("retrain")
        topic = unique("bench-window")
        config = bench_config(topic, registry, args.tests,
                              retrain={"window_records": args.rows, "timeout_s": 900},
                              triggers={"policy": "schedule", "schedule_records": 0})
        log("bench: champion v1 on 5,000 records ...")
        v1 = train_champion(config, [orjson.loads(v) for v in values[:5000]]).version
        announce(config, v1, bootstrap)
        started_ms = int(time.time() * 1000)
        publish(topic, values[5000:], bootstrap)
        toml = Path(registry) / "serve.toml"
        toml.write_text(toml_for(config, unique("bench-idle")))
        env = dict(os.environ, STREAM_CT_BOOTSTRAP=bootstrap)
        serves = [subprocess.Popen([sys.executable, "-m", "stream_ct", "serve", str(toml)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                  for _ in range(args.instances)]
        events = make_consumer(EVENTS_TOPIC, group_id=None, bootstrap=bootstrap)
        try:
            for serve in serves:  # wait until every instance serves v1, then keep draining its output
                for line in serve.stdout:
                    if "now serving" in line:
                        break
                threading.Thread(target=collections.deque, args=(serve.stdout, 0), daemon=True).start()
            events.poll(timeout_ms=500)
            events.seek_to_end()

            # the steps, timed in-process (the worker calls the same functions in its child)
            def in_process(request, records, root, timeout, bootstrap=None):  # the child's work, here
                return rw.read_and_train(request, records, root, bootstrap)

            child = rw.train_in_child
            outbox = Outbox(make_producer(bootstrap))
            log_events = EventLog(outbox, "retrain-bench", consumer="*")
            runs = {}
            modes = ["in-process"] + (["forkserver child"] if args.real_child else [])
            for mode in modes:  # back to back, same window, same serve instances
                rw.train_in_child = in_process if mode == "in-process" else child
                request = rw.retrain_request(config, "manual: benchmark", started_ms, {0: args.rows})
                t0 = time.time()
                outcome = rw.RetrainWorker(registry, bootstrap).handle(request, outbox, log_events)
                announced = time.time()
                log(f"bench: {mode}: worker {outcome.decision} v{outcome.version} in {announced - t0:.1f} s")
                deployed = {}  # instance -> time of its deploy event
                while len(deployed) < len(serves) and time.time() - announced < 120:
                    for msgs in events.poll(timeout_ms=500).values():
                        for m in msgs:
                            e = orjson.loads(m.value)
                            if e["type"] == "deploy" and e.get("version") == outcome.version:
                                deployed[(e.get("source"), e.get("host"), e.get("pid"))] = e["ts"]
                if len(deployed) < len(serves):
                    print(f"v{outcome.version} deployed by {len(deployed)} of {len(serves)} instances within 120 s "
                          f"({outcome.decision}: {outcome.gates})")
                    return 1
                deployed = max(deployed.values())
                runs[mode] = (outcome.step_seconds, announced - t0, deployed - announced, deployed - t0,
                              outcome.version)
            outbox.producer.close()
        finally:
            events.close()
            for serve in serves:
                serve.terminate()
            for serve in serves:
                serve.wait(30)
    labels = list(runs["in-process"][0])  # the worker's own step clock (the retrain_decision event's)
    rows = [[k.replace("_", " ")] + [round(runs[m][0].get(k, float("nan")), 2) for m in modes] for k in labels]
    rows.append(["other (child start, results back, announcement)"]
                + [round(runs[m][1] - sum(runs[m][0].values()), 2) for m in modes])
    rows.append(["request -> announced on ct.models"] + [round(runs[m][1], 2) for m in modes])
    rows.append([f"announce -> all {len(serves)} serve instances deployed (verify, load, monitor, swap)"]
                + [round(runs[m][2], 2) for m in modes])
    rows.append(["total: request -> deploy event"] + [round(runs[m][3], 2) for m in modes])
    print(f"\n## Retrain to serving, {args.rows:,}-row window, {args.tests} tests (seconds; "
          f"versions {', '.join(f'v{runs[m][4]}' for m in modes)})\n")
    print(fmt_table(["step"] + modes, rows))
    for m in modes:
        total = runs[m][3]
        print(f"goal <= 30 s ({m}): {total:.1f} s {'MET' if total <= 30 else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
