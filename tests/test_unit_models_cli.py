"""``stream-ct models`` without a broker: what the operator is told."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kafka.errors
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from stream_ct import kafka_io, models_cli
from stream_ct.cli import main
from stream_ct.registry import Registry

CONFIG = str(Path(__file__).resolve().parents[1] / "consumers" / "yield.toml")  # model name "yield"


@pytest.fixture
def published(monkeypatch):
    calls = []
    monkeypatch.setattr(models_cli, "publish_champion", lambda *args: calls.append(args))
    return calls


def _registry_without_champion(root) -> Registry:
    registry = Registry(root)
    X = np.random.default_rng(0).normal(size=(40, 2))
    registry.save("yield", LogisticRegression().fit(X, X[:, 0] > 0), {"X": X}, {"decision": "promoted", "feature_names": ["a", "b"]})
    assert registry.champion("yield") is None
    return registry


def _registry_with_v2_champion(root) -> Registry:
    """v1, and v2 (its child) the champion."""
    registry = _registry_without_champion(root)
    X = np.random.default_rng(1).normal(size=(40, 2))
    v2 = registry.save("yield", LogisticRegression().fit(X, X[:, 0] > 0), {"X": X},
                       {"decision": "promoted", "parent_version": 1, "feature_names": ["a", "b"]})
    registry.set_champion("yield", v2)
    return registry


@pytest.mark.parametrize("version", [None, 1])
def test_rollback_with_no_champion_says_so_and_moves_nothing(tmp_path, published, capsys, version):
    """It said 'yield vNone has no previous version' without --version, and with --version 1
    announced v1 and printed 'rolled back from vNone to v1'."""
    _registry_without_champion(tmp_path)
    argv = ["models", "rollback", CONFIG, "--registry", str(tmp_path)] + ([] if version is None else
                                                                          ["--version", str(version)])
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert published == [] and out == ""
    assert f"yield has no champion in {tmp_path}, so there is nothing to roll back" in err
    assert "vNone" not in err and err.count("\n") == 1
    if version is not None:
        assert f"stream-ct models promote {CONFIG} --version 1" in err


def test_rollback_goes_back_to_the_champion_s_parent(tmp_path, published, capsys):
    _registry_with_v2_champion(tmp_path)
    assert main(["models", "rollback", CONFIG, "--registry", str(tmp_path)]) == 0
    assert [(args[2], args[3]) for args in published] == [(1, "rollback")]
    assert capsys.readouterr().out == "yield: rolled back from v2 to v1\n"


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_a_version_whose_files_fail_verification_is_refused_in_one_line(tmp_path, capsys, action):
    """promote (or a rollback to it) ended in an IntegrityError traceback."""
    registry = _registry_with_v2_champion(tmp_path)
    (registry.path("yield", 1) / "model.skops").write_bytes(b"tampered")
    argv = ["models", action, CONFIG, "--registry", str(tmp_path)] + (["--version", "1"] if action == "promote" else [])
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "yield v1: model.skops sha256" in err and "v1 is not made champion" in err
    assert registry.champion("yield") == 2


def test_models_list_takes_the_overrides_serve_was_given(tmp_path, capsys):
    """README's STDF example serves lot2 as consumer.name=yield-lot2; `models list` had no --set
    and could only list the definition's own model."""
    registry = Registry(tmp_path)
    X = np.random.default_rng(0).normal(size=(40, 2))
    registry.save("yield-lot2", LogisticRegression().fit(X, X[:, 0] > 0), {"X": X}, {"decision": "promoted", "feature_names": ["a", "b"]})
    assert main(["models", "list", CONFIG, "--registry", str(tmp_path), "--set", "consumer.name=yield-lot2"]) == 0
    assert "        1  promoted" in capsys.readouterr().out
    assert main(["models", "list", CONFIG, "--registry", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("no versions of yield in")


def test_a_damaged_record_is_one_error_line_not_a_traceback(tmp_path, capsys):
    """A truncated meta.json raised IntegrityError, which the CLI did not catch: `models list`
    ended in a traceback, exit code 1."""
    registry = _registry_with_v2_champion(tmp_path)
    meta = registry.path("yield", 1) / "meta.json"
    meta.write_bytes(meta.read_bytes()[:30])
    assert main(["models", "list", CONFIG, "--registry", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: yield v1: {meta} is damaged") and err.count("\n") == 1


@pytest.mark.parametrize("error", ["GroupAuthorizationFailedError", "CoordinatorNotAvailableError"])
def test_retrain_goes_ahead_when_the_broker_does_not_say_who_serves(monkeypatch, error):
    """kafka-python raises these from describe_groups' coordinator lookup: `stream-ct retrain`
    ended in a traceback where it used to send the command."""
    class Admin:
        def __init__(self, **settings):
            pass

        def describe_groups(self, groups):
            raise getattr(kafka.errors, error)()

        def close(self):
            pass

    monkeypatch.setattr(kafka_io, "KafkaAdminClient", Admin)
    assert kafka_io.group_members("stream-ct-yield") is None


@pytest.mark.parametrize("workers, warned", [(0, True), (1, False), (None, False)])
def test_retrain_warns_when_no_retrain_worker_would_decide_it(monkeypatch, capsys, workers, warned):
    """With serve running and no retrain worker, it said 'asked the serve instances ... to
    retrain' and nothing followed: the request waited in ct.retrain, and serve raised
    retrain_lost only after twice the retrain timeout (20 minutes by default)."""
    sent = []

    class Producer:
        def send(self, topic, **kw):
            sent.append(topic)

        def flush(self, timeout=None):
            pass

        def close(self, timeout=None):
            pass

    monkeypatch.setattr(models_cli, "group_members", lambda group, bootstrap: 1 if group == "stream-ct-yield" else workers)
    monkeypatch.setattr(models_cli, "ensure_control_topics", lambda bootstrap: None)
    monkeypatch.setattr(models_cli, "make_producer", lambda bootstrap: Producer())
    assert main(["retrain", CONFIG, "--reason", "new probe card"]) == 0
    out, err = capsys.readouterr()
    assert sent == ["ct.control"] and out == "asked the serve instances of yield to retrain: new probe card\n"
    assert err == ("warning: no retrain worker is running (consumer group stream-ct-retrain has no members): the "
                   "request waits in ct.retrain until one starts (stream-ct retrain-worker)\n" if warned else "")


@pytest.mark.parametrize("argv", [["models", "list", CONFIG, "--registry", "{tmp}"], ["retrain", "--help"]])
def test_the_operator_s_commands_import_no_machine_learning_library(tmp_path, argv):
    """``models promote`` spent 2.5-9 s importing scipy, scikit-learn, skops and river (with
    every command's module) and 0.3 s talking to Kafka."""
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    code = (f"import sys\nfrom stream_ct.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'skops', 'river'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "[]"


class _Producer:
    """A producer whose sends to ct.models end with ``error`` (None: acknowledged)."""

    def __init__(self, error=None):
        self.error, self.sent = error, []

    def send(self, topic, key=None, value=None):
        from kafka.future import Future

        self.sent.append(topic)
        future = Future()
        return future.failure(self.error) if self.error and topic == kafka_io.MODELS_TOPIC else future.success(None)

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        pass


@pytest.mark.parametrize("error, code", [(None, 0), (kafka.errors.TopicAuthorizationFailedError(), 2),
                                         (kafka.errors.KafkaTimeoutError("Batch expired"), 3)])
def test_promote_moves_the_pointer_only_once_kafka_took_the_announcement(tmp_path, monkeypatch, capsys, error, code):
    """The pointer moved first and a send that failed (``flush`` does not raise) left every
    instance on v2 while the command printed "v1 is now the champion"."""
    registry = _registry_with_v2_champion(tmp_path)
    producer = _Producer(error)
    monkeypatch.setattr(models_cli, "ensure_control_topics", lambda bootstrap: None)
    monkeypatch.setattr(models_cli, "make_producer", lambda bootstrap: producer)
    assert main(["models", "promote", CONFIG, "--registry", str(tmp_path), "--version", "1"]) == code
    out, err = capsys.readouterr()
    if error is None:
        assert registry.champion("yield") == 1 and producer.sent == [kafka_io.MODELS_TOPIC, kafka_io.EVENTS_TOPIC]
        assert out == "yield: v1 is now the champion\n"
        return
    assert registry.champion("yield") == 2 and producer.sent == [kafka_io.MODELS_TOPIC] and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    if code == 2:
        assert "Kafka refused the announcement of yield v1 on ct.models" in err and "pointer unchanged" in err


class _StuckProducer(_Producer):
    """A broker gone with the request in flight: kafka-python's flush never returns untimed
    (its sender is stuck), and times out when given a timeout."""

    def __init__(self):
        super().__init__(None)
        self.flushes, self.closes = [], []

    def flush(self, timeout=None):
        self.flushes.append(timeout)
        assert timeout is not None, "an untimed flush waits forever here"
        raise kafka.errors.KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")

    def close(self, timeout=None):
        self.closes.append(timeout)
        assert timeout == 0, "close flushes first: it waits again, forever untimed"
        self.flush(timeout)


@pytest.mark.parametrize("argv", [["models", "promote", CONFIG, "--registry", "{tmp}", "--version", "1"],
                                  ["retrain", CONFIG, "--reason", "new probe card"]])
def test_a_broker_gone_before_it_acknowledged_ends_the_command_with_exit_code_3(tmp_path, monkeypatch, capsys, argv):
    """``models promote``/``rollback`` and ``retrain`` flushed and closed their producer
    untimed: a broker gone with their one request in flight held the command forever."""
    registry = _registry_with_v2_champion(tmp_path)
    producer = _StuckProducer()
    monkeypatch.setattr(models_cli, "ensure_control_topics", lambda bootstrap: None)
    monkeypatch.setattr(models_cli, "group_members", lambda group, bootstrap: 1)
    monkeypatch.setattr(models_cli, "make_producer", lambda bootstrap: producer)
    assert main([arg.replace("{tmp}", str(tmp_path)) for arg in argv]) == 3
    assert producer.flushes == [kafka_io.ACK_WAIT_S, 0] and producer.closes == [0]
    assert registry.champion("yield") == 2
    assert capsys.readouterr().err.startswith("error: cannot reach Kafka at ")
