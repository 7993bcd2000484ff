"""Serve's deploy-time decisions without a broker: rollback, shadow, manual retrains, late labels."""

from __future__ import annotations

import os
import signal
import threading
import types

import numpy as np
import orjson
import pytest

import stream_ct.serve as serve_module
from stream_ct.config import ConfigError, ConsumerConfig
from stream_ct.events import EventLog
from stream_ct.model_watcher import LoadedChampion
from stream_ct.rolling import RollingMetric
from stream_ct.serve import Server


def _server(tmp_path, **sections) -> Server:
    raw = {"consumer": {"name": "yield", "input_topic": "parts"},
           "model": {"task": "classification", "target": "passed"}, "registry": {"path": str(tmp_path)}}
    for name, keys in sections.items():
        raw.setdefault(name, {}).update(keys)
    server = Server(ConsumerConfig.from_dict(raw))
    server.emitted, server.announced, server.sent = [], [], []
    server.events = types.SimpleNamespace(emit=lambda type_, **kw: server.emitted.append((type_, kw)))
    server._announce = lambda version, reason: server.announced.append((version, reason))
    server.outbox = types.SimpleNamespace(send=lambda topic, **kw: server.sent.append((topic, kw)))
    return server


def _artifact(version: int, parent: int | None = None, auc: float = 0.85):
    return types.SimpleNamespace(version=version, meta={"parent_version": parent, "feature_names": [],
                                                        "metrics": {"candidate": {"auc": auc}}})


def _deployed(server: Server, version: int = 2, before: float = 0.84) -> None:
    server.champion, server.previous_version, server.metric_before = _artifact(version, version - 1), version - 1, {
        "auc": before}
    server.champion_metric = RollingMetric("classification")
    server.rollback_checked, server.post_deploy_reported = False, True


def _events(server: Server, type_: str) -> list[dict]:
    return [kw for kind, kw in server.emitted if kind == type_]


def test_a_live_window_of_one_class_does_not_roll_a_healthy_champion_back(tmp_path):
    """All 200 parts passed: AUC is undefined (NaN) and says nothing; the check waits for a failure."""
    server = _server(tmp_path, deploy={"rollback_min_labels": 200})
    _deployed(server)
    server.champion_metric.add(np.full(200, 0.97), np.ones(200))
    server._check_rollback()
    assert server.announced == [] and not server.rollback_checked
    server.champion_metric.add(np.r_[np.full(20, 0.1), np.full(20, 0.9)], np.r_[np.zeros(20), np.ones(20)])
    server._check_rollback()
    assert server.rollback_checked and server.announced == []  # judged now: AUC 1.0, no drop


def test_a_real_drop_still_rolls_back(tmp_path):
    server = _server(tmp_path, deploy={"rollback_min_labels": 100})
    _deployed(server)
    y = np.arange(100) % 2.0
    server.champion_metric.add(np.where(y == 1, 0.2, 0.8), y)  # AUC 0: worse than 0.84 - 0.05
    server._check_rollback()
    assert server.announced == [(1, "rollback")] and _events(server, "rollback")
    # the live metric that fell: the report's metric chart draws the drop at the rollback
    assert _events(server, "rollback")[0]["metric"]["auc"] == 0.0


def test_the_champion_gauge_follows_a_rollback_to_the_version_it_went_back_to(tmp_path):
    """Serve's rollback event says ``to_version``; the gauge read only ``version`` and stayed on
    the version rolled back from."""
    server = _server(tmp_path, deploy={"rollback_min_labels": 100})
    server.events = EventLog(types.SimpleNamespace(send=lambda *a, **kw: None), "serve", "yield",
                             listeners=[server.sm.on_event])
    _deployed(server)
    server.events.emit("deploy", model="yield", version=2, previous_version=1)
    assert server.sm.champion_version.value(consumer="yield", model="yield") == 2.0
    y = np.arange(100) % 2.0
    server.champion_metric.add(np.where(y == 1, 0.2, 0.8), y)
    server._check_rollback()
    assert server.announced == [(1, "rollback")]
    assert server.sm.champion_version.value(consumer="yield", model="yield") == 1.0


@pytest.mark.parametrize("deploy", [{"rollback_min_labels": 20}, {"shadow_records": 20}])
def test_label_counts_below_a_metric_s_minimum_are_refused_up_front(tmp_path, deploy):
    with pytest.raises(ConfigError, match="needs at least 50 labels"):
        _server(tmp_path, deploy=deploy)


