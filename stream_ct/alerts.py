"""Alerts: an ``alert`` event on ``ct.events`` and, when configured, a JSON POST to a webhook.

The webhook is called from a background thread with a short timeout, so a slow or dead
receiver never stalls the stream; failures are counted, not raised, and logged when the
receiver starts failing and when it answers again (not at every alert).
"""

from __future__ import annotations

import queue
import threading
import urllib.request
from typing import Any, Callable

from stream_ct.events import encode_event
from stream_ct.logs import log



class Webhook(threading.Thread):
    """POSTs alerts to ``url``; ``on_outcome`` hears "sent", "failed" or "dropped" (queue full)
    for each one (serve's ``stream_ct_webhook_posts_total``)."""

    def __init__(self, url: str, timeout_s: float = 5.0, max_queue: int = 1000,
                 on_outcome: Callable[[str], None] = lambda outcome: None):
        super().__init__(name="alert-webhook", daemon=True)
        self.url, self.timeout_s, self.on_outcome = url, timeout_s, on_outcome
        self.queue: queue.Queue = queue.Queue(max_queue)
        self.sent = self.failed = self.dropped = 0
        self.failing = False  # the last post failed
        self.start()

    def post(self, alert: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            self.on_outcome("dropped")

    def run(self) -> None:
        while True:
            alert = self.queue.get()
            try:
                request = urllib.request.Request(self.url, data=encode_event(alert), method="POST",
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self.sent += 1
                if self.failing:
                    log("alerts", f"webhook {self.url} answers again", failed=self.failed)
                self.failing = False
                self.on_outcome("sent")
            except Exception as exc:  # a bad alert or a bad receiver must not end the thread: count it
                self.failed += 1
                if not self.failing:
                    log("alerts", f"webhook {self.url} failed ({type(exc).__name__}: {exc}); alerts are still "
                                  "on ct.events; said again when it answers", failed=self.failed)
                self.failing = True
                self.on_outcome("failed")
            finally:
                self.queue.task_done()

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until queued alerts were attempted (bounded)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self.queue.join(), done.set()), daemon=True).start()
        done.wait(timeout_s)
