"""``stream-ct report``: one self-contained HTML file from the events on ``ct.events``.

The page shows a summary, the drift statistics over time against their thresholds, the model
metric over time with retrain, deploy and rollback markers, reference versus current
distributions of the drifted tests, the gate table of every candidate, and the timeline.
Plots are inline SVG built here: no JavaScript, no network, no plotting library.

>>> page = build_report([])
>>> "No drift signals" in page and page.startswith("<!DOCTYPE html>")
True

From the command line::

    stream-ct report --events demo-out/events.jsonl --out report.html
    stream-ct report --bootstrap-servers 127.0.0.1:9092 --consumer yield --out report.html
"""

from __future__ import annotations

import collections
import gzip
import html
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import orjson

from stream_ct.kafka_io import EVENTS_TOPIC
from stream_ct.recording import GZIP_ERRORS, line_to_message
from stream_ct.words import counted

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f")
MARKER_COLORS = {"trigger": "#b26a00", "retrain": "#7f7f7f", "deploy": "#2ca02c", "rollback": "#d62728"}
#: Features drawn per detector, strongest first (statistic over threshold).
TOP_FEATURES = 6
#: Distribution plots drawn, most recent drifted feature first.
MAX_HISTOGRAMS = 8
MAX_TABLE_ROWS = 200
_E = html.escape


# -- input -------------------------------------------------------------------------------------


def _events_from_lines(lines: Iterable[bytes], path: str) -> list[dict[str, Any]]:
    """JSON lines that are either events (an audit log) or recording lines whose value is an event."""
    events = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
            if isinstance(obj, dict) and "type" not in obj and ("value" in obj or "value_b64" in obj):
                obj = orjson.loads(line_to_message(line).value or b"null")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: neither an event nor a recording line ({exc})") from exc
        if not isinstance(obj, dict) or "type" not in obj:
            raise ValueError(f"{path}:{number}: not an event (a JSON object with a 'type'); "
                             "pass a recording of ct.events or an audit log")
        events.append(obj)
    return events


def load_events(path: str | Path) -> list[dict[str, Any]]:
    """Events from a recording of ``ct.events`` or from an audit log (``.gz`` allowed)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such events file; record one with "
                                f"`stream-ct record --topic {EVENTS_TOPIC} events.jsonl`")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        try:
            return _events_from_lines(f, str(path))
        except GZIP_ERRORS as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from exc


def fetch_events(bootstrap: str | None) -> list[dict[str, Any]]:
    """Every event currently on ``ct.events``; a message that is not one (another client wrote
    it, and the topic keeps it) is left out, and said on stderr."""
    from stream_ct.replay import record

    events, other = [], 0
    for m in record(EVENTS_TOPIC, bootstrap):
        try:
            event = orjson.loads(m.value or b"null")
        except orjson.JSONDecodeError:
            event = None
        if isinstance(event, dict) and "type" in event:
            events.append(event)
        elif m.value:
            other += 1
    if other:
        print(f"report: left out {counted(other, 'message')} on {EVENTS_TOPIC} that "
              f"{'is not an event' if other == 1 else 'are not events'} (a JSON object with a 'type')", file=sys.stderr)
    return events


def filter_consumer(events: list[dict[str, Any]], consumer: str) -> list[dict[str, Any]]:
    """The events of one consumer, plus the retrain worker's events for its models and requests."""
    own = [e for e in events if e.get("consumer") == consumer]
    models = {e["model"] for e in own if e.get("model")} or {consumer}
    requests = {e["request_id"] for e in own if e.get("request_id")}
    return [e for e in events if e.get("consumer") == consumer or (
        e.get("consumer") in (None, "*") and (e.get("model") in models or e.get("request_id") in requests))]


