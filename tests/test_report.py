"""The HTML report: content from realistic events, empty input, the command, and a headless browser."""

from __future__ import annotations

import gzip
import random
import re
import shutil
import struct
import subprocess
import zlib

import numpy as np
import orjson
import pytest

from stream_ct.cli import main
from stream_ct.drift.psi import PsiBins
from stream_ct.recording import Message, write_recording
from stream_ct.report import build_report, filter_consumer, load_events, nice_ticks, summarize


def synthetic_events(seed: int = 3) -> list[dict]:
    """A serve + retrain-worker run: bootstrap v1, drift at 20,000, v2 promoted, v3 rejected,
    v4 promoted then rolled back, a lost retrain; as the two processes would write them."""
    rng = random.Random(seed)
    t0 = 1_700_000_000.0
    serve = {"source": "serve", "consumer": "yield", "host": "tf1", "pid": 11}
    worker = {"source": "retrain-worker", "consumer": "*", "host": "tf1", "pid": 12}
    events: list[dict] = []

    def at(when: int, type_: str, base=serve, /, **fields):  # when: the record count at the event
        events.append({"type": type_, "ts": t0 + when / 3000, **base, **fields})

    def decision(position, request_id, reason, version, verdict, auc, champion_auc):
        gates = [{"name": "data_quality", "passed": True, "value": 5000, "threshold": 1000,
                  "detail": "5000 labeled rows"},
                 {"name": "absolute_metric", "passed": auc >= 0.7, "value": auc, "threshold": 0.7,
                  "detail": f"auc {auc:.4f} >= floor 0.7000"}]
        if champion_auc is None:
            gates.append({"name": "beats_champion", "passed": True, "value": None, "threshold": None,
                          "detail": "no champion yet"})
        else:
            gain = auc - champion_auc
            gates.append({"name": "beats_champion", "passed": gain >= 0, "value": gain, "threshold": 0.0,
                          "detail": f"auc gain {gain:+.4f} vs champion on the same holdout"})
        at(position, "retrain_started", worker, request_id=request_id, model="yield", reason=reason)
        at(position + 1500, "retrain_decision", worker, request_id=request_id, model="yield", reason=reason,
           version=version, decision=verdict, gates=gates, rows=5000, seconds=21.5,
           step_seconds={"read": 0.8, "fit": 2.1, "drift_calibration": 6.4},
           metrics={"candidate": {"auc": auc, "accuracy": 0.94, "f1": 0.97},
                    "champion": None if champion_auc is None else {"auc": champion_auc, "accuracy": 0.9, "f1": 0.95}})

    at(5000, "retrain_requested", request_id="r1", reason="bootstrap", model="yield", position=5000,
       window_records=5000)
    decision(5000, "r1", "bootstrap", 1, "promoted", 0.889, None)
    at(6600, "deploy", model="yield", version=1, previous_version=None, position=6600, reason="bootstrap",
       metric_before=None, primary_metric="auc")
    auc = 0.89
    for position in range(8000, 40001, 1000):
        if 20000 < position <= 27000:
            auc -= 0.012
        elif 27000 < position <= 30000:
            auc = 0.9
        elif 33000 < position <= 36000:
            auc -= 0.02
        elif position > 36000:
            auc = 0.9
        at(position, "model_metrics", model="yield", version=1, position=position,
           metrics={"auc": round(auc + rng.uniform(-0.004, 0.004), 4), "f1": round(0.95 + rng.uniform(-0.01, 0.01), 4)})
    features = ["1001:VDD_LEAK", "1002:IDDQ", "2001:VTH_N", "2002:VTH_P", "3005:FREQ_MAX", "3006:RING_OSC",
                "4001:VREF"]
    for k, position in enumerate(range(20250, 23001, 250)):
        for detector, scale, limit in (("ks", 0.05, 0.06), ("psi", 0.1, 0.12), ("cusum", 4.0, 11.5)):
            hit = features[: 2 + k % 4]
            stat = {f: round(limit * (1.1 + 0.15 * k) * (1 - 0.1 * i) + rng.uniform(0, scale), 4)
                    for i, f in enumerate(hit)}
            limits = {f: limit * (1 + 0.05 * i) if detector == "cusum" else limit for i, f in enumerate(hit)}
            event = dict(position=position, offset=position, partition=0, detector=detector, features=hit,
                         statistic=stat, threshold=limits, p_value=1e-6 if detector == "ks" else None,
                         effect_size=max(stat.values()), stratum={"tester": "T2"} if detector == "cusum" else None,
                         champion_version=1, model="yield")
            if detector == "ks":  # as serve writes them: the 3 strongest features, outer bins open (null)
                edges = [-3.0 + 0.5 * i for i in range(13)]
                ref = [round(1000 * pow(2.718, -((e + 0.25) ** 2) / 2)) for e in edges[:-1]]
                cur = [round(1000 * pow(2.718, -((e - 0.5) ** 2) / 2)) for e in edges[:-1]]
                event["histograms"] = [{"feature": f, "edges": [None, *edges[1:-1], None], "reference": ref,
                                        "current": cur} for f in hit[:3]]
            at(position, "drift", **event)
        at(position, "trigger_check", kind="drift", fire=k == 0, reason="cooldown" if k else "drift",
           position=position, signals=3)
    at(25250, "retrain_requested", request_id="r2", reason="drift", model="yield", position=25250,
       window_records=6000)
    decision(25250, "r2", "drift", 2, "promoted", 0.905, 0.81)
    at(27000, "deploy", model="yield", version=2, previous_version=1, position=27000, reason="drift",
       metric_before={"auc": 0.81, "f1": 0.93}, primary_metric="auc")
    at(29000, "post_deploy_metric", model="yield", version=2, labeled=2000, metric={"auc": 0.9, "f1": 0.96},
       position=29000)
    at(30000, "retrain_requested", request_id="r3", reason="schedule", model="yield", position=30000,
       window_records=5000)
    decision(30000, "r3", "schedule", 3, "rejected", 0.893, 0.902)
    at(32000, "retrain_requested", request_id="r4", reason="manual", model="yield", position=32000,
       window_records=5000)
    decision(32000, "r4", "manual", 4, "promoted", 0.91, 0.9)
    at(33600, "deploy", model="yield", version=4, previous_version=2, position=33600, reason="manual",
       metric_before={"auc": 0.9, "f1": 0.95}, primary_metric="auc")
    at(36000, "rollback", model="yield", from_version=4, to_version=2, position=36000,  # as serve writes it
       metric={"auc": 0.84}, detail="live auc 0.8400 < 0.9000 before deployment - 0.05 after 500 labels")
    at(34000, "retrain_failed", worker, request_id="r5", model="yield", reason="schedule", attempt=1, final=False,
       error="TimeoutError: training took longer than 300 s")
    at(37000, "alert", severity="warning", kind="retrain_lost", request_id="r5", detail="no decision within 600 s")
    at(40000, "serve_stopped", records=40000, counts={"predictions_champion": 33400}, champion_version=2)
    events.append({"type": "retrain_decision", "ts": t0 + 5, "source": "retrain-worker", "consumer": "*",
                   "model": "other", "request_id": "x", "decision": "skipped", "version": None, "gates": []})
    return events


