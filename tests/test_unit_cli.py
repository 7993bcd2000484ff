"""Unit tests for stream_ct.cli: help, and user errors as one ``error:`` line with exit code 2."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from stream_ct import cli, kafka_io
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from stream_ct.broker import BrokerError
from stream_ct.cli import main

CONFIG = str(Path(__file__).resolve().parents[1] / "consumers" / "yield.toml")
CORE_COMMANDS = ("broker", "replay", "record", "serve", "retrain-worker")


def test_help_exits_0_and_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: stream-ct ")
    for command in CORE_COMMANDS:
        assert f"\n    {command} " in out or f"\n    {command}\n" in out, command


def test_help_imports_no_command_module():
    """``stream-ct --help`` imported every command's module, and with them scikit-learn, scipy
    and river: 3 s to list the commands."""
    import subprocess
    import sys

    code = ("import sys; from stream_ct.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('river', 'sklearn', 'scipy', 'kafka')"
            " or m in {module for module, _ in __import__('stream_ct.cli').cli.COMMANDS.values()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "run a serving instance for a consumer definition" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_every_command_is_registered_by_the_module_named_for_it():
    """The overview's table and the modules agree, command for command."""
    import argparse

    for command, (module, _) in cli.COMMANDS.items():
        subparsers = argparse.ArgumentParser().add_subparsers()
        __import__(module, fromlist=["register"]).register(subparsers)
        assert command in subparsers.choices, (command, module)
    full = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(full.choices) == sorted(cli.COMMANDS)


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert capsys.readouterr().out.startswith("usage: stream-ct ")


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_serve_missing_config_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "missing.toml"
    assert main(["serve", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {path}: no such consumer definition\n"
    assert captured.out == ""


def test_serve_invalid_config_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[consumer]\nname = "y"\ninput_topic = "p"\n[drift]\nwindow = 0\n')
    assert main(["serve", str(path)]) == 2
    assert capsys.readouterr().err == f"error: {path}: [drift] window = 0; it must be positive\n"


class _FakeModule:
    def __init__(self, exc):
        self.exc = exc

    def register(self, subparsers):
        p = subparsers.add_parser("boom")
        p.set_defaults(func=self.run)

    def run(self, args):
        raise self.exc


@pytest.mark.parametrize("exc, code, err", [
    (BrokerError("install Java"), 2, "error: install Java\n"),
    (KafkaTimeoutError("bootstrap"), 3, "error: cannot reach Kafka at 127.0.0.1:1 (KafkaTimeoutError): start a broker "
                                        "with `stream-ct broker start` or point STREAM_CT_BOOTSTRAP at yours\n"),
    (FileNotFoundError("no such file: x"), 2, "error: no such file: x\n"),
    (IsADirectoryError(21, "Is a directory", "runs"), 2, "error: [Errno 21] Is a directory: 'runs'\n"),
    (PermissionError(13, "Permission denied", "/r.html"), 2, "error: [Errno 13] Permission denied: '/r.html'\n"),
    (BrokenPipeError(), 0, ""),
    (ValueError("bad value"), 2, "error: bad value\n"),
    (KeyboardInterrupt(), 130, ""),
])
def test_error_mapping(monkeypatch, capsys, exc, code, err):
    import importlib

    monkeypatch.setenv("STREAM_CT_BOOTSTRAP", "127.0.0.1:1")
    real_import = importlib.import_module
    monkeypatch.setattr(cli, "COMMANDS", {"boom": ("fake_boom_module", "raises")})
    monkeypatch.setattr(importlib, "import_module",
                        lambda name: _FakeModule(exc) if name == "fake_boom_module" else real_import(name))
    assert main(["boom"]) == code
    assert capsys.readouterr().err == err


def test_an_outage_error_names_the_option_that_gave_the_address(capsys):
    """It said "point STREAM_CT_BOOTSTRAP at yours" to an operator who had passed --bootstrap-servers."""
    assert main(["retrain", CONFIG, "--reason", "x", "--bootstrap-servers", "127.0.0.1:1"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach Kafka at 127.0.0.1:1 (")
    assert err.endswith("or point --bootstrap-servers at yours\n")


def test_an_outage_error_says_which_call_met_it(monkeypatch, capsys):
    """The innermost stream_ct frame is named, so a report of an exit says where to look."""
    import importlib

    code = compile("def poll_loop():\n    x = 1\n    raise KafkaConnectionError('refused')\n",
                   os.path.join(os.sep, "site", "stream_ct", "serve.py"), "exec")
    namespace = {"KafkaConnectionError": KafkaConnectionError}
    exec(code, namespace)
    monkeypatch.setenv("STREAM_CT_BOOTSTRAP", "127.0.0.1:1")
    real_import = importlib.import_module
    monkeypatch.setattr(cli, "COMMANDS", {"boom": ("fake_boom_module", "raises")})
    fake = _FakeModule(None)
    fake.run = lambda args: namespace["poll_loop"]()
    monkeypatch.setattr(importlib, "import_module",
                        lambda name: fake if name == "fake_boom_module" else real_import(name))
    assert main(["boom"]) == 3
    assert "(KafkaConnectionError, in serve.py:3 poll_loop)" in capsys.readouterr().err


def test_a_one_shot_command_gives_up_on_an_unreachable_broker_at_once(monkeypatch, capsys):
    """``retrain`` (like ``models promote``, ``replay``, ``record``) waited kafka-python's 30 s
    to bootstrap before saying the broker was not there."""
    monkeypatch.setattr(kafka_io, "ONE_SHOT_BOOTSTRAP_MS", 500)
    with socket.socket() as sock:  # bound, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        started = time.monotonic()
        code = main(["retrain", CONFIG, "--reason", "x", "--bootstrap-servers", address])
        elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 3 and elapsed < 5, elapsed
    assert err.startswith(f"error: cannot reach Kafka at {address} (KafkaTimeoutError")
    assert "`stream-ct broker start`" in err and err.count("\n") == 1


@pytest.mark.parametrize("command, timeout_ms", [("serve", None), ("retrain-worker", None), ("demo", None),
                                                 ("models", kafka_io.ONE_SHOT_BOOTSTRAP_MS)])
def test_only_the_services_wait_out_an_unreachable_broker(monkeypatch, command, timeout_ms):
    """serve and the retrain worker keep kafka-python's 30 s to reach the broker: they
    outlast a broker restart; the setting ends with the command."""
    import importlib

    seen = []
    fake = _FakeModule(None)
    fake.register = lambda subparsers: subparsers.add_parser(command).set_defaults(func=fake.run)
    fake.run = lambda args: seen.append(kafka_io.connection_settings().get("bootstrap_timeout_ms"))
    real_import = importlib.import_module
    monkeypatch.setattr(cli, "COMMANDS", {command: ("fake_module", "records its setting")})
    monkeypatch.setattr(importlib, "import_module", lambda name: fake if name == "fake_module" else real_import(name))
    assert main([command]) == 0
    assert seen == [timeout_ms]
    assert "bootstrap_timeout_ms" not in kafka_io.connection_settings()


def test_unexpected_exception_is_not_swallowed(monkeypatch):
    import importlib

    real_import = importlib.import_module
    monkeypatch.setattr(cli, "COMMANDS", {"boom": ("fake_boom_module", "raises")})
    monkeypatch.setattr(importlib, "import_module",
                        lambda name: _FakeModule(RuntimeError("bug")) if name == "fake_boom_module" else real_import(name))
    with pytest.raises(RuntimeError, match="bug"):
        main(["boom"])


def test_models_help_keeps_its_examples_one_per_line(capsys):
    # the epilog used to be re-wrapped into one run-on line ("... consumers/yield.toml stream-ct models show ...")
    with pytest.raises(SystemExit) as exc:
        main(["models", "--help"])
    assert exc.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert "examples: stream-ct models list consumers/yield.toml" in lines
    assert "          stream-ct models rollback consumers/yield.toml" in lines
    assert any(line.strip().startswith("--version VERSION") for line in lines)


@pytest.mark.parametrize("command", [["replay", "rec.jsonl"], ["stdf", "publish", "lot2.stdf.gz"]])
def test_records_are_not_published_to_stream_ct_s_own_topics(command, capsys):
    """``replay rec.jsonl --topic ct.models`` wrote 784 part records among the model
    announcements and exited 0; a consumer definition already refuses these topics."""
    with pytest.raises(SystemExit) as exc:
        main([*command, "--topic", "ct.models"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.endswith(
        "error: argument --topic: ct.models is stream-ct's own topic (model announcements); "
        "publish records to another\n")
