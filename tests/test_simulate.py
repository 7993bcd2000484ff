import argparse

import numpy as np
import orjson
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from stream_ct.record import part_key, validate_record
from stream_ct.recording import read_recording
from stream_ct.simulate import SCENARIOS, SimBatch, Simulator, register, simulate_to_recording

SMALL = {"n_tests": 12, "parts_per_wafer": 100, "wafers_per_lot": 5}
ARRAYS = ("index", "X", "lot_id", "wafer_id", "part_id", "wafer_index", "x", "y", "head", "site",
          "tester", "fab", "ts", "passed", "hard_bin", "soft_bin", "test_time_ms")


def assert_same(a: SimBatch, b: SimBatch, rows=slice(None)) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name)[rows], getattr(b, name)[rows], err_msg=name)


def paired(scenario: str, n: int = 20_000, onset: int = 10_000, **params) -> tuple[Simulator, SimBatch, SimBatch]:
    """The scenario's batch and the no-drift batch from the same seed (identical before onset)."""
    params = {**SMALL, **params}
    sim = Simulator(scenario=scenario, seed=5, onset=onset, **params)
    return sim, sim.generate(n), Simulator(scenario="none", seed=5, **params).generate(n)


def test_same_seed_same_stream_whatever_the_batch_sizes():
    whole = Simulator(scenario="mean-shift", seed=3, onset=700, **SMALL).generate(2_000)
    sim = Simulator(scenario="mean-shift", seed=3, onset=700, **SMALL)
    pieces = [sim.generate(k) for k in (1, 0, 698, 801, 500)]
    assert [int(p.index[0]) for p in pieces if len(p)] == [0, 1, 699, 1500]
    for name in ARRAYS:
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in pieces]), getattr(whole, name))
    other = Simulator(scenario="mean-shift", seed=4, onset=700, **SMALL).generate(2_000)
    assert not np.array_equal(other.X, whole.X)


def test_a_stream_seed_draws_other_parts_of_the_same_process():
    process = Simulator(seed=3, **SMALL)
    trials = [Simulator(scenario="mean-shift", seed=3, onset=700, stream_seed=s, **SMALL) for s in (1, 2, 1)]
    for sim in trials:  # the process: test means and sigmas, offsets, die pattern, limits
        for name in ("mu", "sigma", "stationary_sd", "_fab_off", "_tester_off", "_radial", "_lo", "_hi"):
            np.testing.assert_array_equal(getattr(sim, name), getattr(process, name), err_msg=name)
    batches = [sim.generate(2_000) for sim in trials]
    assert not np.array_equal(batches[0].X, batches[1].X)
    assert not np.array_equal(batches[0].X, process.generate(2_000).X)
    assert_same(batches[0], batches[2])  # a stream seed repeats its stream
    assert trials[0].ground_truth["stream_seed"] == 1


@pytest.mark.parametrize("scenario", SCENARIOS[1:])
def test_scenarios_agree_with_no_drift_before_the_onset(scenario):
    _, drifted, stationary = paired(scenario, n=3_000, onset=1_234)
    assert_same(drifted, stationary, slice(0, 1_234))


def test_mean_shift_moves_the_drift_test_by_shift_sigma_from_the_onset():
    sim, drifted, stationary = paired("mean-shift", shift_sigma=1.5)
    t, sd = sim.drift_test, sim.stationary_sd[sim.drift_test]
    diff = drifted.X - stationary.X
    assert np.all(diff[:10_000] == 0)
    np.testing.assert_allclose(diff[10_000:, t], 1.5 * sd, atol=2 * sim.resolution[t])
    assert np.all(np.delete(diff, t, axis=1) == 0)
    # The plain before/after difference, up to lot and wafer variation.
    observed = (drifted.X[10_000:, t].mean() - drifted.X[:10_000, t].mean()) / sd
    assert 1.0 < observed < 2.0
    assert sim.ground_truth["onsets"] == [{"record": 10_000, "kind": "mean-shift", "tests": [sim.feature_names[t]],
                                           "stratum": None, "magnitude_sigma": 1.5}]


