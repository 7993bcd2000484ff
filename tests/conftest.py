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


@pytest.fixture
def restartable_broker():
    """A broker of the test's own (free port, own state folder), started; the test may stop
    it and start it again on the same port and data. Stopped and removed afterwards.

    A port found free can be taken before the broker binds it (other tests' clients use the
    same ephemeral range): a broker that exits at start-up is tried again on another port,
    three times at most, and the error then carries each attempt's log."""
    from stream_ct.broker import BrokerError, LocalBroker

    failures = []
    for _ in range(3):
        state = tempfile.mkdtemp(prefix="stream-ct-own-broker-")
        broker = LocalBroker(port=free_port_pair(), state_dir=state)
        try:
            broker.start()
            break
        except BrokerError as exc:
            log = Path(broker.log_path)
            failures.append(f"{exc}\n{log.read_text(errors='replace')[-2000:] if log.exists() else ''}")
            broker.stop()
            shutil.rmtree(state, ignore_errors=True)
    else:
        pytest.fail("could not start a broker of the test's own:\n" + "\n".join(failures))
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
    from stream_ct.broker import LocalBroker

    state = tempfile.mkdtemp(prefix="stream-ct-test-broker-")
    port = int(os.environ.get("STREAM_CT_TEST_BROKER_PORT") or free_port_pair())
    broker = LocalBroker(port=port, state_dir=state)
    try:
        bootstrap = broker.start()
    except Exception as exc:  # the broker is part of the test environment: fail loudly
        pytest.fail(f"could not start the test broker: {exc}")
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
