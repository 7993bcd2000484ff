"""What a restart's read-back of the predictions waiting for labels costs serve's first batch.

A topic of ``--records`` unlabeled simulated parts (timestamps of now) stands for what a
serve instance had committed before a restart, and its labels topic for the labels it had
read: those of the first half of the parts (joined before the restart) and of a tenth more
parts not sent yet (waiting for them). An in-process ``Server`` with a champion (the yield
definition) is handed both partitions as a restarted instance is: ``_restore_waiting`` has
a thread read the parts and labels back from the broker and score the parts still waiting
(the second half) with the champion, and ``_restore_read_back`` lets them and the early
labels wait in the joiner. "Serving loop held" is
the time those two calls take on serve's own thread (the read-back thread's time is shared
with serving, not added to it). Beside it, in the same run, the same parts served once
in-process (decode, champion, online model, drift charts): the work the read-back repeats.

    python benchmarks/label_restore.py --records 10000 100000 --tests 50 300
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import orjson
from kafka import OffsetAndMetadata, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (BenchBroker, bench_config, broker_arguments, fake_messages, fmt_table, in_process_server, log,
                    publish, simulate_values, tmpdir, train_champion, unique)

from stream_ct.awaiting import commit_note


def measure(n: int, n_tests: int, bootstrap: str) -> list:
    labeled = [orjson.loads(v) for v in simulate_values(n + n // 10, n_tests, seed=5)]
    values = [orjson.dumps(dict(r, passed=None)) for r in labeled[:n]]  # their labels come later
    label_values = [orjson.dumps({k: r[k] for k in ("lot_id", "wafer_id", "part_id", "passed")})
                    for r in labeled[:n // 2] + labeled[n:]]
    topic = unique("restore")
    publish(topic, values, bootstrap)
    publish(f"{topic}.labels", label_values, bootstrap)
    config = bench_config(topic, tmpdir("restore"), n_tests, labels={"topic": f"{topic}.labels"})
    version = train_champion(config, labeled[:5000]).version
    served = in_process_server(config, version)
    started = time.perf_counter()
    for i in range(0, n, 2000):
        served._process_parts(fake_messages(topic, values[i:i + 2000]))
    serve_s = time.perf_counter() - started

    server = in_process_server(config, version)
    server.bootstrap = bootstrap
    note, labels = commit_note(int(time.time() * 1000)), TopicPartition(f"{topic}.labels", 0)
    committed = {TopicPartition(topic, 0): n, labels: len(label_values)}
    server.consumer = types.SimpleNamespace(
        committed=lambda tp, metadata=False, timeout_ms=None: OffsetAndMetadata(committed[tp], note, -1),
        assignment=lambda: {labels})
    server.unrestored = {TopicPartition(topic, 0)}
    started = time.perf_counter()
    server._restore_waiting()
    stall_s = time.perf_counter() - started
    for thread in server.read_backs:
        thread.join()
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    server._restore_read_back()
    stall_s += time.perf_counter() - started
    waiting, early = server.joiner.counts["restored_predictions"], server.joiner.counts["restored_labels"]
    log(f"bench: {n} records, {n_tests} tests: read back {waiting} predictions and {early} labels in {read_s:.2f} s "
        f"(serving loop held {stall_s:.2f} s), served in {serve_s:.2f} s")
    return [n, n_tests, waiting, early, read_s, stall_s, serve_s, read_s / serve_s]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--tests", type=int, nargs="+", default=[50, 300])
    broker_arguments(p)
    args = p.parse_args()
    with BenchBroker(args) as bootstrap:
        rows = [measure(n, t, bootstrap) for t in args.tests for n in args.records]
    print(fmt_table(["records", "tests", "predictions waiting again", "labels waiting again", "read-back s", "serving loop held s", "serving them s",
                     "read-back / serving"], rows))


if __name__ == "__main__":
    main()
