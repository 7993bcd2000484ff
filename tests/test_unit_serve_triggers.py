"""Serve's trigger handling without a broker: what it announces and when a drift retrain goes."""

from __future__ import annotations

import collections
import types

from stream_ct.serve import Server
from stream_ct.triggers import TriggerPolicy


def _server(policy: str, cooldown: int, window_records: int = 1000, drift_window: int = 200):
    server = Server.__new__(Server)  # only the state the trigger check uses
    server.champion = types.SimpleNamespace(version=1)
    server.position, server.last_metrics_at = 0, 10 ** 12  # no metrics event
    server.trigger = TriggerPolicy(policy, cooldown_records=cooldown)
    server.in_flight, server.deferred, server.last_check_kind = {}, None, ""
    server.counts = collections.Counter()
    server.config = types.SimpleNamespace(retrain=types.SimpleNamespace(window_records=window_records),
                                          drift=types.SimpleNamespace(window=drift_window),
                                          model=types.SimpleNamespace(name="yield"))
    server.emitted, server.requests = [], []
    server.events = types.SimpleNamespace(emit=lambda kind, **kw: server.emitted.append((kind, kw)))
    server._check_rollback = lambda: None
    server._performance_low = lambda: True
    server._request = lambda reason, window: server.requests.append((server.position, reason, window))
    return server


def test_a_cooldown_is_announced_once_not_every_batch():
    server = _server("performance", cooldown=5000)
    server.trigger.dispatched(0)
    for position in range(100, 4000, 100):
        server.position = position
        server._check_performance()
    reasons = [kw["reason"] for kind, kw in server.emitted if kind == "trigger_check"]
    assert reasons == ["cooldown: 100 records since the last retrain < 5000"]
    server.position = 5000
    server._check_performance()
    assert server.requests == [(5000, "performance", 1000)]


def test_a_drift_retrain_counts_its_data_from_the_first_drift_signal():
    """The signal at 100 found a retrain in flight; when the trigger fires at 5,000 the
    post-drift records are there already: the request goes out at once, on all of them."""
    server = _server("drift", cooldown=0)
    server._performance_low = lambda: False
    server.trigger.note_drift(100)
    server.in_flight = {"earlier": {}}
    server.position = 3000
    server._check_performance()
    assert server.deferred is None and not server.requests
    server.in_flight, server.position = {}, 5000
    server._check_performance()
    assert server.deferred == {"reason": "drift", "position": 100}
    server._dispatch_deferred()
    assert server.requests == [(5000, "drift", 4900 + 200)] and server.deferred is None


def test_a_restart_does_not_put_off_a_schedule_in_seconds(tmp_path):
    """The schedule counted from when serve started: a daily retrain of a serve restarted more
    often than daily (a deployment, a host reboot) never came. It counts from the newest version
    registered."""
    import json
    import time

    from stream_ct.config import ConsumerConfig

    folder = tmp_path / "yield" / "v1"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"version": 1, "created_at": time.time() - 25 * 3600}))
    config = ConsumerConfig.from_dict({"consumer": {"name": "yield", "input_topic": "parts"},
                                       "triggers": {"policy": "schedule", "schedule_seconds": 24 * 3600},
                                       "registry": {"path": str(tmp_path)}})
    assert Server(config).trigger.check(1, False, busy=False).fire
    (folder / "meta.json").write_text(json.dumps({"version": 1, "created_at": time.time() - 3600}))
    assert not Server(config).trigger.check(1, False, busy=False).fire


def test_a_trigger_that_fires_before_an_instance_saw_a_window_waits_for_one():
    """Right after a (re)start, an overdue schedule or a performance drop fired on the few records
    this instance had seen, and its request dated a window of one batch: trained on 2,000 rows
    where the definition asks for 10,000."""
    server = _server("performance", cooldown=0, window_records=10_000, drift_window=2_000)
    server.position = 2_000
    server._check_performance()
    assert server.requests == [] and server.deferred == {"reason": "performance", "position": 0}
    server.position = 9_000
    server._dispatch_deferred()
    assert server.requests == []
    server.position = 10_000
    server._dispatch_deferred()
    assert server.requests == [(10_000, "performance", 12_000)] and server.deferred is None


def test_a_champion_without_a_holdout_metric_is_judged_on_the_floor_alone():
    """A version promoted by hand whose holdout had no AUC has it null in its metadata: the
    performance check compared the live AUC with None and ended serve in a TypeError."""
    server = Server.__new__(Server)
    server.key_metric = "auc"
    server.config = types.SimpleNamespace(triggers=types.SimpleNamespace(
        performance_min_labels=10, performance_floor=0.7, performance_margin=0.05))
    server.champion_metric = types.SimpleNamespace(seen=100, value=lambda: {"auc": live["auc"]})
    live = {"auc": 0.9}
    for metrics in ({"candidate": {"auc": None}}, {"candidate": {}}, {}):
        server.champion = types.SimpleNamespace(meta={"metrics": metrics})
        live["auc"] = 0.9
        assert server._performance_low() is False
        live["auc"] = 0.6
        assert server._performance_low() is True
    server.champion = types.SimpleNamespace(meta={"metrics": {"candidate": {"auc": 0.95}}})
    live["auc"] = 0.85
    assert server._performance_low() is True  # more than the margin below its holdout


def test_instances_keep_one_schedule_so_its_retrain_is_trained_once(tmp_path, monkeypatch):
    """Each serve instance counted the schedule from its own start or request: two instances
    started half a day apart asked for a daily retrain twice a day. An instance whose schedule
    is due while another's version is less than a period old counts from that version instead."""
    import json
    import time

    from stream_ct.config import ConsumerConfig

    config = ConsumerConfig.from_dict({"consumer": {"name": "yield", "input_topic": "parts"},
                                       "triggers": {"policy": "schedule", "schedule_seconds": 100},
                                       "registry": {"path": str(tmp_path)}})
    clock = [0.0]
    monkeypatch.setattr(time, "time", lambda: 1e9 + clock[0])  # the registry's wall clock, in step
    server = Server(config)
    server.trigger = TriggerPolicy("schedule", cooldown_records=0, schedule_seconds=100, clock=lambda: clock[0])
    server.champion, server.position, server.last_metrics_at = types.SimpleNamespace(version=1), 20_000, 10 ** 12
    server.emitted, server.requests = [], []
    server.events = types.SimpleNamespace(emit=lambda kind, **kw: server.emitted.append((kind, kw)))
    server._check_rollback = lambda: None
    server._performance_low = lambda: False
    server._request = lambda reason, window: server.requests.append((clock[0], reason))

    folder = tmp_path / "yield" / "v2"
    folder.mkdir(parents=True)
    asked = 1e9 + 60  # another instance's schedule asked at 60 s; registered later
    (folder / "meta.json").write_text(json.dumps({"version": 2, "created_at": asked + 30,
                                                  "trigger": {"reason": "schedule", "requested_at": asked}}))
    clock[0] = 100.0
    server._check_performance()
    assert server.requests == []
    [check] = [kw for kind, kw in server.emitted if kind == "trigger_check"]
    assert not check["fire"] and check["reason"] == "schedule kept: v2 was asked for 40 s ago, within schedule_seconds=100"
    clock[0] = 159.0
    server._check_performance()
    assert server.requests == []
    clock[0] = 160.0  # a period after v2 was asked for
    server._check_performance()
    assert server.requests == [(160.0, "schedule")]
