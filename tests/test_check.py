"""``stream-ct check``: the shipped consumer definitions pass; broken ones fail with one line each."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from stream_ct.check import check, register

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(str(p) for p in (REPO / "consumers").glob("*.toml"))


def run(paths: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return check(paths, out, err), out.getvalue(), err.getvalue()


def test_shipped_definitions_are_valid_and_summarized():
    assert SHIPPED
    code, out, err = run(SHIPPED)
    assert code == 0 and err == ""
    text = " ".join(out.split())
    for fact in ('reads topic "parts" as consumer group "stream-ct-yield"', "classification", '"passed"', "ARL0 100,000", "window 2,000", "stride 2,000",
                 'Registry "registry"', "parts.predictions", "parts.dlq", 'include "*"'):
        assert fact in text, fact
    assert out.rstrip().endswith(f"{len(SHIPPED)} valid, 0 invalid")


def test_a_folder_is_expanded_and_files_are_checked_once():
    code, out, _ = run([str(REPO / "consumers"), *SHIPPED])
    assert code == 0 and out.count("reads topic") == len(SHIPPED)


BROKEN = {
    "syntax.toml": ("[consumer\nname = 'x'\n", "not valid TOML"),
    "missing.toml": ("[model]\ntask = 'classification'\n", "missing section [consumer]"),
    "unknown_key.toml": ("[consumer]\nname = 'x'\ninput_topic = 'p'\ncolour = 'red'\n", "unknown key [consumer] colour"),
    "task.toml": ("[consumer]\nname = 'x'\ninput_topic = 'p'\n[model]\ntask = 'ranking'\n", "[model] task = 'ranking'"),
    "stride.toml": ("[consumer]\nname = 'x'\ninput_topic = 'p'\n[drift]\nwindow = 100\nstride = 500\n",
                    "stride (500) exceeds window (100)"),
}


def test_broken_definitions_give_one_error_line_each(tmp_path):
    paths = []
    for name, (text, _) in BROKEN.items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    code, out, err = run(SHIPPED + paths)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == len(BROKEN) and all(line.startswith("error: ") for line in lines)
    for line, (name, (_, expected)) in zip(lines, BROKEN.items()):
        assert name in line and expected in line, line
    assert f"{len(SHIPPED)} valid, {len(BROKEN)} invalid" in out


def test_missing_file_directory_without_toml_and_duplicates(tmp_path):
    code, _, err = run([str(tmp_path / "nope.toml")])
    assert code == 2 and "no such consumer definition" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run([str(tmp_path / "empty")])
    assert code == 2 and err.startswith("error: no consumer definitions")
    for name in ("a.toml", "b.toml"):
        (tmp_path / name).write_text("[consumer]\nname = 'same'\ninput_topic = 'p'\n")
    code, _, err = run([str(tmp_path / "a.toml"), str(tmp_path / "b.toml")])
    assert code == 0 and 'warning: consumer group "stream-ct-same"' in err


def test_command_line(capsys):
    parser = argparse.ArgumentParser(prog="stream-ct")
    register(parser.add_subparsers())
    args = parser.parse_args(["check", *SHIPPED])
    assert args.func(args) == 0
    assert "valid" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["check"])


def test_an_outlier_definition_is_not_described_as_learning_a_target():
    """It learns without labels; the default target ``passed`` is not its."""
    _, out, _ = run([str(REPO / "consumers" / "outliers.toml")])
    text = " ".join(out.split())
    assert 'Model "outliers": anomaly detection (no labels) with half_space_trees' in text and "passed" not in text


def test_a_fairness_field_no_record_has_is_warned_about(tmp_path):
    """A typo in fairness_by made the gate pass on every candidate ("nothing to compare") with
    no word anywhere that the field does not exist."""
    (tmp_path / "y.toml").write_text("[consumer]\nname = 'y'\ninput_topic = 'p'\n[gates]\nfairness_by = 'testr'\n")
    code, _, err = run([str(tmp_path / "y.toml")])
    assert code == 0 and err.startswith(f'warning: {tmp_path / "y.toml"}: [gates] fairness_by = "testr" is none '
                                        "of the part record's fields (lot_id, wafer_id, part_id, x, y, head, site,")


def test_a_target_no_record_has_is_warned_about_unless_a_labels_topic_brings_it(tmp_path):
    """``target = "pased"`` passed check; serve then learned nothing and every retrain, the
    bootstrap included, was skipped for want of labeled rows."""
    base = "[consumer]\nname = 'y'\ninput_topic = 'p'\n[model]\ntarget = 'pased'\n"
    (tmp_path / "y.toml").write_text(base)
    code, _, err = run([str(tmp_path / "y.toml")])
    assert code == 0 and err.startswith(f'warning: {tmp_path / "y.toml"}: [model] target = "pased" is none of the '
                                        "part record's fields (lot_id, wafer_id, part_id, x, y, head, site,")
    assert err.rstrip().endswith("no part is labeled, so the online model learns nothing and every retrain is "
                                 "skipped (quality:rows)")
    (tmp_path / "y.toml").write_text(base + "[labels]\ntopic = 'final-test'\n")
    assert run([str(tmp_path / "y.toml")])[2] == ""