# -- SVG ---------------------------------------------------------------------------------------


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values covering ``[lo, hi]``.

    >>> nice_ticks(0.0, 0.93)
    [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    """
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v < hi + step * 1e-9:
        ticks.append(v)
        v = start + len(ticks) * step
    if ticks[-1] < hi:
        ticks.append(v)
    return ticks


def _num(v: float) -> str:
    """A compact axis or table number."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _E(str(v))
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e7:
        return f"{int(v):,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts))


class Chart:
    """A line chart with round ticks, a legend, dashed thresholds and labelled vertical markers."""

    def __init__(self, x_label: str, y_label: str, x_time: bool = False, width: int = 1080, height: int = 300):
        self.x_label, self.y_label, self.x_time = x_label, y_label, x_time
        self.width, self.plot_height = width, height
        self.series: list[dict[str, Any]] = []
        self.markers: list[tuple[float, str, str]] = []
        self.hlines: list[tuple[float, str, str]] = []

    def add(self, name: str, points: list[tuple[float, float]], color: str, dashed: bool = False,
            legend: bool = True) -> None:
        points = [(x, y) for x, y in points if _finite(x) and _finite(y)]
        if points:
            self.series.append({"name": name, "points": sorted(points), "color": color, "dashed": dashed,
                                "legend": legend})

    def marker(self, x: float, label: str, color: str) -> None:
        if _finite(x):
            self.markers.append((x, label, color))

    def hline(self, y: float, label: str, color: str = "#555") -> None:
        """A dashed horizontal line across the plot (a threshold shared by every series)."""
        if _finite(y):
            self.hlines.append((y, label, color))

    def svg(self) -> str:
        left, right, top = 78, 24, 16
        legend = [s for s in self.series if s["legend"]] + [
            {"name": label, "color": color, "dashed": True} for _, label, color in self.hlines]
        per_row = max(1, (self.width - left) // 230)
        legend_rows = math.ceil(len(legend) / per_row)
        bottom = 56 + 20 * legend_rows
        height = top + self.plot_height + bottom
        xs = [x for s in self.series for x, _ in s["points"]] + [m[0] for m in self.markers]
        ys = [y for s in self.series for _, y in s["points"]] + [h[0] for h in self.hlines]
        x_lo, x_hi = min(xs), max(xs)
        if x_lo == x_hi:
            x_lo, x_hi = x_lo - 1, x_hi + 1
        y_lo, y_hi = min(ys), max(ys)
        pad = (y_hi - y_lo) * 0.08 or abs(y_hi) * 0.1 or 1.0
        y_ticks = nice_ticks(y_lo - pad if y_lo < 0 or y_lo - pad > 0 else 0.0, y_hi + pad)
        x_ticks = nice_ticks(x_lo, x_hi, 8)
        x_ticks = [t for t in x_ticks if x_lo <= t <= x_hi] or [x_lo, x_hi]
        y_lo, y_hi = y_ticks[0], y_ticks[-1]
        pw, ph = self.width - left - right, self.plot_height

        def sx(x):
            return left + (x - x_lo) / (x_hi - x_lo) * pw

        def sy(y):
            return top + ph - (y - y_lo) / (y_hi - y_lo) * ph

        out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {self.width} {height}" '
               f'width="{self.width}" height="{height}" role="img" aria-label="{_E(self.y_label)} by {_E(self.x_label)}">',
               f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>']
        for t in y_ticks:
            y = sy(t)
            out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_num(t)}</text>')
        for t in x_ticks:
            x = sx(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 5}" stroke="#666"/>')
            text = _clock(t) if self.x_time else _num(t)
            out.append(f'<text x="{x:.1f}" y="{top + ph + 18}" text-anchor="middle" class="tick">{text}</text>')
        out.append(f'<text x="{left + pw / 2:.0f}" y="{top + ph + 38}" text-anchor="middle" class="axis">'
                   f'{_E(self.x_label)}</text>')
        out.append(f'<text transform="translate(16 {top + ph / 2:.0f}) rotate(-90)" text-anchor="middle" '
                   f'class="axis">{_E(self.y_label)}</text>')
        for x, label, color in sorted(self.markers):
            px = sx(x)
            out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{top + ph}" stroke="{color}" '
                       f'stroke-width="1.5" stroke-dasharray="2 3"><title>{_E(label)}</title></line>')
            out.append(f'<text transform="translate({px + 4:.1f} {top + 6}) rotate(90)" class="marker" '
                       f'fill="{color}">{_E(label)}</text>')
        for y, label, color in self.hlines:
            out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="{color}" '
                       f'stroke-width="1.5" stroke-dasharray="6 4"><title>{_E(label)}</title></line>')
        for s in self.series:
            pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s["points"])
            dash = ' stroke-dasharray="6 4"' if s["dashed"] else ""
            out.append(f'<polyline points="{pts}" fill="none" stroke="{s["color"]}" stroke-width="1.8"{dash}>'
                       f'<title>{_E(s["name"])}</title></polyline>')
            if not s["dashed"]:
                for x, y in s["points"]:
                    tip = f'{s["name"]}: {_num(y)} at {_clock(x) if self.x_time else _num(x)}'
                    out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{s["color"]}">'
                               f'<title>{_E(tip)}</title></circle>')
        for i, s in enumerate(legend):
            lx = left + (i % per_row) * 230
            ly = top + ph + 56 + (i // per_row) * 20
            dash = ' stroke-dasharray="6 4"' if s["dashed"] else ""
            out.append(f'<line x1="{lx}" x2="{lx + 24}" y1="{ly - 4}" y2="{ly - 4}" stroke="{s["color"]}" '
                       f'stroke-width="2.5"{dash}/>')
            out.append(f'<text x="{lx + 30}" y="{ly}" class="legend">{_E(_short(s["name"], 30))}</text>')
        out.append("</svg>")
        return "\n".join(out)


def histogram_svg(hist: dict[str, Any], width: int = 520, height: int = 220) -> str:
    """Reference versus current shares per bin, from one of a drift event's ``histograms``
    (its outer edges ``None``: open bins)."""
    edges = [(-math.inf if i == 0 else math.inf) if e is None else float(e) for i, e in enumerate(hist["edges"])]
    ref, cur = [float(v) for v in hist["reference"]], [float(v) for v in hist["current"]]
    ref_total, cur_total = sum(ref) or 1.0, sum(cur) or 1.0
    ref, cur = [v / ref_total for v in ref], [v / cur_total for v in cur]
    left, right, top, bottom = 62, 14, 12, 62
    pw, ph = width - left - right, height
    # Open outer bins (±inf edges) are drawn as wide as their neighbour.
    finite = [e for e in edges if math.isfinite(e)] or [0.0]  # one open bin: a test constant in the reference
    lo_edge, hi_edge = min(finite), max(finite)
    inner = (hi_edge - lo_edge) / max(len(edges) - 1, 1) or 1.0
    edges = [lo_edge - inner if e == -math.inf else hi_edge + inner if e == math.inf else e for e in edges]
    x_lo, x_hi = edges[0], edges[-1]
    y_ticks = nice_ticks(0.0, max(ref + cur) * 1.1 or 1.0, 5)
    y_hi = y_ticks[-1]

    def sx(x):
        return left + (x - x_lo) / ((x_hi - x_lo) or 1.0) * pw

    def sy(y):
        return top + ph - y / y_hi * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {top + ph + bottom}" '
           f'width="{width}" height="{top + ph + bottom}" role="img" '
           f'aria-label="reference and current distribution of {_E(str(hist.get("feature")))}">',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>']
    for t in y_ticks:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" class="tick">{t:.0%}</text>')
    for values, color, name in ((ref, PALETTE[0], "reference"), (cur, PALETTE[1], "current")):
        for a, b, v in zip(edges, edges[1:], values):
            out.append(f'<rect x="{sx(a):.1f}" y="{sy(v):.1f}" width="{max(sx(b) - sx(a) - 1, 1):.1f}" '
                       f'height="{sy(0) - sy(v):.1f}" fill="{color}" fill-opacity="0.45" stroke="{color}">'
                       f'<title>{name} [{_num(a)}, {_num(b)}): {v:.1%}</title></rect>')
    for t in nice_ticks(x_lo, x_hi, 6):
        if x_lo <= t <= x_hi:
            out.append(f'<text x="{sx(t):.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{_num(t)}</text>')
    out.append(f'<text x="{left + pw / 2:.0f}" y="{top + ph + 34}" text-anchor="middle" class="axis">'
               f'{_E(_short(str(hist.get("feature", "value")), 60))}</text>')
    out.append(f'<text transform="translate(14 {top + ph / 2:.0f}) rotate(-90)" text-anchor="middle" '
               f'class="axis">share of records</text>')
    for i, (color, name) in enumerate(((PALETTE[0], "reference"), (PALETTE[1], "current"))):
        lx = left + i * 130
        out.append(f'<rect x="{lx}" y="{top + ph + 44}" width="14" height="10" fill="{color}" fill-opacity="0.45" '
                   f'stroke="{color}"/><text x="{lx + 20}" y="{top + ph + 54}" class="legend">{name}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# -- sections ------------------------------------------------------------------------------------


class _Axis:
    """Plots use the stream position when one serving process wrote the events, else event time
    (each process counts positions from 0; instances share the source name unless given one)."""

    def __init__(self, events: list[dict[str, Any]]):
        serving = {_process(e) for e in events if e.get("type") in ("drift", "deploy", "serve_stopped")}
        self.time = len(serving) > 1
        self.label = "event time (UTC)" if self.time else "record position (valid records seen by serve)"

    def x(self, event: dict[str, Any]) -> float | None:
        value = event.get("ts") if self.time else event.get("position")
        return float(value) if _finite(value) else None


def _process(event: dict[str, Any]) -> str:
    """The process that wrote ``event``: its run when the event has one (a serve restarted in
    a container has the pid and host of the one before), else its source, host and pid."""
    return f"{event.get('source')}@{event.get('host')}:{event.get('pid')}/{event.get('run', '')}"


def _as_dict(value: Any, features: list[str]) -> dict[str, float]:
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items() if _finite(v)}
    if _finite(value):
        return {(features[0] if len(features) == 1 else "all features"): value}
    return {}


def _drift_section(drift: list[dict[str, Any]], axis: _Axis, markers: list[tuple[float, str, str]]) -> str:
    if not drift:
        return "<p>No drift signals in these events: no detector crossed its threshold.</p>"
    parts = []
    colors: dict[str, str] = {}  # one colour per feature across the detectors' charts
    xs = [x for x in map(axis.x, drift) if x is not None]
    if xs:  # zoom on the signals; keep the markers near them
        span = max(xs) - min(xs)
        pad = 0.15 * span if span else 0.05 * max(abs(min(xs)), 1.0)
        markers = [m for m in markers if min(xs) - pad <= m[0] <= max(xs) + pad]
    several = len({e.get("consumer") for e in drift}) > 1  # the same test of two consumers: two lines
    by_detector: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for e in drift:
        by_detector[str(e.get("detector", "unknown"))].append(e)
    for detector, events in sorted(by_detector.items()):
        stats: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        thresholds: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        strength: dict[str, float] = collections.defaultdict(float)
        feature_of: dict[str, str] = {}
        for e in events:
            x = axis.x(e)
            if x is None:
                continue
            features = [str(f) for f in e.get("features") or []]
            stratum = e.get("stratum")
            suffix = " [" + ", ".join(f"{k}={v}" for k, v in stratum.items()) + "]" if stratum else ""
            statistic = _as_dict(e.get("statistic"), features)
            threshold = _as_dict(e.get("threshold"), features)
            for feature, value in statistic.items():
                name = (f"{e.get('consumer')}: " if several else "") + feature + suffix
                feature_of[name] = feature
                stats[name].append((x, value))
                limit = threshold.get(feature)
                if limit is not None:
                    thresholds[name].append((x, limit))
                    strength[name] = max(strength[name], value / limit if limit else value)
                else:
                    strength[name] = max(strength[name], value)
        top = sorted(stats, key=lambda n: -strength[n])[:TOP_FEATURES]
        parts.append(f"<h3>{_E(detector)}</h3>")
        if not top:
            parts.append(f"<p>{len(events)} {_E(detector)} signals, none with a numeric statistic and position.</p>")
            continue
        chart = Chart(axis.label, f"{detector} statistic", axis.time)
        limits = {y for name in top for _, y in thresholds.get(name, [])}
        used: set[str] = set()
        for name in top:
            color = colors.setdefault(feature_of[name], PALETTE[len(colors) % len(PALETTE)])
            if color in used:  # the same test in two strata
                color = next((c for c in PALETTE if c not in used), color)
            used.add(color)
            chart.add(name, stats[name], color)
            if len(limits) > 1:
                chart.add(f"{name} threshold", thresholds.get(name, []), color, dashed=True, legend=False)
        if len(limits) == 1:
            limit = limits.pop()
            chart.hline(limit, f"threshold {_num(limit)}")
            how = "dashed: the threshold"
        else:
            how = "dashed, same colour: its threshold"
        for m in markers:
            chart.marker(*m)
        more = len(stats) - len(top)
        note = f" and {more} more (see the table below)" if more > 0 else ""
        parts.append(f"<p>{len(events)} signals; strongest {len(top)} features shown{note}. "
                     f"Solid: statistic when the signal fired; {how}.</p>")
        parts.append(chart.svg())
    rows = []
    for e in drift[-MAX_TABLE_ROWS:]:
        features = [str(f) for f in e.get("features") or []]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in (
            _num(e.get("position")), _clock(e["ts"]) if _finite(e.get("ts")) else "–", _E(str(e.get("detector"))),
            _E(_short(", ".join(features), 80)), _E(_stat_text(e.get("statistic"), features)),
            _E(_stat_text(e.get("threshold"), features)), _num(e.get("p_value")), _num(e.get("effect_size")),
            _E(", ".join(f"{k}={v}" for k, v in (e.get("stratum") or {}).items()) or "all"),
            _num(e.get("champion_version")))) + "</tr>")
    shown = f" (last {MAX_TABLE_ROWS} of {len(drift)})" if len(drift) > MAX_TABLE_ROWS else ""
    parts.append(f"<details><summary>Drift signals{shown}</summary><table><tr><th>position</th><th>time</th>"
                 "<th>detector</th><th>features</th><th>statistic</th><th>threshold</th><th>p</th>"
                 "<th>effect</th><th>stratum</th><th>champion</th></tr>" + "".join(rows) + "</table></details>")
    return "\n".join(parts)


