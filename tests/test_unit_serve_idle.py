"""``serve --exit-when-idle``: when a batch run may end (no broker needed)."""

from __future__ import annotations

import queue
import threading
import time
import types

from stream_ct.serve import Server


def _server(idle_s: float, settled_ago: float, in_flight=(), read_backs=()):
    server = Server.__new__(Server)  # only the state the idle check uses
    server.exit_when_idle_s, server.deferred = idle_s, None
    server.read_backs, server.read_back = list(read_backs), queue.SimpleQueue()
    server.in_flight = {request: {} for request in in_flight}
    server.last_settled_at = time.monotonic() - settled_ago
    server.watcher = types.SimpleNamespace(has_pending=lambda: False)
    server._settle_requests = lambda: None
    return server


def test_a_retrain_that_settled_moments_ago_keeps_serve_waiting_for_input():
    """Whoever replays the stream may wait for the deploy before sending the rest: serve gives
    it as long after the settle as it gives the input (two seconds lost a test's whole second
    half on a busy machine)."""
    long_idle = time.monotonic() - 60
    assert not Server._idle_done(_server(idle_s=6, settled_ago=3), long_idle)
    assert Server._idle_done(_server(idle_s=6, settled_ago=7), long_idle)


def test_input_still_flowing_or_a_retrain_in_flight_keeps_serve_running():
    assert not Server._idle_done(_server(idle_s=6, settled_ago=60), time.monotonic() - 2)
    assert not Server._idle_done(_server(idle_s=6, settled_ago=60, in_flight=["r1"]), time.monotonic() - 60)


def test_predictions_still_being_read_back_keep_serve_from_exiting():
    """After a restart serve reads back the predictions waiting for labels in a thread; an idle
    exit meanwhile would drop them and the labels already come for them."""
    release = threading.Event()
    reading = threading.Thread(target=release.wait)
    reading.start()
    try:
        assert not Server._idle_done(_server(idle_s=6, settled_ago=60, read_backs=[reading]), time.monotonic() - 60)
    finally:
        release.set()
        reading.join()
    server = _server(idle_s=6, settled_ago=60, read_backs=[reading])
    assert Server._idle_done(server, time.monotonic() - 60)
    server.read_back.put("found, not yet waiting")
    assert not Server._idle_done(server, time.monotonic() - 60)
