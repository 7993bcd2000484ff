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
from stream_ct.replay import record

CONFIG_TEMPLATE = """
[consumer]
name = "{name}"
input_topic = "{topic}"
poll_max_records = {poll}

[model]
task = "{task}"
target = "{target}"
estimator = "{estimator}"

[drift]
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

DEFAULTS = dict(poll=1000, task="classification", target="passed", estimator="hist_gradient_boosting",
                arl0=100000, window=1000, stride=250, reference_size=5000, window_records=4000,
                min_rows=1000, cooldown=20000, min_metric=0.7, min_improvement=0.0)


def write_config(tmp_path: Path, topic: str, **overrides: Any) -> Path:
    """A consumer definition named after ``topic`` (so its events and model are its own)."""
    values = dict(DEFAULTS, name=topic, topic=topic, registry=str(tmp_path / "registry"), **overrides)
    path = tmp_path / f"{topic}.toml"
    path.write_text(CONFIG_TEMPLATE.format(**values))
    return path


class Service:
    """A stream-ct command in its own process, its output in a log file."""

    def __init__(self, args: list[str], log: Path, cwd: Path):
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "stream_ct", *args], cwd=cwd,
                                     stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=dict(os.environ))

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
        for event in events_for(model, bootstrap):
            if predicate(event):
                return event
        for service in services:
            if service.proc.poll() is not None:
                raise AssertionError(f"{service.proc.args} exited early; log:\n{service.output()}")
        time.sleep(0.5)
    logs = "\n".join(s.output() for s in services)
    raise AssertionError(f"no matching event for {model} within {timeout} s; logs:\n{logs}")