def test_a_manual_retrain_on_an_instance_that_saw_no_records_says_why_and_serve_goes_on(tmp_path):
    server = _server(tmp_path)
    server.consumer = types.SimpleNamespace(partitions_for_topic=lambda topic: {0},
                                            beginning_offsets=lambda parts, timeout_ms=None: {p: 0 for p in parts},
                                            end_offsets=lambda parts, timeout_ms=None: {p: 0 for p in parts})
    server.watcher = types.SimpleNamespace(
        take=lambda: None, take_shadow=lambda: None, loaded_version=None,
        take_commands=lambda: [{"consumer": "yield", "command": "retrain", "reason": "probe card",
                                "command_id": "c1"}])
    server._bootstrap_if_needed = lambda: None
    server._between_batches()
    [refused] = _events(server, "retrain_not_requested")
    assert refused["command_id"] == "c1" and "no part records" in refused["detail"]
    assert not server.in_flight


def test_a_manual_retrain_on_a_restarted_instance_trains_on_the_input_s_last_records(tmp_path):
    """Restarted on a quiet input (everything committed), serve refused every manual retrain
    ("cannot date the window") while ``stream-ct retrain`` said it had asked: nothing trained."""
    server = _server(tmp_path, retrain={"window_records": 300, "min_rows": 100})
    server.consumer = types.SimpleNamespace(
        partitions_for_topic=lambda topic: {0, 1},
        beginning_offsets=lambda parts, timeout_ms=None: {p: 100 * p.partition for p in parts},
        end_offsets=lambda parts, timeout_ms=None: {p: 100 + 500 * p.partition for p in parts})
    server.watcher = types.SimpleNamespace(
        take=lambda: None, take_shadow=lambda: None, loaded_version=None, settled=lambda ids: set(),
        take_commands=lambda: [{"consumer": "yield", "command": "retrain", "reason": "probe card",
                                "command_id": "c1"}])
    server._bootstrap_if_needed = lambda: None
    server.outbox.flush = lambda: True
    server._between_batches()
    assert not _events(server, "retrain_not_requested")
    [(topic, message)] = server.sent
    window = orjson.loads(message["value"])["window"]
    # partition 0 holds only 100 of its 150: partition 1 gives the other 50 (it gave 150, a window of 250)
    assert window["start_offsets"] == {"0": 0, "1": 400} and window["end_offsets"] == {"0": 100, "1": 600}
    assert _events(server, "retrain_requested")[0]["window_records"] == 300
    # one that read two parts since its restart asked for a window of those two (skipped: quality:rows)
    server.sent.clear()
    server.read_marks.extend([(7, 1, 598), (7, 1, 599)])
    server._between_batches()
    assert orjson.loads(server.sent[0][1]["value"])["window"]["start_offsets"] == {"0": 0, "1": 400}


def test_late_labels_score_only_the_shadow_that_made_the_prediction(tmp_path):
    server = _server(tmp_path, deploy={"shadow_records": 1000})
    server.champion, server.champion_metric = _artifact(1), RollingMetric("classification")
    server.shadow = _artifact(2, parent=1)
    records = [{"lot_id": "L", "wafer_id": "W", "part_id": str(i)} for i in range(100)]
    server._await_labels(records, [{}] * 100, np.full(100, np.nan), np.full(100, 0.5), np.full(100, 0.123),
                         np.full(100, 0.5))
    server.watcher = types.SimpleNamespace(take=lambda: None, take_commands=lambda: [], loaded_version=1,
                                           take_shadow=lambda: types.SimpleNamespace(artifact=_artifact(3, 1)))
    server._bootstrap_if_needed = lambda: None
    server._between_batches()  # shadow v3 replaces v2
    assert server.shadow.version == 3
    server._learn_from(server.joiner.add_labels([(f"L/W/{i}", float(i % 2)) for i in range(100)]))
    assert server.shadow_metrics[0].seen == 0 and server.champion_metric.seen == 100


