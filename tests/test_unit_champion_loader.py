"""Unit tests for loading a registered version in a child process (stream_ct.champion_loader),
the model watcher's fallback when an announced version cannot be loaded, and the
child-process call both the loader and the retrain job use (stream_ct.child_process)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from harness import flip_byte, register_copy
from stream_ct.champion_loader import ChildLoader, load_version
from stream_ct.child_process import ChildError, call_in_child
from stream_ct.config import ConsumerConfig
from stream_ct.model_watcher import ModelWatcher
from stream_ct.registry import IntegrityError, Registry
from stream_ct.retrain_worker import retrain_request, train_and_judge
from stream_ct.simulate import Simulator

RAW = {"consumer": {"name": "yield", "input_topic": "parts"},
       "gates": {"max_latency_p99_ms": 60_000.0, "max_fail_rate_gap": 0.15}}


def config(registry_root) -> ConsumerConfig:
    return ConsumerConfig.from_dict(dict(RAW, registry={"path": str(registry_root)}))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry whose v1 is a promoted champion with a calibrated drift monitor."""
    root = tmp_path_factory.mktemp("registry")
    records = list(Simulator(scenario="none", seed=1).generate(3000).records())
    with threadpool_limits(1):
        outcome = train_and_judge(retrain_request(config(root), "manual", 0, {0: 3000}), records, Registry(root))
    assert outcome.decision == "promoted"
    return root


def test_the_child_loads_what_the_parent_would(registry):
    here_artifact, here_monitor = load_version(config(registry), 1, None, True)
    artifact, monitor = ChildLoader(config(registry))(1, Registry(registry).meta("yield", 1)["files"], True)
    assert (artifact.name, artifact.version, artifact.meta) == (here_artifact.name, 1, here_artifact.meta)
    X = here_artifact.reference["X"][:200]
    np.testing.assert_array_equal(artifact.estimator.predict_proba(X), here_artifact.estimator.predict_proba(X))
    rows = here_artifact.reference["X"][:2000]
    batch = rows * np.where(np.arange(rows.shape[1]) == 0, 4.0, 1.0)  # the first test's spread x4
    dies, groups = here_artifact.reference["dies"][:2000], here_artifact.reference["groups"][:2000]
    got = [(s.detector, s.position, s.features) for s in monitor.update(batch, dies=dies, groups=groups)]
    want = [(s.detector, s.position, s.features) for s in here_monitor.update(batch, dies=dies, groups=groups)]
    assert got == want and got


def test_a_shadow_loads_without_a_monitor(registry):
    artifact, monitor = ChildLoader(config(registry))(1, None, False)
    assert artifact.version == 1 and monitor is None


def test_a_tampered_version_raises_integrity_error_here(registry, tmp_path):
    root = tmp_path / "reg"
    shutil.copytree(registry, root)
    flip_byte(root / "yield" / "v1" / "model.skops")
    with pytest.raises(IntegrityError, match=r"model.skops sha256 .* != recorded"):
        ChildLoader(config(root))(1, None, True)


def test_a_missing_version_names_the_error_from_the_child(registry):
    with pytest.raises(ChildError, match="FileNotFoundError: model yield has no version 9") as caught:
        ChildLoader(config(registry))(9, None, True)
    assert caught.value.kind == "FileNotFoundError"


def test_call_in_child_reports_an_exception_by_kind():
    with pytest.raises(ChildError, match="ValueError: invalid literal") as caught:
        call_in_child(int, ("x",), timeout_s=60, what="parsing")
    assert caught.value.kind == "ValueError"


def test_call_in_child_kills_a_child_past_its_deadline():
    with pytest.raises(TimeoutError, match="sleeping did not finish within 0.5 s; the child was killed"):
        call_in_child(time.sleep, (30,), timeout_s=0.5, what="sleeping")


def _interrupted_then(value):
    os.kill(os.getpid(), signal.SIGINT)  # what a Ctrl-C at the terminal sends the whole process group
    time.sleep(0.2)
    return value


def test_a_ctrl_c_at_the_terminal_leaves_the_child_to_finish_its_call():
    assert call_in_child(_interrupted_then, (7,), timeout_s=60, what="a load") == 7


def test_call_in_child_reports_a_child_that_died():
    with pytest.raises(RuntimeError, match=r"the process for exiting died \(exit code 3\)"):
        call_in_child(os._exit, (3,), timeout_s=60, what="exiting")


def test_a_starting_instance_whose_announced_champion_is_tampered_serves_the_newest_earlier_verified_one(
        registry, tmp_path):
    root = tmp_path / "reg"
    shutil.copytree(registry, root)
    reg = Registry(root)
    promoted_then_tampered, rejected, announced = (register_copy(reg, "yield", 1, d)
                                                   for d in ("promoted", "rejected", "promoted"))
    flip_byte(reg.path("yield", promoted_then_tampered) / "model.skops")
    flip_byte(reg.path("yield", announced) / "model.skops")
    assert reg.champions_before("yield", announced) == [promoted_then_tampered, 1]
    alerts = []
    watcher = ModelWatcher("yield", "yield", ChildLoader(config(root)), lambda event_type, **f: alerts.append(f),
                           earlier_versions=lambda v: reg.champions_before("yield", v))
    watcher._load({"version": announced, "files": reg.meta("yield", announced)["files"]})
    loaded = watcher.take()
    assert loaded.artifact.version == 1 and loaded.monitor is not None
    assert loaded.announcement["reason"] == f"fallback: v{announced} failed to load"
    assert [(a["kind"], a["version"]) for a in alerts] == [
        ("checksum_mismatch", announced), ("checksum_mismatch", promoted_then_tampered), ("champion_fallback", 1)]
    assert alerts[-1]["severity"] == "critical" and alerts[-1]["failed_version"] == announced
    assert rejected not in [a["version"] for a in alerts]  # never a version that failed its gates

    # an instance that serves already keeps its champion: no fallback
    alerts.clear()
    watcher._load({"version": announced + 1, "files": None})  # not in the registry
    assert watcher.take() is None and [a["kind"] for a in alerts] == ["model_load_failed"]


SLOW_JOB = '''
import time

def register_later(folder, seconds):
    open(f"{folder}/started", "w").close()
    time.sleep(seconds)
    open(f"{folder}/registered", "w").close()
'''


def test_a_child_does_not_outlive_the_process_that_called_it(tmp_path):
    """A retrain worker killed (SIGKILL) mid-training takes its child with it: a child left
    running would register and make champion a version no worker announces, while the
    restarted worker trains the same request again."""
    (tmp_path / "slow_job.py").write_text(SLOW_JOB)
    caller = subprocess.Popen(
        [sys.executable, "-c", "import slow_job; from stream_ct.child_process import call_in_child; "
                               f"call_in_child(slow_job.register_later, ({str(tmp_path)!r}, 3), 60, 'training')"],
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path])))
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "started").exists()
    finally:
        caller.kill()
        caller.wait()
    time.sleep(4)  # past when the child would have registered
    assert not (tmp_path / "registered").exists()
