"""Memory soak: serve's resident memory stays flat over a long replay (issue 7, scenario 8).

Starts one ``stream-ct serve`` process, replays ``--records`` simulated part records (default
2,000,000) onto a fresh topic in chunks, samples the serve process's ``VmRSS`` from
``/proc/<pid>/status`` every ``--interval`` seconds, and prints every sample and a verdict:
FLAT when the median RSS of the last fifth of the run is within ``--tolerance`` (10 %) of the
median after warm-up (the second fifth), else GROWING. Exit code 0 for FLAT, 1 for GROWING.

With ``--champion`` a retrain worker trains the bootstrap champion first (the champion path:
batch predictions + drift monitor); without it serve runs the online-model path.

    python benchmarks/memory_soak.py --bootstrap-servers 127.0.0.1:9092 --records 200000 --champion
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson

from stream_ct.kafka_io import ensure_topics
from stream_ct.record import part_key
from stream_ct.recording import Message
from stream_ct.replay import replay
from stream_ct.simulate import Simulator

CONFIG = """
[consumer]
name = "{name}"
input_topic = "{name}"
poll_max_records = 2000

[drift]
reference_size = {reference}

[retrain]
window_records = 4000
cooldown_records = 1000000000

[registry]
path = "{registry}"
"""


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--bootstrap-servers", default=os.environ.get("STREAM_CT_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between RSS samples")
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--champion", action="store_true", help="train a bootstrap champion first")
    args = parser.parse_args()

    bootstrap = args.bootstrap_servers
    work = Path(tempfile.mkdtemp(prefix="stream-ct-soak-"))
    name = f"soak-{uuid.uuid4().hex[:8]}"
    config = work / "soak.toml"
    config.write_text(CONFIG.format(name=name, registry=work / "registry",
                                    reference=5000 if args.champion else 10 * args.records + 1))
    ensure_topics({name: {"partitions": 1}}, bootstrap)
    env = dict(os.environ, STREAM_CT_BOOTSTRAP=bootstrap)
    procs = []
    if args.champion:
        procs.append(subprocess.Popen([sys.executable, "-m", "stream_ct", "retrain-worker"], cwd=work, env=env,
                                      stdout=open(work / "worker.log", "wb"), stderr=subprocess.STDOUT))
    serve = subprocess.Popen([sys.executable, "-m", "stream_ct", "serve", str(config)], cwd=work, env=env,
                             stdout=open(work / "serve.log", "wb"), stderr=subprocess.STDOUT)
    procs.append(serve)
    samples: list[tuple[float, int, int]] = []  # (seconds, records replayed, RSS KiB)
    replayed = 0
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            rss = rss_kib(serve.pid)
            if rss is None:
                return
            samples.append((time.monotonic() - started, replayed, rss))
            print(f"  t={samples[-1][0]:7.1f} s  replayed={replayed:>9,}  rss={rss / 1024:8.1f} MiB", flush=True)
            stop.wait(args.interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sim = Simulator(scenario="none", seed=args.seed)
    try:
        while replayed < args.records:
            n = min(args.chunk, args.records - replayed)
            batch = [Message(part_key(r).encode(), orjson.dumps(r), int(r["ts"] * 1000), [], None)
                     for r in sim.generate(n).records()]
            replay(batch, name, bootstrap)
            replayed += n
        # let serve drain the topic: wait until its log says nothing, then a few more samples
        from kafka import KafkaAdminClient
        from stream_ct.kafka_io import connection_settings
        admin = KafkaAdminClient(**connection_settings(bootstrap))
        group = f"stream-ct-{name}"
        while True:
            offsets = admin.list_group_offsets({group: None}).get(group) or {}
            if sum(o.offset for o in offsets.values() if o.offset >= 0) >= args.records or serve.poll() is not None:
                break
            time.sleep(1)
        admin.close()
        stop.wait(2 * args.interval)
    finally:
        stop.set()
        sampler.join()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    elapsed = time.monotonic() - started
    rss = [s[2] for s in samples]
    fifth = max(1, len(rss) // 5)
    warm = statistics.median(rss[fifth:2 * fifth] or rss)
    last = statistics.median(rss[-fifth:])
    growth = (last - warm) / warm
    verdict = "FLAT" if abs(growth) <= args.tolerance else "GROWING"
    print(f"records {args.records:,} in {elapsed:.0f} s ({args.records / elapsed:,.0f}/s), {len(rss)} samples, "
          f"path {'champion' if args.champion else 'online'}")
    print(f"rss min {min(rss) / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB, after warm-up {warm / 1024:.1f} MiB, "
          f"last fifth {last / 1024:.1f} MiB, growth {growth:+.1%} (tolerance {args.tolerance:.0%})")
    print(f"verdict: {verdict}")
    return 0 if verdict == "FLAT" else 1


if __name__ == "__main__":
    sys.exit(main())