def test_report_has_every_section_with_plots_and_gate_rows():
    events = synthetic_events()
    page = build_report(filter_consumer(events, "yield"))
    for heading in ("Drift statistics over time", "Model metric over time",
                    "Reference versus current distributions", "Candidates and gates", "Timeline"):
        assert heading in page
    assert page.count("<svg") >= 3 + 2 + 1  # ks, psi, cusum; auc, f1; at least one distribution
    assert page.count("<polyline") > 10 and "<circle" in page and "<rect" in page
    assert "deploy v2" in page and "rollback to v2" in page and "retrain (drift)" in page
    # 4 decisions for yield x 3 gates; the other model's decision is filtered out
    assert page.count("<tr class='gate'>") == 12
    assert "beats_champion</td><td><span class='bad'>FAIL</span>" in page
    assert "auc gain -0.0090 vs champion on the same holdout" in page
    assert "21.5 s (read 0.8, fit 2.1, drift calibration 6.4)" in page  # where a retrain's time went
    assert "retrain attempt 1: <span class='bad'>failed</span> (will be retried)" in page
    assert "No distribution data" not in page and "1001:VDD_LEAK" in page
    assert "[tester=T2]" in page  # strata are named in the legend
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_summary_counts():
    s = summarize(filter_consumer(synthetic_events(), "yield"))
    assert s["records"] == 40000 and s["champions"] == {"yield": 2} and s["versions"] == {"yield": [1, 2, 3, 4]}
    assert s["decisions"] == {"promoted": 3, "rejected": 1}
    assert (s["deploys"], s["rollbacks"], s["alerts"], s["triggers_fired"]) == (3, 1, 1, 1)


