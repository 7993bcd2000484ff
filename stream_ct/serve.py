"""The serving loop: one consumer-group member per process; scale out by partitions.

Per polled batch: decode and validate (bad records to ``<topic>.dlq`` with the reason and
original bytes), predict with the champion (or, before the first champion exists, with the
online model, marked ``source: online``), let the online model learn labeled records, join
labels that arrive later, feed the drift monitor, check triggers, rollback and shadow; then
flush every output and only then commit the offsets. A new champion is swapped in between
batches.
"""

from __future__ import annotations

import collections
import functools
import gc
import itertools
import math
import queue
import signal
import threading
import time
from typing import Any

import numpy as np
import orjson
from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError
from threadpoolctl import threadpool_limits

from stream_ct.alerts import Webhook
from stream_ct.awaiting import commit_note, read_note, waiting_records
from stream_ct.categories import model_matrix
from stream_ct.champion_loader import ChildLoader
from stream_ct.config import ConsumerConfig, add_override_option
from stream_ct.decode import MAX_RECORD_BYTES, decode_batch
from stream_ct.events import EventLog
from stream_ct.features import Measurements, die_ids, names_heads, strata_levels, target_vector, wafer_ids
from stream_ct.gates import metric_gain
from stream_ct.key_partitions import default_partitions
from stream_ct.kafka_io import (EVENTS_TOPIC, MODELS_TOPIC, RETRAIN_TOPIC, close_producer, ensure_control_topics,
                                ensure_topics, judging_key, make_consumer, make_producer, shadow_key)
from stream_ct.labels import LabelJoiner, unjoinable
from stream_ct.logs import audit_failure_logger, log
from stream_ct.metrics import Metrics, add_arguments, serve_metrics, start_from_args
from stream_ct.model_watcher import ModelWatcher
from stream_ct.online import OnlineModel
from stream_ct.outbox import Outbox
from stream_ct.prediction_messages import PARTS_PER_MESSAGE, batch_messages
from stream_ct.reconnect import while_unreachable
from stream_ct.record import part_key
from stream_ct.registry import Artifact, Registry
from stream_ct.retrain_worker import announcement, calibrated_monitor, retrain_request, served_target
from stream_ct.rolling import RollingMetric
from stream_ct.training import PRIMARY_METRIC, score
from stream_ct.triggers import Decision, TriggerPolicy
from stream_ct.words import counted

#: Records between two ``model_metrics`` events (the champion's and the online model's rolling metrics).
METRICS_EVERY = 5000
#: Features of a drift signal (its strongest) whose reference and current histograms its event carries.
HISTOGRAM_FEATURES = 3
#: River's HalfSpaceTrees flags a record as an outlier above this score before a champion exists.
ONLINE_ANOMALY_THRESHOLD = 0.9
#: A bootstrap asked again (the first made no champion) trains on at most this many reference windows.
BOOTSTRAP_MAX_WINDOWS = 8
#: Milliseconds a commit or an offsets lookup waits for the broker before it is tried again
#: (kafka-python waits 30 s by default): how soon a SIGTERM during an outage is heard there;
#: also what leaving the group and delivering the last events may take at exit.
BROKER_WAIT_MS = 5000
#: Types of a target field that ``target_vector`` turns into a label (or NaN) without asking further.
_PLAIN_TARGETS = frozenset((type(None), bool, int, float))


