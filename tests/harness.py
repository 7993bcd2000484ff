"""Helpers for integration tests: consumer definitions, service processes, events by model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import orjson

from stream_ct.kafka_io import EVENTS_TOPIC
from stream_ct.prediction_messages import unpack_all
from stream_ct.replay import record

CONFIG_TEMPLATE = """
[consumer]
name = "{name}"
input_topic = "{topic}"
poll_max_records = {poll}
prediction_messages = "{prediction_messages}"

[model]
task = "{task}"
target = "{target}"
estimator = "{estimator}"

[drift]
enabled = {drift_enabled}
arl0 = {arl0}
window = {window}
stride = {stride}
reference_size = {reference_size}

[retrain]
window_records = {window_records}
min_rows = {min_rows}
cooldown_records = {cooldown}

[gates]
min_metric = {min_metric}
min_improvement = {min_improvement}

[registry]
path = "{registry}"
"""

DEFAULTS = dict(drift_enabled="true", poll=1000, prediction_messages="part", task="classification", target="passed", estimator="hist_gradient_boosting",
                arl0=100000, window=1000, stride=250, reference_size=5000, window_records=4000,
                min_rows=1000, cooldown=20000, min_metric=0.7, min_improvement=0.0)


def write_config(tmp_path: Path, topic: str, extra: str = "", **overrides: Any) -> Path:
    """A consumer definition named after ``topic`` (so its events and model are its own);
    ``extra`` adds TOML sections the template does not have ([triggers], [deploy], ...)."""
    values = dict(DEFAULTS, name=topic, topic=topic, registry=str(tmp_path / "registry"), **overrides)
    path = tmp_path / f"{topic}.toml"
    path.write_text(CONFIG_TEMPLATE.format(**values) + extra)
    return path


class Service:
    """A stream-ct command in its own process, its output in a log file."""

    def __init__(self, args: list[str], log: Path, cwd: Path):
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "stream_ct", *args], cwd=cwd,
                                     stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONFAULTHANDLER="1"))

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.proc.args} did not finish in {timeout} s; log:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack to the log
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def events_for(model: str, bootstrap: str) -> list[dict[str, Any]]:
    """Every event on ct.events that concerns ``model`` (serve events carry it as consumer)."""
    out = []
    try:
        for message in record(EVENTS_TOPIC, bootstrap):
            event = orjson.loads(message.value)
            if event.get("consumer") == model or event.get("model") == model:
                out.append(event)
    except ValueError:  # ct.events does not exist until a service has started
        return []
    return out


def wait_for_event(model: str, bootstrap: str, predicate: Callable[[dict], bool], timeout: float,
                   services: list[Service] = ()) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # which services have exited, before the events are read: ``record`` reads ct.events up to
        # its end when called, so an event a service wrote just before exiting is in this read
        exited = [service for service in services if service.proc.poll() is not None]
        for event in events_for(model, bootstrap):
            if predicate(event):
                return event
        for service in exited:
            raise AssertionError(f"{service.proc.args} exited early; log:\n{service.output()}")
        time.sleep(0.5)
    logs = "\n".join(s.output() for s in services)
    raise AssertionError(f"no matching event for {model} within {timeout} s; logs:\n{logs}")


# -- reliability helpers (issue 7): processes killed, topics counted, memory read --------------

class EnvService(Service):
    """A :class:`Service` started with extra environment variables, its log appended to."""

    def __init__(self, args: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None):
        self.log = log
        full = dict(os.environ, PYTHONFAULTHANDLER="1", **(env or {}))
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "stream_ct", *args], cwd=cwd,
                                     stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=full)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def flip_byte(path: Path, at: int | None = None) -> None:
    """Tamper with a file on disk: invert one byte (the middle one unless ``at``)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0xFF
    path.write_bytes(bytes(data))