def test_a_rollback_names_the_version_it_went_back_to():
    # serve's automatic rollback says from_version/to_version; `stream-ct models rollback` says version
    events = [e for e in synthetic_events() if e["type"] not in ("deploy", "serve_stopped")]
    page = build_report(events)
    assert "rollback to v2" in page and "rollback to vNone" not in page
    assert summarize(events)["champions"] == {"yield": 2}
    manual = {"type": "rollback", "ts": 1_700_000_100.0, "source": "models-cli", "consumer": "yield",
              "model": "yield", "version": 1, "manual": True}
    assert summarize(events + [manual])["champions"] == {"yield": 1}


def test_distributions_come_from_serve_s_drift_event_histograms():
    """Serve's drift events carry ``histograms`` (the report read a ``histogram`` nobody wrote):
    one chart per feature, its latest signal's, the most recent first; a test constant in the
    reference has one open bin and is drawn too."""
    bins = PsiBins(np.column_stack([np.linspace(0, 1, 200), np.ones(200)]), n_bins=10)
    window = np.column_stack([np.linspace(0.5, 1.5, 100), np.ones(100)])
    event = {"type": "drift", "ts": 1.0, "source": "serve", "consumer": "yield", "position": 5000, "detector": "psi",
             "features": ["spread", "flat"], "effect_size": 0.4,
             "histograms": [{"feature": "spread", **bins.histogram(0, window[:, 0])},
                            {"feature": "flat", **bins.histogram(1, window[:, 1])}]}
    later = dict(event, ts=2.0, position=6000, features=["spread"], histograms=event["histograms"][:1],
                 detector="cusum", stratum={"tester": "T2"})
    section = build_report([orjson.loads(orjson.dumps(e)) for e in (event, later)]).split(
        '<section id="distributions">')[1].split("</section>")[0]
    assert "No distribution data" not in section and section.count("<figure>") == 2
    assert section.index("spread: cusum at record 6,000, tester=T2 only") < section.index("flat: psi at record 5,000,")
    assert section.count("<rect") > 2 * 10


def test_empty_and_partial_event_lists_say_so_instead_of_plotting():
    page = build_report([])
    assert "No drift signals" in page and "No model metric values" in page
    assert "No distribution data in these events" in page and "No retrain decisions" in page
    assert "<svg" not in page
    no_hist = [e for e in synthetic_events() if e["type"] != "model_metrics"]
    for e in no_hist:
        e.pop("histograms", None)
    page = build_report(no_hist)
    assert "No distribution data in these events" in page
    assert "Model metric over time" in page and page.count("<svg") >= 4  # before/after deploy points remain


def test_several_consumers_metrics_are_separate_lines_not_one():
    """A report of every consumer (no --consumer): yield's accuracy and binning's are two models'
    numbers; joined into one line they zigzagged between 0.92 and 0.6."""
    events = []
    for pid, (consumer, values) in enumerate((("yield", {"auc": 0.9, "accuracy": 0.92}),
                                              ("binning", {"f1_macro": 0.5, "accuracy": 0.6}))):
        base = {"source": "serve", "consumer": consumer, "host": "tf1", "pid": pid}
        events.append({"type": "deploy", "ts": 100.0 + pid, "model": consumer, "version": 1, "position": 0,
                       "primary_metric": "auc" if consumer == "yield" else "f1_macro", **base})
        events += [{"type": "model_metrics", "ts": 200.0 + 10 * k + pid, "model": consumer, "version": 1,
                    "position": 5000 * (k + 1), "metrics": values, **base} for k in range(4)]
    section = build_report(events).split('<section id="metric">')[1].split("</section>")[0]
    accuracy = section.split("<h3>accuracy</h3>")[1]
    lines = re.findall(r'<polyline[^>]*><title>([^<]*)</title>', accuracy)
    assert lines == ["binning champion accuracy", "yield champion accuracy"]
    assert "<h3>auc (primary)</h3>" in section and "<h3>f1_macro (primary)</h3>" in section
    assert "<title>champion auc" not in section  # one consumer's chart names no consumer; two name both


