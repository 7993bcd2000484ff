"""The retrain worker: its own process and consumer group on ``ct.retrain``.

For each request it reads the training window back from the input topic (from the offsets
the request names, by time with ``offsets_for_times`` on other partitions), joins labels
that arrived later, checks the data, trains a candidate in a child process under a time
limit, judges it against the champion on the same holdout, registers it (passed or not),
and announces a promotion on the compacted ``ct.models`` topic. A request is committed
only after it was settled, so a worker killed mid-training leaves it to the next worker; a
failed attempt is retried up to ``[retrain] max_attempts`` times and then reported; a
request that cannot be handled at all (its config does not validate) is reported failed and
committed, not read again. A worker killed after registering a version but before
announcing it leaves the next worker that version to finish settling (``registered_for``),
not a request to train again.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
import traceback
import uuid
from dataclasses import dataclass, field, replace
from itertools import compress
from typing import Any

import numpy as np
import orjson
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from threadpoolctl import threadpool_limits

from stream_ct.categories import field_categories, model_matrix
from stream_ct.child_process import call_in_child
from stream_ct.config import WORKER_REQUEST_LIMIT_S, ConsumerConfig, RegistrySection
from stream_ct.decode import decode_batch
from stream_ct.events import EventLog
from stream_ct.features import (STRATA, count_sentinels, die_ids, feature_matrix, field_levels, select_features,
                                strata_levels, target_vector, wafer_ids)
from stream_ct.gates import GateResult, run_gates
from stream_ct.kafka_io import (MODELS_TOPIC, RETRAIN_TOPIC, WORKER_GROUP, close_producer, ensure_control_topics,
                                make_consumer, make_producer, shadow_key)
from stream_ct.labels import unjoinable
from stream_ct.logs import audit_failure_logger, log
from stream_ct.metrics import Metrics, add_arguments, start_from_args, worker_metrics
from stream_ct.outbox import Outbox
from stream_ct.quality import check_window
from stream_ct.reconnect import while_unreachable
from stream_ct.record import part_key
from stream_ct.registry import IntegrityError, Registry, announcement, code_version
from stream_ct.resends import without_resends
from stream_ct.retests import latest_results
from stream_ct.training import PRIMARY_METRIC, build_estimator, evaluate, fit
from stream_ct.words import counted

#: Request ids a worker remembers as settled (a request read again after a refused commit is not trained twice).
REMEMBERED_REQUESTS = 10_000


def retrain_request(config: ConsumerConfig, reason: str, start_ts_ms: int, end_offsets: dict[int, int],
                    start_offsets: dict[int, int] | None = None, **extra: Any) -> dict[str, Any]:
    """The message a trigger publishes on ``ct.retrain``: its window starts at ``start_offsets``
    on the partitions they name, at ``start_ts_ms`` on the others."""
    window = {"topic": config.consumer.input_topic, "start_ts_ms": int(start_ts_ms),
              "end_offsets": {str(p): int(o) for p, o in end_offsets.items()}}
    if start_offsets:
        window["start_offsets"] = {str(p): int(o) for p, o in start_offsets.items()}
    return {"request_id": uuid.uuid4().hex, "model": config.model.name, "consumer": config.consumer.name,
            "reason": reason, "config": config.to_dict(), "requested_at": time.time(), "window": window, **extra}


@dataclass
class TopicWindow:
    """What ``read_topic`` read: the records in timestamp order, and how many offsets from the
    start of each partition whose start offset was given Kafka's retention had deleted before
    they were read (partitions read by time cannot tell); ``timestamps`` are the records'
    Kafka timestamps (ms); ``invalid_records`` counts the records left out because they do not
    decode (serve dead-letters them); ``training_window`` adds how many records it left out
    because their own target field holds no label."""

    records: list[dict[str, Any]]
    deleted: dict[str, int] = field(default_factory=dict)
    timestamps: list[int] = field(default_factory=list)
    unusable_labels: int = 0
    invalid_records: int = 0


def read_topic(topic: str, start_ts_ms: int, end_offsets: dict[str, int] | None = None,
               bootstrap: str | None = None, parts: bool = True, stall_timeout_s: float = 120.0,
               start_offsets: dict[str, int] | None = None, floor_offsets: dict[str, int] | None = None
               ) -> TopicWindow:
    """Records of ``topic`` from ``start_ts_ms`` (by timestamp; from ``start_offsets`` on the
    partitions it names; from no earlier than ``floor_offsets`` on those it names) up to
    ``end_offsets`` (default: the end of each partition now; an end past what the partition
    holds reads to its end), in timestamp order: valid part records, or with ``parts=False``
    any JSON object (label records).

    Raises ``TimeoutError`` naming the partitions when no partition's position moves for
    ``stall_timeout_s`` (a leader away, offsets that yield nothing) instead of waiting forever."""
    consumer = make_consumer(group_id=None, bootstrap=bootstrap)
    try:
        if not consumer.partitions_for_topic(topic):
            raise ValueError(f"topic {topic!r} does not exist")
        if end_offsets is None:
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
            ends = consumer.end_offsets(partitions)
        else:
            partitions = [TopicPartition(topic, int(p)) for p in end_offsets]
            now = consumer.end_offsets(partitions)
            ends = {tp: min(int(end_offsets[str(tp.partition)]), now[tp]) for tp in partitions}
            _refuse_if_gone(topic, consumer.beginning_offsets(partitions), ends)
        if not partitions:
            return TopicWindow([])
        consumer.assign(partitions)
        starts = consumer.offsets_for_times({tp: start_ts_ms for tp in partitions})
        remaining, given_starts = {}, {}
        for tp in partitions:
            start = starts[tp].offset if starts[tp] is not None else ends[tp]
            if str(tp.partition) in (start_offsets or {}):
                start = given_starts[tp] = int(start_offsets[str(tp.partition)])
            if str(tp.partition) in (floor_offsets or {}):
                start = max(start, int(floor_offsets[str(tp.partition)]))
            if start < ends[tp]:
                consumer.seek(tp, start)
                remaining[tp] = ends[tp]
        consumer.pause(*[tp for tp in partitions if tp not in remaining])
        out: list[tuple[int, int, dict[str, Any]]] = []
        invalid = 0
        first_read = {}  # a deleted start offset is read from the partition's beginning (offset reset)
        positions, moved_at = {}, time.monotonic()
        while remaining:
            finished = set()
            for tp, messages in consumer.poll(timeout_ms=1000, max_records=5000).items():
                end = remaining.get(tp)
                if end is None:
                    continue
                in_window = [m for m in messages if m.offset < end]
                if in_window:
                    first_read.setdefault(tp, in_window[0].offset)
                valid = decode_batch([m.value for m in in_window])[0] if parts else _json_objects(in_window)
                invalid += len(in_window) - len(valid)
                out.extend((in_window[i].timestamp, tp.partition, rec) for i, rec in valid)
                if len(in_window) < len(messages):
                    finished.add(tp)
            now_positions = {tp: consumer.position(tp) for tp in remaining if tp not in finished}
            # a position at the end is done too, also past offsets that hold no record (markers)
            finished.update(tp for tp, position in now_positions.items() if position >= remaining[tp])
            for tp in finished:
                del remaining[tp]
            if finished:
                consumer.pause(*finished)
            if now_positions != positions:
                positions, moved_at = now_positions, time.monotonic()
            elif remaining and time.monotonic() - moved_at > stall_timeout_s:
                stuck = ", ".join(f"partition {tp.partition} at offset {positions[tp]} of {end}"
                                  for tp, end in remaining.items())
                raise TimeoutError(f"reading {topic}: no progress for {stall_timeout_s:g} s ({stuck})")
        out.sort(key=lambda item: (item[0], item[1]))
        deleted = {str(tp.partition): first_read.get(tp, ends[tp]) - start for tp, start in given_starts.items()
                   if first_read.get(tp, ends[tp]) > start}
        return TopicWindow([rec for _, _, rec in out], deleted, [ts for ts, _, _ in out], invalid_records=invalid)
    finally:
        consumer.close()


class WindowGone(ValueError):
    """A window whose records Kafka's retention has deleted."""


