"""Shared fixtures. Integration tests get a real Apache Kafka broker started for the session.

Set ``STREAM_CT_BOOTSTRAP`` to use a broker you run yourself instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STREAM_CT_SHARED_DIR", REPO.parent / "shared"))


def free_port_pair() -> int:
    """A loopback port ``p`` such that ``p`` and ``p + 1`` (the controller) are both free."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port + 1)) != 0:
                return port
    raise RuntimeError("no free loopback port pair found")


def start_own_broker(prefix: str, port: int | None = None):
    """A local broker on a free port (or ``port``) with a state folder of its own, started;
    returns it and the folder.

    A port found free can be taken before the broker binds it (other tests' clients and the
    other workers' brokers use the same ephemeral range): a broker that exits at start-up is
    tried again on another port, three times at most (a given ``port`` is tried once), and
    the error then carries each attempt's log."""
    from stream_ct.broker import BrokerError, LocalBroker

    failures = []
    for _ in range(1 if port else 3):
        state = tempfile.mkdtemp(prefix=prefix)
        broker = LocalBroker(port=port or free_port_pair(), state_dir=state)
        try:
            broker.start()
            return broker, state
        except BrokerError as exc:
            log = Path(broker.log_path)
            failures.append(f"{exc}\n{log.read_text(errors='replace')[-2000:] if log.exists() else ''}")
            broker.stop()
            shutil.rmtree(state, ignore_errors=True)
    pytest.fail("could not start a broker:\n" + "\n".join(failures))


@pytest.fixture
def restartable_broker():
    """A broker of the test's own (free port, own state folder), started; the test may stop
    it and start it again on the same port and data. Stopped and removed afterwards."""
    broker, state = start_own_broker("stream-ct-own-broker-")
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """``host:port`` of a running broker; started (and stopped) here unless one is given."""
    if os.environ.get("STREAM_CT_BOOTSTRAP"):
        yield os.environ["STREAM_CT_BOOTSTRAP"]
        return
    broker, state = start_own_broker("stream-ct-test-broker-",
                                     int(os.environ.get("STREAM_CT_TEST_BROKER_PORT") or 0) or None)
    bootstrap = broker.bootstrap
    os.environ["STREAM_CT_BOOTSTRAP"] = bootstrap  # for subprocesses started by tests
    try:
        yield bootstrap
    finally:
        broker.stop()
        os.environ.pop("STREAM_CT_BOOTSTRAP", None)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def topic():
    """A topic name no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def python_exe():
    return sys.executable