def register_copy(registry, name: str, version: int, decision: str, **meta_changes) -> int:
    """A new version of ``name`` in ``registry``: ``version``'s artifact registered again
    with ``decision`` (and ``meta_changes``); returns its number."""
    old = registry.load(name, version)
    meta = {k: v for k, v in old.meta.items() if k not in ("files", "version", "name", "created_at")}
    return registry.save(name, old.estimator, old.reference, dict(meta, decision=decision, **meta_changes),
                         old.drift_state)


def kill9(service: Service) -> None:
    """SIGKILL the service's process (a crash: no handler runs, nothing is flushed) and reap it."""
    if service.proc.poll() is None:
        service.proc.send_signal(signal.SIGKILL)
    service.proc.wait(timeout=30)


def committed_total(group_id: str, topic: str, bootstrap: str, coordinator_wait_s: float = 30.0) -> int:
    """The sum over ``topic``'s partitions of the offsets ``group_id`` has committed (0 if none).

    A new broker's group coordinator needs a moment before it answers: that is waited out."""
    from kafka import KafkaAdminClient
    from kafka.errors import CoordinatorLoadInProgressError, CoordinatorNotAvailableError

    from stream_ct.kafka_io import connection_settings

    deadline = time.monotonic() + coordinator_wait_s
    admin = KafkaAdminClient(**connection_settings(bootstrap))
    try:
        while True:
            try:
                offsets = admin.list_group_offsets({group_id: None}).get(group_id) or {}
                break
            except (CoordinatorNotAvailableError, CoordinatorLoadInProgressError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()
    return sum(o.offset for tp, o in offsets.items() if tp.topic == topic and o.offset >= 0)


def committed_by_partition(group_id: str, topic: str, bootstrap: str) -> dict[int, int]:
    from kafka import KafkaAdminClient

    from stream_ct.kafka_io import connection_settings

    admin = KafkaAdminClient(**connection_settings(bootstrap))
    try:
        offsets = admin.list_group_offsets({group_id: None}).get(group_id) or {}
    finally:
        admin.close()
    return {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == topic and o.offset >= 0}


def wait_until(condition: Callable[[], Any], timeout: float, what: str, services: list[Service] = (),
               interval: float = 0.3) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` and the logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exited = [service for service in services if service.proc.poll() is not None]  # as in wait_for_event
        value = condition()
        if value:
            return value
        for service in exited:
            raise AssertionError(f"{service.proc.args} exited early while waiting for {what}; "
                                 f"log:\n{service.output()}")
        time.sleep(interval)
    logs = "\n".join(s.output() for s in services)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; logs:\n{logs}")


def prediction_values(predictions_topic: str, bootstrap: str) -> list[dict[str, Any]]:
    """Every prediction on ``predictions_topic``, decoded (one dict per part, whichever
    ``prediction_messages`` wrote them), in partition/offset order."""
    return unpack_all(m.value for m in record(predictions_topic, bootstrap))


def duplicates_by_key(predictions: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``key -> [predictions]`` for the keys that were predicted more than once."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for p in predictions:
        by_key.setdefault(p["key"], []).append(p)
    return {k: v for k, v in by_key.items() if len(v) > 1}


def report_line(scenario: str, **figures: Any) -> str:
    """One ``RELIABILITY`` line for the README table (printed; run pytest with -s to see it)."""
    line = "RELIABILITY " + orjson.dumps({"scenario": scenario, **figures}).decode()
    print(line, flush=True)
    out = os.environ.get("STREAM_CT_RELIABILITY_LOG")
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")
    return line


def part_messages(records: list[dict[str, Any]]) -> list:
    """Recording messages for part records: key = lot/wafer/part, timestamp = the part's ``ts``."""
    from stream_ct.record import part_key
    from stream_ct.recording import Message

    return [Message(part_key(r).encode(), orjson.dumps(r), int(r["ts"] * 1000), [], None) for r in records]


def simulated_records(n: int, seed: int, scenario: str = "none", **params: Any) -> list[dict[str, Any]]:
    from stream_ct.simulate import Simulator

    return list(Simulator(scenario=scenario, seed=seed, **params).generate(n).records())
