"""Join labels that arrive later (on a labels topic) to the predictions served earlier.

Predictions wait in a bounded, insertion-ordered buffer keyed by part key; a label takes its
prediction out. Labels that arrive before their part wait in a second bounded buffer. Both
buffers drop their oldest entries past ``capacity`` or ``ttl_s`` and count what they drop,
so memory never grows without bound; an entry past ``ttl_s`` never joins.

>>> j = LabelJoiner(capacity=2, ttl_s=60)
>>> j.add_prediction("a", {"score": 0.9})
>>> j.add_prediction("b", {"score": 0.2}); j.add_prediction("c", {"score": 0.4})
>>> j.counts["evicted_predictions"], [p["score"] for p, y in j.add_labels([("b", 1.0), ("z", 0.0)])]
(1, [0.2])
>>> j.add_prediction("z", {"score": 0.3})
>>> j.take_early_matches()
[({'score': 0.3}, 0.0)]

Several consumers may share one labels topic (as they share the input topic): a label record
without a consumer's target is another consumer's, and serve and the retrain worker leave it
out. One that cannot be joined to any part is bad input (serve dead-letters it):

>>> unjoinable({"lot_id": "L", "wafer_id": "W", "part_id": "1", "soft_bin": 3}) is None
True
>>> unjoinable({"lot_id": "L", "passed": 1})
'no wafer_id, part_id, so it joins no part'
"""

from __future__ import annotations

import collections
import time
from typing import Any, Callable, Iterable


def unjoinable(label: Any) -> str | None:
    """Why a label record joins no part (not a JSON object, or without lot, wafer or part id), or None."""
    if not isinstance(label, dict):
        return f"a JSON {type(label).__name__}, not an object"
    missing = [k for k in ("lot_id", "wafer_id", "part_id") if k not in label]
    return f"no {', '.join(missing)}, so it joins no part" if missing else None


class LabelJoiner:
    def __init__(self, capacity: int = 200_000, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic):
        self.capacity, self.ttl_s, self.clock = capacity, ttl_s, clock
        self.predictions: collections.OrderedDict[str, tuple[float, Any]] = collections.OrderedDict()
        self.early_labels: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self.matched_early: list[tuple[Any, float]] = []
        self.counts = collections.Counter()

    def add_prediction(self, key: str, prediction: Any) -> None:
        self._expire(self.early_labels, "labels")  # else a label older than the TTL could still match
        label = self.early_labels.pop(key, None)
        if label is not None:
            self.matched_early.append((prediction, label[1]))
            self.counts["joined"] += 1
            return
        self.predictions[key] = (self.clock(), prediction)
        self.predictions.move_to_end(key)
        self._trim(self.predictions, "predictions")

    def restore(self, entries: Iterable[tuple[str, Any, float]],
                labels: Iterable[tuple[str, float, float]] = ()) -> None:
        """Predictions made before a restart, ``(key, prediction, age_s)``, and labels that came
        before their parts, ``(key, label, age_s)``: each waits as if it had been added
        ``age_s`` ago (so it expires on time), in time order with the others; a label whose
        prediction waits joins it.

        >>> j = LabelJoiner(capacity=10, ttl_s=60, clock=lambda: 100.0)
        >>> j.add_prediction("new", "p2"); j.restore([("old", "p1", 30.0), ("gone", "p0", 90.0)], [("new", 1.0, 5.0)])
        >>> list(j.predictions), j.take_early_matches(), j.counts["restored_predictions"], j.counts["restored_labels"]
        (['old'], [('p2', 1.0)], 1, 1)
        """
        self._expire(self.early_labels, "labels")
        self.predictions = self._merged(self.predictions, self._restorable(entries, "predictions"))
        self._expire(self.predictions, "predictions")
        early = []
        for at, key, label in self._restorable(labels, "labels"):
            entry = self.predictions.pop(key, None)
            if entry is None:
                early.append((at, key, label))
            else:
                self.matched_early.append((entry[1], label))
                self.counts["joined"] += 1
        self.early_labels = self._merged(self.early_labels, early)
        self._trim(self.predictions, "predictions")
        self._trim(self.early_labels, "labels")

    def _restorable(self, entries: Iterable[tuple[str, Any, float]], what: str) -> list[tuple[float, str, Any]]:
        """``(added at, key, value)`` of the ``entries`` younger than the TTL; counts both kinds.
        A prediction whose label waits already joins it here."""
        now, out = self.clock(), []
        for key, value, age_s in entries:
            if age_s > self.ttl_s:
                self.counts[f"expired_{what}"] += 1
                continue
            self.counts[f"restored_{what}"] += 1
            label = self.early_labels.pop(key, None) if what == "predictions" else None
            if label is not None:
                self.matched_early.append((value, label[1]))
                self.counts["joined"] += 1
            else:
                out.append((now - age_s, key, value))
        return out

    @staticmethod
    def _merged(buffer: collections.OrderedDict, restored: list[tuple[float, str, Any]]) -> collections.OrderedDict:
        """``buffer`` and the ``restored`` entries in one time order (the oldest first, for the
        TTL); a key met twice keeps its newest entry."""
        waiting = [(at, key, value) for key, (at, value) in buffer.items()] + restored
        waiting.sort(key=lambda entry: entry[0])  # stable: equal times keep their order
        merged = collections.OrderedDict()
        for at, key, value in waiting:
            merged.pop(key, None)
            merged[key] = (at, value)
        return merged

    def add_labels(self, labels: Iterable[tuple[str, float]]) -> list[tuple[Any, float]]:
        """``(prediction, label)`` for every label whose prediction is waiting."""
        joined = []
        self._expire(self.predictions, "predictions")  # else a prediction older than the TTL could still match
        for key, label in labels:
            entry = self.predictions.pop(key, None)
            if entry is None:
                self.early_labels[key] = (self.clock(), label)
                self.early_labels.move_to_end(key)  # keep the buffer in time order for the TTL
                self._trim(self.early_labels, "labels")
            else:
                joined.append((entry[1], label))
                self.counts["joined"] += 1
        return joined

    def take_early_matches(self) -> list[tuple[Any, float]]:
        """Predictions that met a label which had arrived before them."""
        out, self.matched_early = self.matched_early, []
        return out

    def _trim(self, buffer: collections.OrderedDict, what: str) -> None:
        self._expire(buffer, what)  # first: an entry past the TTL is expired, not evicted
        while len(buffer) > self.capacity:
            buffer.popitem(last=False)
            self.counts[f"evicted_{what}"] += 1

    def _expire(self, buffer: collections.OrderedDict, what: str) -> None:
        horizon = self.clock() - self.ttl_s
        while buffer and next(iter(buffer.values()))[0] < horizon:
            buffer.popitem(last=False)
            self.counts[f"expired_{what}"] += 1

    def __len__(self) -> int:
        return len(self.predictions)
