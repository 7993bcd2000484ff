"""``stream-ct demo``: the whole continuous-training loop on a throwaway local broker.

Simulates a stream with a process change, replays it at tester pace while ``serve`` and a
``retrain-worker`` run as their own processes, waits until the stream is consumed and every
retrain is settled, stops everything, and writes ``<out>/summary.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from stream_ct.broker import LocalBroker
from stream_ct.config import ConsumerConfig
from stream_ct.kafka_io import EVENTS_TOPIC, topic_size
from stream_ct.prediction_messages import unpack_all
from stream_ct.progress import Progress
from stream_ct.recording import read_recording, write_recording
from stream_ct.replay import record, replay
from stream_ct.report import build_report
from stream_ct.simulate import simulate_to_recording

REPO = Path(__file__).resolve().parents[1]


def read_events(bootstrap: str) -> list[dict[str, Any]]:
    try:
        return [orjson.loads(m.value) for m in record(EVENTS_TOPIC, bootstrap)]
    except ValueError:  # ct.events is created by the services as they start
        return []


def save_events(bootstrap: str, path: Path) -> list[dict[str, Any]]:
    """Copy ct.events to a recording at ``path`` (for ``stream-ct report``) and return the events."""
    messages = list(record(EVENTS_TOPIC, bootstrap))
    write_recording(str(path), messages)
    return [orjson.loads(m.value) for m in messages]


def summarize(events: list[dict[str, Any]], truth: dict[str, Any], records_in: int, predictions: int,
              dlq: int) -> dict[str, Any]:
    """The demo's summary from ct.events and the simulator's ground truth."""
    onsets = [o["record"] for o in truth.get("onsets", [])]
    drift = [{"record_index": e["offset"], "onset": onsets[0] if onsets else None, "detector": e.get("detector"),
              "features": e.get("features"), "stratum": e.get("stratum"), "effect_size": e.get("effect_size")}
             for e in events if e["type"] == "drift"]
    retrains = [{"version": e.get("version"), "reason": e.get("reason"), "decision": e.get("decision"),
                 "gates": e.get("gates"), "metrics": e.get("metrics")}
                for e in events if e["type"] == "retrain_decision"]
    deploys = [e for e in events if e["type"] == "deploy"]
    post = {e["version"]: e["metric"] for e in events if e["type"] == "post_deploy_metric"}
    # The swap that answers the process change: the first deploy after the onset.
    onset = onsets[0] if onsets else 0
    answer = next((e for e in deploys if e["position"] >= onset and e.get("reason") != "bootstrap"), None)
    return {
        "records_in": records_in, "predictions_out": predictions, "dlq": dlq,
        "scenario": truth.get("scenario"), "onsets": onsets,
        "drift_events": drift, "retrains": retrains,
        "champion_version": deploys[-1]["version"] if deploys else None,
        "deploys": [{"version": e["version"], "position": e["position"], "reason": e.get("reason")} for e in deploys],
        "swap_after_onset": {"version": answer["version"], "position": answer["position"]} if answer else None,
        "metric_before_swap": answer.get("metric_before") if answer else None,
        "metric_after_swap": post.get(answer["version"]) if answer else None,
        "alerts": [e for e in events if e["type"] == "alert"],
    }


def print_summary(s: dict[str, Any]) -> None:
    print("\n=== stream-ct demo summary ===")
    print(f"records in {s['records_in']}, predictions out {s['predictions_out']}, dead-lettered {s['dlq']}")
    print(f"scenario {s['scenario']}, change at record {', '.join(str(o) for o in sorted(set(s['onsets'])))} "
          "(ground truth)")
    first = s["drift_events"][0] if s["drift_events"] else None
    if first:
        print(f"drift signals: {len(s['drift_events'])}; first at record {first['record_index']} "
              f"({first['record_index'] - first['onset']} after onset) by {first['detector']} on {first['features']}")
    else:
        print("drift signals: none")
    for r in s["retrains"]:
        failed = [f"{g['name']} ({g['detail']})" for g in r["gates"] if not g["passed"]]
        verdict = "failed: " + "; ".join(failed) if failed else f"all {len(r['gates'])} gates passed"
        print(f"retrain ({r['reason']}): v{r['version']} {r['decision']}, {verdict}")
    swap = s["swap_after_onset"]
    print(f"champion: v{s['champion_version']}")
    if swap:
        print(f"swap answering the change: v{swap['version']} at record {swap['position']}; rolling metric of the "
              f"old champion {_fmt(s['metric_before_swap'])} -> new {_fmt(s['metric_after_swap'])}")


def _fmt(metric: dict[str, float] | None) -> str:
    return "n/a" if not metric else ", ".join(f"{k} {v:.3f}" for k, v in metric.items())


#: The simulated fab of the demo runs small lots (5 wafers of 50 dies), so that the first
#: champion's 10,000-record training window - the drift reference - spans 40 lots of normal
#: lot-to-lot variation (docs/drift.md: the reference must span many lots).
DEMO_FAB = {"parts_per_wafer": 50, "wafers_per_lot": 5}


def wait_for_deploy(bootstrap: str, model: str, procs: list[subprocess.Popen], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        exited = any(p.poll() is not None for p in procs)  # before reading: a deploy just before an exit counts
        if any(e["type"] == "deploy" and e.get("model") == model for e in read_events(bootstrap)):
            return
        if exited:
            raise RuntimeError("a service exited before the first champion was deployed: see the logs")
        time.sleep(1)
    raise RuntimeError(f"no champion was deployed within {timeout_s:.0f} s: see the logs")


def clear_out(out: Path) -> None:
    """Delete an earlier demo's folder (its broker state marks it) and create ``out`` empty; a
    folder with anything else in it is left alone."""
    if out.is_dir() and any(out.iterdir()) and not (out / "broker").is_dir():
        raise ValueError(f"{out} is not empty and not a stream-ct demo folder, and the demo deletes its "
                         "folder first: pass --out a new folder")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)


def run_demo(out: Path, records: int, onset: int, shift_sigma: float, rate: float, seed: int,
             port: int) -> dict[str, Any]:
    clear_out(out)
    broker = LocalBroker(port=port, state_dir=str(out / "broker"))
    print(f"demo: starting a local Apache Kafka broker on 127.0.0.1:{port} ...", flush=True)
    bootstrap = broker.start()
    env = dict(os.environ, STREAM_CT_BOOTSTRAP=bootstrap)
    procs: list[subprocess.Popen] = []
    try:
        config_path = REPO / "consumers" / "yield.toml"
        config = ConsumerConfig.load(config_path)
        stream = out / "stream.jsonl"
        print(f"demo: simulating {records} parts, process change at record {onset} ...", flush=True)
        simulate_to_recording("process-change", records, seed, str(stream), onset=onset, shift_sigma=shift_sigma,
                              **DEMO_FAB)
        truth = json.loads(Path(str(stream) + ".truth.json").read_text())
        cli = [sys.executable, "-m", "stream_ct"]
        for name, args in (("retrain-worker", ["retrain-worker"]),
                           ("serve", ["serve", str(config_path), "--exit-when-idle", "8"])):
            log = open(out / f"{name}.log", "wb")
            procs.append(subprocess.Popen(cli + args, cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT))
        messages = list(read_recording(str(stream)))
        first = config.drift.reference_size + config.consumer.poll_max_records
        print(f"demo: serve and retrain-worker running (logs in {out}); the first {first} records train the "
              "first champion ...", flush=True)
        sent = replay(messages[:first], config.consumer.input_topic, bootstrap)
        wait_for_deploy(bootstrap, config.model.name, procs)
        print(f"demo: champion v1 serving; replaying the rest at {rate:.0f} records/s ...", flush=True)
        progress = Progress("replay", unit="record", total=len(messages) - first)
        rest = replay(messages[first:], config.consumer.input_topic, bootstrap, rate=rate, progress=progress)
        progress.done(rest)
        sent += rest
        serve = procs[1]
        deadline = time.monotonic() + 600
        while serve.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        if serve.returncode != 0:
            raise RuntimeError(f"serve exited with {serve.returncode}: see {out / 'serve.log'}")
        predicted = len(unpack_all(m.value for m in record(config.predictions_topic, bootstrap)))
        events = save_events(bootstrap, out / "events.jsonl")
        summary = summarize(events, truth, sent, predicted, topic_size(config.dlq_topic, bootstrap))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        broker.stop()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.html").write_text(build_report(events, "stream-ct demo"), encoding="utf-8")
    print_summary(summary)
    print(f"\nwrote {out / 'summary.json'} and {out / 'report.html'} (drift, metrics, gates and timeline: "
          "open it in a browser)")
    return summary


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        description="Simulate, replay, serve, detect, retrain, gate, hot-swap; write a summary.",
        epilog="example: stream-ct demo --out demo-out --records 60000")
    p.add_argument("--out", default="demo-out")
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--onset", type=int, default=30_000)
    p.add_argument("--shift-sigma", type=float, default=1.5, help="size of the process change in one test")
    p.add_argument("--rate", type=float, default=2_000, help="replay pace in records/s after the first champion")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--port", type=int, default=39092, help="port of the demo's own broker")
    p.set_defaults(func=lambda a: 0 if run_demo(Path(a.out).resolve(), a.records, a.onset, a.shift_sigma, a.rate,
                                                a.seed, a.port) else 1)