def test_a_new_champion_ends_a_shadow_judged_against_the_one_it_replaced(tmp_path):
    server = _server(tmp_path, deploy={"shadow_records": 100})
    server.champion, server.champion_metric = _artifact(1), RollingMetric("classification")
    server.shadow = _artifact(3, parent=1)
    server.shadow_metrics = (RollingMetric("classification", size=10**9), RollingMetric("classification", size=10**9))
    server.watcher = types.SimpleNamespace(take=lambda: types.SimpleNamespace(
        artifact=_artifact(4, 1), monitor=None, announcement={"reason": "drift"}, at_start=False, unjudged=None),
        check_noted=lambda version: False)
    server._swap_if_ready()
    assert server.shadow is None and server.shadow_metrics is None
    [ended] = _events(server, "shadow_ended")
    assert ended["version"] == 3 and "v4 became champion" in ended["reason"]


def test_a_shadow_announced_against_an_earlier_champion_is_not_started(tmp_path):
    """``ct.models`` keeps the last shadow for instances that start later; v2 was trained against
    v1, so an instance serving v3 does not shadow it."""
    server = _server(tmp_path, deploy={"shadow_records": 100})
    server.champion, server.champion_metric = _artifact(3, 1), RollingMetric("classification")
    server.watcher = types.SimpleNamespace(take=lambda: None, take_commands=lambda: [], loaded_version=3,
                                           take_shadow=lambda: types.SimpleNamespace(artifact=_artifact(2, 1)))
    server._bootstrap_if_needed = lambda: None
    server._between_batches()
    assert server.shadow is None and not _events(server, "shadow_started")


@pytest.mark.parametrize("value", ["nan", "inf", "PASS", None, [1]])
def test_a_label_that_is_not_a_finite_number_goes_to_the_dead_letter_topic(tmp_path, value):
    server = _server(tmp_path, model={"task": "multiclass", "target": "hard_bin"},
                     labels={"topic": "parts.labels"})
    server.joiner.add_prediction("L/W/1", (None, 0.5, None, {"t1": 1.0}, 0.5))
    label = orjson.dumps({"lot_id": "L", "wafer_id": "W", "part_id": "1", "hard_bin": value})
    message = types.SimpleNamespace(topic="parts.labels", partition=0, offset=7, key=b"L/W/1", value=label,
                                    headers=[], timestamp=0)
    server._process_labels([message])
    assert server.counts["dlq"] == 1 and server.online.n_learned == 0
    [(topic, dead)] = server.sent
    reason = dict(dead["headers"])["dlq.reason"].decode()
    assert reason.startswith("bad label record")
    if value is None:  # was float()'s TypeError about 'NoneType'
        assert reason == "bad label record: ValueError: hard_bin is null: a label record carries its part's label"


def _label_message(record: dict | list, offset: int = 7):
    return types.SimpleNamespace(topic="parts.labels", partition=0, offset=offset, key=b"L/W/1",
                                 value=orjson.dumps(record), headers=[], timestamp=0)


def test_a_label_for_another_consumers_target_is_ignored_and_counted(tmp_path):
    """Consumers share the input topic, so one labels topic carries every use case's labels: the
    yield consumer dead-lettered each binning label ('KeyError: passed'), while the retrain worker
    already leaves out label records without its target."""
    server = _server(tmp_path, labels={"topic": "parts.labels"})
    server.joiner.add_prediction("L/W/1", (None, 0.5, None, {"t1": 1.0}, 0.5))
    server._process_labels([_label_message({"lot_id": "L", "wafer_id": "W", "part_id": "1", "soft_bin": 3}),
                            _label_message({"lot_id": "L", "wafer_id": "W", "part_id": "1", "passed": 1}, 8)])
    assert server.sent == [] and server.counts["dlq"] == 0
    assert server.counts["labels_other_targets"] == 1 and server.counts["labels"] == 1
    assert server.online.n_learned == 1  # the yield label joined its prediction


@pytest.mark.parametrize("record, reason", [
    ({"wafer_id": "W", "part_id": "1", "passed": 1}, "bad label record: no lot_id, so it joins no part"),
    ({"lot_id": "L", "soft_bin": 3}, "bad label record: no wafer_id, part_id, so it joins no part"),
    ([1], "bad label record: a JSON list, not an object"),
])
def test_a_label_record_that_joins_no_part_goes_to_the_dead_letter_topic_with_its_reason(tmp_path, record, reason):
    server = _server(tmp_path, labels={"topic": "parts.labels"})
    server._process_labels([_label_message(record)])
    assert server.counts["dlq"] == 1 and server.counts["labels_other_targets"] == 0
    [(topic, dead)] = server.sent
    assert dict(dead["headers"])["dlq.reason"].decode() == reason


