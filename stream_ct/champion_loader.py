"""Load a registered version in a child process, so the serving loop keeps the interpreter.

Verifying a version, rebuilding its scikit-learn estimator with skops (a boosted model is
thousands of small arrays) and rebuilding its drift monitor take ~120 ms of Python. Done in a
thread of the serving process they held the GIL against the batch loop, and the batches
around a swap ran up to 2x slower at p99. A forkserver child does that work and sends the
loaded objects back; unpickling them here takes ~5 ms. The bytes come from our own child
over a pipe, never from a file: loaded pickles still only come from verified sources.
"""

from __future__ import annotations

from typing import Any

from stream_ct.child_process import ChildError, call_in_child
from stream_ct.config import ConsumerConfig
from stream_ct.registry import Artifact, IntegrityError, Registry

#: Seconds a load may take before its child is killed (the champion keeps serving).
LOAD_TIMEOUT_S = 300.0


def load_version(config: ConsumerConfig, version: int, expected: dict[str, str] | None,
                 with_monitor: bool) -> tuple[Artifact, Any]:
    """Verify and load ``version`` of the configured model from the configured registry, and
    build its drift monitor (``None`` without ``with_monitor`` or with drift disabled)."""
    from stream_ct.serve import build_monitor

    artifact = Registry(config.registry.path).load(config.model.name, version, expected=expected)
    return artifact, build_monitor(config, artifact) if with_monitor else None


class ChildLoader:
    """``loader(version, expected, with_monitor)``: ``load_version`` in a forkserver child.

    Raises ``IntegrityError`` for a version whose files do not match their sha256, and
    ``ChildError``, ``TimeoutError`` or ``RuntimeError`` for any other failure.
    """

    def __init__(self, config: ConsumerConfig, timeout_s: float = LOAD_TIMEOUT_S):
        self.config, self.timeout_s = config, timeout_s

    def __call__(self, version: int, expected: dict[str, str] | None, with_monitor: bool) -> tuple[Artifact, Any]:
        try:
            return call_in_child(load_version, (self.config, version, expected, with_monitor), self.timeout_s,
                                 what=f"loading v{version}")
        except ChildError as exc:
            if exc.kind == IntegrityError.__name__:
                raise IntegrityError(exc.message) from None
            raise
