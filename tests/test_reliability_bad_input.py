"""Issue 7, scenario 3: 1,000 malformed records of many kinds mixed into a valid stream.

Every invalid record lands in ``<topic>.dlq`` with its original bytes and a ``dlq.reason``
header; every valid record (including the odd-but-valid kinds: 9.9e37 sentinels, NaN results
sent as ``null``, unknown tests, a part sent twice) gets a prediction; serve keeps running and
exits cleanly. Seeded (seed 13); about 30 s. There is no larger full-size variant.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import orjson
import pytest

from harness import (EnvService, events_for, part_messages, prediction_values, report_line, simulated_records,
                     write_config)
from stream_ct.config import ConsumerConfig
from stream_ct.decode import MAX_RECORD_BYTES
from stream_ct.kafka_io import ensure_topics
from stream_ct.record import part_key
from stream_ct.recording import Message
from stream_ct.replay import record, replay

pytestmark = pytest.mark.integration

VALID = 6000
INVALID = 1000


def _mutations(base: dict) -> list[tuple[str, bytes | None, str]]:
    """(kind, value, expected start of the dlq.reason) for each way a record can be invalid."""
    def dump(**changes):
        rec = {k: v for k, v in base.items() if k not in changes or changes[k] is not _DROP}
        rec.update({k: v for k, v in changes.items() if v is not _DROP})
        return orjson.dumps(rec)

    body = orjson.dumps(base).decode()
    huge_tests = {f"{i}:T{i}": 1.0 for i in range(70_000)}  # about 1.1 MB
    return [
        ("not JSON: truncated", body[: len(body) // 2].encode(), "not JSON"),
        ("not JSON: garbage bytes", b"\xff\xfe\x00garbage", "not JSON"),
        ("not JSON: empty value", b"", "not JSON"),
        ("not JSON: trailing content", (body + "{").encode(), "not JSON"),
        ("not JSON: NaN literal", body.replace('"tests":{', '"tests":{"nan_test":NaN,', 1).encode(), "not JSON"),
        ("not JSON: Infinity literal", body.replace('"tests":{', '"tests":{"inf_test":Infinity,', 1).encode(),
         "not JSON"),
        ("not JSON: 1e400 overflows to inf", body.replace('"tests":{', '"tests":{"big":1e400,', 1).encode(),
         "not JSON"),
        ("tombstone (null value)", None, "empty value"),
        ("JSON array", b"[1, 2, 3]", "record is a JSON list"),
        ("JSON string", b'"LOT1/W1/1"', "record is a JSON str"),
        ("JSON number", b"42", "record is a JSON int"),
        ("JSON null", b"null", "record is a JSON NoneType"),
        ("missing lot_id", dump(lot_id=_DROP), "missing field: lot_id"),
        ("missing wafer_id", dump(wafer_id=_DROP), "missing field: wafer_id"),
        ("missing part_id", dump(part_id=_DROP), "missing field: part_id"),
        ("missing ts", dump(ts=_DROP), "field ts must be"),
        ("missing tests", dump(tests=_DROP), "field tests must be"),
        ("empty tests", dump(tests={}), "field tests must be"),
        ("lot_id is a list", dump(lot_id=["L"]), "field lot_id must be"),
        ("part_id is a bool", dump(part_id=True), "field part_id must be"),
        ("part_id is a float", dump(part_id=1.5), "field part_id must be"),
        ("ts is a string", dump(ts="2024-01-01"), "field ts must be"),
        ("ts is a bool", dump(ts=True), "field ts must be"),
        ("tests is a list", dump(tests=[1.0, 2.0]), "field tests must be"),
        ("test result is a string", dump(tests={**base["tests"], "1000:VDD_LEAK_0": "1.2"}), "test '1000:VDD_LEAK_0'"),
        ("test result is a bool", dump(tests={**base["tests"], "1001:IDDQ_1": True}), "test '1001:IDDQ_1'"),
        ("test result is an object", dump(tests={**base["tests"], "1001:IDDQ_1": {"v": 1}}), "test '1001:IDDQ_1'"),
        ("x is a float", dump(x=1.5), "field x must be an integer"),
        ("site is a string", dump(site="0"), "field site must be an integer"),
        ("hard_bin is a bool", dump(hard_bin=False), "field hard_bin must be an integer"),
        ("passed is a string", dump(passed="yes"), "field passed must be true or false"),
        ("limits is a list", dump(limits=[1, 2]), "field limits must be an object"),
        ("oversized (> 1,000,000 bytes)", dump(tests=huge_tests), "oversized"),
    ]


_DROP = object()


def test_bad_records_all_reach_the_dlq_with_a_reason_and_every_valid_record_is_served(
        tmp_path, kafka_bootstrap, topic):
    started = time.monotonic()
    rng = np.random.default_rng(13)
    records = simulated_records(VALID, seed=13)
    # Odd but valid: the product keeps these (sentinels become missing values, unknown tests are
    # ignored by the model, a part sent twice is served twice).
    odd = Counter()
    for i in rng.choice(VALID, 300, replace=False):
        r = records[i]
        kind = ("sentinel 9.9e37", "NaN sent as null", "unknown test", "missing x/y -32768")[i % 4]
        test = next(iter(r["tests"]))
        if kind == "sentinel 9.9e37":
            r["tests"][test] = 9.9e37
        elif kind == "NaN sent as null":
            r["tests"][test] = None
        elif kind == "unknown test":
            r["tests"]["9999:NOT_IN_ANY_PROGRAM"] = float(rng.normal())
        else:
            r["x"] = r["y"] = -32768
        odd[kind] += 1
    good = part_messages(records)
    duplicates = [good[i] for i in rng.choice(VALID, 50, replace=False)]  # a part re-sent later
    kinds = _mutations(records[0])
    bad = []
    for j in range(INVALID):
        kind, value, reason = kinds[j % len(kinds)]
        if kind.startswith("oversized") and j >= len(kinds) * 3:
            kind, value, reason = kinds[0]  # three oversized records are enough
        bad.append((Message(f"bad-{j}".encode(), value, int(records[0]["ts"] * 1000), [("n", str(j).encode())],
                            None), kind, reason))
    assert len(bad) == INVALID and all(v is None or len(v) > MAX_RECORD_BYTES
                                       for m, k, _ in bad if k.startswith("oversized") for v in [m.value])
    stream = good + duplicates
    for position, item in sorted(zip(rng.integers(0, len(stream), INVALID).tolist(), bad), key=lambda p: -p[0]):
        stream.insert(position, item[0])
    assert len(stream) == VALID + len(duplicates) + INVALID

    ensure_topics({topic: {"partitions": 1}}, kafka_bootstrap)
    # no champion and no retrain in this test: the reference size is beyond the stream
    config_path = write_config(tmp_path, topic, reference_size=100_000, window_records=1000)
    config = ConsumerConfig.load(config_path)
    serve = EnvService(["serve", str(config_path), "--exit-when-idle", "5"], tmp_path / "serve.log", tmp_path)
    try:
        replay(stream, topic, kafka_bootstrap)
        assert serve.wait(240) == 0, serve.output()
    finally:
        serve.stop()

    dead = list(record(config.dlq_topic, kafka_bootstrap))
    assert len(dead) == INVALID
    expected = {m.headers[0][1]: (m, kind, reason) for m, kind, reason in bad}
    seen_kinds = Counter()
    for m in dead:
        headers = dict(m.headers)
        original, kind, reason = expected[headers["n"]]
        assert m.key == original.key
        if kind.startswith("oversized"):  # over Kafka's default topic limit: where the original is
            assert m.value == b"" and headers["dlq.value_omitted"] == str(len(original.value)).encode()
        else:
            assert m.value == (original.value or b""), kind
        assert headers["dlq.reason"].decode().startswith(reason), (kind, headers["dlq.reason"])
        assert headers["dlq.topic"] == topic.encode()
        assert int(headers["dlq.offset"]) >= 0 and headers["dlq.partition"] == b"0"
        seen_kinds[kind] += 1
    assert len(seen_kinds) == len(kinds)
    assert sum(seen_kinds.values()) == INVALID

    predictions = prediction_values(config.predictions_topic, kafka_bootstrap)
    assert len(predictions) == VALID + len(duplicates)
    assert Counter(p["key"] for p in predictions) == Counter(m.key.decode() for m in good + duplicates)
    assert {part_key(r) for r in records} == {p["key"] for p in predictions}
    stopped = [e for e in events_for(topic, kafka_bootstrap) if e["type"] == "serve_stopped"]
    assert len(stopped) == 1
    assert stopped[0]["counts"]["dlq"] == INVALID
    assert stopped[0]["records"] == VALID + len(duplicates)
    report_line("bad input", faults=f"{INVALID} malformed records of {len(kinds)} kinds + {sum(odd.values())} "
                f"odd-but-valid ({dict(odd)}) + {len(duplicates)} re-sent parts",
                records_in=len(stream), records_lost=0, dlq=len(dead), duplicates=len(duplicates),
                seconds=round(time.monotonic() - started, 1))
