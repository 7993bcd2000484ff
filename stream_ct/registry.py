"""The model registry: versioned, content-addressed artifacts on a shared folder.

Layout under ``root``::

    <model>/v<N>/model.skops      scikit-learn estimator, saved with skops (no code runs on load)
    <model>/v<N>/model.pkl        or a river-based model (pickle, loaded only after its sha256 matched)
    <model>/v<N>/reference.npz    the training window: X, groups, strata, dies (drift reference)
    <model>/v<N>/drift.pkl        the calibrated drift monitor (promoted versions; pickle, loaded
                                  only after its sha256 matched)
    <model>/v<N>/meta.json        metadata, lineage, gate verdicts and the sha256 of each file
    <model>/CHAMPION              {"version": N} - the champion pointer (mirrors ct.models)
    <model>/CHAMPIONS.jsonl       every pointer move, appended: the versions that served
    <model>/UNVERSIONED.jsonl     every retrain request settled without a version (skipped, or failed
                                  for good), appended: why, when asked; SKIPPED.jsonl, its name when it
                                  kept skips alone, is read too

A version folder appears only complete: it is written under a temporary name and renamed.
Files are verified against the sha256 recorded in ``meta.json`` before anything is loaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from stream_ct.events import to_json

#: Types that skops may rebuild beyond its own defaults; anything else is refused.
TRUSTED_TYPES = [
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "numpy.dtype",
]


#: every champion pointer move, one JSON line each (``Registry.champions_before`` reads it)
CHAMPION_HISTORY = "CHAMPIONS.jsonl"
#: every retrain request settled without a version, one JSON line each (``Registry.unversioned`` reads it)
UNVERSIONED_HISTORY = "UNVERSIONED.jsonl"
#: its name when it kept skipped requests alone (a registry written then has it: read too)
SKIP_HISTORY = "SKIPPED.jsonl"


class IntegrityError(RuntimeError):
    """An artifact does not match the checksum its registry record promises."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def code_version() -> str:
    """The git commit of the running code when available, else the package version."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        if out.returncode == 0:
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import version
    return version("stream-ct")


@dataclass
class Artifact:
    """A verified, loaded model version."""

    name: str
    version: int
    meta: dict[str, Any]
    estimator: Any
    reference: dict[str, np.ndarray]
    drift_state: dict[str, Any] | None = None


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _model_dir(self, name: str) -> Path:
        return self.root / name

    def versions(self, name: str) -> list[int]:
        folder = self._model_dir(name)
        if not folder.exists():
            return []
        return sorted(int(p.name[1:]) for p in folder.iterdir() if p.name.startswith("v") and p.name[1:].isdigit())

    def path(self, name: str, version: int) -> Path:
        return self._model_dir(name) / f"v{version}"

    def save(self, name: str, estimator: Any, reference: dict[str, np.ndarray], meta: dict[str, Any],
             drift_state: dict[str, Any] | None = None) -> int:
        """Write a new version atomically; return its number. ``meta`` gains files and sha256s."""
        import skops.io as sio  # here and in load: scikit-learn and river cost a command seconds to import

        from stream_ct.anomaly import AnomalyModel

        folder = self._model_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            files = ({"model.pkl": pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)}
                     if isinstance(estimator, AnomalyModel) else {"model.skops": sio.dumps(estimator)})
            buf = io.BytesIO()
            np.savez_compressed(buf, **reference)
            files["reference.npz"] = buf.getvalue()
            if drift_state is not None:
                files["drift.pkl"] = pickle.dumps(drift_state, protocol=pickle.HIGHEST_PROTOCOL)
            for fname, data in files.items():
                _write_synced(tmp / fname, data)
            meta = dict(meta, files={fname: sha256_bytes(data) for fname, data in files.items()})
            while True:
                version = max(self.versions(name), default=0) + 1
                meta.update(name=name, version=version, created_at=time.time())
                _write_synced(tmp / "meta.json", to_json(meta, indent=True))
                try:
                    os.rename(tmp, self.path(name, version))
                    return version
                except OSError:  # another worker took this number: take the next
                    if not self.path(name, version).exists():
                        raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def meta(self, name: str, version: int) -> dict[str, Any]:
        path = self.path(name, version) / "meta.json"
        if not path.exists():
            raise FileNotFoundError(f"model {name} has no version {version} in {self.root}")
        try:
            return json.loads(path.read_bytes())
        except ValueError as exc:  # truncated or damaged on the shared folder
            raise IntegrityError(f"{name} v{version}: {path} is damaged ({exc}); restore it or move "
                                 f"{path.parent.name} out of {path.parent.parent}") from None

    def readable_metas(self, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(version, meta)`` of every version, newest first, but those whose meta.json is
        damaged or missing (loading one says so): one bad record must not stop every lookup."""
        for version in reversed(self.versions(name)):
            with contextlib.suppress(IntegrityError, FileNotFoundError):
                yield version, self.meta(name, version)

    def verify(self, name: str, version: int, expected: dict[str, str] | None = None) -> dict[str, Any]:
        """Check every file against meta.json (and ``expected`` sha256s, e.g. from ct.models)."""
        meta = self._record(name, version, expected)
        for fname, digest in meta["files"].items():
            _check(name, version, fname, sha256_file(self.path(name, version) / fname), digest)
        return meta

    def load(self, name: str, version: int, expected: dict[str, str] | None = None) -> Artifact:
        """Verify, then load a version; refuses anything whose checksum does not match. Each file
        is read once and loaded from the bytes that were hashed: a file replaced on the shared
        folder after its check is never loaded."""
        import skops.io as sio

        meta = self._record(name, version, expected)
        data = {fname: (self.path(name, version) / fname).read_bytes() for fname in meta["files"]}
        for fname, digest in meta["files"].items():
            _check(name, version, fname, sha256_bytes(data[fname]), digest)
        if "model.skops" in data:
            estimator = sio.loads(data["model.skops"], trusted=TRUSTED_TYPES)
        else:  # a river model: pickled, and loaded only because its sha256 matched above
            estimator = pickle.loads(data["model.pkl"])
        with np.load(io.BytesIO(data["reference.npz"]), allow_pickle=False) as npz:
            reference = {key: npz[key] for key in npz.files}
        drift_state = None
        if "drift.pkl" in data:  # verified above: its sha256 matches the registry record
            drift_state = pickle.loads(data["drift.pkl"])
        return Artifact(name, version, meta, estimator, reference, drift_state)

    def _record(self, name: str, version: int, expected: dict[str, str] | None) -> dict[str, Any]:
        """meta.json, once it agrees with ``expected`` on the files and their sha256s."""
        meta = self.meta(name, version)
        if expected and expected != meta["files"]:
            raise IntegrityError(f"{name} v{version}: registry record and announcement disagree on checksums")
        return meta

    def champions_before(self, name: str, version: int) -> list[int]:
        """The versions before ``version`` that were promoted when registered or made champion
        since (a shadow that won, ``stream-ct models promote``), newest first: what a starting
        serve instance may fall back to."""
        served = _versions_in_history(self._model_dir(name) / CHAMPION_HISTORY)
        return [v for v, meta in self.readable_metas(name)
                if v < version and (v in served or meta.get("decision") == "promoted")]

    def champion(self, name: str) -> int | None:
        pointer = self._model_dir(name) / "CHAMPION"
        if not pointer.exists():
            return None
        return int(json.loads(pointer.read_text())["version"])

    @contextlib.contextmanager
    def champion_lock(self, name: str):
        """Hold ``name``'s lock (``flock`` on a file in its folder): a champion read and set
        inside it is not changed by another worker in between."""
        folder = self._model_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".champion.lock", "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def set_champion(self, name: str, version: int) -> None:
        self.meta(name, version)  # refuses an unknown version
        pointer = self._model_dir(name) / "CHAMPION"
        tmp = pointer.with_suffix(f".tmp-{uuid.uuid4().hex}")
        entry = json.dumps({"version": version, "at": time.time()}).encode()
        _write_synced(tmp, entry)
        os.replace(tmp, pointer)
        _append_line(self._model_dir(name) / CHAMPION_HISTORY, entry)

    def note_unversioned(self, name: str, request: dict[str, Any]) -> None:
        """Keep a retrain request settled without a version (its ``request_id``, ``decision``:
        skipped or failed, why, when asked): ``stream-ct models list`` shows it beside the versions."""
        self._model_dir(name).mkdir(parents=True, exist_ok=True)
        _append_line(self._model_dir(name) / UNVERSIONED_HISTORY, to_json(request))

    def unversioned(self, name: str) -> list[dict[str, Any]]:
        """The requests ``note_unversioned`` kept, oldest first, each once (a request read again
        after a worker stopped before settling it was settled again): the last word on it."""
        by_request = {}
        for history in (SKIP_HISTORY, UNVERSIONED_HISTORY):
            for entry in _json_lines(self._model_dir(name) / history):
                if isinstance(entry, dict):
                    by_request[entry.get("request_id")] = {"decision": "skipped", **entry}
        return sorted(by_request.values(), key=lambda entry: entry.get("created_at") or 0)


