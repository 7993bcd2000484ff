"""Issue 7, scenario 6: three serve instances on six partitions; one killed, one added; a promotion.

Seed 41, 24,000 records (about 2 min). Instances a, b, c share one definition and group; c is
killed with SIGKILL mid-stream and d joins; a manual retrain (``stream-ct retrain``) then
promotes v2 (a direct ``ct.retrain`` request) and every live instance emits a ``deploy`` for it. No record is lost (predictions
by key cover every input key); duplicates come only from c's uncommitted batch and rebalances.
Full size (``STREAM_CT_FULL=1``): 120,000 records.
"""

from __future__ import annotations

import os
import time

import pytest

from harness import (EnvService, committed_by_partition, committed_total, duplicates_by_key, events_for, kill9,
                     part_messages, prediction_values, report_line, simulated_records, wait_for_event, wait_until,
                     write_config)
from stream_ct.config import ConsumerConfig
import orjson

from stream_ct.kafka_io import RETRAIN_TOPIC, ensure_topics, make_producer
from stream_ct.retrain_worker import retrain_request
from stream_ct.record import part_key
from stream_ct.replay import replay

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FULL = bool(os.environ.get("STREAM_CT_FULL"))
RECORDS = 120_000 if FULL else 24_000


def test_three_instances_survive_a_kill_and_a_join_and_converge_on_the_new_champion(tmp_path, kafka_bootstrap, topic):
    started = time.monotonic()
    records = simulated_records(RECORDS, seed=41)
    keys = {part_key(r) for r in records}
    ensure_topics({topic: {"partitions": 6}}, kafka_bootstrap)
    # min_improvement -1: the manual retrain's candidate is promoted whatever its metric
    config_path = write_config(tmp_path, topic, reference_size=5000, window_records=4000, min_improvement=-1.0)
    config = ConsumerConfig.load(config_path)
    group = config.consumer.group_id

    def instance(name: str) -> EnvService:
        return EnvService(["serve", str(config_path), "--instance", name], tmp_path / f"serve-{name}.log",
                          tmp_path)

    worker = EnvService(["retrain-worker"], tmp_path / "worker.log", tmp_path)
    # a alone first: the bootstrap champion is requested per instance once it has seen
    # reference_size records itself, so three instances from the start would each need 5,000
    serves = {"a": instance("a")}
    try:
        third = RECORDS // 3
        replay(part_messages(records[:third]), topic, kafka_bootstrap)
        wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "deploy" and e["version"] == 1, 240,
                       [worker, *serves.values()])
        serves.update(b=instance("b"), c=instance("c"))
        time.sleep(8)  # b and c join the group and take partitions
        wait_until(lambda: committed_total(group, topic, kafka_bootstrap) >= third // 2, 120, "half the first third",
                   list(serves.values()))
        kill9(serves.pop("c"))
        serves["d"] = instance("d")
        replay(part_messages(records[third:2 * third]), topic, kafka_bootstrap)
        wait_until(lambda: committed_total(group, topic, kafka_bootstrap) == 2 * third, 240,
                   "two thirds committed", list(serves.values()))
        live = sorted(serves)
        wait_until(lambda: {e["source"] for e in events_for(topic, kafka_bootstrap)
                            if e["type"] == "deploy" and e["version"] == 1} >= {f"serve{n}" for n in live}, 60,
                   "every live instance on v1", list(serves.values()))
        # a direct request: `stream-ct retrain` asks every instance, and each would request one
        producer = make_producer(kafka_bootstrap)
        request = retrain_request(config, "manual: scale-out test", int(records[third]["ts"] * 1000),
                                  committed_by_partition(group, topic, kafka_bootstrap))
        producer.send(RETRAIN_TOPIC, key=topic.encode(), value=orjson.dumps(request))
        producer.flush()
        producer.close()
        decision = wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "retrain_decision"
                                  and e.get("request_id") == request["request_id"], 240, [worker])
        assert decision["decision"] == "promoted", decision
        new = decision["version"]
        wait_until(lambda: {e["source"] for e in events_for(topic, kafka_bootstrap)
                            if e["type"] == "deploy" and e["version"] == new} >= {f"serve{n}" for n in live}, 240,
                   "every live instance to deploy the manual retrain's version", [worker, *serves.values()])
        replay(part_messages(records[2 * third:]), topic, kafka_bootstrap)
        wait_until(lambda: committed_total(group, topic, kafka_bootstrap) == RECORDS, 240, "every record committed",
                   list(serves.values()))
    finally:
        for s in serves.values():
            s.stop()
        worker.stop()
    for name, s in serves.items():
        assert s.proc.returncode == 0, s.output()

    events = events_for(topic, kafka_bootstrap)
    deploys_new = sorted(e["source"] for e in events if e["type"] == "deploy" and e["version"] == new)
    assert deploys_new == [f"serve{n}" for n in live]
    predictions = prediction_values(config.predictions_topic, kafka_bootstrap)
    predicted = {p["key"] for p in predictions}
    missing = keys - predicted
    assert not missing, f"{len(missing)} records lost, e.g. {sorted(missing)[:5]}"
    duplicates = duplicates_by_key(predictions)
    extra = sum(len(c) - 1 for c in duplicates.values())
    # the last third was replayed after every live instance deployed v2: all of it is v2's
    tail = {part_key(r) for r in records[2 * third:]}
    tail_versions = {p["version"] for p in predictions if p["key"] in tail}
    assert tail_versions == {new}, tail_versions
    # part keys spread every wafer over the six partitions: the instances say so, with the remedy
    pieces = [e for e in events if e["type"] == "alert" and e.get("kind") == "drift_monitor"
              and "wafers arrive in pieces" in e.get("detail", "")]
    assert pieces and "key the input by lot/wafer" in pieces[0]["detail"], pieces
    # FINDING (reported, not asserted): on this no-drift stream an instance that sees 2 of 6
    # partitions fired a drift trigger (see the report); drift promotions are counted here.
    drift_requests = [e for e in events if e["type"] == "retrain_requested" and e["reason"] == "drift"]
    report_line("scale-out (3 instances, 6 partitions)",
                faults="instance c SIGKILLed mid-stream, instance d added, manual retrain -> v2 on a, b, d",
                records_in=RECORDS, records_lost=len(missing), duplicates=extra, converged_on=new,
                drift_requests=[(e["source"], e["position"]) for e in drift_requests],
                wafer_pieces_alerts=sorted({e["source"] for e in pieces}),
                seconds=round(time.monotonic() - started, 1))