def partition_shares(available: dict[int, int], n: int) -> dict[int, int]:
    """How many of ``n`` records to take from each partition that holds ``available`` of them:
    an equal share of each, a partition holding fewer leaving what it lacks to the others.

    >>> partition_shares({0: 10_000, 1: 200, 2: 0}, 5000)
    {0: 4800, 1: 200, 2: 0}
    """
    taken = dict.fromkeys(available, 0)
    wanted = n
    while wanted > 0:
        open_ = [p for p in available if available[p] > taken[p]]
        if not open_:
            break
        share = -(-wanted // len(open_))  # ceil
        for p in open_:
            take = min(share, available[p] - taken[p], wanted)
            taken[p] += take
            wanted -= take
    return taken


def unmeasured_unscored(X: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``scores`` with NaN (no prediction) for the parts that have no result for any of the
    model's tests (``X``): a model answers such a part from its learned defaults, which says
    nothing about it (a yield champion called parts of another test program fails at 0.00002).

    >>> unmeasured_unscored(np.array([[1.0, np.nan], [np.nan, np.nan]]), np.array([0.9, 0.1])).tolist()
    [0.9, nan]
    """
    unmeasured = np.isnan(X).all(axis=1)
    if unmeasured.any():
        scores = np.where(unmeasured, np.nan, scores)
    return scores


def _unscored_as_null(scores: np.ndarray, flags: list[bool]) -> list[bool | None]:
    """``flags`` with None (no prediction) where the score is NaN (the part was not scored).

    >>> _unscored_as_null(np.array([0.9, np.nan]), [True, False])
    [True, None]
    """
    if not np.isnan(scores).any():
        return flags
    return [None if s != s else f for s, f in zip(scores.tolist(), flags)]


def _finite(value) -> bool:
    """A metric value that can be compared: a number, not None or NaN."""
    return value is not None and math.isfinite(value)


def build_monitor(config: ConsumerConfig, artifact: Artifact):
    """The champion's drift monitor: calibrated by the retrain job, or calibrated here if absent;
    None when ``[drift] enabled = false``."""
    from stream_ct.drift import DriftMonitor

    if not config.drift.enabled:
        return None
    if artifact.drift_state is not None:
        return DriftMonitor.from_state(artifact.drift_state)
    return calibrated_monitor(config, artifact.reference, artifact.meta["feature_names"])


def _youngest(entries: list[tuple[float, Any]], capacity: int) -> list[tuple[float, Any]]:
    """The ``capacity`` ``(time, ...)`` entries of the latest times, in their order (oldest first).

    >>> _youngest([(3.0, "c"), (1.0, "a"), (2.0, "b")], 2)
    [(2.0, 'b'), (3.0, 'c')]
    """
    return sorted(entries, key=lambda entry: entry[0])[max(0, len(entries) - capacity):]


def _read_back_failed(tp: TopicPartition, exc: Exception) -> None:
    log("serve", f"predictions of partition {tp.partition} made before it was assigned here are not waiting "
                 f"for labels: reading them back failed ({type(exc).__name__}: {exc})")


class ForgetRevoked(ConsumerRebalanceListener):
    """Serve forgets where it read a partition once the partition is revoked: if it came back
    with no batch of it in between (another instance may have read on and committed), the
    next commit would move the group's offset back to where this instance left it. A
    partition that comes back is read from its committed offset, so nothing is lost."""

    def __init__(self, server: Server):
        self.server = server
        self.held: set[TopicPartition] = set()

    def on_partitions_revoked(self, revoked) -> None:
        self.held = set(revoked)
        for tp in revoked:
            self.server.consumed.pop(tp, None)
            self.server.consumed_at.pop(tp, None)
            self.server.commit_offsets.pop(tp, None)

    def on_partitions_lost(self, lost) -> None:
        """Dropped from the group (a session that expired): forgotten as if revoked, but none is
        held on; another instance may have served them meanwhile, so when they come back their
        waiting predictions are read back (kafka-python's default took them as revoked: held)."""
        self.on_partitions_revoked(lost)
        self.held = set()

    def on_partitions_assigned(self, assigned) -> None:
        """An input partition new to this instance may have predictions waiting for labels."""
        if self.server.config.labels.topic:
            self.server.unrestored.update(tp for tp in assigned if tp not in self.held
                                          and tp.topic == self.server.config.consumer.input_topic)


class Server:
    def __init__(self, config: ConsumerConfig, bootstrap: str | None = None,
                 exit_when_idle_s: float | None = None, instance: str = "", metrics_args=None):
        self.config, self.bootstrap, self.exit_when_idle_s = config, bootstrap, exit_when_idle_s
        self.instance = instance
        self.task = config.model.task
        self.key_metric = PRIMARY_METRIC[self.task]
        self.registry = Registry(config.registry.path)
        self.online = OnlineModel(self.task)
        self.champion: Artifact | None = None
        self.champion_reason = ""
        self.previous_version: int | None = None
        self.monitor = None
        self.site_heads = True  # the monitor's reference names sites with their heads (features.names_heads)
        self.monitor_warned = 0  # the monitor's warnings said so far
        self.monitor_start = 0
        self.shadow: Artifact | None = None
        self.shadow_metrics: tuple[RollingMetric, RollingMetric] | None = None
        t = config.triggers
        self.trigger = TriggerPolicy(t.policy, config.retrain.cooldown_records, t.schedule_records,
                                     t.schedule_seconds, t.drift_memory_records)
        newest = self._newest_version_asked()
        if newest:  # a restart keeps the schedule: it counts from the newest version registered
            self.trigger.retrained_ago(time.time() - newest[1])
        self.joiner = LabelJoiner(config.labels.buffer_size, config.labels.ttl_seconds)
        self.position = 0  # valid records seen by this instance
        #: (timestamp, partition, offset) of the last records read: where a retrain window starts
        self.read_marks: collections.deque = collections.deque(
            maxlen=max(config.retrain.window_records, config.drift.reference_size) + config.drift.window)
        self.end_offsets: dict[int, int] = {}
        self.in_flight: dict[str, dict[str, Any]] = {}
        self.deferred: dict[str, Any] | None = None  # a drift retrain waiting for post-drift data
        self.last_settled_at = self.last_size_check = 0.0
        self.bootstrap_asked_at = 0  # records in the input at the last bootstrap request
        self.bootstrap_wait_logged = False  # said once that the input is under reference_size
        self.last_check_kind = ""
        self.last_metrics_at = 0
        self.champion_metric: RollingMetric | None = None
        self.metric_before: dict[str, float] | None = None  # the previous champion's, at the swap
        self.online_metric = RollingMetric(self.task)
        self.post_deploy_reported = self.rollback_checked = True
        self.counts = collections.Counter()
        self.stopping = False
        self.metrics = Metrics()
        self.sm = serve_metrics(self.metrics)
        self.sm.start(config.consumer.name, webhook=bool(config.events.webhook_url))
        self.metrics_args = metrics_args
        self.assigned = False
        self.consumed: dict[TopicPartition, int] = {}  # next offset per partition read, inputs and labels
        #: the timestamp (ms) of the last record read there, and when (wall time) it was read: the
        #: commit's note (``awaiting.commit_note``)
        self.consumed_at: dict[TopicPartition, tuple[int, float]] = {}
        #: input partitions assigned whose predictions made before (elsewhere, or before a restart)
        #: still wait for labels: read back before the next batch is processed
        self.unrestored: set[TopicPartition] = set()
        self.read_backs: list[threading.Thread] = []  # reading them back
        self.read_back: queue.SimpleQueue = queue.SimpleQueue()  # what they found
        self.commit_offsets: dict = {}  # the offsets the last commit covers
        self.commits_sent = 0
        self.last_commit = "none"  # the answer to the last commit: "none" sent, "pending", "done" or "failed"

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.config
        # One thread per process: OpenMP across cores under load turns a 7 ms batch into 400 ms
        # at p99; serving scales out by partitions and processes instead.
        threadpool_limits(1)
        ensure_control_topics(self.bootstrap)
        # Inputs too: a consumer learns of a topic created after it subscribed only at its next
        # metadata refresh (minutes); a missing one is created as the broker would auto-create it.
        topics = [cfg.consumer.input_topic] + ([cfg.labels.topic] if cfg.labels.topic else [])
        self._ensure_topics(topics)
        self.producer = make_producer(self.bootstrap)
        self._learn_output_topics()
        # predictions, dead letters, retrain requests, announcements: kept until acknowledged
        self.outbox = Outbox(self.producer, should_stop=lambda: self.stopping)
        webhook = Webhook(cfg.events.webhook_url, on_outcome=lambda outcome: self.sm.webhook_posts.inc(
            consumer=cfg.consumer.name, outcome=outcome)) if cfg.events.webhook_url else None
        self.events = self._event_log(webhook)
        self.watcher = ModelWatcher(cfg.model.name, cfg.consumer.name, ChildLoader(cfg),
                                    self._watcher_alert, self.bootstrap,
                                    earlier_versions=lambda v: self.registry.champions_before(cfg.model.name, v))
        # Libraries, configuration and clients live as long as the process and hold no cycle
        # garbage: out of every cyclic collection, which then only walks the stream's own
        # objects (50 tests, in-process: 6-12 of 58-64 us per record went to the collector).
        gc.collect()
        gc.freeze()
        self.watcher.start()
        self.watcher.ready.wait(timeout=30)
        consumer = self.consumer = make_consumer(
            group_id=cfg.consumer.group_id, bootstrap=self.bootstrap,
            max_poll_records=cfg.consumer.poll_max_records, session_timeout_ms=cfg.consumer.session_timeout_ms,
            heartbeat_interval_ms=max(1000, cfg.consumer.session_timeout_ms // 3))
        consumer.subscribe(topics, listener=ForgetRevoked(self))
        self._stop_on_signals()
        metrics_server = start_from_args(self.metrics_args, self.metrics, ready=self._ready,
                                         config_port=cfg.events.metrics_port) if self.metrics_args else None
        idle_since = time.monotonic()
        log("serve", f"{cfg.consumer.name} consuming {', '.join(topics)}", group=cfg.consumer.group_id)
        try:
            while not self.stopping:
                if metrics_server:
                    metrics_server.heartbeat()
                self._between_batches()
                polled, batch = self._poll(consumer)
                if not polled:
                    break
                self.assigned = bool(consumer.assignment())
                if self.unrestored:  # before this batch is committed: its commit would be the note found
                    self._restore_waiting()
                if batch:
                    started, position, before = time.monotonic(), self.position, self.counts.copy()
                    self._process(batch)
                    if not self.outbox.flush():
                        log("serve", "stopping with the last batch's outputs unacknowledged; its input stays "
                                     "uncommitted and is read again on restart")
                        break
                    self._commit(consumer)
                    idle_since = time.monotonic()
                    self.sm.batch_done(cfg.consumer.name, records=self.position - position,
                                       seconds=idle_since - started, dlq=self.counts["dlq"] - before["dlq"],
                                       missing=self.counts["missing_results"] - before["missing_results"],
                                       predictions={src: self.counts[f"predictions_{src}"] - before[f"predictions_{src}"]
                                                    for src in ("champion", "online")})
                    self.sm.lag(cfg.consumer.name, consumer, self.consumed)
                else:
                    self.sm.idle(cfg.consumer.name)
                    if self._idle_done(idle_since):
                        break
        finally:
            if metrics_server:
                metrics_server.close()
            self._settle_commit(consumer)
            consumer.close(timeout_ms=BROKER_WAIT_MS)
            self.watcher.stop()
            self.events.emit("serve_stopped", **self.summary())
            self._flush_before_exit()
            if webhook:
                webhook.flush()
        log("serve", f"stopped after {self.position} records", **self.counts)
        return 0

    def _event_log(self, webhook: Webhook | None) -> EventLog:
        """Serve's events, to ``ct.events`` and the ``[events] audit_log``; an event the audit
        log cannot take (a full disk) is said in serve's log and still sent: a crash there
        stopped serving at every restart while the disk stayed full."""
        cfg = self.config
        return EventLog(self.producer, f"serve{self.instance}", cfg.consumer.name,
                        audit_path=cfg.events.audit_log or None, webhook=webhook, listeners=[self.sm.on_event],
                        audit_failed=audit_failure_logger("serve", cfg.events.audit_log))

    def _ensure_topics(self, inputs: list[str]) -> None:
        """Inputs and outputs created where missing; an input created here is said (serve on a
        misspelt input topic waited on a new empty one without a word)."""
        cfg = self.config
        created = ensure_topics({t: {} for t in [*inputs, cfg.dlq_topic, cfg.predictions_topic]}, self.bootstrap)
        for topic in (t for t in inputs if t in created):
            log("serve", f"topic {topic} did not exist: created it, empty; check the name if you expected records there")

    def _stop_on_signals(self) -> None:
        """SIGTERM, and Ctrl-C (SIGINT) where it is not ignored, stop serve after its batch, with
        the last commit and the summary line (Ctrl-C raised KeyboardInterrupt wherever serve was
        and exited 130 without them); a second Ctrl-C stops at once."""
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            def interrupted(*_):
                self.stopping = True
                signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGINT, interrupted)

    def _watcher_alert(self, type_: str, **fields) -> None:
        """The model watcher's alerts (a champion that cannot be loaded, a tampered one, a
        fallback), in serve's log as well as on ``ct.events``: serve that found no version files
        in its registry served the online model and said nothing."""
        where = (f"; serve reads the registry at {self.registry.root.resolve()} ([registry] path is relative to "
                 "where serve runs)" if fields.get("kind") == "model_load_failed" else "")
        log("serve", f"alert ({fields.get('severity')}, {fields.get('kind')}): {fields.get('error')}{where}")
        self.events.emit(type_, **fields)

    def _learn_output_topics(self) -> None:
        """Fetch the producer's metadata of every topic serve writes to while the broker is
        there: a send to a topic it has none for waits for the broker (``max_block_ms``, 60 s)
        and then raises. An instance that had sent no event yet, stopped during an outage,
        waited that minute on its ``serve_stopped`` event and exited 3."""
        cfg = self.config
        for topic in (cfg.predictions_topic, cfg.dlq_topic, EVENTS_TOPIC, RETRAIN_TOPIC, MODELS_TOPIC):
            self.producer.partitions_for(topic)

    def _flush_before_exit(self, timeout_s: float = BROKER_WAIT_MS / 1000) -> None:
        """Deliver what is still buffered (events), waiting at most ``timeout_s`` when the
        broker is away: nothing committed depends on it (kafka-python's ``close`` raised when
        its flush timed out: serve ended with exit code 3, without its last line)."""
        if not close_producer(self.producer, timeout_s):
            log("serve", f"Kafka did not acknowledge the last events within {timeout_s:.0f} s; exiting anyway")

    def _commit(self, consumer) -> None:
        """Commit the batch whose outputs the broker has acknowledged, without waiting for the
        answer (a synchronous commit is a 7-13 ms round trip, ~6 us per record at 2,000-record
        batches): the previous batch's commit has had this batch's time to be answered. If it
        failed (the broker went away, a rebalance), this one is made synchronously, retried
        while the broker is away; refused there (the group moved on while the broker was away),
        it stays failed for the next batch, and a partition assigned elsewhere meanwhile is read
        again from its last commit. Stopping during an outage leaves the batch uncommitted; it is
        read again on restart (at least once)."""
        assigned = consumer.assignment()
        self.consumed = {tp: offset for tp, offset in self.consumed.items() if tp in assigned}
        # each partition's note says when its own last record was read: a commit covers the
        # partitions that had none in this batch too (stamped with the commit's time, a partition
        # idle for an hour had its waiting predictions judged an hour younger after a restart)
        self.commit_offsets = {tp: OffsetAndMetadata(offset, commit_note(*self.consumed_at.get(tp, (None, None))),
                                                     -1) for tp, offset in self.consumed.items()}
        if self.last_commit == "failed":
            self.counts["async_commit_failures"] += 1
            try:
                self._commit_now(consumer)
            except CommitFailedError as exc:  # a broker away past the session timeout dropped serve from its group
                self.counts["commits_refused"] += 1
                log("serve", f"commit refused ({type(exc).__name__}: the group rebalanced); the next batch "
                             "commits once the next poll has rejoined the group")
            return
        self.commits_sent += 1
        self.last_commit = "pending"
        consumer.commit_async(offsets=dict(self.commit_offsets),
                              callback=functools.partial(self._commit_answered, self.commits_sent))

    def _commit_answered(self, number: int, _offsets, response) -> None:
        """kafka-python's answer to commit ``number``; only the latest commit's counts (a later
        commit covers an earlier one)."""
        if number == self.commits_sent:
            self.last_commit = "failed" if isinstance(response, Exception) else "done"

    def _settle_commit(self, consumer) -> None:
        """Before the consumer closes: the last commit made sure of (again, synchronously, unless
        its answer came). A commit the broker refuses here (the group moved on) is logged: the
        batch is read again by whoever owns its partition."""
        if self.last_commit in ("pending", "failed"):
            try:
                self._commit_now(consumer)
            except KafkaError as exc:
                log("serve", f"the last commit failed ({type(exc).__name__}: {exc}); its batch will be read again")

    def _commit_now(self, consumer) -> None:
        offsets = {tp: o for tp, o in self.commit_offsets.items() if tp in consumer.assignment()}
        if not offsets:
            return
        if self._while_unreachable("commit", lambda: consumer.commit(offsets, timeout_ms=BROKER_WAIT_MS))[0]:
            self.last_commit = "done"
        else:
            log("serve", "stopping with the last batch uncommitted; it will be read again on restart")

    def _poll(self, consumer) -> tuple[bool, Any]:
        """``(True, batch)``, waiting out an unreachable broker: kafka-python's poll rejoins the
        group and refreshes offsets, and right after a broker restart that can raise instead
        of waiting (a test run saw serve exit there); ``(False, None)`` once stopping."""
        return self._while_unreachable(
            "poll", lambda: consumer.poll(timeout_ms=self.config.consumer.poll_timeout_ms))

    def _while_unreachable(self, what: str, call) -> tuple[bool, Any]:
        """``call()`` retried while the broker is away (``reconnect.while_unreachable``),
        the retries counted as ``<what>_retries``."""
        def count():
            self.counts[f"{what.replace(' ', '_')}_retries"] += 1
        return while_unreachable(what, call, lambda: self.stopping, "serve", count)

    def _idle_done(self, idle_since: float) -> bool:
        """With ``exit_when_idle_s``: true once input is idle that long, nothing is left in
        flight or being read back, and the last retrain settled that long ago too (a producer
        may be waiting for its deploy before it sends more: two seconds were too short on a
        busy machine)."""
        if self.exit_when_idle_s is None or time.monotonic() - idle_since < self.exit_when_idle_s:
            return False
        self._settle_requests()
        if self.deferred is not None:
            self._dispatch_deferred(force=True)
            return False
        settled_long_enough = time.monotonic() - self.last_settled_at > self.exit_when_idle_s
        reading_back = any(thread.is_alive() for thread in self.read_backs) or not self.read_back.empty()
        return not self.in_flight and settled_long_enough and not self.watcher.has_pending() and not reading_back

    def _ready(self) -> bool:
        """``/readyz``: partitions assigned and the model watcher caught up with ``ct.models``
        (serve subscribes after waiting at most 30 s for the watcher, so an instance can be
        assigned before it knows the champion)."""
        return self.assigned and self.watcher.ready.is_set()

    def summary(self) -> dict[str, Any]:
        return {"records": self.position, "counts": dict(self.counts), "labels": dict(self.joiner.counts),
                "champion_version": self.champion.version if self.champion else None,
                "champion_metric": self.champion_metric.value() if self.champion_metric else None,
                "online_metric": self.online_metric.value()}

    # -- the batch --------------------------------------------------------------------------

    def _process(self, batch: dict) -> None:
        labels_topic = self.config.labels.topic
        parts, labels = [], []
        read_at = time.time()
        for tp in sorted(batch, key=lambda t: (t.topic, t.partition)):
            (labels if tp.topic == labels_topic else parts).extend(batch[tp])
            self.consumed[tp] = batch[tp][-1].offset + 1
            self.consumed_at[tp] = (batch[tp][-1].timestamp, read_at)
            if tp.topic != labels_topic:
                self.end_offsets[tp.partition] = batch[tp][-1].offset + 1
        if parts:
            self._process_parts(parts)
        if labels:
            self._process_labels(labels)
        self._check_performance()

    def _process_parts(self, messages: list) -> None:
        valid, invalid = decode_batch([m.value for m in messages])
        if self.task != "anomaly":
            valid = self._labelable(valid, invalid)
        for i, reason in invalid:
            self._dead_letter(messages[i], reason)
        if not valid:
            return
        records = [rec for _, rec in valid]
        sources = [messages[i] for i, _ in valid]
        # an outlier model has no labels: the default target (``passed``) is not its
        labels = (np.full(len(records), np.nan) if self.task == "anomaly"
                  else target_vector(records, self.config.model.target))
        results = Measurements(records)
        # Results that are not measurements (null, NaN, inf, 9.9e37) are kept out of every model
        # and statistic, and counted.
        self.counts["missing_results"] += results.missing
        online_scores = self.online.predict_learn(results, labels)
        self.online_metric.add(online_scores, labels)
        X = shadow_scores = None
        if self.champion is not None:
            X, scores = self._scores(self.champion, records, results)
            self._emit_predictions(records, sources, scores, "champion", self.champion.version)
            self.champion_metric.add(scores, labels)
            if self.shadow is not None:
                same = self.shadow.meta["feature_names"] == self.champion.meta["feature_names"]
                shadow_scores = self._scores(self.shadow, records, results, X if same else None)[1]
                # on the parts both scored: one model may lack a part's every test
                paired = np.where(np.isnan(scores) | np.isnan(shadow_scores), np.nan, labels)
                self.shadow_metrics[0].add(shadow_scores, paired)
                self.shadow_metrics[1].add(scores, paired)
        else:
            scores = online_scores
            self._emit_predictions(records, sources, scores, "online", None)
        if self.config.labels.topic:
            self._await_labels(records, results.rows(), labels, scores, shadow_scores, online_scores)
        start = self.position
        self.position += len(records)
        self.read_marks.extend((m.timestamp, m.partition, m.offset) for m in sources)
        if self.monitor is not None:
            self._detect(X, records, sources, start)

    def _scores(self, artifact: Artifact, records: list, results: Measurements,
                X: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(X, scores)``: a registered model's results matrix of ``records`` (or the ``X``
        given, for the same tests) and its scores, NaN for a part with none of its tests."""
        if X is None:
            X = results.matrix(artifact.meta["feature_names"])
        inputs = model_matrix(X, records, artifact.meta.get("categories"))
        return X, unmeasured_unscored(X, score(self.task, artifact.estimator, inputs))

    def _labelable(self, valid: list, invalid: list) -> list:
        """``valid`` less the records whose target field holds no label (a string, a list: a
        target the record schema does not check, ``float()`` of it crashed the batch at every
        restart), those added to ``invalid``; serve's rule for a label record's target."""
        target = self.config.model.target
        if _PLAIN_TARGETS.issuperset({type(rec.get(target)) for _, rec in valid}):
            return valid
        kept = []
        for i, rec in valid:
            value = rec.get(target)
            if served_target(value):
                kept.append((i, rec))
            else:
                invalid.append((i, f"field {target} = {repr(value)[:100]} is not a finite number, so no label"))
        return kept

    def _dead_letter(self, message, reason: str) -> None:
        # Kafka allows a header without a value but kafka-python refuses to send one (TypeError,
        # which ended serve at the same record at every restart): it goes out empty, named in
        # dlq.null_headers
        headers = [(name, b"" if value is None else value) for name, value in message.headers or []]
        nulls = [name for name, value in message.headers or [] if value is None]
        headers += [("dlq.reason", reason.encode()), ("dlq.topic", message.topic.encode()),
                    ("dlq.partition", str(message.partition).encode()), ("dlq.offset", str(message.offset).encode())]
        if nulls:
            headers.append(("dlq.null_headers", orjson.dumps(nulls)))
        value = message.value or b""
        if len(value) > MAX_RECORD_BYTES:
            # over Kafka's default topic limit (1 MB) and maybe over serve's producer's: sending it
            # raised at the same record at every restart. The dead letter names where it is instead.
            headers.append(("dlq.value_omitted", str(len(value)).encode()))
            value = b""
        self.outbox.send(self.config.dlq_topic, key=message.key, value=value,
                         headers=headers, timestamp_ms=message.timestamp)
        self.counts["dlq"] += 1

    def _emit_predictions(self, records, sources, scores: np.ndarray, source: str, version: int | None) -> None:
        keys = [part_key(record) for record in records]
        labels = self._predictions(scores, source)
        if self.config.consumer.prediction_messages == "batch":
            self._emit_batched(records, sources, keys, scores.tolist(), labels, source, version)
        else:
            self._emit_per_part(records, sources, keys, scores.tolist(), labels, source, version)
        self.counts[f"predictions_{source}"] += len(records)

    def _emit_per_part(self, records, sources, keys, scores, labels, source, version) -> None:
        topic, name = self.config.predictions_topic, self.config.model.name
        wire_keys = [message.key or key.encode() for message, key in zip(sources, keys)]
        # the partitions kafka-python's partitioner would pick, for the batch in one go
        partitions = sorted(self.producer.partitions_for(topic))
        chosen = np.asarray(partitions)[default_partitions(wire_keys, len(partitions))].tolist()
        for record, message, key, wire_key, partition, s, p in zip(
                records, sources, keys, wire_keys, chosen, scores, labels):
            value = {"key": key, "model": name, "version": version, "source": source, "score": s,
                     "prediction": p, "partition": message.partition, "offset": message.offset, "ts": record["ts"]}
            self.outbox.send(topic, key=wire_key, value=orjson.dumps(value), partition=partition,
                             timestamp_ms=message.timestamp)

    def _emit_batched(self, records, sources, keys, scores, labels, source, version) -> None:
        """One message per input partition and ``PARTS_PER_MESSAGE`` parts, split further when too
        large (``prediction_messages = "batch"``); ``sources`` come sorted by partition, as
        ``_process`` gathers them."""
        topic, name, start = self.config.predictions_topic, self.config.model.name, 0
        for partition, group in itertools.groupby(sources, key=lambda m: m.partition):
            end = start + len(list(group))
            for lo in range(start, end, PARTS_PER_MESSAGE):
                hi = min(lo + PARTS_PER_MESSAGE, end)
                sent = lo
                for (key, value), parts in batch_messages(
                        self.config.consumer.input_topic, partition, name, version, source, keys[lo:hi],
                        scores[lo:hi], labels[lo:hi], [m.offset for m in sources[lo:hi]],
                        [r["ts"] for r in records[lo:hi]]):
                    sent += parts
                    self.outbox.send(topic, key=key, value=value, timestamp_ms=sources[sent - 1].timestamp)
            start = end

    def _predictions(self, scores: np.ndarray, source: str) -> list:
        """What a score means for this task: pass/fail, a bin, a value, or an outlier flag."""
        if self.task == "classification":
            return _unscored_as_null(scores, (scores >= 0.5).tolist())
        if self.task == "multiclass":
            return [None if np.isnan(s) else int(s) for s in scores]
        if self.task == "anomaly":
            threshold = self.champion.estimator.threshold if source == "champion" else ONLINE_ANOMALY_THRESHOLD
            # a part with no measurement is not scored (NaN): null, neither an outlier nor cleared
            return _unscored_as_null(scores, (scores > threshold).tolist())
        return scores.tolist()

    # -- labels that arrive later -------------------------------------------------------------

    def _await_labels(self, records, rows, labels, scores, shadow_scores, online_scores) -> None:
        version = self.champion.version if self.champion else None
        shadow_version = None if shadow_scores is None else self.shadow.version
        for i, record in enumerate(records):
            if math.isnan(labels[i]):
                shadow = None if shadow_scores is None else (shadow_version, shadow_scores[i])
                self.joiner.add_prediction(part_key(record),
                                           (version, scores[i], shadow, rows[i], online_scores[i]))
        self._learn_from(self.joiner.take_early_matches())

    def _restore_waiting(self) -> None:
        """Have the predictions committed on newly assigned partitions before this instance got
        them (a restart, a rebalance) wait for their labels again (``stream_ct.awaiting``). They
        are read back in a thread of their own (``_read_back``) while serving goes on; a label
        that comes first waits as an early label. A failure is said and costs only their
        labels' updates, as before.

        Called right after the poll that assigned them, before its batch is processed: once
        this instance commits that batch, the group's commit is its own, and its note (made
        now, of records sent maybe long after the ones waiting) aged the predictions made
        before by the timestamps alone, the downtime left out: predictions past their TTL
        waited again, and so did the batch just served."""
        partitions, self.unrestored = sorted(self.unrestored), set()
        notes = {}
        for tp in partitions:
            try:
                committed = self.consumer.committed(tp, metadata=True, timeout_ms=BROKER_WAIT_MS)
            except KafkaError as exc:
                _read_back_failed(tp, exc)
                continue
            note = read_note(committed.metadata) if committed is not None else None
            labels = self._labels_committed(tp.partition)
            if note is not None or (labels is not None and labels[2] is not None):  # labels may wait, no part
                notes[tp] = (committed.offset if committed is not None else 0, note, labels)
        if notes:
            self.read_backs = [t for t in self.read_backs if t.is_alive()]
            thread = threading.Thread(target=self._read_back, args=(notes, self.champion), name="read-back",
                                      daemon=True)
            self.read_backs.append(thread)
            thread.start()

    def _labels_committed(self, partition: int) -> tuple[str, int, tuple[float, int] | None] | None:
        """The labels topic, its committed offset on ``partition`` and that commit's note when
        this instance reads it too (a labels topic co-partitioned with the input): the labels
        read before it were joined, or held for their parts, by the partition's previous owner.
        None when that cannot be told."""
        labels = TopicPartition(self.config.labels.topic, partition)
        if labels not in self.consumer.assignment():
            return None
        try:
            committed = self.consumer.committed(labels, metadata=True, timeout_ms=BROKER_WAIT_MS)
        except KafkaError:
            return None
        return (labels.topic, 0, None) if committed is None else \
            (labels.topic, committed.offset, read_note(committed.metadata))

    def _read_back(self, notes: dict, champion: Artifact | None) -> None:
        """In a thread of its own: the waiting parts of the partitions ``notes`` names (committed
        offset and note), scored by ``champion`` (the online model's own scores are gone), and
        the labels read there before their parts, handed to the serving loop, which lets them
        wait (``_restore_read_back``); not the parts whose label their previous owner had read
        (``awaiting.waiting_records``). At most the joiner's ``buffer_size`` of each, the
        youngest: more would be evicted on arrival (each partition is read up to that many
        offsets, the youngest kept across partitions as they are read)."""
        started, found, labels = time.monotonic(), [], []  # (when predicted or read, on this clock; ...)
        capacity = self.config.labels.buffer_size
        try:
            for tp, (offset, note, labels_committed) in notes.items():
                try:
                    waiting = waiting_records(tp.topic, tp.partition, offset, note, self.config.labels.ttl_seconds,
                                              self.config.model.target, self.bootstrap, capacity, labels_committed)
                except (KafkaError, TimeoutError, ValueError) as exc:
                    _read_back_failed(tp, exc)
                    continue
                # aged as of now: the partitions read after this one (a minute at 300 tests) age it too
                read_at = time.monotonic()
                found = _youngest(found + [(read_at - age, rec) for age, rec in waiting.predictions], capacity)
                labels = _youngest(labels + [(read_at - age, (key, y)) for age, key, y in waiting.labels], capacity)
            records = [rec for _, rec in found]
            results = Measurements(records)
            if champion is not None and records:
                scores, version = self._scores(champion, records, results)[1], champion.version
            else:
                scores, version = np.full(len(records), np.nan), None
            now = time.monotonic()
            entries = [(part_key(rec), (version, s, None, row, math.nan), now - predicted_at)
                       for (predicted_at, rec), s, row in zip(found, scores.tolist(), results.rows())]
            early = [(key, y, now - at) for at, (key, y) in labels]
            if entries or early:
                self.read_back.put((entries, early, now, sorted(tp.partition for tp in notes), started))
        except Exception as exc:  # a thread's error would only reach stderr: said in serve's log, serving goes on
            log("serve", f"reading back the predictions waiting for labels failed ({type(exc).__name__}: {exc})")

    def _restore_read_back(self) -> None:
        """Let the predictions and the early labels a read-back thread found wait, aged by the
        time since it read them; labels and parts that came meanwhile join them now."""
        while not self.read_back.empty():
            entries, early, read_at, partitions, started = self.read_back.get()
            late = time.monotonic() - read_at
            self.joiner.restore([(key, prediction, age + late) for key, prediction, age in entries],
                                [(key, y, age + late) for key, y, age in early])
            self._learn_from(self.joiner.take_early_matches())
            log("serve", f"{counted(len(entries), 'prediction')} and {counted(len(early), 'label')} made or read "
                         "before a restart or rebalance wait again", partitions=",".join(map(str, partitions)),
                seconds=round(time.monotonic() - started, 2))

    def _process_labels(self, messages: list) -> None:
        target = self.config.model.target
        pairs = []
        for m in messages:
            try:
                label = orjson.loads(m.value or b"")
                problem = unjoinable(label)
                if problem:
                    self._dead_letter(m, f"bad label record: {problem}")
                    continue
                if target not in label:  # another consumer's label on a shared labels topic (the worker skips them too)
                    self.counts["labels_other_targets"] += 1
                    continue
                if label[target] is None:
                    raise ValueError(f"{target} is null: a label record carries its part's label")
                value = float(label[target])
                if not math.isfinite(value):
                    raise ValueError(f"{target} = {label[target]!r} is not a finite number")
                pairs.append((part_key(label), value))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                self._dead_letter(m, f"bad label record: {type(exc).__name__}: {exc}")
        self._learn_from(self.joiner.add_labels(pairs))
        self.counts["labels"] += len(pairs)

    def _learn_from(self, joined) -> None:
        """Labeled predictions: update the rolling metrics and let the online model learn."""
        current = self.champion.version if self.champion else None
        shadow_now = self.shadow.version if self.shadow is not None else None
        if joined:  # the online model's own scores, made before it learned the row: prequential
            self.online_metric.add(np.array([entry[4] for entry, _ in joined]), np.array([y for _, y in joined]))
        for (version, s, shadow, row, _), y in joined:
            if version is not None and version == current:
                self.champion_metric.add(np.array([s]), np.array([y]))
                # only the running shadow's own scores: a prediction made beside an earlier shadow
                # says nothing about this one
                if shadow is not None and shadow[0] == shadow_now and not (math.isnan(s) or math.isnan(shadow[1])):
                    self.shadow_metrics[0].add(np.array([shadow[1]]), np.array([y]))
                    self.shadow_metrics[1].add(np.array([s]), np.array([y]))
            self.online.learn(row, y)

    # -- drift and triggers -----------------------------------------------------------------

    def _detect(self, X, records, sources, start: int) -> None:
        strata = strata_levels(records, self.site_heads)
        dies = die_ids(records) if self.monitor.die_pattern is not None else None
        groups = wafer_ids(records) if self.monitor.needs_groups else None
        signals = self.monitor.update(X, strata=strata, dies=dies, groups=groups)
        for warning in self.monitor.warnings[self.monitor_warned:]:  # said mid-stream (wafers in pieces)
            log("serve", warning, record=self.position)
            self.events.emit("alert", severity="warning", kind="drift_monitor", model=self.config.model.name,
                             detail=warning, position=self.position)
        self.monitor_warned = len(self.monitor.warnings)
        for s in signals:
            self.events.emit("drift", **self._drift_event(s, sources, start))
            self.counts["drift_signals"] += 1
        if signals:
            self.trigger.note_drift(self.position)

    def _drift_event(self, s, sources, start: int) -> dict[str, Any]:
        """A signal's event: stream positions, the input message where it fired, and the
        ``histograms`` of its ``HISTOGRAM_FEATURES`` strongest features (PSI bins, reference and
        current window counts, its stratum's where it has one, for the report; made per event,
        not per batch)."""
        index = self.monitor_start + s.position - start
        message = sources[min(max(index, 0), len(sources) - 1)]
        event = s.to_event()
        event.update(model=self.config.model.name, champion_version=self.champion.version,
                     monitor_position=s.position, position=self.monitor_start + s.position,
                     partition=message.partition, offset=message.offset,
                     histograms=self.monitor.histograms(s.features[:HISTOGRAM_FEATURES], s.stratum))
        if s.positions:
            event["positions"] = {f: self.monitor_start + p for f, p in s.positions.items()}
        return event

    def _performance_low(self) -> bool:
        t = self.config.triggers
        if self.champion_metric is None or self.champion_metric.seen < t.performance_min_labels:
            return False
        value = (self.champion_metric.value() or {}).get(self.key_metric)
        if value is None:
            return False
        gate_value = self._holdout_metric()
        below_floor = bool(t.performance_floor and value < t.performance_floor)
        return below_floor or (_finite(gate_value) and value < gate_value - t.performance_margin)

    def _holdout_metric(self):
        """The champion's key metric on its holdout; None where its metadata has none (null for
        NaN: a holdout the metric could not judge, in a version promoted by hand)."""
        return ((self.champion.meta.get("metrics") or {}).get("candidate") or {}).get(self.key_metric)

    def _check_performance(self) -> None:
        if self.champion is None:
            return
        if self.position - self.last_metrics_at >= METRICS_EVERY:  # the metric over time, for reports
            self.last_metrics_at = self.position
            self.events.emit("model_metrics", model=self.config.model.name, version=self.champion.version,
                             position=self.position, metrics=self.champion_metric.value(),
                             online=self.online_metric.value())
        self._check_rollback()
        decision = self.trigger.check(self.position, self._performance_low(),
                                      busy=bool(self.in_flight or self.deferred))
        if not any(decision.conditions.values()):
            return
        kept = decision.reason == "schedule" and self._schedule_kept()
        if kept:
            decision = Decision(False, kept, decision.conditions)
        # each change, not every batch ("cooldown: 6463 records since ..." counts up per batch)
        kind = decision.reason.split(":", 1)[0]
        if decision.fire or kind != self.last_check_kind:
            self.events.emit("trigger_check", fire=decision.fire, reason=decision.reason,
                             conditions=decision.conditions, position=self.position)
            self.last_check_kind = kind
        if not decision.fire:
            return
        self.counts[f"triggers_{decision.reason}"] += 1
        drift_since = self.trigger.drift_since
        self.trigger.dispatched(self.position)
        if decision.conditions["drift"]:
            # Train on data after the change: wait until window_records records have followed the
            # episode's first drift signal (a trigger that also waited on a retrain in flight or on
            # a performance drop may find them there already).
            self.deferred = {"reason": decision.reason, "position": drift_since}
        elif self.position < self.config.retrain.window_records:
            # just (re)started: this instance's records date the window, and it has seen too few of them
            self.deferred = {"reason": decision.reason, "position": 0}
        else:
            self._request(decision.reason, self.config.retrain.window_records)

    def _schedule_kept(self) -> str | None:
        """Why a retrain that only ``schedule_seconds`` asks for is not needed, or None: a version
        was asked for less than a period ago, by another instance's schedule or any other trigger.
        The schedule then counts from that version, so the instances keep one schedule and its
        retrain is trained once, not once per instance (``schedule_records`` counts each
        instance's own records)."""
        period = self.config.triggers.schedule_seconds
        newest = self._newest_version_asked() if period else None
        ago = None if newest is None else time.time() - newest[1]
        if ago is None or ago >= period:
            return None
        self.trigger.retrained_ago(ago)
        return f"schedule kept: v{newest[0]} was asked for {ago:.0f} s ago, within schedule_seconds={period:g}"

    def _newest_version_asked(self) -> tuple[int, float] | None:
        """The newest registered version and when its retrain was asked for (versions registered
        before requests were timed: when it was registered); None before the first."""
        newest = next(self.registry.readable_metas(self.config.model.name), None)
        if newest is None:
            return None
        version, meta = newest
        return version, meta.get("trigger", {}).get("requested_at") or meta.get("created_at", time.time())

    def _dispatch_deferred(self, force: bool = False) -> None:
        """Publish a drift retrain once enough post-drift records have arrived (another once the
        instance has seen ``window_records``)."""
        if self.deferred is None:
            return
        after = self.position - self.deferred["position"]
        if after < self.config.retrain.window_records and not force:
            return
        self._request(self.deferred["reason"], after + self.config.drift.window)
        self.deferred = None

    def _bootstrap_if_needed(self) -> None:
        """The first champion comes from the same retrain job, on the first window of the stream:
        once the input topic (all partitions, whichever instance reads them) holds
        ``reference_size`` records. Every instance may ask; the worker trains the first ask. One
        that made no champion (skipped: labels not there yet; rejected) is asked again each time
        the input has doubled since, on its first 2, 4, ... ``reference_size`` records, at most
        ``BOOTSTRAP_MAX_WINDOWS`` of them (so a stream the gates keep rejecting costs a few
        retrains, not one every window)."""
        if (self.champion is not None or self.in_flight or self.watcher.loaded_version is not None
                or self.watcher.attempted_version or self.watcher.has_pending()  # one is on its way
                or time.monotonic() - self.last_size_check < 2.0):
            return
        self.last_size_check = time.monotonic()
        reached, offsets = self._while_unreachable("read input offsets", self._input_offsets)
        if not reached:
            return
        begin, end = offsets
        size, total = self.config.drift.reference_size, sum(end[tp] - begin[tp] for tp in begin)
        if total < max(size, 2 * self.bootstrap_asked_at):
            if not self.bootstrap_asked_at and not self.bootstrap_wait_logged:
                self.bootstrap_wait_logged = True
                log("serve", f"first champion: its bootstrap retrain is asked once {self.config.consumer.input_topic} "
                             f"holds [drift] reference_size={size:,} records; it holds {total:,} (the online model "
                             "serves meanwhile; a smaller reference_size, e.g. --set drift.reference_size=500, "
                             "starts it sooner)")
            return
        rows = size * min(2 ** self.counts["bootstrap_requests"], BOOTSTRAP_MAX_WINDOWS)
        shares = partition_shares({tp.partition: end[tp] - begin[tp] for tp in begin}, rows)  # the first records
        window_end = {tp.partition: begin[tp] + shares[tp.partition] for tp in begin}
        self._publish_request("bootstrap", 0, window_end, sum(shares.values()))
        self.trigger.dispatched(self.position)  # schedules and cooldowns count from here
        self.counts["bootstrap_requests"] += 1
        self.bootstrap_asked_at = total

    def _input_offsets(self) -> tuple[dict, dict]:
        """Beginning and end offsets of every partition of the input topic."""
        topic = self.config.consumer.input_topic
        parts = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or [])]
        if not parts:
            raise KafkaTimeoutError(f"no partition metadata for {topic}")
        return (self.consumer.beginning_offsets(parts, timeout_ms=BROKER_WAIT_MS),
                self.consumer.end_offsets(parts, timeout_ms=BROKER_WAIT_MS))

    def _request(self, reason: str, window_records: int, whole_window: bool = False, **extra) -> None:
        """A retrain on the last ``window_records`` records, over every partition of the input: from
        its smallest offset on each partition this instance read, by time on the other
        instances' partitions (parts that share a timestamp, as an STDF file without test times
        gives them, would all fall in a window by time). An instance that has read nothing since
        it started, or fewer than ``window_records`` records for a ``whole_window`` (manual)
        request (restarted on a quiet input), asks for the input's last ``window_records``
        records, an equal share from the end of each partition."""
        reached, offsets = self._while_unreachable("read input offsets", self._input_offsets)
        if not reached:
            log("serve", f"stopping before Kafka came back: retrain ({reason}) not requested", **extra)
            return
        begin, end = offsets
        end_offsets = {tp.partition: o for tp, o in end.items()}
        if not self.read_marks or (whole_window and len(self.read_marks) < window_records):
            shares = partition_shares({tp.partition: end[tp] - begin[tp] for tp in end}, window_records)
            if any(shares.values()):  # the last records
                starts = {p: end_offsets[p] - shares[p] for p in end_offsets}
                self._publish_request(reason, 0, end_offsets, sum(shares.values()), start_offsets=starts, **extra)
                return
            detail = "the input topic holds no part records, so there is no window to train on"
            log("serve", f"retrain ({reason}) not requested: {detail}", **extra)
            self.events.emit("retrain_not_requested", model=self.config.model.name, reason=reason, detail=detail,
                             position=self.position, **extra)
            return
        window_records = max(1, min(window_records, len(self.read_marks)))
        marks = list(itertools.islice(self.read_marks, len(self.read_marks) - window_records, None))
        start_offsets: dict[int, int] = {}
        for _, partition, offset in marks:  # the smallest: a partition assigned back is read again from its commit
            start_offsets[partition] = min(offset, start_offsets.get(partition, offset))
        self._publish_request(reason, min(ts for ts, _, _ in marks), end_offsets, window_records,
                              start_offsets=start_offsets, **extra)

    def _publish_request(self, reason: str, start_ts_ms: int, end_offsets: dict[int, int], window_records: int,
                         start_offsets: dict[int, int] | None = None, **extra) -> None:
        request = retrain_request(self.config, reason, start_ts_ms, end_offsets, start_offsets, **extra)
        self.outbox.send(RETRAIN_TOPIC, key=self.config.model.name.encode(), value=orjson.dumps(request))
        if not self.outbox.flush():
            log("serve", f"stopping before Kafka acknowledged retrain request {request['request_id']} ({reason})")
        self.in_flight[request["request_id"]] = {"at": time.monotonic(), "reason": reason}
        self.events.emit("retrain_requested", request_id=request["request_id"], reason=reason,
                         model=self.config.model.name, position=self.position, window_records=window_records)
        self.counts["retrain_requests"] += 1

    def _settle_requests(self) -> None:
        done = self.watcher.settled(set(self.in_flight))
        timeout = 2 * self.config.retrain.timeout_s * self.config.retrain.max_attempts
        for request_id, info in list(self.in_flight.items()):
            if request_id in done:
                del self.in_flight[request_id]
                self.last_settled_at = time.monotonic()
            elif time.monotonic() - info["at"] > timeout:
                del self.in_flight[request_id]
                self.events.emit("alert", severity="warning", kind="retrain_lost", model=self.config.model.name,
                                 request_id=request_id,
                                 detail=f"no decision on the {info['reason']} retrain within {timeout:.0f} s")

    # -- between batches: swaps, shadow, rollback, manual commands ----------------------------

    def _between_batches(self) -> None:
        self._swap_if_ready()
        self._restore_read_back()
        shadow = self.watcher.take_shadow()
        if shadow is not None and self._shadow_stale(shadow.artifact):
            log("serve", f"shadow v{shadow.artifact.version} not started: it was judged against "
                         f"v{shadow.artifact.meta.get('parent_version')}, v{self.champion.version} serves")
        elif shadow is not None:
            self.shadow = shadow.artifact
            self.shadow_metrics = (RollingMetric(self.task, size=10**9), RollingMetric(self.task, size=10**9))
            self.events.emit("shadow_started", model=self.config.model.name, version=self.shadow.version,
                             records=self.config.deploy.shadow_records)
        self._judge_shadow()
        for command in self.watcher.take_commands():
            if command.get("command") == "retrain":
                self.events.emit("trigger_check", fire=True, reason=f"manual: {command.get('reason', '')}",
                                 conditions={"manual": True}, position=self.position)
                self.trigger.dispatched(self.position)
                self._request(f"manual: {command.get('reason', '')}", self.config.retrain.window_records,
                              whole_window=True, command_id=command.get("command_id"))
        self._bootstrap_if_needed()
        self._dispatch_deferred()
        if self.in_flight:
            self._settle_requests()

    def _swap_if_ready(self) -> None:
        loaded = self.watcher.take()
        if loaded is None:
            return
        previous = self.champion
        if loaded.unjudged is not None:  # the instance that deployed it stopped before judging it
            before = self.metric_before = loaded.unjudged.get("metric_before")
        else:
            before = self.metric_before = self.champion_metric.value() if self.champion_metric else None
        self.champion, self.monitor = loaded.artifact, loaded.monitor
        self.site_heads = self.monitor is None or names_heads(self.monitor.reference_strata.get("site"))
        self.trigger.forget_drift()  # signals against the old reference say nothing about the new one
        self.deferred = None
        self.champion_reason = loaded.announcement.get("reason", "")
        self.previous_version = previous.version if previous else self.champion.meta.get("parent_version")
        self.monitor_start = self.position
        self.champion_metric = RollingMetric(self.task)
        self.post_deploy_reported = False
        # a rolled-back-to version stays; so does one found serving at start that was judged: its holdout
        # metric is no level before its deployment (after weeks of drift the live metric is under it,
        # and a restart rolled such a champion back to its older parent)
        self.rollback_checked = self.champion_reason == "rollback" or (loaded.at_start and loaded.unjudged is None)
        if not (self.rollback_checked or loaded.at_start or self.watcher.check_noted(self.champion.version)):
            # the first instance to deploy it notes it; a later note would undo a verdict reached meanwhile
            self._note_judging(judged=False, metric_before=before)
        if self.shadow is not None and self.shadow.version != self.champion.version:
            # its scores were compared with the champion just replaced; judged against the new one
            # it would need a candidate trained against it
            self.events.emit("shadow_ended", model=self.config.model.name, version=self.shadow.version,
                             reason=f"v{self.champion.version} became champion before the shadow was judged",
                             labeled=self.shadow_metrics[0].seen)
        self.shadow = self.shadow_metrics = None
        self.counts["deploys"] += 1
        warnings = [] if self.monitor is None else list(self.monitor.warnings)
        self.monitor_warned = len(warnings)
        self.events.emit("deploy", model=self.config.model.name, version=self.champion.version,
                         previous_version=previous.version if previous else None, position=self.position,
                         reason=self.champion_reason, metric_before=before, primary_metric=self.key_metric,
                         drift_warnings=warnings)
        log("serve", f"now serving {self.config.model.name} v{self.champion.version}", record=self.position)
        for warning in warnings:
            log("serve", warning, record=self.position)

    def _check_rollback(self) -> None:
        """Roll back once if the new champion's live metric falls by more than ``rollback_drop``
        below the level before its deployment (the previous champion's live metric, or for a
        first champion its holdout metric). A champion this instance found serving at start is
        judged only if the instance that deployed it stopped before judging it, against the same level."""
        metric = self.champion_metric
        if not self.post_deploy_reported and metric.seen >= metric.size:
            self.post_deploy_reported = True
            self.events.emit("post_deploy_metric", model=self.config.model.name, version=self.champion.version,
                             labeled=metric.seen, metric=metric.value(), position=self.position)
        d = self.config.deploy
        if self.rollback_checked or metric.seen < d.rollback_min_labels:
            return
        live = (metric.value() or {}).get(self.key_metric)
        before = (self.metric_before or {}).get(self.key_metric)
        baseline = before if _finite(before) else self._holdout_metric()
        if not (_finite(live) and _finite(baseline)):
            return  # e.g. AUC of a window whose labels are all one class: judged once both classes came
        self.rollback_checked = True
        if live < baseline - d.rollback_drop:
            self._roll_back(f"live {self.key_metric} {live:.4f} < {baseline:.4f} before deployment - "
                            f"{d.rollback_drop} after {metric.seen} labels")
        self._note_judging(judged=True)  # after the rollback: one that failed is tried again at a restart

    def _roll_back(self, detail: str) -> None:
        """Make the previous version champion again (or alert when there is none)."""
        if self.previous_version is None:
            self.events.emit("alert", severity="warning", kind="degraded_no_rollback", model=self.config.model.name,
                             version=self.champion.version, detail=detail + "; no previous version")
            return
        self._announce(self.previous_version, "rollback")
        self.counts["rollbacks"] += 1
        self.events.emit("rollback", model=self.config.model.name, from_version=self.champion.version,
                         to_version=self.previous_version, detail=detail, metric=self.champion_metric.value(),
                         position=self.position)
        self.events.emit("alert", severity="critical", kind="rollback", model=self.config.model.name,
                         version=self.champion.version, detail=detail)

    def _note_judging(self, **state) -> None:
        """Keep the champion's post-deploy check on ``ct.models``: an instance restarted before
        the check was judged takes it up with the same level before deployment."""
        name = self.config.model.name
        self.outbox.send(MODELS_TOPIC, key=judging_key(name).encode(),
                         value=orjson.dumps({"model": name, "version": self.champion.version, **state}))

    def _shadow_stale(self, shadow: Artifact) -> bool:
        """A shadow candidate is compared with the champion it was trained against, no other
        (``ct.models`` keeps the last shadow announced, settled or not, for instances that start later)."""
        return self.champion is not None and shadow.meta.get("parent_version") != self.champion.version

    def _judge_shadow(self) -> None:
        if self.shadow is None or self.shadow_metrics[0].seen < self.config.deploy.shadow_records:
            return
        shadow_value = (self.shadow_metrics[0].value() or {}).get(self.key_metric)
        champion_value = (self.shadow_metrics[1].value() or {}).get(self.key_metric)
        if not (_finite(shadow_value) and _finite(champion_value)):
            return  # e.g. every label so far of one class: no AUC yet, more labels decide
        gain = metric_gain(shadow_value, champion_value)
        passed = gain >= self.config.gates.min_improvement
        self.events.emit("shadow_result", model=self.config.model.name, version=self.shadow.version,
                         passed=bool(passed), shadow_metric=shadow_value, champion_metric=champion_value,
                         gain=gain, labeled=self.shadow_metrics[0].seen)
        # an instance that starts later does not run it again
        self.outbox.send(MODELS_TOPIC, key=shadow_key(self.config.model.name).encode(), value=orjson.dumps(
            {"model": self.config.model.name, "version": self.shadow.version, "judged": True}))
        if passed:
            self._announce(self.shadow.version, "shadow")
        self.shadow = self.shadow_metrics = None

    def _announce(self, version: int, reason: str) -> None:
        """Make ``version`` the champion everywhere: registry pointer and ``ct.models``."""
        name = self.config.model.name
        self.registry.set_champion(name, version)
        self.outbox.send(MODELS_TOPIC, key=name.encode(), value=announcement(self.registry, name, version, reason))
        self.outbox.flush()


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        description="Consume part records, predict, detect drift and trigger retraining; hot-swap champions.",
        epilog="example: stream-ct serve consumers/yield.toml")
    p.add_argument("config", help="consumer definition (TOML)")
    p.add_argument("--bootstrap-servers", default=None)
    p.add_argument("--exit-when-idle", type=float, default=None, metavar="SECONDS",
                   help="exit once the input is idle this long, no retrain is in flight and the last one "
                        "settled this long ago (batch runs, tests)")
    p.add_argument("--instance", default="", help="a name for this instance in events")
    add_override_option(p, "drift.reference_size=400")
    add_arguments(p)
    p.set_defaults(func=lambda a: Server(ConsumerConfig.load(a.config, a.set), a.bootstrap_servers,
                                         a.exit_when_idle, a.instance, metrics_args=a).run())