def announcement(registry: Registry, name: str, version: int, reason: str) -> bytes:
    """The ``ct.models`` value that makes every serve instance load ``version``."""
    meta = registry.meta(name, version)
    return to_json({"model": name, "version": version, "files": meta["files"],
                    "feature_names": meta["feature_names"], "reason": reason, "at": time.time()})


def _append_line(path: Path, line: bytes) -> None:
    """Append ``line`` (one short write: atomic) on a line of its own, ending first a line that
    an earlier append left cut short (a full disk)."""
    with open(path, "a+b") as f:
        end = f.seek(0, os.SEEK_END)
        if end and (f.seek(end - 1), f.read(1))[1] != b"\n":
            line = b"\n" + line
        f.write(line + b"\n")
        f.flush()
        os.fsync(f.fileno())


def _json_lines(path: Path) -> list[Any]:
    """What each line of an appended history holds; a line cut short is left out."""
    if not path.exists():
        return []
    values = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(ValueError):
            values.append(json.loads(line))
    return values


def _versions_in_history(history: Path) -> set[int]:
    """The versions named by the champion history's lines; a line cut short is left out."""
    versions = set()
    for entry in _json_lines(history):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            versions.add(int(entry["version"]))
    return versions


def _check(name: str, version: int, fname: str, actual: str, recorded: str) -> None:
    if actual != recorded:
        raise IntegrityError(f"{name} v{version}: {fname} sha256 {actual[:12]} != recorded {recorded[:12]}")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
