"""Consumer definitions: one TOML file per use case, validated before anything starts.

>>> cfg = ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "parts"},
...                                 "model": {"task": "classification", "target": "passed"}})
>>> cfg.consumer.group_id, cfg.model.name, cfg.predictions_topic, cfg.dlq_topic
('stream-ct-y', 'y', 'parts.predictions', 'parts.dlq')
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_ct.prediction_messages import FORMATS as PREDICTION_FORMATS


class ConfigError(ValueError):
    """A consumer definition is invalid; the message names the key and the fix."""


TASKS = ("classification", "multiclass", "regression", "anomaly")
ESTIMATORS = {
    "classification": ("hist_gradient_boosting", "logistic_regression", "random_forest"),
    "multiclass": ("hist_gradient_boosting", "logistic_regression", "random_forest"),
    "regression": ("hist_gradient_boosting", "ridge", "random_forest"),
    "anomaly": ("half_space_trees",),
}
#: Part record fields a test's outcome sets: no model input (with the label they would leak it).
OUTCOME_FIELDS = ("passed", "hard_bin", "soft_bin", "test_time_ms")
#: The longest a retrain worker works on one request before its group (and /healthz) count it gone.
WORKER_REQUEST_LIMIT_S = 30 * 60
#: Labeled predictions before a live (rolling) metric has a value (``stream_ct.rolling``).
MIN_LABELS = 50
#: What Kafka accepts as a topic name.
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


@dataclass(frozen=True)
class ConsumerSection:
    name: str
    input_topic: str
    group_id: str = ""
    poll_max_records: int = 2000
    poll_timeout_ms: int = 500
    predictions_topic: str = ""
    dlq_topic: str = ""
    session_timeout_ms: int = 10_000
    prediction_messages: str = "part"  # or "batch": one message per input partition and poll


@dataclass(frozen=True)
class FeatureSection:
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()  # record fields the champion also learns, a column per level (stream_ct.categories)


@dataclass(frozen=True)
class ModelSection:
    task: str = "classification"
    target: str = "passed"
    name: str = ""
    estimator: str = "hist_gradient_boosting"
    contamination: float = 0.01


@dataclass(frozen=True)
class DriftSection:
    enabled: bool = True
    arl0: float = 100_000.0
    window: int = 2000
    stride: int = 2000
    reference_size: int = 5000


@dataclass(frozen=True)
class RetrainSection:
    window_records: int = 5000
    min_rows: int = 1000
    min_minority: int = 20
    holdout_fraction: float = 0.25
    cooldown_records: int = 5000
    timeout_s: float = 300.0
    max_attempts: int = 2
    recency_half_life: int = 0
    threads: int = 1  # OpenMP/BLAS threads for fitting; more only on a host with idle cores


@dataclass(frozen=True)
class TriggerSection:
    policy: str = "drift or performance or schedule"
    schedule_records: int = 0
    schedule_seconds: float = 0.0
    performance_floor: float = 0.0
    performance_margin: float = 0.05
    performance_min_labels: int = 500
    drift_memory_records: int = 20_000


@dataclass(frozen=True)
class LabelSection:
    topic: str = ""
    buffer_size: int = 200_000
    ttl_seconds: float = 3600.0


@dataclass(frozen=True)
class QualitySection:
    max_missing_fraction: float = 0.2
    max_sentinel_fraction: float = 0.05
    max_constant_fraction: float = 0.5


@dataclass(frozen=True)
class GateSection:
    min_metric: float = 0.70
    min_improvement: float = 0.0
    min_f1: float = 0.0
    max_mape: float = 0.0
    fairness_by: str = "fab"
    max_group_spread: float = 0.15
    min_group_rows: int = 100
    max_fail_rate_gap: float = 0.10
    max_latency_p99_ms: float = 250.0
    max_flag_rate: float = 0.03


@dataclass(frozen=True)
class DeploySection:
    shadow_records: int = 0
    rollback_drop: float = 0.05
    rollback_min_labels: int = 1000


@dataclass(frozen=True)
class EventSection:
    audit_log: str = ""
    webhook_url: str = ""
    metrics_port: int = -1


@dataclass(frozen=True)
class RegistrySection:
    path: str = "registry"


@dataclass(frozen=True)
class ConsumerConfig:
    consumer: ConsumerSection
    features: FeatureSection = field(default_factory=FeatureSection)
    model: ModelSection = field(default_factory=ModelSection)
    drift: DriftSection = field(default_factory=DriftSection)
    retrain: RetrainSection = field(default_factory=RetrainSection)
    triggers: TriggerSection = field(default_factory=TriggerSection)
    labels: LabelSection = field(default_factory=LabelSection)
    quality: QualitySection = field(default_factory=QualitySection)
    gates: GateSection = field(default_factory=GateSection)
    deploy: DeploySection = field(default_factory=DeploySection)
    events: EventSection = field(default_factory=EventSection)
    registry: RegistrySection = field(default_factory=RegistrySection)
    source: str = ""

    @property
    def predictions_topic(self) -> str:
        """``[consumer] predictions_topic``, by default ``<input_topic>.predictions``."""
        return self.consumer.predictions_topic or f"{self.consumer.input_topic}.predictions"

    @property
    def dlq_topic(self) -> str:
        """``[consumer] dlq_topic``, by default ``<input_topic>.dlq``."""
        return self.consumer.dlq_topic or f"{self.consumer.input_topic}.dlq"

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] = ()) -> "ConsumerConfig":
        """Read and validate a TOML consumer definition, with ``section.key=value`` overrides."""
        path = Path(path)
        if not path.exists():
            shipped = Path("consumers") / f"{path}.toml"  # a consumer's name where its file is meant
            hint = f"; did you mean {shipped}?" if path.suffix == "" and shipped.exists() else ""
            raise ConfigError(f"{path}: no such consumer definition{hint}")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        for override in overrides:
            apply_override(raw, override)
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> "ConsumerConfig":
        sections = {f.name: f.type for f in dataclasses.fields(cls) if f.name != "source"}
        unknown = set(raw) - set(sections)
        if unknown:
            raise ConfigError(f"{source}: unknown section [{sorted(unknown)[0]}]; "
                              f"known sections: {', '.join(sections)}")
        if "consumer" not in raw:
            raise ConfigError(f"{source}: missing section [consumer] with name and input_topic")
        built = {name: _section(globals()[typ] if isinstance(typ, str) else typ, raw.get(name, {}), name, source)
                 for name, typ in sections.items()}
        consumer = built["consumer"]
        if not consumer.group_id:
            built["consumer"] = dataclasses.replace(consumer, group_id=f"stream-ct-{consumer.name}")
        if not built["model"].name:
            built["model"] = dataclasses.replace(built["model"], name=consumer.name)
        config = cls(**built, source=source)
        config._check(source)
        return config

    def _check_fields(self, source: str) -> None:
        fields, m = self.features.fields, self.model
        if not fields:
            return
        if m.task == "anomaly":
            raise ConfigError(f"{source}: [features] fields are for models with a target; an outlier model "
                              "learns the test results alone")
        for name in fields:
            if not name or name in ("tests", "limits", m.target) + OUTCOME_FIELDS:
                why = ("the target" if name == m.target else "an outcome of the part's test, known only with its "
                       "label" if name in OUTCOME_FIELDS else "not a category field")
                raise ConfigError(f"{source}: [features] fields names {name!r}: {why}; name record fields "
                                  "such as 'tester', 'site' or 'fab'")
        if len(set(fields)) < len(fields):
            raise ConfigError(f"{source}: [features] fields names a field twice: {list(fields)}")

    def _check(self, source: str) -> None:
        m = self.model
        if self.consumer.prediction_messages not in PREDICTION_FORMATS:
            raise ConfigError(f"{source}: [consumer] prediction_messages = {self.consumer.prediction_messages!r}; "
                              f"use one of {', '.join(PREDICTION_FORMATS)}")
        topics = {"[consumer] input_topic": self.consumer.input_topic, "[consumer] predictions_topic":
                  self.predictions_topic, "[consumer] dlq_topic": self.dlq_topic, "[labels] topic": self.labels.topic}
        from stream_ct.kafka_io import CONTROL_TOPIC, EVENTS_TOPIC, MODELS_TOPIC, RETRAIN_TOPIC

        seen: dict[str, str] = {}
        for key, topic in topics.items():
            if not topic:  # no labels topic
                continue
            if not TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
                raise ConfigError(f"{source}: {key} = {topic!r} is not a Kafka topic name; use up to 249 letters, "
                                  "digits, '.', '_' and '-'")
            if topic in (RETRAIN_TOPIC, MODELS_TOPIC, EVENTS_TOPIC, CONTROL_TOPIC):
                raise ConfigError(f"{source}: {key} = {topic!r} is stream-ct's own topic; use another name")
            if topic in seen:
                raise ConfigError(f"{source}: {key} and {seen[topic]} are both {topic!r}; give each its own topic")
            seen[topic] = key
        if m.task not in TASKS:
            raise ConfigError(f"{source}: [model] task = {m.task!r}; use one of {', '.join(TASKS)}")
        if m.estimator not in ESTIMATORS[m.task]:
            raise ConfigError(f"{source}: [model] estimator = {m.estimator!r} does not fit task {m.task!r}; "
                              f"use one of {', '.join(ESTIMATORS[m.task])}")
        self._check_fields(source)
        positive = {"[consumer] poll_max_records": self.consumer.poll_max_records,
                    "[drift] window": self.drift.window, "[drift] stride": self.drift.stride,
                    "[drift] reference_size": self.drift.reference_size, "[drift] arl0": self.drift.arl0,
                    "[retrain] window_records": self.retrain.window_records,
                    "[retrain] min_rows": self.retrain.min_rows, "[retrain] timeout_s": self.retrain.timeout_s,
                    "[retrain] max_attempts": self.retrain.max_attempts, "[retrain] threads": self.retrain.threads,
                    "[labels] buffer_size": self.labels.buffer_size, "[labels] ttl_seconds": self.labels.ttl_seconds,
                    "[consumer] poll_timeout_ms": self.consumer.poll_timeout_ms,
                    "[consumer] session_timeout_ms": self.consumer.session_timeout_ms,
                    "[gates] max_latency_p99_ms": self.gates.max_latency_p99_ms}
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{source}: {key} = {value}; it must be positive")
        t, r = self.triggers, self.retrain
        non_negative = {"[retrain] cooldown_records": r.cooldown_records, "[retrain] min_minority": r.min_minority,
                        "[retrain] recency_half_life": r.recency_half_life,
                        "[triggers] schedule_records": t.schedule_records,
                        "[triggers] schedule_seconds": t.schedule_seconds,
                        "[triggers] drift_memory_records": t.drift_memory_records,
                        "[triggers] performance_margin": t.performance_margin,
                        "[triggers] performance_min_labels": t.performance_min_labels,
                        "[deploy] shadow_records": self.deploy.shadow_records,
                        "[deploy] rollback_drop": self.deploy.rollback_drop,
                        "[gates] min_group_rows": self.gates.min_group_rows,
                        "[gates] max_group_spread": self.gates.max_group_spread}
        for key, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{source}: {key} = {value}; it must be 0 or more")
        fractions = {"[quality] max_missing_fraction": self.quality.max_missing_fraction,
                     "[quality] max_sentinel_fraction": self.quality.max_sentinel_fraction,
                     "[quality] max_constant_fraction": self.quality.max_constant_fraction,
                     "[gates] max_fail_rate_gap": self.gates.max_fail_rate_gap,
                     "[gates] max_flag_rate": self.gates.max_flag_rate,
                     "[model] contamination": self.model.contamination}
        for key, value in fractions.items():
            if not 0 <= value <= 1:
                raise ConfigError(f"{source}: {key} = {value}; use a fraction between 0 and 1")
        floors = {"[gates] min_metric": self.gates.min_metric, "[gates] min_f1": self.gates.min_f1}
        for key, value in floors.items():
            if value > 1 and m.task != "anomaly":
                raise ConfigError(f"{source}: {key} = {value:g}; the metric it floors (AUC, accuracy, F1, R²) is at "
                                  f"most 1, so every candidate would be rejected: write a fraction such as 0.70")
        if not -1 <= self.events.metrics_port <= 65535:
            raise ConfigError(f"{source}: [events] metrics_port = {self.events.metrics_port}; "
                              "use a port number, 0 for any free port, or -1 for no metrics endpoint")
        if not 0 < self.retrain.holdout_fraction < 0.9:
            raise ConfigError(f"{source}: [retrain] holdout_fraction = {self.retrain.holdout_fraction}; "
                              "use a fraction between 0 and 0.9 such as 0.25")
        budget = self.retrain.timeout_s * self.retrain.max_attempts
        if budget > WORKER_REQUEST_LIMIT_S:
            raise ConfigError(f"{source}: [retrain] timeout_s ({self.retrain.timeout_s:g}) x max_attempts "
                              f"({self.retrain.max_attempts}) = {budget:g} s exceeds the {WORKER_REQUEST_LIMIT_S:g} s "
                              "a retrain worker may spend on one request; lower either")
        if self.retrain.window_records < self.retrain.min_rows:
            raise ConfigError(f"{source}: [retrain] window_records ({self.retrain.window_records}) is under min_rows "
                              f"({self.retrain.min_rows}): every retrain but the bootstrap would be skipped "
                              "(quality:rows); widen the window or lower min_rows")
        from stream_ct.triggers import parse_policy

        try:
            parse_policy(self.triggers.policy)
        except ValueError as exc:
            raise ConfigError(f"{source}: [triggers] policy: {exc}") from None
        d = self.deploy
        if d.rollback_min_labels < MIN_LABELS or 0 < d.shadow_records < MIN_LABELS:
            raise ConfigError(f"{source}: [deploy] rollback_min_labels = {d.rollback_min_labels}, shadow_records = "
                              f"{d.shadow_records}; a live metric needs at least {MIN_LABELS} labels "
                              "(shadow_records = 0 turns the shadow off)")
        if m.task == "anomaly" and self.labels.topic:
            raise ConfigError(f"{source}: [labels] topic = {self.labels.topic!r}; an anomaly model learns without "
                              "labels and has no target to join them to: remove [labels] topic")
        if m.task == "anomaly" and d.shadow_records:
            raise ConfigError(f"{source}: [deploy] shadow_records = {d.shadow_records}; a shadow is judged on "
                              "live labels and an anomaly model has none: use 0")
        if self.drift.stride > self.drift.window:
            raise ConfigError(f"{source}: [drift] stride ({self.drift.stride}) exceeds window "
                              f"({self.drift.window}); use a stride at most the window")
        if self.drift.window % 4 or self.drift.window % self.drift.stride:
            raise ConfigError(f"{source}: [drift] window ({self.drift.window}) must be a multiple of 4 and of "
                              f"stride ({self.drift.stride}), for example window = 2000, stride = 500")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        return out


def add_override_option(parser, example: str) -> None:
    """``--set SECTION.KEY=VALUE`` (repeatable) on a command that loads a definition."""
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help=f"override a key of the definition, e.g. --set {example} (repeatable)")


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply ``section.key=value`` to a raw definition; the value is read as TOML, else as text
    (a text key's value is always text: a topic may be named 4711).

    >>> raw = {}; apply_override(raw, "drift.reference_size=400"); apply_override(raw, "registry.path=/r")
    >>> apply_override(raw, "consumer.input_topic=4711"); raw
    {'drift': {'reference_size': 400}, 'registry': {'path': '/r'}, 'consumer': {'input_topic': '4711'}}
    """
    name, sep, text = override.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"--set {override!r}: use SECTION.KEY=VALUE, for example drift.reference_size=400")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    if not isinstance(value, str) and key in _text_keys().get(section, ()):
        value = text.strip()
    raw.setdefault(section, {})[key] = value