def _refuse_if_gone(topic: str, begins: dict, ends: dict) -> None:
    """Raise ``WindowGone`` when no partition holds any of the window and retention deleted the
    part of some (each such partition now begins at or past where the window ended)."""
    if any(ends[tp] > begins[tp] for tp in ends):
        return
    gone = [f"partition {tp.partition} ended at offset {ends[tp]}, begins at {begins[tp]} now"
            for tp in sorted(ends, key=lambda t: t.partition) if begins[tp] > 0]
    if gone:
        raise WindowGone(f"the window is no longer in {topic}: retention deleted it ({'; '.join(gone)})")


def _json_objects(messages) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for i, m in enumerate(messages):
        try:
            obj = orjson.loads(m.value or b"")
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out.append((i, obj))
    return out


def usable_label(value: Any) -> bool:
    """Whether a label can be trained on: serve's rule (``float()`` takes it and it is finite; it
    sends any other label record to the DLQ). A null is not a label yet."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def served_target(value: Any) -> bool:
    """Whether serve takes a part whose own target field holds ``value``: none yet (null) or a
    usable label; it dead-letters any other."""
    return value is None or usable_label(value)


def training_window(request: dict[str, Any], config: ConsumerConfig, bootstrap: str | None = None
                    ) -> TopicWindow:
    """The window's part records, with labels from the labels topic joined by key; a part whose
    own target field holds no label is left out and counted (serve dead-letters it, so it is
    neither charted nor learned; a part whose label record holds none was charted)."""
    window = request["window"]
    read = read_topic(window["topic"], window["start_ts_ms"], window["end_offsets"], bootstrap,
                      start_offsets=window.get("start_offsets"))
    if config.model.task != "anomaly":
        target = config.model.target
        kept = [served_target(r.get(target)) for r in read.records]
        read.unusable_labels = kept.count(False)
        read.records, read.timestamps = list(compress(read.records, kept)), list(compress(read.timestamps, kept))
    if config.labels.topic:
        labels = read_topic(config.labels.topic, window["start_ts_ms"], None, bootstrap, parts=False)
        join_labels(read.records, labels.records, config.model.target)
    return read


def join_labels(records: list[dict[str, Any]], label_records, target: str) -> None:
    """Give each record without ``target`` the label of its key from ``label_records``: the
    last usable one (a later one corrects it), else the last unusable one, so that it is
    counted as serve counts what it dead-letters; a null is no label at all, as in a part
    record. Label records without ``target`` are another consumer's, and those without the
    part's ids join nothing (serve skips and dead-letters them).

    >>> parts = [{"lot_id": "L", "wafer_id": "W", "part_id": "1"}, {"lot_id": "L", "wafer_id": "W", "part_id": "2"}]
    >>> join_labels(parts, [dict(parts[0], passed=1), dict(parts[0], passed=None),
    ...                     dict(parts[1], passed="n/a"), dict(parts[1], soft_bin=3)], "passed")
    >>> [p["passed"] for p in parts]
    [1, 'n/a']
    """
    usable, unusable = {}, {}
    for rec in label_records:
        if rec.get(target) is not None and unjoinable(rec) is None:
            (usable if usable_label(rec[target]) else unusable)[part_key(rec)] = rec[target]
    for rec in records:
        if rec.get(target) is None:
            key = part_key(rec)
            rec[target] = usable.get(key, unusable.get(key))


@dataclass
class Outcome:
    version: int | None
    decision: str  # "promoted" | "shadow" | "rejected" | "skipped" | "failed"
    gates: list[dict[str, Any]]
    metrics: dict[str, Any]
    rows: int = 0  # records in the window
    unusable_labels: int = 0  # labels left out: not a finite number (serve dead-letters them)
    invalid_records: int = 0  # records left out: they do not decode (serve dead-letters them)
    deleted_by_retention: dict[str, int] = field(default_factory=dict)  # by partition: the window's front lost
    step_seconds: dict[str, float] = field(default_factory=dict)  # where the child's time went, by step


def decision_reason(outcome: Outcome) -> str:
    """Why a request was not promoted, for the worker's log line: the failed gates with their
    details (a skip names its data-quality check), else the outcome's detail or error.

    >>> decision_reason(Outcome(None, "skipped", [{"name": "quality:rows", "passed": False,
    ...     "detail": "0 labeled rows < minimum 1000"}], {"rows": 0}))
    'quality:rows: 0 labeled rows < minimum 1000'
    >>> decision_reason(Outcome(1, "promoted", [], {}))
    ''
    """
    if outcome.decision in ("promoted", "shadow"):
        return ""
    failed = [f"{g.get('name')}: {g.get('detail')}" for g in outcome.gates if not g.get("passed", True)]
    if failed:
        return "; ".join(failed)
    return str(outcome.metrics.get("detail") or outcome.metrics.get("error") or "")


def note_unversioned(registry: Registry, request: dict[str, Any], outcome: Outcome) -> None:
    """Keep a request settled without a version (skipped, or failed for good) in the registry,
    where ``stream-ct models list`` shows it; one the registry cannot take is logged, and the
    decision stands."""
    try:
        registry.note_unversioned(request["model"], {
            "request_id": request["request_id"], "decision": outcome.decision, "reason": request["reason"],
            "command_id": request.get("command_id"), "requested_at": request.get("requested_at"),
            "created_at": time.time(), "rows": outcome.metrics.get("rows"),
            "failed_gates": [g["name"] for g in outcome.gates if not g.get("passed", True)],
            "detail": decision_reason(outcome)})
    except (OSError, ValueError) as exc:  # ValueError: a name with a NUL byte, which no path can hold
        log("retrain-worker", f"{request['model']} {request['reason']}: not noted in {registry.root.absolute()} "
                              f"({type(exc).__name__}: {exc}); models list does not show it",
            request_id=request["request_id"])


def registry_path(raw_config: Any) -> str | None:
    """The ``[registry] path`` of a request's config as written, also of one that does not
    validate (from a newer serve, say); None when it names none.

    >>> registry_path({"consumer": {"name": "y"}}), registry_path({"registry": {"path": "/r"}}), registry_path([])
    ('registry', '/r', None)
    """
    section = raw_config.get("registry", {}) if isinstance(raw_config, dict) else None
    path = section.get("path", RegistrySection.path) if isinstance(section, dict) else None
    return path if isinstance(path, str) and path else None


class StepClock:
    """Seconds per named step, for the decision event and the worker's log.

    >>> clock = StepClock()
    >>> with clock("fit"):
    ...     pass
    >>> list(clock.seconds)
    ['fit']
    """

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[step] = round(self.seconds.get(step, 0.0) + time.monotonic() - started, 3)


def learned_otherwise(meta: dict[str, Any], version: int, task: str, target: str) -> str | None:
    """Why a champion cannot be judged on this window, or None: it learned another task or
    (with labels) another target, as when a definition changes them and keeps its name; its
    metric on these labels would mean nothing (a soft-bin champion scored 0 on hard bins).

    >>> learned_otherwise({"task": "multiclass", "target": "soft_bin"}, 3, "multiclass", "hard_bin")
    'champion v3 learned soft_bin (multiclass), this definition hard_bin (multiclass): not comparable'
    >>> learned_otherwise({"task": "anomaly", "target": "passed"}, 3, "anomaly", "soft_bin") is None
    True
    """
    learned = (meta.get("task", task), meta.get("target", target) if task != "anomaly" else target)
    if learned == (task, target):
        return None
    return (f"champion v{version} learned {learned[1]} ({learned[0]}), this definition {target} ({task}): "
            "not comparable")


def train_and_judge(request: dict[str, Any], records: list[dict[str, Any]], registry: Registry,
                    clock: StepClock | None = None, deleted_by_retention: dict[str, int] | None = None,
                    unusable_labels: int = 0, invalid_records: int = 0) -> Outcome:
    """Everything after the data is read: quality checks, fit, gates, registration (each
    step's seconds in ``clock``; the offsets retention deleted from the window's front, by
    partition, and ``unusable_labels`` and ``invalid_records``, the records left out of
    ``records`` already, go into the registry record)."""
    clock = clock or StepClock()
    config = ConsumerConfig.from_dict(request["config"], source=f"request {request['request_id']}")
    task, target, name = config.model.task, config.model.target, config.model.name
    supervised = task != "anomaly"
    with clock("features"):
        sent_once = without_resends(records)  # a file published twice would leak into its own holdout
        resent, records = len(records) - len(sent_once), sent_once
        streamed = records  # as serve charts them, retests and parts without a label too
        latest = latest_results(records)  # a retested part's last result only
        superseded, records = len(records) - len(latest), latest
        labeled = [r for r in records if usable_label(r.get(target))] if supervised else records
        # labels that are there but not numbers: counted, as serve counts what it dead-letters
        unusable_labels += sum(r.get(target) is not None for r in records) - len(labeled) if supervised else 0
        y = target_vector(labeled, target) if supervised else np.full(len(labeled), np.nan)
        names = select_features(labeled, config.features.include, config.features.exclude)
        X = feature_matrix(labeled, names)
        # a test with no measurement in the window (always a sentinel or invalid) carries nothing
        # to learn or to chart: left out of the features, and named in the registry record
        measured = np.isfinite(X).any(axis=0)
        never_measured = [n for n, m in zip(names, measured) if not m]
        kept = [n for n, m in zip(names, measured) if m]
        # sentinels are counted on the tests learned; on all when none is (the check says so)
        sentinels, values = count_sentinels(labeled, kept or names)
        names, X = kept, X[:, measured]
    r, q = config.retrain, config.quality
    split = int(len(labeled) * (1 - r.holdout_fraction))  # time-ordered: the newest rows are the holdout
    with clock("quality"):
        quality = check_window(task, X, y, names, sentinels=sentinels, values=values, min_rows=r.min_rows,
                               min_minority=r.min_minority, max_missing=q.max_missing_fraction,
                               max_sentinel=q.max_sentinel_fraction, max_constant=q.max_constant_fraction,
                               train_rows=split, target=target)
    if not all(g.passed for g in quality):
        return Outcome(None, "skipped", [g.to_dict() for g in quality], {"rows": len(labeled)},
                       unusable_labels=unusable_labels)
    categories = field_categories(labeled[:split], config.features.fields)
    inputs = model_matrix(X, labeled, categories)  # the test results, then the fields' level columns
    estimator = build_estimator(task, config.model.estimator, contamination=config.model.contamination)
    with clock("fit"):
        candidate = fit(estimator, inputs[:split], y[:split], r.recency_half_life)
    with clock("holdout"):
        candidate_metrics = evaluate(task, candidate, inputs[split:], y[split:])
        champion_version = registry.champion(name)
        champion_metrics = champion_unusable = None
        if champion_version is not None:
            try:
                champion = registry.load(name, champion_version)
            except (IntegrityError, FileNotFoundError) as exc:
                # serve falls back from such a champion: judge as at bootstrap, else no retrain could replace it
                champion_unusable = f"champion v{champion_version} unusable: {type(exc).__name__}: {exc}"
            else:
                champion_unusable = learned_otherwise(champion.meta, champion_version, task, target)
                if champion_unusable is None:
                    Xc = model_matrix(feature_matrix(labeled[split:], champion.meta["feature_names"]),
                                      labeled[split:], champion.meta.get("categories"))
                    champion_metrics = evaluate(task, champion.estimator, Xc, y[split:])
    groups = field_levels(labeled[split:], config.gates.fairness_by)
    with clock("gates"):
        gates = quality + run_gates(config, candidate, inputs[split:], y[split:], groups, candidate_metrics,
                                    champion_metrics)
    if champion_unusable:  # the verdict says why there was no champion to beat
        gates = [replace(g, detail=f"{champion_unusable}; the other gates decide") if g.name == "beats_champion"
                 else g for g in gates]
    passed = all(g.passed for g in gates)
    # shadowed only against a champion serve can run
    shadow = passed and champion_metrics is not None and config.deploy.shadow_records > 0
    decision = ("shadow" if shadow else "promoted") if passed else "rejected"
    # the drift reference is the window as serve charted it (labeled rows only would leave out
    # retested parts' first results, which serve charts as they come)
    reference = {
        "X": X if len(streamed) == len(labeled) else feature_matrix(streamed, names),
        "groups": wafer_ids(streamed),
        "dies": die_ids(streamed),
        **strata_levels(streamed),
    }
    window = request["window"]
    meta = {
        "task": task, "target": target, "estimator": config.model.estimator, "feature_names": names,
        "categories": categories,
        "primary_metric": PRIMARY_METRIC[task], "metrics": {"candidate": candidate_metrics,
                                                            "champion": champion_metrics},
        "gates": [g.to_dict() for g in gates], "decision": decision,
        "parent_version": champion_version, "code_version": code_version(),
        "trigger": {"reason": request["reason"], "request_id": request["request_id"],
                    "requested_at": request.get("requested_at"),
                    "command_id": request.get("command_id"), "signals": request.get("signals", [])},
        "data_window": {"topic": window["topic"], "start_ts_ms": window["start_ts_ms"],
                        "start_offsets": window.get("start_offsets"), "end_offsets": window["end_offsets"],
                        "deleted_by_retention": deleted_by_retention or {}, "rows": len(labeled),
                        "unusable_labels": unusable_labels, "invalid_records": invalid_records,
                        "superseded": superseded, "resent": resent,
                        "never_measured": never_measured,
                        "rows_train": split, "rows_holdout": len(labeled) - split,
                        "first_key": part_key(labeled[0]), "last_key": part_key(labeled[-1]),
                        "first_ts": labeled[0]["ts"], "last_ts": labeled[-1]["ts"]},
    }
    calibrate = passed and config.drift.enabled
    with clock("drift_calibration"):
        drift_state = calibrated_monitor(config, reference, names).state_dict() if calibrate else None
    with clock("registry"), registry.champion_lock(name):
        now = registry.champion(name)
        if decision == "promoted" and now != champion_version:  # another worker's candidate won meanwhile
            gate = GateResult("champion_unchanged", False, now, champion_version,
                              f"v{now} became champion while this candidate was judged against "
                              f"{'no champion' if champion_version is None else f'v{champion_version}'}: "
                              "not compared with it, so not promoted")
            decision = meta["decision"] = "rejected"
            meta["gates"].append(gate.to_dict())
        version = registry.save(name, candidate, reference, meta, drift_state)
        if decision == "promoted":
            registry.set_champion(name, version)
    return Outcome(version, decision, meta["gates"], meta["metrics"], unusable_labels=unusable_labels)


def calibrated_monitor(config: ConsumerConfig, reference: dict[str, np.ndarray], feature_names: list[str]):
    """A drift monitor on a training window, its thresholds calibrated for ``[drift] arl0``."""
    from stream_ct.drift import DriftMonitor

    return DriftMonitor(reference["X"], feature_names, reference_groups=reference["groups"],
                        reference_strata={s: reference[s] for s in STRATA if s in reference},
                        reference_dies=reference.get("dies"),
                        arl0=config.drift.arl0, window=config.drift.window, stride=config.drift.stride)


def registered_for(request: dict[str, Any], registry: Registry) -> int | None:
    """The version registered for this request (its ``trigger.request_id``, searched from the
    newest), or None; there is one when a worker stopped after registering it and before
    settling the request."""
    for version, meta in registry.readable_metas(request["model"]):
        if meta.get("trigger", {}).get("request_id") == request["request_id"]:
            return version
    return None


def stale_reason(request: dict[str, Any], registry: Registry) -> str | None:
    """Why a request is moot, or None: several serve instances see the same change and each
    asks; the first request is trained, the others find a newer version than themselves and
    are skipped. Every instance also answers the same manual command (``stream-ct retrain``):
    the first is trained, the others find its version and are skipped. A manual command is
    otherwise always trained."""
    metas = registry.readable_metas(request["model"])
    if request["reason"].startswith("manual"):
        command = request.get("command_id")
        if command:
            for version, meta in metas:
                if meta.get("trigger", {}).get("command_id") == command:
                    return f"v{version} answered the same command ({command})"
        return None
    newest = next(metas, (None, None))[1]
    if newest is None:
        return None
    if request["reason"] == "bootstrap" and registry.champion(request["model"]) is not None:
        return "a champion exists already; bootstrap not needed"
    if newest.get("created_at", 0) > request.get("requested_at", 0):
        return f"v{newest['version']} was registered after this request was made"
    return None


def read_and_train(request: dict[str, Any], records: list[dict[str, Any]] | None, registry_root: str,
                   bootstrap: str | None = None) -> Outcome:
    """What the training child does: read the window (unless ``records`` are given), then
    ``train_and_judge`` with ``[retrain] threads`` OpenMP threads."""
    clock = StepClock()
    config = ConsumerConfig.from_dict(request["config"], source=f"request {request['request_id']}")
    deleted, unusable_labels, invalid = {}, 0, 0
    if records is None:  # read here: 100,000 records cost seconds to pickle across
        with clock("read"):
            try:
                window = training_window(request, config, bootstrap)
            except WindowGone as exc:  # reading it again would not bring it back
                gate = GateResult("window", False, 0, None, f"{exc}; ask for a retrain on newer records")
                return Outcome(None, "skipped", [gate.to_dict()], {"rows": 0}, step_seconds=clock.seconds)
        records, deleted, unusable_labels = window.records, window.deleted, window.unusable_labels
        invalid = window.invalid_records
    # OpenMP spinning on cores that serve instances also use made a 1 s fit take 13 s
    with threadpool_limits(config.retrain.threads):
        outcome = train_and_judge(request, records, Registry(registry_root), clock, deleted, unusable_labels,
                                  invalid)
    outcome.rows, outcome.step_seconds, outcome.deleted_by_retention = len(records), clock.seconds, deleted
    outcome.invalid_records = invalid
    return outcome


def train_in_child(request: dict[str, Any], records: list[dict[str, Any]] | None, registry_root: str,
                   timeout_s: float, bootstrap: str | None = None) -> Outcome:
    """Run ``train_and_judge`` in a fresh child process (reading the window there when
    ``records`` is None); kill it after ``timeout_s``.

    Killing never leaves a half-written version: the registry renames complete folders only.
    """
    return call_in_child(read_and_train, (request, records, registry_root, bootstrap), timeout_s, what="training")


def announce(outbox: Outbox, registry: Registry, name: str, version: int, decision: str, reason: str) -> None:
    """Put a promoted or shadow version's announcement in the log (before its decision is).

    A shadow candidate is announced under ``<model>.shadow``: serve scores it beside the
    champion on live traffic and promotes it only if it wins there too."""
    key = shadow_key(name) if decision == "shadow" else name
    outbox.send(MODELS_TOPIC, key=key.encode(), value=announcement(registry, name, version, reason))
    outbox.flush()


class RetrainWorker:
    def __init__(self, registry_path: str | None = None, bootstrap: str | None = None,
                 exit_when_idle_s: float | None = None, metrics_args=None):
        self.registry_path, self.bootstrap = registry_path, bootstrap
        self.metrics_args = metrics_args
        self.exit_when_idle_s = exit_when_idle_s
        self.stopping = False
        self.settled_requests: dict[str, None] = {}  # oldest first, at most REMEMBERED_REQUESTS
        self.metrics = worker_metrics(Metrics())

    def handle(self, request: dict[str, Any], outbox: Outbox, events: EventLog) -> Outcome:
        """Settle one request: read, train (with retries), announce; returns the outcome once
        the announcement and the decision are acknowledged by the broker (``events`` should
        publish through ``outbox`` too)."""
        config = ConsumerConfig.from_dict(request["config"], source=f"request {request.get('request_id')}")
        if request["model"] != config.model.name:  # it would register one model and announce the other
            raise ValueError(f"the request names model {request['model']!r}, its config {config.model.name!r}")
        ids = {"request_id": request["request_id"], "model": request["model"], "reason": request["reason"]}
        registry_root = self.registry_path or config.registry.path
        registry = Registry(registry_root)
        registered = registered_for(request, registry)
        if registered is not None:
            return self._finish_settling(request, registry, registered, outbox, events, ids)
        stale = stale_reason(request, registry)
        if stale:
            events.emit("retrain_decision", version=None, decision="skipped", gates=[], metrics={},
                        detail=stale, **ids)
            outbox.flush()
            return Outcome(None, "skipped", [], {"detail": stale})
        attempts = max(1, config.retrain.max_attempts)
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            events.emit("retrain_started", attempt=attempt, **ids)
            try:
                outcome = train_in_child(request, None, registry_root, config.retrain.timeout_s, self.bootstrap)
            except Exception as exc:  # a failed retrain is reported; the champion keeps serving
                error = f"{type(exc).__name__}: {exc}"
                registered = registered_for(request, registry)
                if registered is not None:  # e.g. timed out after registering: settle what it made
                    return self._finish_settling(request, registry, registered, outbox, events, ids,
                                                 by=f"attempt {attempt}, which then failed ({error})")
                final = attempt == attempts
                events.emit("retrain_failed", attempt=attempt, final=final, error=error, **ids)
                outbox.flush()
                if final:
                    outcome = Outcome(None, "failed", [], {"error": error})
                    note_unversioned(registry, request, outcome)  # no version to list it by
                    return outcome
                continue
            if outcome.decision in ("promoted", "shadow"):
                announce(outbox, registry, request["model"], outcome.version, outcome.decision, request["reason"])
            elif outcome.decision == "skipped":  # no version to list it by
                note_unversioned(registry, request, outcome)
            events.emit("retrain_decision", version=outcome.version, decision=outcome.decision, gates=outcome.gates,
                        metrics=outcome.metrics, rows=outcome.rows, unusable_labels=outcome.unusable_labels,
                        invalid_records=outcome.invalid_records,
                        deleted_by_retention=outcome.deleted_by_retention, attempt=attempt,
                        step_seconds=outcome.step_seconds, seconds=round(time.monotonic() - started, 3), **ids)
            outbox.flush()
            return outcome
        raise AssertionError("unreachable: the last attempt returns")

    @staticmethod
    def _finish_settling(request: dict[str, Any], registry: Registry, version: int, outbox: Outbox,
                         events: EventLog, ids: dict[str, Any],
                         by: str = "a worker that stopped before settling it") -> Outcome:
        """Settle a request whose version was registered ``by`` a worker or an attempt that did
        not settle it: make it champion if the pointer still shows the champion it was judged
        against, announce it if it is (still) the champion or the newest shadow, and emit its
        decision; never train it again."""
        name, meta = request["model"], registry.meta(request["model"], version)
        with registry.champion_lock(name):
            decision, champion = meta["decision"], registry.champion(name)
            if decision == "promoted" and champion == meta.get("parent_version"):
                registry.set_champion(name, version)  # stopped between registering and the pointer
                champion = version
        current = champion == version if decision == "promoted" else \
            decision == "shadow" and registry.versions(name)[-1] == version != champion
        if current:
            announce(outbox, registry, name, version, decision, request["reason"])
            done = "announced now"
        elif decision in ("promoted", "shadow"):
            done = f"not announced: superseded (champion v{champion})"
        else:
            done = "nothing to announce"
        detail = f"v{version} was registered for this request by {by}; {done}, not trained again"
        events.emit("retrain_decision", version=version, decision=decision, gates=meta["gates"],
                    metrics=meta["metrics"], detail=detail, **ids)
        outbox.flush()
        return Outcome(version, decision, meta["gates"], meta["metrics"], rows=meta["data_window"]["rows"])

    def run(self) -> int:
        ensure_control_topics(self.bootstrap)
        producer = make_producer(self.bootstrap)
        outbox = Outbox(producer, should_stop=lambda: self.stopping)  # events and announcements
        metrics = self.metrics.registry
        events = EventLog(outbox, "retrain-worker", consumer="*", listeners=[self.metrics.on_event])
        # one training job holds the loop for up to max_poll_interval_ms: allow that before /healthz says stale
        metrics_server = start_from_args(self.metrics_args, metrics, stale_after_s=WORKER_REQUEST_LIMIT_S + 60) \
            if self.metrics_args else None
        consumer = make_consumer(RETRAIN_TOPIC, group_id=WORKER_GROUP, bootstrap=self.bootstrap,
                                 max_poll_records=1, max_poll_interval_ms=WORKER_REQUEST_LIMIT_S * 1000)
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        idle_since, settled = time.monotonic(), 0
        log("retrain-worker", "waiting for requests on ct.retrain")
        try:
            while not self.stopping:
                if metrics_server:
                    metrics_server.heartbeat()
                batch = consumer.poll(timeout_ms=500)
                if not batch:
                    if self.exit_when_idle_s and time.monotonic() - idle_since > self.exit_when_idle_s:
                        break
                    continue
                for tp, messages in batch.items():
                    for message in messages:
                        self._handle_message(message.value, outbox, events)
                        # settled only once its decision is in the log; else it is read again
                        if not outbox.flush() or not self._commit(consumer, tp, message.offset):
                            log("retrain-worker", "stopping before the request was settled in Kafka; "
                                                  "it is read again on restart")
                            self.stopping = True
                            break
                        settled += 1
                    if self.stopping:
                        break
                idle_since = time.monotonic()
        finally:
            if metrics_server:
                metrics_server.close()
            consumer.close()
            if not close_producer(producer, 10):  # delivers what is buffered; nothing committed depends on it
                log("retrain-worker", "Kafka did not acknowledge the last events within 10 s; exiting anyway")
        log("retrain-worker", f"stopped after settling {counted(settled, 'request')}")
        return 0

    def _commit(self, consumer, tp: TopicPartition, offset: int) -> bool:
        """Commit past ``offset``, waiting out an unreachable broker; False once stopping.

        A broker away for longer than the session timeout drops this worker from its group,
        and the commit is then refused (``CommitFailedError``): the worker rejoins at its next
        poll and reads the request again, which it recognizes as settled."""
        try:
            return while_unreachable("commit", lambda: consumer.commit({tp: OffsetAndMetadata(offset + 1, "", -1)}),
                                     lambda: self.stopping, "retrain-worker")[0]
        except CommitFailedError as exc:
            log("retrain-worker", f"commit refused ({exc.__class__.__name__}: the group rebalanced); "
                                  "the request is read again and recognized as settled")
            return True

    def _settle_as_failed(self, request: dict[str, Any], exc: Exception, events: EventLog) -> Outcome:
        """Report a request that raised (e.g. its config does not validate) as finally failed, and
        keep it in the registry it names (the worker's ``--registry`` first), under its model."""
        error = f"{type(exc).__name__}: {exc}"
        log("retrain-worker", f"{request['model']} {request['reason']} failed: {error}\n"
                              f"{traceback.format_exc().rstrip()}", request_id=request["request_id"])
        outcome = Outcome(None, "failed", [], {"error": error})
        root = self.registry_path or registry_path(request["config"])
        if root and isinstance(request["model"], str) and request["model"]:
            note_unversioned(Registry(root), request, outcome)
        events.emit("retrain_failed", final=True, error=error, request_id=request["request_id"],
                    model=request["model"], reason=request["reason"])
        return outcome

    @staticmethod
    def _audited(request: dict[str, Any], events: EventLog) -> EventLog:
        """``events`` with the ``[events] audit_log`` of the consumer that asked as their audit
        log, when its config names one (relative to where the worker runs, as ``[registry] path``
        is); an event that cannot be appended there is sent all the same, and logged."""
        try:
            path = ConsumerConfig.from_dict(request["config"]).events.audit_log
        except Exception:  # handle reports the request failed, on ct.events: its audit log is not known
            return events
        if not path:
            return events
        return events.with_audit_log(path, audit_failure_logger("retrain-worker", path,
                                                                request_id=request["request_id"]))

    def _handle_message(self, value: bytes, outbox: Outbox, events: EventLog) -> None:
        try:
            request = orjson.loads(value)
            missing = [k for k in ("request_id", "model", "reason", "config", "window") if k not in request]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            events.emit("retrain_failed", final=True, error=f"unreadable request: {exc}",
                        request=value[:2000].decode("utf-8", "replace"))
            return
        if request["request_id"] in self.settled_requests:
            log("retrain-worker", f"{request['model']} {request['reason']}: settled already (its commit was "
                                  "refused); not trained again", request_id=request["request_id"])
            return
        self.metrics.request_received(str(request["model"]))
        events = self._audited(request, events)
        started = time.monotonic()
        try:
            outcome = self.handle(request, outbox, events)
        except KafkaError:
            raise  # Kafka, not the request: it is read again once the worker is back
        except Exception as exc:  # settled as failed: unsettled, every restart would read it again and crash
            outcome = self._settle_as_failed(request, exc, events)
        self.metrics.retrain_seconds.observe(time.monotonic() - started, model=str(request["model"]))
        self.settled_requests[request["request_id"]] = None
        if len(self.settled_requests) > REMEMBERED_REQUESTS:
            del self.settled_requests[next(iter(self.settled_requests))]
        steps = ", ".join(f"{step.replace('_', ' ')} {s:.1f} s" for step, s in outcome.step_seconds.items())
        why = decision_reason(outcome)
        details = {"steps": steps} if steps else {}
        if outcome.deleted_by_retention:  # trained on what was left of the window
            details["deleted_by_retention"] = ", ".join(f"{n} records of partition {p}"
                                                        for p, n in outcome.deleted_by_retention.items())
        log("retrain-worker", f"{request['model']} {request['reason']} -> {outcome.decision}"
                              + (f": {why}" if why else ""), version=outcome.version,
            seconds=round(time.monotonic() - started, 1), **details)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "retrain-worker",
        description="Train, gate and register candidates for every retrain request; announce promotions.",
        epilog="example: stream-ct retrain-worker --registry registry")
    p.add_argument("--registry", default=None, help="registry folder (default: the request's [registry] path)")
    p.add_argument("--bootstrap-servers", default=None)
    p.add_argument("--exit-when-idle", type=float, default=None, metavar="SECONDS",
                   help="exit after this long without requests (for batch runs and tests)")
    add_arguments(p, default="off: the worker serves many consumer definitions and reads none at start")
    p.set_defaults(func=lambda a: RetrainWorker(a.registry, a.bootstrap_servers, a.exit_when_idle,
                                                metrics_args=a).run())
