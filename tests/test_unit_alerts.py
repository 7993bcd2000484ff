"""Unit tests for stream_ct.alerts.Webhook against a real local HTTP server, EventLog's webhook hook
(only ``alert`` events are posted) and the [events] config section."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import numpy as np
import orjson
import pytest

from stream_ct.alerts import Webhook
from stream_ct.config import ConsumerConfig, EventSection
from stream_ct.events import EventLog


class Receiver:
    """An HTTP server on 127.0.0.1 (port 0) in a thread, recording every POST."""

    def __init__(self, status: int = 200):
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.status = status
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                owner.entered.set()
                owner.hold.wait(10)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.bodies.append(body)
                owner.headers.append(dict(self.headers))
                owner.paths.append(self.path)
                self.send_response(owner.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


class FakeProducer:
    def __init__(self):
        self.sent = []

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, key, value))


def test_webhook_posts_json_body(receiver):
    hook = Webhook(receiver.url, timeout_s=5)
    hook.post({"type": "alert", "message": "champion rolled back", "auc": np.float64(0.61), "n": 3})
    hook.flush(10)
    assert (hook.sent, hook.failed, hook.dropped) == (1, 0, 0)
    assert orjson.loads(receiver.bodies[0]) == {"type": "alert", "message": "champion rolled back",
                                                "auc": 0.61, "n": 3}
    assert receiver.headers[0]["Content-Type"] == "application/json"
    assert receiver.paths == ["/hook"]


def test_webhook_posts_in_order(receiver):
    hook = Webhook(receiver.url)
    for i in range(5):
        hook.post({"i": i})
    hook.flush(10)
    assert hook.sent == 5
    assert [orjson.loads(b)["i"] for b in receiver.bodies] == [0, 1, 2, 3, 4]


def test_dead_url_counts_failed_without_raising():
    hook = Webhook(closed_port_url(), timeout_s=2)
    hook.post({"type": "alert", "message": "x"})
    hook.post({"type": "alert", "message": "y"})
    hook.flush(10)
    assert (hook.sent, hook.failed) == (0, 2)
    assert hook.is_alive()


def test_a_failing_webhook_is_logged_once_and_again_when_it_answers(capsys):
    """A wrong webhook_url failed silently: counted in attributes nothing read. The first failure
    and the recovery are logged, and every outcome is reported (serve's webhook metric)."""
    r = Receiver(status=500)
    outcomes = []
    try:
        hook = Webhook(r.url, on_outcome=outcomes.append)
        for i in range(3):
            hook.post({"i": i})
        hook.flush(10)
        r.status = 200
        hook.post({"i": 3})
        hook.flush(10)
    finally:
        r.close()
    assert outcomes == ["failed", "failed", "failed", "sent"]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"alerts: webhook {r.url} failed (HTTPError: HTTP Error 500") and "(failed=1)" in lines[0]
    assert lines[1] == f"alerts: webhook {r.url} answers again (failed=3)"


def test_http_error_status_counts_failed():
    r = Receiver(status=500)
    try:
        hook = Webhook(r.url)
        hook.post({"a": 1})
        hook.flush(10)
        assert (hook.sent, hook.failed) == (0, 1)
        assert len(r.bodies) == 1
    finally:
        r.close()


def test_full_queue_drops_and_counts(receiver):
    receiver.hold.clear()  # the receiver stalls on the first request
    hook = Webhook(receiver.url, timeout_s=10, max_queue=1)
    hook.post({"i": 0})
    assert receiver.entered.wait(5)  # the worker thread is busy with alert 0
    hook.post({"i": 1})  # queued
    hook.post({"i": 2})  # queue full: dropped
    assert hook.dropped == 1
    receiver.hold.set()
    hook.flush(10)
    assert hook.sent == 2
    assert [orjson.loads(b)["i"] for b in receiver.bodies] == [0, 1]


def test_post_never_blocks_on_a_stalled_receiver(receiver):
    receiver.hold.clear()
    hook = Webhook(receiver.url, timeout_s=10, max_queue=10)
    started = time.monotonic()
    for i in range(50):
        hook.post({"i": i})
    assert time.monotonic() - started < 1.0
    assert hook.dropped >= 39
    receiver.hold.set()


def test_eventlog_posts_only_alert_events(receiver):
    hook = Webhook(receiver.url)
    producer = FakeProducer()
    log = EventLog(producer, source="serve", consumer="yield", webhook=hook)
    log.emit("trigger_check", fire=False)
    log.emit("retrain_decision", decision="rejected")
    alert = log.emit("alert", kind="rollback", message="v3 rolled back to v2", auc=np.float64(0.55))
    log.emit("deploy", version=3)
    hook.flush(10)
    assert len(producer.sent) == 4  # every event still goes to ct.events
    assert hook.sent == 1 and len(receiver.bodies) == 1
    body = orjson.loads(receiver.bodies[0])
    assert body == orjson.loads(orjson.dumps(alert, option=orjson.OPT_SERIALIZE_NUMPY))
    assert body["type"] == "alert" and body["kind"] == "rollback" and body["consumer"] == "yield"


def test_eventlog_without_webhook_emits_alerts_normally():
    producer = FakeProducer()
    event = EventLog(producer, source="serve", consumer="c").emit("alert", message="m")
    assert event["type"] == "alert" and len(producer.sent) == 1


def test_eventlog_alert_with_dead_webhook_does_not_raise():
    hook = Webhook(closed_port_url(), timeout_s=2)
    producer = FakeProducer()
    EventLog(producer, source="serve", consumer="c", webhook=hook).emit("alert", message="m")
    hook.flush(10)
    assert hook.failed == 1 and len(producer.sent) == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_webhook_survives_an_alert_it_cannot_encode(receiver):
    hook = Webhook(receiver.url)
    log = EventLog(FakeProducer(), source="serve", consumer="c", webhook=hook)
    grid = np.arange(6.0).reshape(2, 3)
    log.emit("alert", message="first", column=grid[:, 1])  # fine for ct.events (events._default)
    log.emit("alert", message="second")
    hook.flush(2)
    assert hook.is_alive()
    assert "second" in [orjson.loads(b)["message"] for b in receiver.bodies]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_webhook_survives_a_malformed_response():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]
    got: list[bytes] = []

    def serve():
        for reply in (b"garbage\r\n\r\n", b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"):
            conn, _ = server.accept()
            with conn:
                got.append(conn.recv(65536))
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    try:
        hook = Webhook(f"http://127.0.0.1:{port}/hook", timeout_s=2)
        hook.post({"i": 1})
        hook.post({"i": 2})
        hook.flush(2)
        assert hook.is_alive()
        assert (hook.sent, hook.failed) == (1, 1)
    finally:
        server.close()


# --- [events] config section ----------------------------------------------------------------------

def test_events_section():
    base = {"consumer": {"name": "y", "input_topic": "parts"}}
    assert ConsumerConfig.from_dict(base).events == EventSection(audit_log="", webhook_url="", metrics_port=-1)
    cfg = ConsumerConfig.from_dict(dict(base, events={"webhook_url": "http://127.0.0.1:9/hook",
                                                      "audit_log": "audit/events.jsonl", "metrics_port": 9100}))
    assert cfg.events == EventSection("audit/events.jsonl", "http://127.0.0.1:9/hook", 9100)