def test_tester_offset_touches_only_that_testers_rows_after_the_onset():
    sim, drifted, stationary = paired("tester-offset", drift_tester="T3")
    t = sim.drift_test
    moved = np.any(drifted.X != stationary.X, axis=1)
    expected = (drifted.tester == "T3") & (drifted.index >= 10_000)
    assert expected.sum() > 500
    np.testing.assert_array_equal(moved, expected)
    np.testing.assert_allclose((drifted.X - stationary.X)[expected, t], sim.stationary_sd[t],
                               atol=2 * sim.resolution[t])
    assert sim.ground_truth["onsets"][0]["stratum"] == {"tester": "T3"}


def within_wafer_sd(batch: SimBatch, column: int, rows: np.ndarray) -> float:
    values = batch.X[rows, column]
    _, wafers = np.unique(batch.wafer_index[rows], return_inverse=True)
    means = np.bincount(wafers, values) / np.bincount(wafers)
    return float(np.std(values - means[wafers]))


def test_variance_change_multiplies_the_within_wafer_sd():
    sim, drifted, stationary = paired("variance-change", variance_factor=2.0)
    t = sim.drift_test
    noise = (drifted.X - stationary.X)[:, t]
    assert np.all(noise[:10_000] == 0)
    # After the onset the extra within-wafer noise is (factor - 1) part sigmas.
    assert np.std(noise[10_000:]) == pytest.approx(sim.sigma[t], rel=0.05)
    before = within_wafer_sd(drifted, t, drifted.index < 10_000)
    after = within_wafer_sd(drifted, t, drifted.index >= 10_000)
    assert 1.7 < after / before < 2.2


def test_concept_changes_outcomes_not_inputs():
    sim, drifted, stationary = paired("concept")
    np.testing.assert_array_equal(drifted.X, stationary.X)
    changed = drifted.passed != stationary.passed
    assert not changed[:10_000].any() and changed[10_000:].mean() > 0.05
    assert sim.ground_truth["onsets"][0]["kind"] == "concept"


def test_process_change_makes_a_model_trained_before_the_onset_worse_than_a_retrained_one():
    sim = Simulator(scenario="process-change", seed=11, n_tests=20, onset=10_000)
    batch = sim.generate(20_000)
    X, y = batch.X, batch.passed
    old = HistGradientBoostingClassifier(random_state=0).fit(X[5_000:10_000], y[5_000:10_000])
    new = HistGradientBoostingClassifier(random_state=0).fit(X[10_000:15_000], y[10_000:15_000])
    auc_old = roc_auc_score(y[15_000:], old.predict_proba(X[15_000:])[:, 1])
    auc_new = roc_auc_score(y[15_000:], new.predict_proba(X[15_000:])[:, 1])
    assert auc_new > 0.85 and auc_new - auc_old > 0.1
    assert [o["kind"] for o in sim.ground_truth["onsets"]] == ["mean-shift", "concept"]