def _stat_text(value: Any, features: list[str]) -> str:
    values = _as_dict(value, features)
    items = [f"{k} {_num(v)}" for k, v in list(values.items())[:3]]
    return ", ".join(items) + (" …" if len(values) > 3 else "")


def _metric_points(events: list[dict[str, Any]], axis: _Axis) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Points per (consumer, metric): consumers' champions are different models, never one line."""
    series: dict[tuple[str, str], list[tuple[float, float]]] = collections.defaultdict(list)
    for e in events:
        kind, x = e.get("type"), axis.x(e)
        if x is None:
            continue
        values = {"model_metrics": e.get("metrics"), "post_deploy_metric": e.get("metric"),
                  "deploy": e.get("metric_before"), "rollback": e.get("metric")}.get(kind)
        if isinstance(values, dict):
            for name, v in values.items():
                if _finite(v):
                    series[(str(e.get("consumer", "")), str(name))].append((x, float(v)))
    return series


def _markers(events: list[dict[str, Any]], axis: _Axis) -> list[tuple[float, str, str]]:
    markers = []
    for e in events:
        kind, x = e.get("type"), axis.x(e)
        if x is None:
            continue
        if kind == "trigger_check" and e.get("fire"):
            markers.append((x, f"trigger ({e.get('reason', '?')})", MARKER_COLORS["trigger"]))
        elif kind == "retrain_requested":
            markers.append((x, f"retrain ({e.get('reason', '?')})", MARKER_COLORS["retrain"]))
        elif kind == "deploy":
            markers.append((x, f"deploy v{e.get('version')}", MARKER_COLORS["deploy"]))
        elif kind == "rollback":
            markers.append((x, f"rollback to v{_new_champion(e)}", MARKER_COLORS["rollback"]))
    return markers


