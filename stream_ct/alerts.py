"""Alerts: an ``alert`` event on ``ct.events`` and, when configured, a JSON POST to a webhook.

The webhook is called from a background thread with a short timeout, so a slow or dead
receiver never stalls the stream; failures are counted, not raised.
"""

from __future__ import annotations

import queue
import threading
import urllib.request
from typing import Any

from stream_ct.events import encode_event



class Webhook(threading.Thread):
    def __init__(self, url: str, timeout_s: float = 5.0, max_queue: int = 1000):
        super().__init__(name="alert-webhook", daemon=True)
        self.url, self.timeout_s = url, timeout_s
        self.queue: queue.Queue = queue.Queue(max_queue)
        self.sent = self.failed = self.dropped = 0
        self.start()

    def post(self, alert: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1

    def run(self) -> None:
        while True:
            alert = self.queue.get()
            try:
                request = urllib.request.Request(self.url, data=encode_event(alert), method="POST",
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self.sent += 1
            except Exception:  # a bad alert or a bad receiver must not end the thread: count it
                self.failed += 1
            finally:
                self.queue.task_done()

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until queued alerts were attempted (bounded)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self.queue.join(), done.set()), daemon=True).start()
        done.wait(timeout_s)
