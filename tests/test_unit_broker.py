"""Unit tests for stream_ct.broker error paths: no broker is started here."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from stream_ct import broker as broker_mod
from stream_ct.broker import BrokerError, LocalBroker, install_jars

MVN_HINT = "mvn not found on PATH: install Maven (apt-get install maven) to fetch Apache Kafka from Maven Central"
JAVA_HINT = "java not found on PATH: install Java 17 or newer (apt-get install openjdk-17-jre-headless)"


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("STREAM_CT_HOME", str(h))
    return h


@pytest.fixture
def no_tools(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("java") is None and shutil.which("mvn") is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stream_ct_home_from_env(home):
    assert broker_mod.stream_ct_home() == home


def test_install_jars_without_maven(home, no_tools):
    with pytest.raises(BrokerError) as exc:
        install_jars("9.9.9")
    assert str(exc.value) == MVN_HINT
    assert not home.exists()  # nothing half-made is cached


def test_install_jars_without_java(home, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda tool: "/usr/bin/mvn" if tool == "mvn" else None)
    with pytest.raises(BrokerError) as exc:
        install_jars("9.9.9")
    assert str(exc.value) == JAVA_HINT
    assert not home.exists()


def test_install_jars_cached_needs_no_tools(home, no_tools):
    libs = home / "kafka-9.9.9" / "libs"
    libs.mkdir(parents=True)
    (libs / ".complete").write_text("9.9.9")
    assert install_jars("9.9.9") == libs


def test_install_jars_maven_failure_reports_tail(home, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], 1, stdout="\n".join(f"line{i}" for i in range(10)), stderr="Could not resolve"))
    with pytest.raises(BrokerError) as exc:
        install_jars("9.9.9")
    assert str(exc.value).startswith("Maven could not fetch the Kafka jars: ")
    assert str(exc.value).endswith("Could not resolve")
    assert "line0" not in str(exc.value)
    assert not (home / "kafka-9.9.9" / "libs" / ".complete").exists()


def test_install_jars_maven_failure_keeps_lines_apart(home, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], 1, stdout="\n".join(f"line{i}" for i in range(10)), stderr="Could not resolve"))
    with pytest.raises(BrokerError) as exc:
        install_jars("9.9.9")
    assert str(exc.value) == "Maven could not fetch the Kafka jars: line6 | line7 | line8 | line9 | Could not resolve"


def test_start_without_java(home, no_tools, tmp_path):
    b = LocalBroker(port=free_port(), state_dir=str(tmp_path / "state"))
    with pytest.raises(BrokerError) as exc:
        b.start()
    assert str(exc.value) == JAVA_HINT
    assert not (tmp_path / "state").exists() and not home.exists()


def test_start_without_maven(home, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda tool: "/usr/bin/java" if tool == "java" else None)
    b = LocalBroker(port=free_port(), state_dir=str(tmp_path / "state"))
    with pytest.raises(BrokerError) as exc:
        b.start()
    assert str(exc.value) == MVN_HINT


def test_start_on_taken_port(home, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        b = LocalBroker(port=port, state_dir=str(tmp_path / "state"))
        with pytest.raises(BrokerError) as exc:
            b.start()
    assert str(exc.value) == f"port {port} is taken by another process: stop it or choose --port"


def test_status_when_stopped(home, tmp_path):
    state = tmp_path / "state"
    b = LocalBroker(port=free_port(), state_dir=str(state))
    assert b.status() == f"stopped (state in {state})"
    assert b.running() is False
    assert b.stop() is False


def test_status_when_stopped_names_a_port_another_process_holds(home, tmp_path):
    """It said only "stopped" while another broker (started with another --state-dir) answered on the port."""
    state = tmp_path / "state"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        b = LocalBroker(port=port, state_dir=str(state))
        assert b.status() == (f"stopped (state in {state}); port {port} is taken by another process "
                              "(a broker started with another --state-dir?)")
        assert b.running() is False


def test_default_state_dir_under_home(home):
    b = LocalBroker(port=12345)
    assert b.dir == home / "broker-12345"
    assert b.bootstrap == "127.0.0.1:12345"


@pytest.mark.parametrize("content", ["not a pid", "", "dead"])
def test_status_with_stale_pid_file(home, tmp_path, content):
    state = tmp_path / "state"
    state.mkdir()
    if content == "dead":
        proc = subprocess.Popen(["true"])
        proc.wait()
        content = str(proc.pid)
    (state / "broker.pid").write_text(content)
    b = LocalBroker(port=free_port(), state_dir=str(state))
    assert b.status() == f"stopped (state in {state})"
    assert b.stop() is False


def test_cli_broker_status_stopped_exits_3(home, tmp_path, capsys):
    from stream_ct.cli import main

    state = tmp_path / "state"
    assert main(["broker", "status", "--port", str(free_port()), "--state-dir", str(state)]) == 3
    assert capsys.readouterr().out == f"stopped (state in {state})\n"


def test_cli_broker_start_without_java_is_one_error_line(home, no_tools, tmp_path, capsys):
    from stream_ct.cli import main

    rc = main(["broker", "start", "--port", str(free_port()), "--state-dir", str(tmp_path / "s")])
    assert rc == 2
    assert capsys.readouterr().err == f"error: {JAVA_HINT}\n"
