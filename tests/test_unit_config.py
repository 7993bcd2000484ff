"""Unit tests for stream_ct.config: consumer definitions and their validation messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from stream_ct.config import ConfigError, ConsumerConfig, apply_override

REPO = Path(__file__).resolve().parents[1]
SRC = "<dict>"
SECTIONS = [f.name for f in dataclasses.fields(ConsumerConfig) if f.name != "source"]


def base(**sections):
    raw = {"consumer": {"name": "y", "input_topic": "parts"}}
    raw.update(sections)
    return raw


def error_of(raw) -> str:
    with pytest.raises(ConfigError) as exc:
        ConsumerConfig.from_dict(raw)
    return str(exc.value)


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_shipped_yield_toml_loads():
    path = REPO / "consumers" / "yield.toml"
    cfg = ConsumerConfig.load(path)
    assert cfg.source == str(path)
    assert cfg.consumer.name == "yield" and cfg.consumer.input_topic == "parts"
    assert cfg.consumer.group_id == "stream-ct-yield"
    assert cfg.consumer.poll_max_records == 2000
    assert cfg.features.include == ("*",) and cfg.features.exclude == ()
    assert cfg.model.task == "classification" and cfg.model.target == "passed"
    assert cfg.model.estimator == "hist_gradient_boosting" and cfg.model.name == "yield"
    assert cfg.drift.arl0 == 100000.0 and isinstance(cfg.drift.arl0, float)
    assert (cfg.drift.window, cfg.drift.stride, cfg.drift.reference_size) == (2000, 2000, 10000)
    assert cfg.retrain.cooldown_records == 10000
    assert cfg.retrain.timeout_s == 300.0 and isinstance(cfg.retrain.timeout_s, float)
    assert cfg.retrain.holdout_fraction == 0.25
    assert cfg.gates.min_metric == 0.70 and cfg.gates.min_improvement == 0.01
    assert cfg.registry.path == "registry"
    assert cfg.predictions_topic == "parts.predictions" and cfg.dlq_topic == "parts.dlq"


def test_defaults():
    cfg = ConsumerConfig.from_dict(base())
    assert cfg.source == SRC
    assert cfg.consumer.group_id == "stream-ct-y"
    assert cfg.model.name == "y"
    assert cfg.predictions_topic == "parts.predictions"
    assert cfg.dlq_topic == "parts.dlq"
    assert cfg.model.task == "classification" and cfg.model.estimator == "hist_gradient_boosting"
    assert cfg.features.include == ("*",)


def test_explicit_group_and_model_name_kept():
    cfg = ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "p", "group_id": "g"},
                                    "model": {"name": "m"}})
    assert cfg.consumer.group_id == "g" and cfg.model.name == "m"


def test_string_include_becomes_tuple_and_int_becomes_float():
    cfg = ConsumerConfig.from_dict(base(features={"include": "1:*", "exclude": ["9:*"]},
                                        drift={"arl0": 5000}, retrain={"timeout_s": 10}))
    assert cfg.features.include == ("1:*",) and cfg.features.exclude == ("9:*",)
    assert cfg.drift.arl0 == 5000.0 and isinstance(cfg.drift.arl0, float)
    assert isinstance(cfg.retrain.timeout_s, float)


def test_to_dict_from_dict_round_trip():
    cfg = ConsumerConfig.from_dict(base(model={"task": "regression", "target": "test_time_ms", "estimator": "ridge"},
                                        features={"include": ["1:*", "2:*"], "exclude": ["2:x"]},
                                        drift={"window": 500, "stride": 100}, gates={"min_metric": 0.5}))
    d = cfg.to_dict()
    assert "source" not in d
    assert list(d) == SECTIONS
    assert d["consumer"]["group_id"] == "stream-ct-y"
    again = ConsumerConfig.from_dict(d)
    assert again == cfg
    assert again.to_dict() == d


def test_shipped_config_round_trips():
    cfg = ConsumerConfig.load(REPO / "consumers" / "yield.toml")
    assert ConsumerConfig.from_dict(cfg.to_dict(), source=cfg.source) == cfg


def test_unknown_section():
    assert SECTIONS[:5] == ["consumer", "features", "model", "drift", "retrain"]
    assert {"gates", "registry"} <= set(SECTIONS)
    assert error_of(base(modle={})) == f"{SRC}: unknown section [modle]; known sections: {', '.join(SECTIONS)}"


def test_missing_consumer_section():
    assert error_of({"model": {}}) == f"{SRC}: missing section [consumer] with name and input_topic"


def test_unknown_key():
    assert error_of(base(drift={"windw": 10})) == \
        f"{SRC}: unknown key [drift] windw; known keys: enabled, arl0, window, stride, reference_size"


def test_missing_required_key():
    assert error_of({"consumer": {"name": "y"}}) == f"{SRC}: missing key [consumer] input_topic"


@pytest.mark.parametrize("key", ["name", "input_topic"])
@pytest.mark.parametrize("value", ["", 5])
def test_consumer_name_and_topic_non_empty_strings(key, value):
    raw = base()
    raw["consumer"][key] = value
    assert error_of(raw) == f"{SRC}: [consumer] {key} must be a non-empty string"


@pytest.mark.parametrize("section, key, value, typename", [
    ("drift", "window", "big", "an integer"),
    ("drift", "window", 10.5, "an integer"),
    ("drift", "arl0", "x", "a number"),
    ("drift", "arl0", True, "a number"),
    ("model", "task", 1, "a string"),
    ("consumer", "group_id", 3, "a string"),
    ("registry", "path", ["a"], "a string"),
])
def test_wrong_type(section, key, value, typename):
    raw = base()
    raw.setdefault(section, {})[key] = value
    assert error_of(raw) == f"{SRC}: [{section}] {key} = {value!r} must be {typename}"


@pytest.mark.parametrize("section, key", [("consumer", "poll_max_records"), ("drift", "window"),
                                          ("retrain", "min_rows")])
def test_bool_where_int_expected_is_refused(section, key):
    raw = base()
    raw.setdefault(section, {})[key] = True
    assert error_of(raw) == f"{SRC}: [{section}] {key} = True must be an integer"


@pytest.mark.parametrize("value", [[1], ["a", 2], 5, {"a": "b"}])
def test_pattern_list_of_strings(value):
    assert error_of(base(features={"include": value})) == f"{SRC}: [features] include must be a list of strings"


def test_section_must_be_table():
    assert error_of(base(drift=5)) == f"{SRC}: [drift] must be a table"


def test_bad_task():
    assert error_of(base(model={"task": "clustering"})) == \
        f"{SRC}: [model] task = 'clustering'; use one of classification, multiclass, regression, anomaly"


@pytest.mark.parametrize("task, estimator, choices", [
    ("classification", "ridge", "hist_gradient_boosting, logistic_regression, random_forest"),
    ("regression", "logistic_regression", "hist_gradient_boosting, ridge, random_forest"),
    ("classification", "xgboost", "hist_gradient_boosting, logistic_regression, random_forest"),
])
def test_estimator_must_fit_task(task, estimator, choices):
    assert error_of(base(model={"task": task, "estimator": estimator})) == \
        f"{SRC}: [model] estimator = {estimator!r} does not fit task {task!r}; use one of {choices}"


@pytest.mark.parametrize("section, key, value", [
    ("drift", "window", 0), ("drift", "window", -5), ("drift", "stride", 0), ("drift", "reference_size", 0),
    ("drift", "arl0", 0.0), ("consumer", "poll_max_records", 0), ("retrain", "window_records", -1),
    ("retrain", "min_rows", 0), ("retrain", "threads", 0),
])
def test_non_positive(section, key, value):
    raw = base()
    raw.setdefault(section, {})[key] = value
    assert error_of(raw) == f"{SRC}: [{section}] {key} = {value}; it must be positive"


@pytest.mark.parametrize("section, key, topic", [
    ("consumer", "input_topic", "lot2 parts"), ("consumer", "input_topic", "lot2/wafer3"),
    ("consumer", "dlq_topic", "parts:dlq"), ("labels", "topic", ".."), ("consumer", "predictions_topic", "p" * 250),
])
def test_topic_names_kafka_refuses(section, key, topic):
    """check passed them and serve then stopped with a traceback (InvalidTopicError from Kafka)."""
    raw = base()
    raw.setdefault(section, {})[key] = topic
    assert error_of(raw) == (f"{SRC}: [{section}] {key} = {topic!r} is not a Kafka topic name; use up to 249 "
                             "letters, digits, '.', '_' and '-'")


def test_derived_topic_names_are_checked_too():
    assert "[consumer] predictions_topic = " in error_of({"consumer": {"name": "y", "input_topic": "p" * 240}})


@pytest.mark.parametrize("sections, message", [
    ({"consumer": {"dlq_topic": "parts"}}, "[consumer] dlq_topic and [consumer] input_topic are both 'parts'"),
    ({"consumer": {"predictions_topic": "parts"}},
     "[consumer] predictions_topic and [consumer] input_topic are both 'parts'"),
    ({"labels": {"topic": "parts"}}, "[labels] topic and [consumer] input_topic are both 'parts'"),
    ({"labels": {"topic": "parts.predictions"}},
     "[labels] topic and [consumer] predictions_topic are both 'parts.predictions'"),
    ({"consumer": {"predictions_topic": "x", "dlq_topic": "x"}},
     "[consumer] dlq_topic and [consumer] predictions_topic are both 'x'"),
])
def test_each_topic_its_own(sections, message):
    """A dlq_topic equal to the input fed each bad record back to serve, which dead-lettered it
    again: one bad record became 1,466 in 20 s. A labels topic equal to the input took every part
    for a label, and predictions written to the input came back as input."""
    raw = base()
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    assert error_of(raw) == f"{SRC}: {message}; give each its own topic"


@pytest.mark.parametrize("topic", ["ct.events", "ct.models", "ct.retrain", "ct.control"])
def test_stream_ct_topics_are_not_a_consumer_topic(topic):
    raw = base(consumer={"name": "y", "input_topic": "parts", "predictions_topic": topic})
    assert error_of(raw) == f"{SRC}: [consumer] predictions_topic = {topic!r} is stream-ct's own topic; use another name"


@pytest.mark.parametrize("section, key, value", [
    ("triggers", "schedule_records", -1), ("triggers", "schedule_seconds", -60.0),
    ("triggers", "drift_memory_records", -1), ("triggers", "performance_margin", -0.05),
    ("triggers", "performance_min_labels", -1), ("retrain", "cooldown_records", -1), ("retrain", "min_minority", -1),
    ("retrain", "recency_half_life", -100), ("deploy", "shadow_records", -1000), ("deploy", "rollback_drop", -0.05),
    ("gates", "min_group_rows", -1), ("gates", "max_group_spread", -0.1),
])
def test_negative(section, key, value):
    """Accepted before: a negative schedule asked for a retrain after every cooldown, a negative
    drift memory never let drift fire, a negative rollback_drop rolled back a champion that held
    its level, a negative max_group_spread rejected every candidate."""
    raw = base()
    raw.setdefault(section, {})[key] = value
    assert error_of(raw) == f"{SRC}: [{section}] {key} = {value}; it must be 0 or more"


def test_stride_exceeds_window():
    assert error_of(base(drift={"window": 200, "stride": 300})) == \
        f"{SRC}: [drift] stride (300) exceeds window (200); use a stride at most the window"


@pytest.mark.parametrize("window, stride", [(1000, 300), (2002, 2002), (2002, 1001)])
def test_window_a_multiple_of_4_and_of_stride(window, stride):
    """The drift monitor needs it: such a definition passed check and serve started, then every
    retrain failed calibrating the monitor (ValueError) and no champion was ever made."""
    assert error_of(base(drift={"window": window, "stride": stride})) == (
        f"{SRC}: [drift] window ({window}) must be a multiple of 4 and of stride ({stride}), "
        "for example window = 2000, stride = 500")


def test_stride_equal_window_ok():
    assert ConsumerConfig.from_dict(base(drift={"window": 200, "stride": 200})).drift.stride == 200


@pytest.mark.parametrize("fraction", [0, 0.0, -0.1, 0.9, 0.95, 1])
def test_holdout_fraction_out_of_range(fraction):
    assert error_of(base(retrain={"holdout_fraction": fraction})) == (
        f"{SRC}: [retrain] holdout_fraction = {float(fraction)}; use a fraction between 0 and 0.9 such as 0.25")


def test_retrain_time_within_what_a_worker_may_spend_on_a_request():
    """timeout_s = 3600 was accepted, but after 30 minutes on one request the worker's group
    counted it gone (another worker took the request up again) and /healthz turned 503, so a
    liveness probe restarted the worker in the middle of every such retrain."""
    assert error_of(base(retrain={"timeout_s": 3600})) == (
        f"{SRC}: [retrain] timeout_s (3600) x max_attempts (2) = 7200 s exceeds the 1800 s a retrain worker "
        "may spend on one request; lower either")
    assert ConsumerConfig.from_dict(base(retrain={"timeout_s": 900})).retrain.timeout_s == 900


def test_retrain_window_not_under_min_rows():
    """A drift, performance, schedule or manual retrain reads window_records records: under
    min_rows, each was skipped by the quality:rows gate, after every cooldown, and check said
    nothing."""
    assert error_of(base(retrain={"window_records": 500, "min_rows": 1000})) == (
        f"{SRC}: [retrain] window_records (500) is under min_rows (1000): every retrain but the bootstrap "
        "would be skipped (quality:rows); widen the window or lower min_rows")
    assert ConsumerConfig.from_dict(base(retrain={"window_records": 1000, "min_rows": 1000})).retrain.min_rows == 1000


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.89])
def test_holdout_fraction_in_range(fraction):
    assert ConsumerConfig.from_dict(base(retrain={"holdout_fraction": fraction})).retrain.holdout_fraction == fraction


def test_source_named_in_errors_from_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[consumer]\nname = "y"\ninput_topic = "p"\n[drift]\nwindow = 0\n')
    with pytest.raises(ConfigError) as exc:
        ConsumerConfig.load(path)
    assert str(exc.value) == f"{path}: [drift] window = 0; it must be positive"


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as exc:
        ConsumerConfig.load(path)
    assert str(exc.value) == f"{path}: no such consumer definition"


def test_load_invalid_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[consumer\nname = ")
    with pytest.raises(ConfigError) as exc:
        ConsumerConfig.load(str(path))
    assert str(exc.value).startswith(f"{path}: not valid TOML (")


def test_an_outlier_model_takes_no_labels_topic():
    """An outlier model learns without labels: serve kept every part waiting in the join buffer,
    and a label on the default target (passed) published r2/mae/mape of anomaly scores against
    it and had the online model learn the part a second time."""
    raw = base(model={"task": "anomaly", "estimator": "half_space_trees"}, labels={"topic": "parts.labels"})
    assert error_of(raw) == ("<dict>: [labels] topic = 'parts.labels'; an anomaly model learns without labels "
                             "and has no target to join them to: remove [labels] topic")
    assert ConsumerConfig.from_dict(base(labels={"topic": "parts.labels"})).labels.topic == "parts.labels"


def test_an_outlier_model_takes_no_shadow():
    """A shadow is judged on live labels; an outlier model has none, so every passing candidate
    waited as a shadow forever and the first champion served for good."""
    raw = base(model={"task": "anomaly", "estimator": "half_space_trees"}, deploy={"shadow_records": 1000})
    assert "[deploy] shadow_records = 1000" in error_of(raw) and "use 0" in error_of(raw)


@pytest.mark.parametrize("override, section, key, value", [
    ("consumer.input_topic=4711", "consumer", "input_topic", "4711"),
    ("consumer.name=2024", "consumer", "name", "2024"),
    ("consumer.group_id=2024-01-01", "consumer", "group_id", "2024-01-01"),
    ("model.target=1e3", "model", "target", "1e3"),
    ('labels.topic="4711"', "labels", "topic", "4711"),
    ("drift.reference_size=400", "drift", "reference_size", 400),
    ("drift.enabled=false", "drift", "enabled", False),
    ('features.include=["1*", "2*"]', "features", "include", ("1*", "2*")),
])
def test_set_reads_a_text_key_as_text(override, section, key, value):
    """--set consumer.input_topic=4711 was read as the integer 4711 and refused ("must be a
    non-empty string"), a group id that looks like a date as a date: a topic or name of digits
    could not be set without TOML quotes inside shell quotes."""
    raw = {"consumer": {"name": "y", "input_topic": "parts"}}
    apply_override(raw, override)
    assert getattr(getattr(ConsumerConfig.from_dict(raw), section), key) == value


def test_fields_learned_beside_the_tests_need_a_target_and_name_no_target():
    test_time = {"task": "regression", "target": "test_time_ms"}
    assert ConsumerConfig.from_dict(base(model=test_time, features={"fields": "tester"})).features.fields == ("tester",)
    assert ConsumerConfig.from_dict(base(model=dict(test_time, estimator="ridge"), features={"fields": ["fab"]}))
    assert error_of(base(model={"task": "anomaly", "estimator": "half_space_trees"}, features={"fields": ["tester"]})) \
        == f"{SRC}: [features] fields are for models with a target; an outlier model learns the test results alone"
    assert error_of(base(model=test_time, features={"fields": ["tester", "test_time_ms"]})) == (
        f"{SRC}: [features] fields names 'test_time_ms': the target; name record fields such as 'tester', "
        "'site' or 'fab'")
    assert "not a category field" in error_of(base(model=test_time, features={"fields": ["tests"]}))
    assert error_of(base(features={"fields": ["tester", "hard_bin"]})) == (  # a yield model
        f"{SRC}: [features] fields names 'hard_bin': an outcome of the part's test, known only with its label; "
        "name record fields such as 'tester', 'site' or 'fab'")
    assert "names a field twice" in error_of(base(model=test_time, features={"fields": ["fab", "fab"]}))


@pytest.mark.parametrize("key", ["min_metric", "min_f1"])
def test_a_metric_floor_above_1_is_refused(key):
    """``min_metric = 70`` (a percentage) was accepted: AUC, accuracy, F1 and R² are at most 1, so
    the absolute gate rejected every candidate, the bootstrap included, and nothing ever served."""
    assert error_of(base(gates={key: 70})) == (
        f"{SRC}: [gates] {key} = 70; the metric it floors (AUC, accuracy, F1, R²) is at most 1, so every "
        "candidate would be rejected: write a fraction such as 0.70")
    assert ConsumerConfig.from_dict(base(gates={key: 1.0})).gates.min_metric <= 1


def test_a_consumer_name_given_for_its_file_is_pointed_to_it(tmp_path, monkeypatch):
    """The README writes `stream-ct models list CONSUMER`; `stream-ct models list yield` said
    only "yield: no such consumer definition"."""
    (tmp_path / "consumers").mkdir()
    (tmp_path / "consumers" / "yield.toml").write_text("[consumer]\nname = 'yield'\ninput_topic = 'parts'\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as exc:
        ConsumerConfig.load("yield")
    assert str(exc.value) == f"yield: no such consumer definition; did you mean {Path('consumers/yield.toml')}?"
    with pytest.raises(ConfigError) as exc:
        ConsumerConfig.load("yeild")
    assert str(exc.value) == "yeild: no such consumer definition"
