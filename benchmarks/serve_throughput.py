"""End-to-end serve throughput on the real broker, side by side from one run.

For each width (tests per record) one topic is filled with simulated part records, then read
by three consumers, each in its own consumer group:

* raw kafka-python: poll until every record is in, no processing (the client's limit);
* stream-ct: the real ``Server`` in-process (the loop of ``stream-ct serve``: decode, DLQ,
  online model, champion predictions to ``<topic>.predictions``, drift monitor, triggers,
  flush, commit) with a champion registered and announced on ``ct.models`` beforehand
  (trained by the retrain job's ``train_and_judge`` on other simulated records), so the
  watcher loads it before the first batch; records/s from the first batch to the last commit;
* seed-style: per-record ``json.loads``, per-record ``scipy.stats.ks_2samp`` of a window of
  the last 1,000 values against 1,000 reference values per feature (p < 0.05), per-record
  RandomForest ``predict_proba``; capped at ``--seed-records`` records.

It also prints the in-process stage breakdown of ``Server._process_parts`` (same records,
fake producer) and, with ``--profile``, the top functions by own time (cProfile).

    python benchmarks/serve_throughput.py                  # 50 and 300 tests
    python benchmarks/serve_throughput.py --tests 50 --records 20000 --profile
    python benchmarks/serve_throughput.py --tests 50 --gc   # the loop with and without gc.freeze
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import gc
import io
import json
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import orjson

from stream_ct.binary_record import encode as encode_binary

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (BenchBroker, bench_config, broker_arguments, fake_messages, fmt_table, in_process_server, log,
                    publish, simulate_records, simulate_values, tmpdir, train_champion, unique)


class Baseline:
    """The hot path as it was before the speed work (same code otherwise): river's pipeline for
    the online model on dict rows, the per-test ``feature_matrix`` loop, the per-test validator
    for every record, and every object in the cyclic collector's generations (no ``gc.freeze``)."""

    def __enter__(self):
        import stream_ct.decode as decode
        import stream_ct.online as online
        from stream_ct.features import Measurements, _feature_matrix_reference

        gc.unfreeze()
        self.saved = [(Measurements, "__init__", Measurements.__init__), (Measurements, "matrix", Measurements.matrix),
                      (decode, "_surely_valid", decode._surely_valid),
                      (online.OnlineModel, "__init__", online.OnlineModel.__init__), (gc, "freeze", gc.freeze)]
        gc.freeze = lambda: None
        init = online.OnlineModel.__init__

        def rows_only(batch, records):  # no blocks: the matrix and the model read the records
            batch.records, batch.n, batch._rows, batch.blocks = records, len(records), None, []
            batch.missing = sum(map(len, (r["tests"] for r in records))) - sum(map(len, batch.rows()))
        Measurements.__init__ = rows_only
        Measurements.matrix = lambda batch, names: _feature_matrix_reference(batch.records, names)
        decode._surely_valid = lambda record: False
        online.OnlineModel.__init__ = lambda self, task, learning_rate=0.01, engine="river": init(
            self, task, learning_rate, engine="river")
        return self

    def __exit__(self, *exc):
        for owner, name, value in self.saved:
            setattr(owner, name, value)


class Now:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        gc.unfreeze()  # what serve froze goes back, so the next baseline run starts as it would


class NoPredictionSends:
    """Diagnosis only: the current loop without its per-record ``producer.send`` of predictions
    (counts them instead), to show what kafka-python's producer costs per record."""

    def __enter__(self):
        from stream_ct.serve import Server

        self.saved = Server._emit_predictions

        def count_only(server, records, sources, scores, source, version):
            server._predictions(scores, source)
            server.counts[f"predictions_{source}"] += len(records)
        Server._emit_predictions = count_only
        return self

    def __exit__(self, *exc):
        from stream_ct.serve import Server

        Server._emit_predictions = self.saved
        gc.unfreeze()


#: Serve variants, run interleaved: the code context, the consumer definition's changes and the
#: records' encoding. "now" is the shipped definition (consumers/yield.toml: drift window 2,000 /
#: stride 2,000 since the sixth round) on JSON records; the options trade as docs/speed.md says.
#: The drift monitor is calibrated by the retrain job with the champion, so a variant with other
#: drift windows serves a champion of its own (the same records, another model name).
BATCHED = {"consumer": {"prediction_messages": "batch"}}
NARROW_WINDOWS = {"drift": {"window": 1000, "stride": 250}, "model": {"name": "yield-narrow-windows"}}
VARIANTS = {"before": (Baseline, {}, "json"), "now": (Now, {}, "json"),
            "now, drift window 1000 / stride 250 (the definition before)": (Now, NARROW_WINDOWS, "json"),
            "now, batched predictions": (Now, BATCHED, "json"),
            "now, binary records": (Now, {}, "binary"),
            "now, binary records, batched": (Now, BATCHED, "binary")}


