"""Unit tests for stream_ct.adaptive: the consumer definition's [features] patterns select the
tests counted in the flow, and K must be 1 or more (in the library and on the command line)."""

from __future__ import annotations

import orjson
import pytest

from stream_ct.adaptive import adaptive_table
from stream_ct.cli import main
from stream_ct.recording import Message, write_recording


def flow_records(n=400):
    """Flow a, b, c: only the first test, ``0:KILLER``, decides pass/fail."""
    return [{"lot_id": "L1", "wafer_id": "W1", "part_id": str(i), "ts": 1_700_000_000 + i,
             "tests": {"0:KILLER": float(i % 2), "1:VDD": float(i % 7), "2:IDD": float(i % 5)},
             "passed": bool(i % 2)} for i in range(n)]


def test_the_feature_patterns_select_the_tests_of_the_flow():
    rows = adaptive_table(flow_records(), "classification", "passed", ks=[1, 3], exclude=["0:*"])
    assert [(r["k"], r["last_test"]) for r in rows] == [(1, "1:VDD"), (2, "2:IDD")]
    assert rows[-1]["auc"] < 0.7  # the excluded test was not learned from
    rows = adaptive_table(flow_records(), "classification", "passed", ks=[1], include=["2:*", "0:KILLER"])
    assert [(r["k"], r["last_test"]) for r in rows] == [(1, "0:KILLER")]


def test_patterns_that_match_no_test_say_so():
    with pytest.raises(ValueError, match=r"no test of the 400 labeled records matches the \[features\] patterns"):
        adaptive_table(flow_records(), "classification", "passed", ks=[1], include=["9:*"])


def test_records_without_the_target_say_so_not_the_patterns():
    # lot2.stdf.gz records no test time: it said "no test of the 0 labeled records matches the [features] patterns"
    with pytest.raises(ValueError, match=r"^no record has test_time_ms: the adaptive-test view needs records"):
        adaptive_table(flow_records(), "regression", "test_time_ms", ks=[1])


@pytest.mark.parametrize("k", [0, -2])
def test_k_below_one_is_refused(k):
    with pytest.raises(ValueError, match=rf"K is a number of tests, 1 or more \(got {k}\)"):
        adaptive_table(flow_records(), "classification", "passed", ks=[k, 2])


@pytest.fixture
def definition_and_recording(tmp_path):
    definition = tmp_path / "yield.toml"
    definition.write_text('[consumer]\nname = "yield"\ninput_topic = "parts"\n\n'
                          '[features]\nexclude = ["0:KILLER"]\n\n[model]\nestimator = "logistic_regression"\n')
    recording = tmp_path / "parts.jsonl"
    write_recording(str(recording), [Message(None, orjson.dumps(r), r["ts"] * 1000) for r in flow_records()])
    return str(definition), str(recording)


def test_the_command_applies_the_definitions_exclude(definition_and_recording, capsys):
    assert main(["adaptive", *definition_and_recording, "--k", "1", "--json"]) == 0
    rows = orjson.loads(capsys.readouterr().out)
    assert [(r["k"], r["last_test"]) for r in rows] == [(1, "1:VDD"), (2, "2:IDD")]


@pytest.mark.parametrize("k", ["0", "5,0", "-1", "five"])
def test_the_command_refuses_a_k_that_is_not_a_positive_number_of_tests(definition_and_recording, capsys, k):
    with pytest.raises(SystemExit) as exc:
        main(["adaptive", *definition_and_recording, "--k", k])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --k: {k!r}: " in err
    assert ("1 or more" if k != "five" else "whole numbers of tests") in err


def test_a_flow_of_more_than_10000_parts_with_a_bin_seen_once_is_tabled():
    """The adaptive view fitted scikit-learn's gradient boosting itself: past 10,000 rows its
    early stopping splits off a stratified tenth, and one part in a rare soft bin raised
    ValueError ("The least populated classes in y have only 1 member")."""
    records = [dict(r, soft_bin=1 + int(r["tests"]["0:KILLER"])) for r in flow_records(15_000)]
    records[7]["soft_bin"] = 57
    rows = adaptive_table(records, "multiclass", "soft_bin", ks=[1])
    assert rows[0]["train_rows"] > 10_000 and rows[0]["accuracy"] > 0.99
