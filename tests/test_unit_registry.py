"""Unit tests for stream_ct.registry: versioned, checksummed, safely loaded artifacts."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import types

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

from harness import flip_byte
from stream_ct.registry import IntegrityError, Registry, sha256_bytes, sha256_file

RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 3))
Y = (X[:, 0] > 0).astype(float)
REFERENCE = {"X": X, "groups": np.arange(60) // 10}


@pytest.fixture(scope="module")
def estimator():
    return LogisticRegression().fit(X, Y)


@pytest.fixture
def reg(tmp_path):
    return Registry(tmp_path / "registry")


def test_save_increments_versions(reg, estimator):
    assert reg.versions("m") == []
    assert reg.save("m", estimator, REFERENCE, {"note": "a"}) == 1
    assert reg.save("m", estimator, REFERENCE, {"note": "b"}) == 2
    assert reg.save("other", estimator, REFERENCE, {}) == 1
    assert reg.versions("m") == [1, 2]
    assert sorted(p.name for p in (reg.root / "m").iterdir()) == ["v1", "v2"]


def test_meta_records_sha256_of_each_file(reg, estimator):
    meta_in = {"metrics": {"auc": np.float64(0.75)}, "rows": np.int64(60), "arr": np.array([1, 2])}
    v = reg.save("m", estimator, REFERENCE, meta_in)
    assert set(meta_in) == {"metrics", "rows", "arr"}  # the caller's dict is not mutated
    meta = reg.meta("m", v)
    assert meta["name"] == "m" and meta["version"] == v and isinstance(meta["created_at"], float)
    assert meta["metrics"] == {"auc": 0.75} and meta["rows"] == 60 and meta["arr"] == [1, 2]
    assert set(meta["files"]) == {"model.skops", "reference.npz"}
    folder = reg.path("m", v)
    for fname, digest in meta["files"].items():
        assert digest == sha256_file(folder / fname)
        assert digest == sha256_bytes((folder / fname).read_bytes())
        assert len(digest) == 64
    assert json.loads((folder / "meta.json").read_text()) == meta
    assert reg.verify("m", v) == meta


def test_load_returns_working_estimator_and_reference(reg, estimator):
    v = reg.save("m", estimator, REFERENCE, {})
    art = reg.load("m", v)
    assert (art.name, art.version) == ("m", v)
    np.testing.assert_array_equal(art.estimator.predict_proba(X), estimator.predict_proba(X))
    assert set(art.reference) == {"X", "groups"}
    np.testing.assert_array_equal(art.reference["X"], X)
    np.testing.assert_array_equal(art.reference["groups"], REFERENCE["groups"])


@pytest.mark.parametrize("fname", ["model.skops", "reference.npz"])
def test_tampered_file_refused_by_verify_and_load(reg, estimator, fname):
    v = reg.save("m", estimator, REFERENCE, {})
    flip_byte(reg.path("m", v) / fname)
    with pytest.raises(IntegrityError, match=rf"^m v{v}: {fname} sha256 [0-9a-f]{{12}} != recorded [0-9a-f]{{12}}$"):
        reg.verify("m", v)
    with pytest.raises(IntegrityError, match=rf"^m v{v}: {fname} sha256"):
        reg.load("m", v)


def test_load_unpickles_the_bytes_it_hashed(reg, estimator, monkeypatch):
    """drift.pkl replaced on the shared folder right after its sha256 was taken must not be loaded."""
    v = reg.save("m", estimator, REFERENCE, {}, drift_state={"who": "verified"})
    drift = reg.path("m", v) / "drift.pkl"
    recorded = reg.meta("m", v)["files"]["drift.pkl"]

    class SwapOnceHashed:
        def __init__(self, data=b""):
            self.digest = hashlib.sha256(data)

        def update(self, data):
            self.digest.update(data)

        def hexdigest(self):
            hexdigest = self.digest.hexdigest()
            if hexdigest == recorded:
                drift.write_bytes(pickle.dumps({"who": "unverified"}))
            return hexdigest

    monkeypatch.setattr("stream_ct.registry.hashlib", types.SimpleNamespace(sha256=SwapOnceHashed))
    assert reg.load("m", v).drift_state == {"who": "verified"}


def test_announcement_checksum_disagreement(reg, estimator):
    v = reg.save("m", estimator, REFERENCE, {})
    files = reg.meta("m", v)["files"]
    assert reg.verify("m", v, expected=dict(files))["version"] == v
    assert reg.load("m", v, expected=dict(files)).version == v
    wrong = dict(files, **{"model.skops": "0" * 64})
    msg = f"m v{v}: registry record and announcement disagree on checksums"
    with pytest.raises(IntegrityError) as exc:
        reg.verify("m", v, expected=wrong)
    assert str(exc.value) == msg
    with pytest.raises(IntegrityError) as exc:
        reg.load("m", v, expected={"model.skops": files["model.skops"]})  # a file missing from the announcement
    assert str(exc.value) == msg


def test_champion_pointer(reg, estimator):
    assert reg.champion("m") is None
    v1 = reg.save("m", estimator, REFERENCE, {})
    v2 = reg.save("m", estimator, REFERENCE, {})
    reg.set_champion("m", v2)
    assert reg.champion("m") == v2
    reg.set_champion("m", v1)  # rollback
    assert reg.champion("m") == v1
    assert json.loads((reg.root / "m" / "CHAMPION").read_text())["version"] == v1
    assert sorted(p.name for p in (reg.root / "m").iterdir()) == ["CHAMPION", "CHAMPIONS.jsonl", "v1", "v2"]
    history = (reg.root / "m" / "CHAMPIONS.jsonl").read_text().splitlines()
    assert [json.loads(line)["version"] for line in history] == [v2, v1]


def test_champions_before_counts_versions_made_champion_after_registration(reg, estimator):
    """A starting instance falls back to any version that served: promoted when registered, a
    shadow that won, or one promoted by hand; never a shadow that lost or a rejected one."""
    def save(decision):
        return reg.save("m", estimator, REFERENCE, {"decision": decision})

    promoted = save("promoted")
    save("rejected")
    shadow_won = save("shadow")
    reg.set_champion("m", shadow_won)
    shadow_lost, by_hand = save("shadow"), save("rejected")
    reg.set_champion("m", by_hand)
    newest = save("promoted")
    assert reg.champions_before("m", newest) == [by_hand, shadow_won, promoted]
    assert reg.champions_before("m", shadow_lost) == [shadow_won, promoted]
    assert reg.champions_before("m", promoted) == []


def test_a_damaged_meta_json_is_named_and_left_out_of_lookups(reg, estimator):
    """A truncated meta.json is refused saying which file; lookups over every version (the
    fallback's, the worker's) go on without it."""
    first = reg.save("m", estimator, REFERENCE, {"decision": "promoted"})
    damaged = reg.save("m", estimator, REFERENCE, {"decision": "promoted"})
    newest = reg.save("m", estimator, REFERENCE, {"decision": "promoted"})
    path = reg.path("m", damaged) / "meta.json"
    path.write_bytes(path.read_bytes()[:40])
    for call in (lambda: reg.meta("m", damaged), lambda: reg.load("m", damaged)):
        with pytest.raises(IntegrityError, match=f"m v{damaged}: {path} is damaged"):
            call()
    assert [v for v, _ in reg.readable_metas("m")] == [newest, first]
    assert reg.champions_before("m", newest) == [first]


def test_a_history_line_cut_short_is_left_out_and_the_next_move_gets_a_line_of_its_own(reg, estimator):
    """A full disk cut an append short; the next append landed on the same line, and reading
    the history (a starting instance's fallback) raised JSONDecodeError in the model watcher."""
    v1, _, v3 = (reg.save("m", estimator, REFERENCE, {}) for _ in range(3))
    reg.set_champion("m", v1)
    with open(reg.root / "m" / "CHAMPIONS.jsonl", "ab") as history:
        history.write(b'{"version": 2, "a')
    reg.set_champion("m", v3)
    assert reg.champions_before("m", 4) == [v3, v1]
    lines = (reg.root / "m" / "CHAMPIONS.jsonl").read_text().splitlines()
    assert [json.loads(lines[0])["version"], lines[1], json.loads(lines[2])["version"]] == [v1, '{"version": 2, "a', v3]


def test_requests_settled_without_a_version_are_read_from_yesterday_s_skipped_jsonl_too(reg):
    """Skips were kept in SKIPPED.jsonl before failed requests were kept beside them: a registry
    written then must still list its skips. A request settled again is listed once, its last word."""
    (reg.root / "m").mkdir(parents=True)
    (reg.root / "m" / "SKIPPED.jsonl").write_text(
        json.dumps({"request_id": "a", "created_at": 1.0, "detail": "quality:rows"}) + "\n"
        + json.dumps({"request_id": "b", "created_at": 2.0, "detail": "quality:labels"}) + "\n")
    reg.note_unversioned("m", {"request_id": "c", "decision": "failed", "created_at": 4.0, "detail": "TimeoutError"})
    reg.note_unversioned("m", {"request_id": "b", "decision": "failed", "created_at": 3.0, "detail": "died"})
    assert [(e["request_id"], e["decision"], e["detail"]) for e in reg.unversioned("m")] == [
        ("a", "skipped", "quality:rows"), ("b", "failed", "died"), ("c", "failed", "TimeoutError")]
    assert reg.unversioned("other") == []


def test_unknown_version(reg, estimator):
    reg.save("m", estimator, REFERENCE, {})
    for call in (lambda: reg.meta("m", 7), lambda: reg.verify("m", 7), lambda: reg.load("m", 7),
                 lambda: reg.set_champion("m", 7), lambda: reg.load("nobody", 1)):
        with pytest.raises(FileNotFoundError):
            call()
    with pytest.raises(FileNotFoundError) as exc:
        reg.load("m", 7)
    assert str(exc.value) == f"model m has no version 7 in {reg.root}"
    assert reg.champion("m") is None


def test_failed_save_leaves_no_temp_folder(reg, estimator, monkeypatch):
    reg.save("m", estimator, REFERENCE, {})

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        reg.save("m", estimator, REFERENCE, {})
    assert sorted(p.name for p in (reg.root / "m").iterdir()) == ["v1"]
    assert reg.versions("m") == [1]


def test_failed_meta_serialization_leaves_no_temp_folder(reg, estimator):
    with pytest.raises(TypeError):
        reg.save("m", estimator, REFERENCE, {"bad": object()})
    assert list((reg.root / "m").iterdir()) == []


def test_save_takes_next_number_when_another_worker_won_the_race(reg, estimator, monkeypatch):
    reg.save("m", estimator, REFERENCE, {"who": "other worker"})
    real = Registry.versions
    calls = []

    def stale(self, name):  # first look misses the version the other worker just wrote
        calls.append(name)
        return [] if len(calls) == 1 else real(self, name)

    monkeypatch.setattr(Registry, "versions", stale)
    assert reg.save("m", estimator, REFERENCE, {"who": "me"}) == 2
    monkeypatch.undo()
    assert reg.meta("m", 1)["who"] == "other worker"
    assert reg.meta("m", 2)["who"] == "me" and reg.meta("m", 2)["version"] == 2
    assert sorted(p.name for p in (reg.root / "m").iterdir()) == ["v1", "v2"]


SIDE_EFFECTS: list[str] = []


class Untrusted:
    """Not in TRUSTED_TYPES: loading it must be refused before any of its code runs."""

    def __init__(self):
        self.a = 1

    def __setstate__(self, state):
        SIDE_EFFECTS.append("setstate")
        self.__dict__.update(state)


@pytest.mark.parametrize("make", [lambda: FunctionTransformer(os.system), Untrusted],
                         ids=["function-transformer-os.system", "custom-class"])
def test_untrusted_type_is_refused_on_load(reg, make):
    SIDE_EFFECTS.clear()
    obj = make()
    v = reg.save("m", obj, REFERENCE, {})
    reg.verify("m", v)  # checksums are fine: the refusal must come from the type check
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        reg.load("m", v)
    assert SIDE_EFFECTS == []