@pytest.mark.parametrize("shadow_auc", [1.0, 0.0])
def test_a_judged_shadow_is_marked_on_ct_models_won_or_lost(tmp_path, shadow_auc):
    """So that an instance starting later does not run it again (the compacted topic keeps the last)."""
    server = _server(tmp_path, deploy={"shadow_records": 100})
    server.champion, server.champion_metric = _artifact(1), RollingMetric("classification")
    server.shadow = _artifact(2, parent=1)
    server.shadow_metrics = (RollingMetric("classification", size=10**9), RollingMetric("classification", size=10**9))
    y = np.arange(100) % 2.0
    server.shadow_metrics[0].add(y if shadow_auc else 1 - y, y)
    server.shadow_metrics[1].add(np.full(100, 0.5), y)
    server._judge_shadow()
    [(topic, marked)] = server.sent
    assert (topic, marked["key"]) == ("ct.models", b"yield.shadow")
    assert orjson.loads(marked["value"]) == {"model": "yield", "version": 2, "judged": True}
    assert server.announced == ([(2, "shadow")] if shadow_auc else []) and server.shadow is None


def test_a_shadow_that_gains_exactly_the_margin_wins(tmp_path):
    """0.563 - 0.553 is 0.009999999999999898 in floats: the shadow lost at min_improvement 0.01."""
    server = _server(tmp_path, deploy={"shadow_records": 100}, gates={"min_improvement": 0.01})
    server.champion, server.champion_metric = _artifact(1), RollingMetric("classification")
    server.shadow = _artifact(2, parent=1)
    server.shadow_metrics = tuple(types.SimpleNamespace(seen=100, value=lambda auc=auc: {"auc": auc})
                                  for auc in (0.563, 0.553))
    server._judge_shadow()
    [result] = _events(server, "shadow_result")
    assert result["passed"] and result["gain"] == 0.01 and server.announced == [(2, "shadow")]


def test_a_lost_retrain_alert_names_the_model(tmp_path, monkeypatch):
    """Every other alert of serve says which model; a webhook receiver serving several consumers
    could not tell whose retrain was lost."""
    server = _server(tmp_path, retrain={"timeout_s": 10, "max_attempts": 1})
    server.watcher = types.SimpleNamespace(settled=lambda ids: set())
    server.in_flight = {"r7": {"at": 100.0, "reason": "drift"}}
    monkeypatch.setattr("stream_ct.serve.time.monotonic", lambda: 121.0)  # past 2 x 10 s x 1 attempt
    server._settle_requests()
    [alert] = _events(server, "alert")
    assert alert["kind"] == "retrain_lost" and alert["model"] == "yield" and alert["request_id"] == "r7"
    assert "drift retrain" in alert["detail"] and server.in_flight == {}


def _swapped_in(server: Server, at_start: bool, unjudged: dict | None = None, noted: bool = False) -> None:
    """v3 (holdout AUC 0.93, parent v2) handed over by the watcher, then 100 labels at AUC 0.78;
    ``noted``: ct.models holds a check of v3 already (another instance deployed it first)."""
    server.watcher = types.SimpleNamespace(take=lambda: LoadedChampion(
        artifact=_artifact(3, 2, auc=0.93), monitor=None, announcement={"reason": "drift"}, at_start=at_start,
        unjudged=unjudged), check_noted=lambda version: noted and version == 3)
    server._swap_if_ready()
    y = np.arange(100) % 2.0
    server.champion_metric.add(np.where(y == 1, 0.6, 0.4) + np.linspace(-0.3, 0.3, 100), y)  # AUC 0.778
    server._check_rollback()


@pytest.mark.parametrize("at_start, rolled_back", [(True, False), (False, True)])
def test_a_champion_found_serving_at_start_is_not_judged_again(tmp_path, at_start, rolled_back):
    """A restarted instance judged the champion it found on ct.models against that champion's
    holdout metric, and rolled a champion that had served for weeks (its live AUC down with the
    process, as the performance trigger expects) back to its older parent."""
    server = _server(tmp_path, deploy={"rollback_min_labels": 100})
    _swapped_in(server, at_start)
    assert server.announced == ([(2, "rollback")] if rolled_back else [])


def _judging_notes(server: Server) -> list[dict]:
    return [orjson.loads(kw["value"]) for topic, kw in server.sent if kw["key"] == b"yield.judging"]