def online_comparison(n_tests: int, n: int = 20000) -> list:
    """OnlineModel engines on one simulated stream: speed, agreement, prequential AUC; and river's
    mini-batch API (predict_many, then learn_many per poll) for its accuracy cost."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from stream_ct.features import measurement_rows
    from stream_ct.online import OnlineModel

    records = simulate_records(n, n_tests, seed=4)
    rows = measurement_rows(records)
    y = np.array([float(r["passed"]) for r in records])
    out, scores = [], {}
    for engine in ("river", "numpy", "river mini-batch"):
        model = OnlineModel("classification", engine="river" if engine != "numpy" else "numpy")
        parts, started = [], time.perf_counter()
        for i in range(0, n, 2000):
            r, lab = rows[i:i + 2000], y[i:i + 2000]
            if engine != "river mini-batch":
                parts.append(model.predict_learn(r, lab))
                continue
            X = pd.DataFrame.from_records(r)
            X = X.fillna(X.mean())
            if i:
                parts.append(model.model.predict_proba_many(X)[True].to_numpy(dtype=float))
            else:
                parts.append(np.full(len(r), 0.5))
            model.model.learn_many(X, pd.Series(lab.astype(bool)))
        seconds = time.perf_counter() - started
        scores[engine] = np.concatenate(parts)
        diff = float(np.max(np.abs(scores[engine] - scores["river"])))
        out.append([n_tests, engine, round(n / seconds), f"{diff:.1e}",
                    round(roc_auc_score(y[2000:], scores[engine][2000:]), 4)])
    return out


def announce(config, version: int, bootstrap: str) -> None:
    from stream_ct.kafka_io import MODELS_TOPIC, ensure_control_topics, make_producer
    from stream_ct.registry import Registry
    from stream_ct.retrain_worker import announcement

    ensure_control_topics(bootstrap)
    producer = make_producer(bootstrap)
    producer.send(MODELS_TOPIC, key=config.model.name.encode(),
                  value=announcement(Registry(config.registry.path), config.model.name, version, "benchmark"))
    producer.flush()
    producer.close()


def raw_consume(topic: str, n: int, bootstrap: str, max_poll_records: int) -> float:
    """Records/s of plain polling (kafka-python, the consumer settings serve uses)."""
    from stream_ct.kafka_io import make_consumer

    consumer = make_consumer(topic, group_id=unique("bench-raw"), bootstrap=bootstrap,
                             max_poll_records=max_poll_records)
    seen, first = 0, None
    try:
        while seen < n:
            batch = consumer.poll(timeout_ms=1000)
            if batch and first is None:
                first = time.perf_counter()
            seen += sum(len(v) for v in batch.values())
        return n / (time.perf_counter() - first)
    finally:
        consumer.close()


def stream_ct_serve(config, n: int, bootstrap: str) -> tuple[float, dict]:
    """Records/s of the real Server loop (in-process), first batch start to last commit."""
    from stream_ct.serve import Server

    server = Server(config, bootstrap, exit_when_idle_s=3.0)
    marks: dict[str, float] = {}
    process, batch_done = server._process, server.sm.batch_done
    batch_seconds: list[float] = []

    def timed_process(batch):
        marks.setdefault("first", time.perf_counter())
        process(batch)

    def timed_done(*args, **kwargs):
        marks["last"] = time.perf_counter()
        batch_seconds.append(kwargs.get("seconds", 0.0))
        batch_done(*args, **kwargs)

    server._process, server.sm.batch_done = timed_process, timed_done
    server.run()
    assert server.position == n, f"served {server.position} of {n} records"
    assert server.counts["predictions_champion"] == n, f"champion predicted {server.counts}"
    return n / (marks["last"] - marks["first"]), {"batches": len(batch_seconds),
                                                   "batch_p50_ms": 1000 * float(np.median(batch_seconds))}


def seed_style(topic: str, cap: int, bootstrap: str, train_records: list[dict], names: list[str]) -> float:
    """The seed notebook's way, per record: json.loads, ks_2samp per feature, RandomForest predict."""
    import warnings

    from scipy import stats
    from sklearn.ensemble import RandomForestClassifier

    from stream_ct.kafka_io import make_consumer

    X_ref = np.array([[r["tests"].get(k, np.nan) for k in names] for r in train_records], dtype=float)
    y_ref = np.array([bool(r["passed"]) for r in train_records])
    model = RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=0).fit(np.nan_to_num(X_ref), y_ref)
    reference = X_ref[-1000:]
    warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful")
    window: collections.deque = collections.deque(X_ref[-2000:-1000], maxlen=1000)  # a full window, as in the notebook
    consumer = make_consumer(topic, group_id=unique("bench-seed"), bootstrap=bootstrap, max_poll_records=500)
    seen, first, alarms = 0, None, 0
    try:
        while seen < cap:
            for records in consumer.poll(timeout_ms=1000).values():
                for m in records:
                    if first is None:
                        first = time.perf_counter()
                    rec = json.loads(m.value)
                    x = np.array([rec["tests"].get(k, np.nan) for k in names], dtype=float)
                    window.append(x)
                    W = np.array(window)  # every feature is tested (no short-cut at the first alarm)
                    alarms += sum(stats.ks_2samp(W[:, j], reference[:, j]).pvalue < 0.05
                                  for j in range(len(names))) > 0
                    model.predict_proba(np.nan_to_num(x)[None, :])
                    seen += 1
                    if seen >= cap:
                        break
                if seen >= cap:
                    break
        return seen / (time.perf_counter() - first)
    finally:
        consumer.close()