def test_several_consumers_drift_signals_on_one_test_are_separate_lines():
    """Every consumer reads the same tests: yield's and outliers' cusum statistics on one test,
    against their own thresholds, were one line."""
    events = [{"type": "drift", "ts": 100.0 + k, "source": "serve", "consumer": consumer, "host": "tf1", "pid": pid,
               "position": 1000 * k, "detector": "cusum", "features": ["1007:FMAX_7"],
               "statistic": {"1007:FMAX_7": limit * 1.2}, "threshold": {"1007:FMAX_7": limit}}
              for k in range(4) for pid, (consumer, limit) in enumerate((("yield", 11.5), ("outliers", 30.0)))]
    section = build_report(events).split('<section id="drift">')[1].split("</section>")[0]
    lines = re.findall(r'<polyline[^>]*><title>([^<]*)</title>', section)
    assert sorted(lines) == ["outliers: 1007:FMAX_7", "outliers: 1007:FMAX_7 threshold",
                             "yield: 1007:FMAX_7", "yield: 1007:FMAX_7 threshold"]
    assert "<title>1007:FMAX_7</title>" in build_report(events[::2])  # one consumer: the test's name alone


def test_time_axis_when_several_instances_wrote_events():
    events = synthetic_events()
    for e in events[::2]:
        if e["source"] == "serve":
            e["source"] = "serve-b"
    assert "event time (UTC)" in build_report(events)


def test_time_axis_when_serve_restarted_or_scaled_out_under_one_name():
    # every instance is "serve" unless started with --instance; each counts positions from 0
    events = synthetic_events()
    for e in events[::2]:
        if e["source"] == "serve":
            e["pid"] = 99
    assert "event time (UTC)" in build_report(events)
    assert "record position" in build_report(synthetic_events())


def test_a_timeline_cut_to_its_last_rows_says_so():
    """It showed the last 200 rows alone, beside an alerts card counting 300."""
    alerts = [{"type": "alert", "ts": 1_700_000_000.0 + i, "source": "serve", "consumer": "yield", "host": "tf1",
               "pid": 11, "severity": "warning", "kind": "retrain_lost", "detail": f"alert {i}"} for i in range(300)]
    timeline = build_report(alerts).split('id="timeline"')[1]
    assert "The last 200 of 300 events." in timeline and timeline.count("<tr class='bad'>") == 200
    assert "The last" not in build_report(alerts[:200]).split('id="timeline"')[1]


def test_nice_ticks_cover_the_range():
    ticks = nice_ticks(20250, 40000, 8)
    assert ticks[0] <= 20250 and ticks[-1] >= 40000 and len(ticks) <= 10
    assert nice_ticks(5, 5) == [5.0, 5.5, 6.0] or nice_ticks(5, 5)[0] <= 5