@pytest.mark.parametrize("before, rolled_back", [(0.90, True), (0.80, False)])
def test_a_check_its_deployer_did_not_finish_is_judged_after_a_restart(tmp_path, before, rolled_back):
    """An instance that crashed between a deploy and its verdict lost the check: the restarted
    instance found the champion serving and never judged it, however far it had fallen."""
    server = _server(tmp_path, deploy={"rollback_min_labels": 100})
    _swapped_in(server, at_start=True, unjudged={"version": 3, "judged": False, "metric_before": {"auc": before}})
    assert server.announced == ([(2, "rollback")] if rolled_back else [])  # 0.778 < 0.90 - 0.05; not < 0.80 - 0.05
    assert _judging_notes(server) == [{"model": "yield", "version": 3, "judged": True}]


def test_a_deploy_keeps_its_check_on_ct_models_until_it_is_judged(tmp_path):
    server = _server(tmp_path, deploy={"rollback_min_labels": 100})
    server.champion, server.champion_metric = _artifact(2, 1), RollingMetric("classification")
    y = np.arange(100) % 2.0
    server.champion_metric.add(y, y)  # v2 live AUC 1.0 at the swap
    _swapped_in(server, at_start=False)
    kept, judged = _judging_notes(server)
    assert kept == {"model": "yield", "version": 3, "judged": False,
                    "metric_before": {"auc": 1.0, "accuracy": 1.0, "f1": 1.0}}
    assert judged == {"model": "yield", "version": 3, "judged": True}
    assert server.announced == [(2, "rollback")]


def test_a_bootstrap_that_made_no_champion_is_asked_again_on_a_longer_window(tmp_path):
    """Labels that arrive hours after their parts left the first window unlabeled: the bootstrap
    was skipped ('0 labeled rows') and serve never asked again, serving the online model for good
    (every automatic trigger needs a champion). It asks again each time the input has doubled,
    on its first 2, 4, ... reference_size records, at most BOOTSTRAP_MAX_WINDOWS of them."""
    server = _server(tmp_path, drift={"reference_size": 1000})
    ends = {"end": 1500}
    server.consumer = types.SimpleNamespace(partitions_for_topic=lambda topic: {0, 1},
                                            beginning_offsets=lambda parts, timeout_ms=None: {p: 100 for p in parts},
                                            end_offsets=lambda parts, timeout_ms=None: {p: ends["end"] for p in parts})
    server.watcher = types.SimpleNamespace(loaded_version=None, attempted_version=0, has_pending=lambda: False)
    asked = []
    server._publish_request = lambda reason, start, end, n: (asked.append((reason, start, end, n)),
                                                             server.in_flight.update({str(len(asked)): {}}))
    server._bootstrap_if_needed()
    assert asked == [("bootstrap", 0, {0: 600, 1: 600}, 1000)]
    server.in_flight, server.last_size_check = {}, 0.0  # settled: skipped, no champion
    server._bootstrap_if_needed()
    assert len(asked) == 1  # no records since
    ends["end"], server.last_size_check = 2800, 0.0  # 5,400 records: not yet twice the 2,800 at the first ask
    server._bootstrap_if_needed()
    assert len(asked) == 1
    ends["end"], server.last_size_check = 2900, 0.0
    server._bootstrap_if_needed()
    assert asked[1:] == [("bootstrap", 0, {0: 1100, 1: 1100}, 2000)]
    for end in (5700, 11300, 22500, 44900):  # each time the input doubled: 4, 8, 8, 8 windows
        server.in_flight, server.last_size_check, ends["end"] = {}, 0.0, end
        server._bootstrap_if_needed()
    assert [n for *_, n in asked[2:]] == [4000, 8000, 8000, 8000]
    server.in_flight, server.last_size_check, ends["end"] = {}, 0.0, 5000
    server.in_flight, server.last_size_check, ends["end"] = {}, 0.0, 100_000
    server.watcher.attempted_version = 3  # a champion was announced and is loading: none asked
    server._bootstrap_if_needed()
    assert len(asked) == 6


