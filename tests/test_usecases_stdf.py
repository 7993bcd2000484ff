"""The use cases on real tester data: lot2.stdf.gz converted, replayed, served by each definition."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from conftest import SHARED
from harness import Service, events_for, prediction_values
from stream_ct.adaptive import adaptive_table
from stream_ct.config import ConsumerConfig
from stream_ct.recording import read_recording
from stream_ct.replay import replay
from stream_ct.stdf.convert import convert

LOT2 = SHARED / "data" / "stdf" / "lot2.stdf.gz"
CONSUMERS = Path(__file__).resolve().parents[1] / "consumers"
#: lot2 has 784 parts with results: small windows, so that a champion is trained on it.
SMALL = ["drift.reference_size=500", "retrain.min_rows=300", "retrain.min_minority=5",
         "gates.min_group_rows=50", "gates.max_latency_p99_ms=2000"]

pytestmark = pytest.mark.skipif(not LOT2.exists(), reason=f"real STDF sample not found at {LOT2}")


def topics(topic: str, name: str) -> list[str]:
    """Overrides that give each use case its own name and output topics on this test's input."""
    return [f"consumer.input_topic={topic}", f"consumer.name={topic}-{name}",
            f"consumer.predictions_topic={topic}.{name}.predictions", f"consumer.dlq_topic={topic}.{name}.dlq"]


@pytest.fixture(scope="module")
def lot2_recording(tmp_path_factory):
    out = tmp_path_factory.mktemp("lot2") / "lot2.jsonl"
    convert([str(LOT2)], str(out), progress=False)
    return out


def test_adaptive_view_on_real_data(lot2_recording):
    records = [orjson.loads(m.value) for m in read_recording(str(lot2_recording))]
    rows = adaptive_table(records, "classification", "passed", ks=[5, 74])
    assert [r["k"] for r in rows] == [5, 74]
    assert rows[1]["auc"] > rows[0]["auc"] and rows[1]["auc"] > 0.95  # the full flow decides pass/fail


@pytest.mark.integration
def test_each_use_case_serves_every_real_part(tmp_path, kafka_bootstrap, topic, lot2_recording):
    messages = list(read_recording(str(lot2_recording)))
    replay(messages, topic, kafka_bootstrap)
    names = ["yield", "binning", "test-time", "outliers"]
    worker = Service(["retrain-worker"], tmp_path / "worker.log", tmp_path)
    serves = []
    for name in names:
        overrides = SMALL + [f"registry.path={tmp_path / 'registry'}"] + topics(topic, name)
        args = ["serve", str(CONSUMERS / f"{name}.toml"), "--exit-when-idle", "6"]
        for o in overrides:
            args += ["--set", o]
        serves.append(Service(args, tmp_path / f"{name}.log", tmp_path))
    try:
        for s in serves:
            assert s.wait(240) == 0, s.output()
    finally:
        for s in serves:
            s.stop()
        worker.stop()
    decisions, failures = {}, {}
    for name in names:
        config = ConsumerConfig.load(CONSUMERS / f"{name}.toml", topics(topic, name))
        predictions = prediction_values(config.predictions_topic, kafka_bootstrap)
        assert len(predictions) == len(messages), name
        events = events_for(f"{topic}-{name}", kafka_bootstrap)
        decisions[name] = [e for e in events if e["type"] == "retrain_decision"]
        failures[name] = [e["error"] for e in events if e["type"] == "retrain_failed"]
    assert not any(failures.values()), failures  # a retrain that raised says why here
    assert decisions["yield"] and decisions["yield"][0]["decision"] in ("promoted", "rejected")
    assert decisions["binning"] and decisions["binning"][0]["gates"]
    assert decisions["outliers"][0]["decision"] == "promoted", decisions["outliers"][0]["gates"]
    # lot2 records no test time: the test-time definition must skip, saying why.
    skipped = decisions["test-time"][0]
    assert skipped["decision"] == "skipped"
    assert any(g["name"] == "quality:rows" and not g["passed"] for g in skipped["gates"])