def _new_champion(event: dict[str, Any]) -> Any:
    """The version a deploy or rollback made champion (serve's rollback says ``to_version``,
    ``stream-ct models rollback``'s says ``version``)."""
    return event.get("to_version", event.get("version"))


def _metric_section(events: list[dict[str, Any]], axis: _Axis, markers: list[tuple[float, str, str]]) -> str:
    series = _metric_points(events, axis)
    legend = ("Markers: orange trigger fired, grey retrain request, green deploy, red rollback. Points come from "
              "<code>model_metrics</code>, <code>post_deploy_metric</code>, the metric before each deploy "
              "and rollbacks.")
    if not series:
        what = f" ({len(markers)} retrain, deploy and rollback markers)" if markers else ""
        return f"<p>No model metric values in these events{what}.</p>"
    primary = {e.get("primary_metric") for e in events if e.get("primary_metric")}
    consumers = sorted({c for c, _ in series})
    names = sorted({n for _, n in series}, key=lambda n: (n not in primary, n))
    parts = [f"<p>{legend}</p>"]
    for name in names:
        chart = Chart(axis.label, name, axis.time, height=240)
        for i, consumer in enumerate(consumers):
            who = "champion" if len(consumers) == 1 else f"{consumer} champion"
            chart.add(f"{who} {name}", series.get((consumer, name), []), PALETTE[i % len(PALETTE)])
        for m in markers:
            chart.marker(*m)
        parts.append(f"<h3>{_E(name)}{' (primary)' if name in primary else ''}</h3>")
        parts.append(chart.svg())
    return "\n".join(parts)


