"""Run one function call in a fresh forkserver child, with a deadline.

The retrain job (seconds of fitting that must not stall serving, and can be killed) and the
champion loader (Python-heavy unpickling that must not hold the serving loop's GIL) both
run this way. Return values come back pickled over a pipe from our own child.

>>> call_in_child(divmod, (7, 2), timeout_s=60, what="a division")
(3, 1)
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from typing import Any, Callable

#: Imported once by the fork server (a process has one, started by its first call), so
#: children start with them done: serve imports every module the loader and the retrain
#: job need but skops, which the registry imports only to read or write a model (0.6-0.9 s).
PRELOAD = ["stream_ct.serve", "skops.io"]


class ChildError(RuntimeError):
    """The function raised in the child: ``kind`` is its exception's type name, ``message``
    its text; ``str()`` reads ``"<kind>: <message>"``."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


def _exit_with_caller(lifeline) -> None:
    """End this child once ``lifeline`` reads end of file: the process that called is gone
    (a retrain worker killed mid-training must not leave a child that goes on to register,
    and make champion, a version that no one announces)."""
    lifeline.poll(None)
    os._exit(1)


def _child_main(function, args, conn, lifeline) -> None:
    # A Ctrl-C at a terminal reaches the whole process group: the caller decides (serve stops
    # after its batch; a caller that is gone ends this child through the lifeline). Left to
    # the default, a champion load under way died and raised a model_load_failed alert.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_caller, args=(lifeline,), daemon=True).start()
    try:
        conn.send(("ok", function(*args)))
    except Exception as exc:  # reported to the parent, which decides what it means
        conn.send(("error", (type(exc).__name__, str(exc))))
    finally:
        conn.close()


def call_in_child(function: Callable[..., Any], args: tuple, timeout_s: float, what: str) -> Any:
    """``function(*args)`` in a forkserver child; raises ``ChildError`` for an exception there, ``TimeoutError`` after ``timeout_s`` (the
    child is killed), ``RuntimeError`` if the child dies."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    receiver, sender = ctx.Pipe(duplex=False)
    lifeline, held = ctx.Pipe(duplex=False)  # the child sees end of file once this process is gone
    child = ctx.Process(target=_child_main, args=(function, args, sender, lifeline), daemon=True)
    child.start()
    sender.close()
    lifeline.close()
    try:
        if not receiver.poll(timeout_s):
            raise TimeoutError(f"{what} did not finish within {timeout_s:g} s; the child was killed")
        status, payload = receiver.recv()
    except EOFError:
        child.join(5)
        raise RuntimeError(f"the process for {what} died (exit code {child.exitcode})") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        receiver.close()
        held.close()
    if status != "ok":
        raise ChildError(*payload)
    return payload