def warm_up(server, messages: list) -> None:
    """The first 2,000 messages through ``Server._process_parts``, untimed."""
    server._process_parts(messages[:2000])


def timed_batches(server, messages: list, freeze: bool) -> tuple[int, float]:
    """Records and seconds of ``Server._process_parts`` over the messages after the first
    2,000, in batches of 2,000; with ``freeze`` the process's objects are frozen out of the
    cyclic collector first, as ``Server.run`` does. Whatever is frozen is thawed after."""
    if freeze:
        gc.collect()
        gc.freeze()
    started = time.perf_counter()
    for i in range(2000, len(messages), 2000):
        server._process_parts(messages[i:i + 2000])
    seconds = time.perf_counter() - started
    gc.unfreeze()
    return max(0, len(messages) - 2000), seconds


def stage_breakdown(config, version: int, values: list[bytes], profile: bool) -> tuple[list, str]:
    """Per-stage time of ``Server._process_parts`` in-process (fake producer), 2,000-record batches."""
    from threadpoolctl import threadpool_limits

    import stream_ct.serve as serve

    threadpool_limits(1)  # as Server.run does (after sklearn's OpenMP runtime is loaded)
    server = in_process_server(config, version)
    messages = fake_messages(config.consumer.input_topic, values)
    warm_up(server, messages)
    spent: collections.Counter = collections.Counter()
    originals = {}

    inner = [0.0]  # time of timed calls inside the current one: each stage counts its own time

    def wrap(owner, name, label):
        f = getattr(owner, name)
        originals[(owner, name)] = f

        def timed(*a, **k):
            t, outer = time.perf_counter(), inner[0]
            inner[0] = 0.0
            try:
                return f(*a, **k)
            finally:
                took = time.perf_counter() - t
                spent[label] += took - inner[0]
                inner[0] = outer + took
        setattr(owner, name, timed)

    from stream_ct.features import Measurements

    for name in ("decode_batch", "target_vector", "score"):
        wrap(serve, name, name)
    wrap(Measurements, "__init__", "results by key layout (Measurements)")
    wrap(Measurements, "matrix", "feature matrix")
    wrap(server, "_emit_predictions", "emit predictions")
    wrap(server, "_detect", "drift monitor (_detect)")
    wrap(server.online, "predict_learn", "online predict_learn")
    n, total = timed_batches(server, messages, freeze=True)  # a no-op freeze in the baseline
    for (owner, name), f in originals.items():
        setattr(owner, name, f)
    rows = [[label, round(s / n * 1e6, 1), f"{100 * s / total:.1f}%"] for label, s in spent.most_common()]
    rows.append(["everything else", round((total - sum(spent.values())) / n * 1e6, 1),
                 f"{100 * (total - sum(spent.values())) / total:.1f}%"])
    rows.append(["total", round(total / n * 1e6, 1), f"{n / total:,.0f} rec/s"])
    text = ""
    if profile:
        prof = cProfile.Profile()
        server2 = in_process_server(config, version)
        warm_up(server2, messages)
        prof.enable()
        timed_batches(server2, messages, freeze=False)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(10)
        text = out.getvalue()
    return rows, text