def test_load_events_from_a_recording_and_an_audit_log(tmp_path):
    events = synthetic_events()[:20]
    recording = tmp_path / "events.jsonl"
    write_recording(str(recording), [Message(e["type"].encode(), orjson.dumps(e), int(e["ts"] * 1000), [], 0)
                                     for e in events])
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    assert load_events(recording) == events == load_events(audit)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"no": "type"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_events(bad)
    with pytest.raises(FileNotFoundError, match="stream-ct record"):
        load_events(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("damage", [lambda packed: packed[:-10], lambda packed: packed[:10] + b"\xff" + packed[11:],
                                    lambda packed: b"not gzip at all\n"], ids=["truncated", "corrupt", "not gzip"])
def test_a_truncated_or_corrupt_gz_events_file_is_one_error_line(tmp_path, capsys, damage):
    """A cut-short file ended in an EOFError traceback (exit 1), a corrupt one in zlib.error's,
    and a file that is not gzip in an error line that did not name it."""
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(damage(gzip.compress(b"\n".join(orjson.dumps(e) for e in synthetic_events()))))
    assert main(["report", "--events", str(path), "--out", str(tmp_path / "r.html")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {path}: corrupt or truncated gzip data (")


def test_a_live_message_that_is_not_an_event_is_left_out_and_said(tmp_path, monkeypatch, capsys):
    """A JSON array someone wrote to ct.events ended the live report in an AttributeError traceback."""
    import stream_ct.replay

    values = [orjson.dumps(e) for e in synthetic_events()[:3]] + [b"[1, 2]", b"not json", None]
    monkeypatch.setattr(stream_ct.replay, "record", lambda topic, bootstrap: (
        Message(None, v, 1, [], 0) for v in values))
    out = tmp_path / "live.html"
    assert main(["report", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ("report: left out 2 messages on ct.events that are not events "
                            "(a JSON object with a 'type')\n")
    assert captured.out.startswith("report: 3 events from ct.events at ") and out.exists()


def test_report_command(tmp_path, capsys):
    import argparse

    from stream_ct.report import register

    parser = argparse.ArgumentParser(prog="stream-ct")
    register(parser.add_subparsers())
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"\n".join(orjson.dumps(e) for e in synthetic_events()))
    out = tmp_path / "r" / "report.html"
    args = parser.parse_args(["report", "--events", str(audit), "--consumer", "yield", "--out", str(out)])
    assert args.func(args) == 0
    assert "stream-ct report: yield" in out.read_text()
    assert "-> " in capsys.readouterr().out


def test_a_consumer_with_no_event_is_an_error_naming_the_ones_there(tmp_path, capsys):
    """A misspelt --consumer wrote an empty report and exited 0."""
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"\n".join(orjson.dumps(e) for e in synthetic_events()))
    out = tmp_path / "report.html"
    assert main(["report", "--events", str(audit), "--consumer", "yeild", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no event of consumer 'yeild' in ") and "name: yield" in err
    assert not out.exists()


# -- headless browser ----------------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def png_rows(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and unfiltered rows of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, f"unsupported PNG {header}"
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def test_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium); the browser check needs it")
    page = tmp_path / "report.html"
    page.write_text(build_report(filter_consumer(synthetic_events(), "yield")), encoding="utf-8")
    png = tmp_path / "shot.png"
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
              "--v=0"]
    shot = subprocess.run(common + [f"--screenshot={png}", "--window-size=1280,2000", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert png.exists(), f"chromium wrote no screenshot (exit {shot.returncode}): {shot.stderr[-2000:]}"
    assert "Uncaught" not in shot.stderr and "ERROR:CONSOLE" not in shot.stderr, shot.stderr[-2000:]

    width, height, rows = png_rows(png.read_bytes())
    assert (width, height) == (1280, 2000)
    sampled = rows[::40]
    assert len({bytes(r) for r in sampled}) > 10, "the screenshot is (almost) blank"
    colours = {r[i:i + 3] for r in sampled for i in range(0, len(r), 3 * 17)}
    assert len(colours) > 20, "the screenshot has hardly any colours: plots did not render"

    dom = subprocess.run(common + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r"<svg", dom.stdout)) >= 6 and "Candidates and gates" in dom.stdout


def test_several_models_each_show_their_champion_and_versions():
    """The champion card showed the last deploy of any model, and the versions card merged all
    models' numbers: yield's v2 and binning's v4 read as 'champion v4, versions v1, v2, v4'."""
    events = [{"type": "deploy", "ts": ts, "source": "serve", "consumer": model, "model": model, "version": v,
               "position": 0} for ts, model, v in ((1.0, "yield", 1), (2.0, "yield", 2), (3.0, "binning", 4))]
    page = build_report(events)
    assert '<b>binning v4 · yield v2</b><span>champion</span>' in page
    assert '<b>binning v4 · yield v1, v2</b><span>versions</span>' in page
    assert '<b>v2</b><span>champion</span>' in build_report(filter_consumer(events, "yield"))


def test_records_of_a_serve_restarted_under_the_same_host_and_pid_add_up():
    """In a container serve is pid 1 on the same host each time it starts: the records of two
    runs (40,000 then 20,000) were taken as one process's and counted 40,000."""
    base = {"source": "serve", "consumer": "yield", "host": "3f2a9c1b7d4e", "pid": 1}
    events = [{"type": "serve_stopped", "ts": 100.0, "records": 40_000, "run": "a1", **base},
              {"type": "serve_stopped", "ts": 200.0, "records": 20_000, "run": "b2", **base}]
    assert summarize(events)["records"] == 60_000
    assert summarize([dict(e, run=None) for e in events])["records"] == 40_000  # events from before runs


def test_a_version_three_instances_swap_in_is_one_deploy():
    """Every instance emits deploy, at a promotion and when it loads the champion at a
    restart: one promotion served by three instances counted 3, a restart one more."""
    events = [{"type": "deploy", "ts": 100.0 + i, "source": "serve", "consumer": "yield", "host": f"tf{i}",
               "pid": 7, "model": "yield", "version": 2, "previous_version": 1, "position": 10} for i in range(3)]
    events.append(dict(events[0], ts=200.0, previous_version=None, position=0, run="restarted"))
    assert summarize(events)["deploys"] == 1
    assert summarize(events + [dict(events[0], ts=300.0, version=3, previous_version=2)])["deploys"] == 2
