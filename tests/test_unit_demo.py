"""``stream-ct demo``'s handling of its output folder, without a broker."""

from __future__ import annotations

import io
import json
import types
from pathlib import Path

import pytest

from stream_ct import demo
from stream_ct.progress import Progress
from stream_ct.recording import Message


def test_demo_refuses_to_delete_a_folder_it_did_not_write(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "LocalBroker", lambda **kw: pytest.fail("started before checking --out"))
    (tmp_path / "notes.txt").write_text("a week of lot notes")
    with pytest.raises(ValueError, match="not a stream-ct demo folder"):
        demo.run_demo(tmp_path, 100, 50, 1.5, 2000, 7, 1)
    assert (tmp_path / "notes.txt").read_text() == "a week of lot notes"


def test_an_earlier_demo_folder_is_cleared(tmp_path):
    (tmp_path / "broker").mkdir()
    (tmp_path / "summary.json").write_text("{}")
    demo.clear_out(tmp_path)
    assert tmp_path.is_dir() and not any(tmp_path.iterdir())
    demo.clear_out(tmp_path / "new")  # a new folder, and an empty one, are fine too
    demo.clear_out(tmp_path / "new")


def test_the_replay_progress_ends_with_a_done_line(tmp_path, monkeypatch):
    """The progress lines of the paced replay stopped at the last periodic count: no line said
    the replay had finished before the demo went quiet waiting for serve."""
    progress_out = io.StringIO()
    monkeypatch.setattr(demo, "Progress", lambda *a, **kw: Progress(*a, **dict(kw, stream=progress_out,
                                                                                interval_s=0)))
    monkeypatch.setattr(demo, "LocalBroker", lambda **kw: types.SimpleNamespace(start=lambda: "127.0.0.1:1",
                                                                                 stop=lambda: None))
    monkeypatch.setattr(demo, "simulate_to_recording", lambda scenario, records, seed, path, **kw: Path(
        path + ".truth.json").write_text(json.dumps({"scenario": scenario, "onsets": []})))
    monkeypatch.setattr(demo, "read_recording", lambda path: [Message(b"k", b"{}", i) for i in range(12_300)])
    monkeypatch.setattr(demo.subprocess, "Popen", lambda *a, **kw: types.SimpleNamespace(poll=lambda: 0,
                                                                                        returncode=0))
    monkeypatch.setattr(demo, "wait_for_deploy", lambda *a, **kw: None)

    def replay(messages, topic, bootstrap, rate=None, progress=None):
        for count, _ in enumerate(messages, start=1):
            if progress:
                progress.update(count)
        return len(messages)

    monkeypatch.setattr(demo, "replay", replay)
    monkeypatch.setattr(demo, "record", lambda topic, bootstrap: [])
    monkeypatch.setattr(demo, "save_events", lambda bootstrap, path: [])
    monkeypatch.setattr(demo, "topic_size", lambda topic, bootstrap: 0)
    summary = demo.run_demo(tmp_path / "out", 12_300, 100, 1.5, 2000, 7, 1)
    assert summary["records_in"] == 12_300
    assert (tmp_path / "out" / "report.html").read_text().startswith("<!DOCTYPE html>")  # the demo's report too
    lines = progress_out.getvalue().splitlines()
    assert len(lines) > 1 and lines[-1].startswith("replay: 300/300 records") and lines[-1].endswith(" done")


def test_a_deploy_written_just_before_a_service_exits_counts(monkeypatch):
    """The wait read the events, then looked for exited services: a service that deployed and
    exited in between made the demo fail with 'exited before the first champion'."""
    events: list[dict] = []
    service = types.SimpleNamespace(returncode=None, poll=lambda: service.returncode)

    def read_events(bootstrap):
        found = list(events)
        events.append({"type": "deploy", "model": "yield"})  # written, then the service exits
        service.returncode = 0
        return found

    monkeypatch.setattr(demo, "read_events", read_events)
    monkeypatch.setattr(demo.time, "sleep", lambda s: None)
    demo.wait_for_deploy("unused", "yield", [service], timeout_s=5)
    with pytest.raises(RuntimeError, match="exited before the first champion"):
        demo.wait_for_deploy("unused", "binning", [service], timeout_s=5)