def gc_comparison(config, version: int, values: list[bytes], rounds: int = 3) -> list:
    """In-process µs per record of ``Server._process_parts`` with the cyclic collector as
    Python leaves it and with the process's objects frozen out of it (as ``Server.run``
    does), alternating; and the µs per record spent inside the collector."""
    inside = [0.0]

    def on_gc(phase, info):
        if phase == "start":
            on_gc.t = time.perf_counter()
        else:
            inside[0] += time.perf_counter() - on_gc.t

    messages = fake_messages(config.consumer.input_topic, values)
    rows = []
    gc.callbacks.append(on_gc)
    try:
        for _ in range(rounds):
            for frozen in (False, True):
                server = in_process_server(config, version)
                warm_up(server, messages)
                if frozen:  # here rather than in timed_batches: the freeze's own collection is not counted
                    gc.collect()
                    gc.freeze()
                inside[0] = 0.0
                n, total = timed_batches(server, messages, freeze=False)
                rows.append([len(server.champion.meta["feature_names"]), "frozen" if frozen else "as Python leaves it",
                             round(total / n * 1e6, 1), round(inside[0] / n * 1e6, 1)])
    finally:
        gc.callbacks.remove(on_gc)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tests", type=int, nargs="+", default=[50, 300])
    p.add_argument("--records", type=int, default=None, help="records per topic (default 30,000 at 50 tests, scaled)")
    p.add_argument("--seed-records", type=int, default=300, help="records the seed-style pipeline processes")
    p.add_argument("--poll-max-records", type=int, default=2000)
    p.add_argument("--profile", action="store_true", help="print cProfile's top 10 of the in-process loop")
    p.add_argument("--repeat", type=int, default=1, help="serve runs per variant, interleaved; medians reported")
    p.add_argument("--online", action="store_true", help="compare the online model's engines (speed, AUC)")
    p.add_argument("--gc", action="store_true", help="in-process A/B of serve's loop with and without gc.freeze")
    broker_arguments(p)
    args = p.parse_args()
    results, options, stages, online_rows, gc_rows = [], [], {}, [], []
    with BenchBroker(args) as bootstrap:
        for n_tests in args.tests:
            n = args.records or max(6000, 30000 * 50 // n_tests)
            log(f"bench: {n_tests} tests - simulating {n} records, training the champion ...")
            values = simulate_values(5000 + n, n_tests, seed=2)  # one stream: train on its start, serve the rest
            train, values = [orjson.loads(v) for v in values[:5000]], values[5000:]
            encoded = {"json": values, "binary": [encode_binary(orjson.loads(v)) for v in values]}
            registry = tmpdir("serve-bench")
            topics = {encoding: unique(f"bench-parts-{n_tests}-{encoding}") for encoding in encoded}
            topic = topics["json"]
            config = bench_config(topic, registry, n_tests, poll_max_records=args.poll_max_records,
                                  triggers={"policy": "schedule", "schedule_records": 0})
            t = time.perf_counter()
            outcome = train_champion(config, train)
            log(f"bench: champion v{outcome.version} {outcome.decision} in {time.perf_counter() - t:.1f} s")
            for encoding, encoded_values in encoded.items():
                publish(topics[encoding], encoded_values, bootstrap)
            announce(config, outcome.version, bootstrap)
            champions = {config.model.name: outcome.version}  # model name -> version, one per drift setup
            for _, sections, _ in VARIANTS.values():
                own = bench_config(topic, registry, n_tests, poll_max_records=args.poll_max_records, **sections)
                if own.model.name not in champions:
                    champions[own.model.name] = train_champion(own, train).version
                    announce(own, champions[own.model.name], bootstrap)
            version = {variant: champions[sections.get("model", {}).get("name", config.model.name)]
                       for variant, (_, sections, _) in VARIANTS.items()}
            raw = raw_consume(topic, n, bootstrap, args.poll_max_records)
            log(f"bench: raw consume {raw:,.0f} rec/s")
            served: dict = {variant: [] for variant in VARIANTS}

            def variant_config(sections, encoding="json"):
                return bench_config(topics[encoding], registry, n_tests, poll_max_records=args.poll_max_records,
                                    triggers={"policy": "schedule", "schedule_records": 0}, **sections)

            for _ in range(args.repeat):  # interleaved, so load changes on a shared machine hit all alike
                for variant, (ctx, sections, encoding) in VARIANTS.items():
                    with ctx():
                        served[variant].append(stream_ct_serve(variant_config(sections, encoding), n, bootstrap))
                    log(f"bench: stream-ct serve ({variant}) {served[variant][-1][0]:,.0f} rec/s "
                        f"({served[variant][-1][1]})")
            rate = {variant: float(np.median([r for r, _ in runs])) for variant, runs in served.items()}
            before, ours = rate["before"], rate["now"]
            info = served["now"][-1][1]
            with NoPredictionSends():
                no_sends = stream_ct_serve(variant_config({}), n, bootstrap)[0]
            log(f"bench: stream-ct serve (now, predictions not sent) {no_sends:,.0f} rec/s")
            seed = seed_style(topic, args.seed_records, bootstrap, train, sorted(train[0]["tests"]))
            log(f"bench: seed-style {seed:,.1f} rec/s")
            results.append([n_tests, n, round(raw), round(before), round(ours), round(seed, 1), f"{ours / before:.2f}x",
                            f"{ours / raw:.2f}x", f"{ours / seed:,.0f}x", round(info["batch_p50_ms"]), round(no_sends)])
            options.extend([n_tests, variant, round(r), f"{r / raw:.2f}x", f"{r / ours:.2f}x", f"{r / seed:,.0f}x"]
                           for variant, r in rate.items() if variant != "before")
            for variant, (ctx, sections, encoding) in VARIANTS.items():
                with ctx():
                    stages[(n_tests, variant)] = stage_breakdown(variant_config(sections, encoding), version[variant],
                                                                 encoded[encoding][:min(n, 20000)],
                                                                 args.profile and variant == "now")
            if args.online:
                online_rows.extend(online_comparison(n_tests))
            if args.gc:
                gc_rows.extend(gc_comparison(config, outcome.version, values[:min(n, 30000)]))
    print(f"\n## End-to-end serve throughput (records/s, one run, same topic; serve: median of {args.repeat})\n")
    print(fmt_table(["tests", "records", "raw kafka-python", "serve before", "serve now", "seed-style",
                     "now vs before", "now vs raw", "now vs seed", "batch p50 ms (now)",
                     "now, predictions not sent (diagnosis)"], results))
    print(f"\n## Serve with the speed options of the consumer definition (records/s, median of {args.repeat}; "
          "batched: [consumer] prediction_messages = \"batch\")\n")
    print(fmt_table(["tests", "serve", "records/s", "vs raw", "vs now", "vs seed"], options))
    for tests in sorted({row[0] for row in options} & {50}):
        best = max((row for row in options if row[0] == tests), key=lambda row: row[2])
        ratio_raw, ratio_seed = float(best[3][:-1]), float(best[5][:-1].replace(",", ""))
        print(f"\ngoal at 50 tests (best: {best[1]}): >= 0.6x raw -> {ratio_raw:.2f}x "
              f"{'MET' if ratio_raw >= 0.6 else 'NOT MET'}; >= 10x seed -> {ratio_seed:,.0f}x "
              f"{'MET' if ratio_seed >= 10 else 'NOT MET'}")
    for (n_tests, variant), (rows, text) in stages.items():
        print(f"\n## In-process stages of Server._process_parts, {n_tests} tests, {variant} (us per record)\n")
        print(fmt_table(["stage", "us/record", "share"], rows))
        if text:
            print(f"\ncProfile, {n_tests} tests, top 10 by own time:\n")
            print("\n".join(line for line in text.splitlines() if line.strip())[:6000])
    if gc_rows:
        print("\n## Cyclic garbage collector, in-process loop (alternating runs; us per record)\n")
        print(fmt_table(["tests", "collector", "us/record", "inside the collector"], gc_rows))
    if online_rows:
        print("\n## Online model (classification, 20,000 records, polls of 2,000): records/s, "
              "max |score - river learn_one|, prequential AUC after the first poll\n")
        print(fmt_table(["tests", "engine", "records/s", "max diff", "AUC"], online_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