def _text_keys() -> dict[str, set[str]]:
    """The keys whose values are text, by section."""
    sections = typing.get_type_hints(ConsumerConfig)
    return {name: {key for key, kind in typing.get_type_hints(cls).items() if kind is str}
            for name, cls in sections.items() if dataclasses.is_dataclass(cls)}


def _section(cls, values: Any, name: str, source: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown key [{name}] {key}; known keys: {', '.join(known)}")
    kwargs = {}
    for key, value in values.items():
        default = known[key].default
        if isinstance(default, tuple):
            if isinstance(value, str):
                value = (value,)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{source}: [{name}] {key} must be a list of strings")
            value = tuple(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif default is not dataclasses.MISSING and (not isinstance(value, type(default))
                                                     or isinstance(value, bool) != isinstance(default, bool)):
            kind = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}
            raise ConfigError(f"{source}: [{name}] {key} = {value!r} must be {kind[type(default).__name__]}")
        kwargs[key] = value
    missing = [k for k, f in known.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and k not in kwargs]
    if missing:
        raise ConfigError(f"{source}: missing key [{name}] {missing[0]}")
    if name == "consumer":
        for key in ("name", "input_topic"):
            if not isinstance(kwargs[key], str) or not kwargs[key]:
                raise ConfigError(f"{source}: [consumer] {key} must be a non-empty string")
    return cls(**kwargs)