def _histograms(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The well-formed entries of a drift event's ``histograms`` (serve's: the signal's strongest
    features, edges one longer than the counts)."""
    out = []
    for hist in event.get("histograms") or []:
        if isinstance(hist, dict) and {"edges", "reference", "current"} <= set(hist):
            if len(hist["edges"]) == len(hist["reference"]) + 1 == len(hist["current"]) + 1:
                out.append(hist)
    return out


def _distribution_section(drift: list[dict[str, Any]]) -> str:
    latest: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for e in drift:
        for hist in _histograms(e):
            feature = str(hist.get("feature", "?"))
            latest.pop(feature, None)  # most recent last
            latest[feature] = (e, hist)
    if not latest:
        return "<p>No distribution data in these events (drift events without <code>histograms</code>).</p>"
    items = list(latest.items())[-MAX_HISTOGRAMS:][::-1]
    cells = []
    for feature, (e, hist) in items:
        stratum = e.get("stratum") if isinstance(e.get("stratum"), dict) else {}
        where = "".join(f", {_E(f'{k}={v}')} only" for k, v in stratum.items())  # its histogram counts that level
        caption = (f"{_E(_short(feature, 50))}: {_E(str(e.get('detector')))} at record {_num(e.get('position'))}"
                   f"{where}, effect {_num(e.get('effect_size'))}")
        cells.append(f'<figure>{histogram_svg(hist)}<figcaption>{caption}</figcaption></figure>')
    more = f" ({len(latest) - len(items)} more features not shown)" if len(latest) > len(items) else ""
    return (f"<p>Latest signal per drifted test; shares of the reference window (blue) and the current "
            f"window (orange) per bin{more}.</p><div class='grid'>" + "".join(cells) + "</div>")


def _gate_section(events: list[dict[str, Any]]) -> str:
    decisions = [e for e in events if e.get("type") in ("retrain_decision", "retrain_failed")]
    if not decisions:
        return "<p>No retrain decisions in these events.</p>"
    parts = []
    for e in decisions:
        if e["type"] == "retrain_failed":
            retry = "" if e.get("final", True) else " (will be retried)"
            attempt = f" attempt {e['attempt']}" if e.get("attempt") else ""
            parts.append(f"<h3>{_E(str(e.get('model', '')))} retrain{attempt}: <span class='bad'>failed</span>"
                         f"{retry}</h3><p class='facts'>{_clock(e['ts']) if _finite(e.get('ts')) else ''} · "
                         f"reason {_E(str(e.get('reason')))}</p><p><code>{_E(str(e.get('error')))}</code></p>")
            continue
        decision = str(e.get("decision"))
        css = {"promoted": "good", "rejected": "bad"}.get(decision, "warn")
        version = f"v{e['version']}" if e.get("version") is not None else "no version"
        steps = ", ".join(f"{_E(str(step).replace('_', ' '))} {_num(s)}"
                          for step, s in (e.get("step_seconds") or {}).items())
        facts = [f"reason {_E(str(e.get('reason')))}", f"{_num(e.get('rows'))} rows",
                 f"{_num(e.get('seconds'))} s" + (f" ({steps})" if steps else ""),
                 f"request {_E(str(e.get('request_id', ''))[:8])}"]
        parts.append(f"<h3>{_E(str(e.get('model', '')))} {version}: <span class='{css}'>{_E(decision)}</span>"
                     f"</h3><p class='facts'>{' · '.join(facts)}</p>")
        rows = []
        for g in e.get("gates") or []:
            verdict = "<span class='good'>pass</span>" if g.get("passed") else "<span class='bad'>FAIL</span>"
            rows.append(f"<tr class='gate'><td>{_E(str(g.get('name')))}</td><td>{verdict}</td>"
                        f"<td>{_num(g.get('value'))}</td><td>{_num(g.get('threshold'))}</td>"
                        f"<td>{_E(str(g.get('detail') or ''))}</td></tr>")
        parts.append("<table><tr><th>gate</th><th>verdict</th><th>value</th><th>threshold</th><th>detail</th></tr>"
                     + ("".join(rows) or "<tr><td colspan=5>no gates recorded</td></tr>") + "</table>")
        metrics = e.get("metrics") or {}
        names = sorted({k for m in metrics.values() if isinstance(m, dict) for k in m})
        if names:
            head = "".join(f"<th>{_E(n)}</th>" for n in names)
            body = "".join(f"<tr><td>{_E(who)}</td>" + "".join(f"<td>{_num(m.get(n))}</td>" for n in names) + "</tr>"
                           for who, m in metrics.items() if isinstance(m, dict))
            body += "".join(f"<tr><td>{_E(who)}</td><td colspan={len(names)}>none</td></tr>"
                            for who, m in metrics.items() if m is None)
            parts.append(f"<table class='metrics'><tr><th>on the holdout</th>{head}</tr>{body}</table>")
    return "\n".join(parts)


def _timeline_section(events: list[dict[str, Any]]) -> str:
    kinds = ("retrain_requested", "retrain_decision", "retrain_failed", "deploy", "rollback", "alert",
             "post_deploy_metric", "serve_stopped")
    chosen = [e for e in events if e.get("type") in kinds or
              (e.get("type") == "trigger_check" and e.get("fire"))]
    if not chosen:
        return "<p>No lifecycle events (retrain, deploy, rollback, alert) in these events.</p>"
    rows = []
    for e in chosen[-MAX_TABLE_ROWS:]:
        detail = {k: v for k, v in e.items() if k not in ("type", "ts", "source", "consumer", "host", "pid", "run",
                                                         "gates", "metrics", "config", "signals")}
        css = " class='bad'" if e["type"] in ("alert", "rollback", "retrain_failed") else ""
        rows.append(f"<tr{css}><td>{_clock(e['ts']) if _finite(e.get('ts')) else '–'}</td>"
                    f"<td>{_num(e.get('position'))}</td><td>{_E(e['type'])}</td><td>{_E(str(e.get('source', '')))}</td>"
                    f"<td class='detail'>{_E(_short(orjson.dumps(detail, default=str).decode(), 300))}</td></tr>")
    shown = f"<p>The last {MAX_TABLE_ROWS} of {len(chosen)} events.</p>" if len(chosen) > MAX_TABLE_ROWS else ""
    return (f"{shown}<table><tr><th>time (UTC)</th><th>position</th><th>event</th><th>source</th><th>detail</th></tr>"
            + "".join(rows) + "</table>")


def _per_model(texts: dict[str, str]) -> str:
    """One model's text alone; several models' each after its name ("yield v2 · bins v4")."""
    if len(texts) <= 1:
        return next(iter(texts.values()), "none")
    return " · ".join(f"{model} {text}" for model, text in texts.items())


def summarize(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Header figures: records, versions and champion per model, decisions, signals, deploys,
    rollbacks, alerts."""
    records: dict[str, int] = {}
    for e in events:
        value = e.get("records") if e.get("type") == "serve_stopped" else e.get("position")
        if _finite(value):
            key = _process(e)
            records[key] = max(records.get(key, 0), int(value))
    decisions = collections.Counter(str(e.get("decision")) for e in events if e.get("type") == "retrain_decision")
    decisions.update("failed" for e in events if e.get("type") == "retrain_failed" and e.get("final", True))
    versions: dict[str, set] = collections.defaultdict(set)
    champions: dict[str, Any] = {}
    for e in events:
        model = str(e.get("model", ""))
        if e.get("type") in ("retrain_decision", "deploy") and isinstance(e.get("version"), int):
            versions[model].add(e["version"])
        if e.get("type") in ("deploy", "rollback"):
            champions[model] = _new_champion(e)
    stamps = [e["ts"] for e in events if _finite(e.get("ts"))]
    return {
        "events": len(events), "records": sum(records.values()),
        "versions": {m: sorted(v) for m, v in sorted(versions.items())},
        "decisions": dict(decisions), "champions": dict(sorted(champions.items())),
        "drift_signals": sum(e.get("type") == "drift" for e in events),
        "triggers_fired": sum(e.get("type") == "trigger_check" and bool(e.get("fire")) for e in events),
        # a version each instance swaps in, or loads again at a restart, is one deploy
        "deploys": len({(e.get("model"), e.get("version")) for e in events if e.get("type") == "deploy"}),
        "rollbacks": sum(e.get("type") == "rollback" for e in events),
        "alerts": sum(e.get("type") == "alert" for e in events),
        "consumers": sorted({str(e["consumer"]) for e in events if e.get("consumer") not in (None, "*")}),
        "start": min(stamps) if stamps else None, "end": max(stamps) if stamps else None,
    }


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#222;margin:24px auto;
max-width:1120px;padding:0 16px;background:#fafafa}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:2px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}nav a{margin-right:14px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}.card{background:#fff;border:1px solid #ddd;border-radius:6px;
padding:8px 14px;min-width:120px}.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f0f0f0}
td.detail{font-family:ui-monospace,monospace;font-size:11px;max-width:640px;word-break:break-all}
.good{color:#1a7f37;font-weight:600}.bad{color:#c62828;font-weight:600}.warn{color:#b26a00;font-weight:600}
tr.bad td{background:#fff4f4}.facts{color:#555;margin:0 0 4px}
svg.chart{max-width:100%;height:auto;background:#fff;display:block}svg .tick{font-size:11px;fill:#444}
svg .axis{font-size:12px;fill:#222}svg .legend{font-size:12px;fill:#222}svg .marker{font-size:10px}
.grid{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px}
figcaption{font-size:12px;color:#444;max-width:520px}details{margin:8px 0}summary{cursor:pointer;color:#0b5cad}
"""


def build_report(events: list[dict[str, Any]], title: str = "stream-ct report") -> str:
    """The whole HTML page for ``events`` (any order; sorted by time here)."""
    events = sorted(events, key=lambda e: e.get("ts") if _finite(e.get("ts")) else 0.0)
    s = summarize(events)
    axis = _Axis(events)
    markers = _markers(events, axis)
    drift = [e for e in events if e.get("type") == "drift"]
    span = (f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(s['start']))} to "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(s['end']))} UTC") if s["start"] else "no events"
    decisions = ", ".join(f"{n} {d}" for d, n in sorted(s["decisions"].items())) or "none"
    cards = [("records served", _num(s["records"])),
             ("champion", _per_model({m: f"v{v}" for m, v in s["champions"].items()})),
             ("versions", _per_model({m: ", ".join(f"v{v}" for v in vs) for m, vs in s["versions"].items()})),
             ("retrain decisions", decisions),
             ("drift signals", _num(s["drift_signals"])), ("triggers fired", _num(s["triggers_fired"])),
             ("deploys", _num(s["deploys"])), ("rollbacks", _num(s["rollbacks"])), ("alerts", _num(s["alerts"]))]
    sections = [("drift", "Drift statistics over time", _drift_section(drift, axis, markers)),
                ("metric", "Model metric over time", _metric_section(events, axis, markers)),
                ("distributions", "Reference versus current distributions", _distribution_section(drift)),
                ("gates", "Candidates and gates", _gate_section(events)),
                ("timeline", "Timeline", _timeline_section(events))]
    nav = "".join(f'<a href="#{sid}">{_E(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_E(name)}</h2>{content}</section>' for sid, name, content in sections)
    consumers = ", ".join(s["consumers"]) or "no consumer"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_E(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>'
            f'<header id="summary"><h1>{_E(title)}</h1><p>{_E(consumers)} · {s["events"]} events · {_E(span)}</p>'
            f'<div class="cards">' + "".join(f'<div class="card"><b>{_E(v)}</b><span>{_E(k)}</span></div>'
                                             for k, v in cards)
            + f'</div><nav>{nav}</nav></header>{body}'
            f'<footer><p>Generated by stream-ct report at {time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())} UTC.'
            f'</p></footer></body></html>\n')


# -- command -------------------------------------------------------------------------------------


def run(args) -> int:
    if args.events:
        events = load_events(args.events)
        origin = args.events
    else:
        from kafka.errors import KafkaError

        from stream_ct.kafka_io import bootstrap_servers

        origin = f"{EVENTS_TOPIC} at {bootstrap_servers(args.bootstrap_servers)}"
        try:
            events = fetch_events(args.bootstrap_servers)
        except KafkaError as exc:
            print(f"error: cannot read {origin} ({exc}); start a broker with `stream-ct broker start`, set "
                  "STREAM_CT_BOOTSTRAP, or pass --events FILE", file=sys.stderr)
            return 3
    if args.consumer:
        own = filter_consumer(events, args.consumer)
        if not own:
            named = sorted({str(e["consumer"]) for e in events if e.get("consumer") not in (None, "*")})
            raise ValueError(f"no event of consumer {args.consumer!r} in {origin} (its {len(events)} events name: "
                             f"{', '.join(named) or 'no consumer'}); no report written")
        events = own
    title = f"stream-ct report: {args.consumer}" if args.consumer else "stream-ct report"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(events, title), encoding="utf-8")
    print(f"report: {counted(len(events), 'event')} from {origin} -> {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        description="Build one self-contained HTML file from a recording of ct.events, an audit log, "
                    "or the live topic.",
        epilog="example: stream-ct report --events demo-out/events.jsonl --out report.html")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--events", metavar="FILE",
                        help="a recording of ct.events (stream-ct record) or an audit log (JSON lines)")
    source.add_argument("--bootstrap-servers", metavar="HOST:PORT", default=None,
                        help="read ct.events from this broker (the default source, with $STREAM_CT_BOOTSTRAP)")
    p.add_argument("--consumer", metavar="NAME", help="only this consumer's events (and its retrains)")
    p.add_argument("--out", default="report.html", help="the HTML file to write (default: report.html)")
    p.set_defaults(func=run)