def test_yield_bins_and_test_time_are_plausible():
    yields = []
    for seed in range(4):
        batch = Simulator(seed=seed, n_tests=20).generate(40_000)
        yields.append(batch.passed.mean())
        assert set(batch.hard_bin[batch.passed]) == {1}
        assert set(np.unique(batch.hard_bin[~batch.passed])) <= {2, 3, 4, 5}
        np.testing.assert_array_equal(batch.soft_bin // 10, batch.hard_bin)
        assert 750 < batch.test_time_ms.mean() < 900 and batch.test_time_ms.std() > 20
        assert np.all(np.diff(batch.ts) > 0)
    assert all(0.83 < y < 0.95 for y in yields)
    assert 0.85 < np.mean(yields) < 0.92


def test_limits_ride_only_on_each_wafers_first_record():
    sim = Simulator(**SMALL)
    sim.generate(150)  # start mid-wafer
    records = list(sim.generate(1_000).records())
    with_limits = [i for i, rec in enumerate(records) if "limits" in rec]
    assert with_limits == [50, 150, 250, 350, 450, 550, 650, 750, 850, 950]
    limits = records[50]["limits"]
    assert set(limits) == set(sim.feature_names)
    assert all(lim["lo"] < sim.stationary_mean[j] < lim["hi"] for j, lim in enumerate(limits.values()))
    assert limits[sim.feature_names[2]]["units"] == "mV"


def test_wafer_to_wafer_variation_is_visible():
    batch = Simulator(n_tests=10).generate(40_000)
    counts = np.bincount(batch.wafer_index)
    for j in range(10):
        means = np.bincount(batch.wafer_index, batch.X[:, j]) / counts
        within_var = within_wafer_sd(batch, j, np.ones(len(batch), dtype=bool)) ** 2
        assert np.var(means) > 10 * within_var / counts[0]


def test_quantized_tests_have_ties():
    sim = Simulator(n_tests=10)
    batch = sim.generate(5_000)
    assert len(np.unique(batch.X[:, 3])) < 500
    assert len(np.unique(batch.X[:, 0])) > 4_500


def test_records_validate_and_are_json_safe():
    sim = Simulator(scenario="tester-offset", seed=2, onset=1_000, n_tests=16, parts_per_wafer=300)
    records = list(sim.generate(3_000).records())
    assert len(records) == 3_000
    for rec in records:
        assert validate_record(rec) is None
        assert orjson.loads(orjson.dumps(rec)) == rec
    first = records[0]
    assert first["tests"].keys() == set(sim.feature_names)
    assert sim.feature_names[1] == "1001:IDDQ_1"
    assert (first["head"], first["test_program"], first["test_program_rev"]) == (1, "YLD_PROG", "1.0")
    assert {rec["site"] for rec in records} == {0, 1, 2, 3}
    assert {rec["tester"] for rec in records} <= {"T1", "T2", "T3", "T4"}
    assert all(type(rec["x"]) is int and type(rec["passed"]) is bool for rec in records)


def test_recording_round_trip(tmp_path):
    out = tmp_path / "sim.jsonl"
    params = {"n_tests": 10, "parts_per_wafer": 200}
    assert simulate_to_recording("mean-shift", 2_500, 9, str(out), **params) == 2_500
    expected = list(Simulator(scenario="mean-shift", seed=9, onset=1_250, **params).generate(2_500).records())
    messages = list(read_recording(str(out)))
    assert [orjson.loads(m.value) for m in messages] == expected
    assert [m.key.decode() for m in messages] == [part_key(rec) for rec in expected]
    assert [m.timestamp for m in messages] == [round(rec["ts"] * 1000) for rec in expected]
    assert messages[0].headers == [("source", b"simulate"), ("scenario", b"mean-shift")]
    assert messages[0].partition is None
    truth = orjson.loads((tmp_path / "sim.jsonl.truth.json").read_bytes())
    assert truth["onsets"][0]["record"] == 1_250 and truth["seed"] == 9


def test_bad_parameters_raise_one_clear_error():
    with pytest.raises(ValueError, match="onset"):
        Simulator(scenario="mean-shift")
    with pytest.raises(ValueError, match="drift_tester"):
        Simulator(drift_tester="T9")
    with pytest.raises(ValueError, match="scenario"):
        Simulator(scenario="chaos")


@pytest.mark.parametrize("onset", [1_000, 5_000])
def test_an_onset_past_the_records_written_is_refused(tmp_path, onset):
    """The truth file and the summary line named a drift the recording did not hold."""
    out = tmp_path / "sim.jsonl"
    with pytest.raises(ValueError, match=f"onset {onset} is not before the end of the 1000 records"):
        simulate_to_recording("mean-shift", 1_000, 0, str(out), onset=onset, n_tests=10)
    assert not out.exists() and not (tmp_path / "sim.jsonl.truth.json").exists()
    assert simulate_to_recording("none", 1_000, 0, str(out), onset=onset, n_tests=10) == 1_000


def cli(argv):
    parser = argparse.ArgumentParser(prog="stream-ct")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_a_recording_and_its_truth(tmp_path, capsys):
    out = tmp_path / "sim.jsonl.gz"
    code = cli(["simulate", "--scenario", "variance-change", "--records", "1000", "--seed", "4", "--out", str(out),
                "--tests", "9", "--onset", "300", "--parts-per-wafer", "100"])
    assert code == 0
    assert sum(1 for _ in read_recording(str(out))) == 1_000
    truth = orjson.loads((tmp_path / "sim.jsonl.gz.truth.json").read_bytes())
    assert truth["onsets"][0]["record"] == 300 and truth["n_tests"] == 9
    line = capsys.readouterr().out.strip()
    assert "1,000 records" in line and str(out) in line and "record 300" in line


def test_cli_reports_bad_parameters_in_one_line(tmp_path, capsys):
    assert cli(["simulate", "--scenario", "tester-offset", "--drift-tester", "T7", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "T7" in err
