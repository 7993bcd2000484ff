"""Issue 7, scenario 1: serve is killed with SIGKILL at random points and restarted; nothing is lost.

CI size: 8 kills over a 40,000-record replay (seed 7). Full size (the issue's numbers): 20 kills
over 200,000 records, with the product's 10 s session timeout::

    STREAM_CT_FULL=1 pytest tests/test_reliability_crash.py -s
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from harness import (EnvService, committed_total, duplicates_by_key, kill9, part_messages,
                     prediction_values, report_line, simulated_records, wait_for_event, wait_until,
                     write_config)
from stream_ct.config import ConsumerConfig
from stream_ct.kafka_io import ensure_topics, topic_size
from stream_ct.record import part_key
from stream_ct.replay import replay

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FULL = bool(os.environ.get("STREAM_CT_FULL"))
RECORDS = 200_000 if FULL else 40_000
KILLS = 20 if FULL else 8
REFERENCE = 5000
POLL = 1000


def test_kill9_at_random_points_loses_nothing_and_duplicates_only_the_uncommitted_batch(
        tmp_path, kafka_bootstrap, topic):
    started = time.monotonic()
    rng = np.random.default_rng(7)
    records = simulated_records(RECORDS, seed=7)
    keys = {part_key(r) for r in records}
    assert len(keys) == RECORDS
    ensure_topics({topic: {"partitions": 1}}, kafka_bootstrap)
    config_path = write_config(tmp_path, topic, reference_size=REFERENCE, poll=POLL)
    config = ConsumerConfig.load(config_path)
    group = config.consumer.group_id

    def start_serve(i: int) -> EnvService:
        return EnvService(["serve", str(config_path), "--instance", f"-{i}"], tmp_path / "serve.log", tmp_path)

    # Phase 1: a champion (v1) from the reference window; the worker then stops (no new versions).
    worker = EnvService(["retrain-worker"], tmp_path / "worker.log", tmp_path)
    serve = start_serve(0)
    try:
        replay(part_messages(records[:REFERENCE + 500]), topic, kafka_bootstrap)
        wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "deploy" and e["version"] == 1, 180,
                       [worker, serve])
        worker.stop()
        wait_until(lambda: committed_total(group, topic, kafka_bootstrap) == REFERENCE + 500, 60,
                   "the reference part to be committed", [serve])

        # Phase 2: the rest, killed at one random point in each of KILLS equal segments.
        replay(part_messages(records[REFERENCE + 500:]), topic, kafka_bootstrap)
        first, last = REFERENCE + 500 + POLL, RECORDS - 2 * POLL
        edges = np.linspace(first, last, KILLS + 1).astype(int)
        points = [int(rng.integers(a, b)) for a, b in zip(edges[:-1], edges[1:])]
        committed_at_kill = []
        for i, point in enumerate(points, start=1):
            wait_until(lambda: committed_total(group, topic, kafka_bootstrap) >= point, 240,
                       f"kill point {i} (offset {point})", [serve], interval=0.05)
            time.sleep(float(rng.uniform(0.0, 0.4)))  # land anywhere in the next batch, sent or not
            kill9(serve)
            committed_at_kill.append(committed_total(group, topic, kafka_bootstrap))
            serve = start_serve(i)
        wait_until(lambda: committed_total(group, topic, kafka_bootstrap) == RECORDS, 300,
                   "every record to be committed", [serve])
        serve.stop()
        assert serve.proc.returncode == 0, serve.output()
    finally:
        serve.stop()
        worker.stop()

    predictions = prediction_values(config.predictions_topic, kafka_bootstrap)
    predicted = {p["key"] for p in predictions}
    missing = keys - predicted
    assert not missing, f"{len(missing)} records have no prediction, e.g. {sorted(missing)[:5]}"
    assert predicted == keys
    duplicates = duplicates_by_key(predictions)
    for key, copies in duplicates.items():
        assert len({(c["version"], c["source"], c["score"], c["prediction"], c["offset"]) for c in copies}) == 1, \
            f"{key} was predicted differently: {copies}"
        offset = copies[0]["offset"]
        assert any(c <= offset < c + POLL for c in committed_at_kill), \
            f"{key} (offset {offset}) was re-emitted but is not in an uncommitted batch at a kill {committed_at_kill}"
        assert copies[0]["version"] == 1 and copies[0]["source"] == "champion"
    extra = sum(len(c) - 1 for c in duplicates.values())
    assert len(predictions) == RECORDS + extra
    assert extra <= KILLS * POLL
    assert topic_size(config.dlq_topic, kafka_bootstrap) == 0
    report_line("crash and resume (kill -9 serve)", faults=f"{KILLS} x SIGKILL of serve at offsets {points}",
                records_in=RECORDS, records_lost=len(missing), duplicates=extra,
                committed_at_kill=committed_at_kill, seconds=round(time.monotonic() - started, 1))