def test_an_input_under_reference_size_is_said_once(tmp_path, capsys):
    """lot2 (784 parts) under binning.toml's reference_size of 5,000: serve said nothing after
    "consuming lot2" and the first champion never came."""
    server = _server(tmp_path, drift={"reference_size": 5000})
    server.consumer = types.SimpleNamespace(partitions_for_topic=lambda topic: {0},
                                            beginning_offsets=lambda parts, timeout_ms=None: {p: 0 for p in parts},
                                            end_offsets=lambda parts, timeout_ms=None: {p: 784 for p in parts})
    server.watcher = types.SimpleNamespace(loaded_version=None, attempted_version=0, has_pending=lambda: False)
    for _ in range(2):
        server.last_size_check = 0.0
        server._bootstrap_if_needed()
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["serve: first champion: its bootstrap retrain is asked once parts holds [drift] "
                     "reference_size=5,000 records; it holds 784 (the online model serves meanwhile; a smaller "
                     "reference_size, e.g. --set drift.reference_size=500, starts it sooner)"]
    assert not server.in_flight


def test_ready_only_once_assigned_and_the_model_watcher_caught_up(tmp_path):
    """/readyz said ready on assignment alone, while the docs promise the watcher caught up too:
    an instance whose watcher had not read ct.models within 30 s served without its champion."""
    server = _server(tmp_path)
    server.watcher = types.SimpleNamespace(ready=threading.Event())
    server.assigned = True
    assert not server._ready()
    server.watcher.ready.set()
    assert server._ready()
    server.assigned = False
    assert not server._ready()


def test_a_later_deploy_does_not_undo_another_instance_s_verdict(tmp_path):
    """Each instance that deployed v3 noted its check as pending: one that swapped after another
    had judged v3 made the check pending again, for any restart to take up weeks later."""
    server = _server(tmp_path, deploy={"rollback_min_labels": 1000})
    _swapped_in(server, at_start=False, noted=True)
    assert _judging_notes(server) == [] and not server.rollback_checked  # this instance still judges it


def test_a_rollback_that_failed_is_judged_again_after_the_restart(tmp_path):
    """The check is marked judged only once its rollback was announced: marked first, a
    registry write that failed in the rollback left the degraded champion serving for good."""
    server = _server(tmp_path, deploy={"rollback_min_labels": 100})

    def refused(version, reason):
        raise PermissionError("registry is read-only")

    server._announce = refused
    with pytest.raises(PermissionError):
        _swapped_in(server, at_start=False)
    assert [note["judged"] for note in _judging_notes(server)] == [False]


def test_a_champion_that_cannot_be_loaded_is_said_in_serve_s_log(tmp_path, capsys):
    """serve started in another folder than the retrain worker found no version files in its
    registry: the alert went to ct.events only and the log said nothing while the online
    model served on."""
    server = _server(tmp_path)
    server._watcher_alert("alert", severity="error", kind="model_load_failed", model="yield", version=1,
                          error="ChildError: FileNotFoundError: model yield has no version 1 in registry")
    assert capsys.readouterr().out == (
        "serve: alert (error, model_load_failed): ChildError: FileNotFoundError: model yield has no version 1 in "
        f"registry; serve reads the registry at {tmp_path.resolve()} ([registry] path is relative to where serve "
        "runs)\n")
    assert _events(server, "alert")[0]["kind"] == "model_load_failed"


def test_ctrl_c_stops_serve_like_sigterm_and_a_second_one_at_once(tmp_path):
    """Ctrl-C raised KeyboardInterrupt wherever serve was: exit 130, no last commit made sure
    of, no summary line."""
    server = _server(tmp_path)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        server._stop_on_signals()
        os.kill(os.getpid(), signal.SIGINT)
        assert server.stopping
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job's: left ignored
        server._stop_on_signals()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


def test_an_input_topic_serve_had_to_create_is_said(tmp_path, monkeypatch, capsys):
    """``--set consumer.input_topic=lto2`` (for lot2): serve created the topic and waited on it."""
    asked = []
    monkeypatch.setattr(serve_module, "ensure_topics",
                        lambda topics, bootstrap: asked.append(sorted(topics)) or ["lto2", "lto2.dlq"])
    server = _server(tmp_path)
    server._ensure_topics(["lto2"])
    assert asked == [["lto2", "parts.dlq", "parts.predictions"]]
    assert capsys.readouterr().out == ("serve: topic lto2 did not exist: created it, empty; check the name if you "
                                       "expected records there\n")
    monkeypatch.setattr(serve_module, "ensure_topics", lambda topics, bootstrap: [])
    server._ensure_topics(["parts"])
    assert capsys.readouterr().out == ""
