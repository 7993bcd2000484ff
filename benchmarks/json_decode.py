"""Decoding wide records: JSON decode and the decode-to-matrix path at 50 to 500 tests.

Same simulated records in each encoding; times per record for bytes -> validated records and
for bytes -> feature matrix (what serving needs), side by side:

* ``json (stdlib)``: per-record ``json.loads`` (the seed notebook);
* ``orjson per record``: ``decode_batch`` today (orjson + validation);
* ``orjson one array``: the batch joined into one JSON array and parsed in one call;
* ``compact JSON`` (a prototype, not offered): the record without its ``tests`` mapping, plus
  ``"values": [...]`` in the order of a test-key schema sent once per test program;
* ``binary records``: ``stream_ct.binary_record`` (the results as little-endian float64, the
  keys as one JSON list parsed once per test program, a JSON header), through the same
  ``decode_batch`` and feature matrix as JSON.

    python benchmarks/json_decode.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt_table, simulate_values

from stream_ct.binary_record import encode as encode_binary
from stream_ct.decode import decode_batch
from stream_ct.features import _feature_matrix_reference, feature_matrix


def best(f, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tests", type=int, nargs="+", default=[50, 300, 500])
    p.add_argument("--batch", type=int, default=2000)
    args = p.parse_args()
    rows = []
    for n_tests in args.tests:
        values = simulate_values(args.batch, n_tests, seed=1)
        records = [orjson.loads(v) for v in values]
        names = list(records[0]["tests"])
        schema = sorted(names)
        compact = [orjson.dumps({**{k: v for k, v in r.items() if k != "tests"}, "schema": "p1",
                                 "values": [r["tests"].get(k) for k in schema]}) for r in records]
        binary = [encode_binary(r) for r in records]
        n = len(values)

        def stdlib():
            return [json.loads(v) for v in values]

        def per_record():
            return decode_batch(values)

        def one_array():
            return orjson.loads(b"[" + b",".join(values) + b"]")

        def to_matrix_today():
            good, _ = decode_batch(values)
            return feature_matrix([r for _, r in good], schema)

        def to_matrix_before():
            good, _ = decode_batch(values)
            return _feature_matrix_reference([r for _, r in good], schema)

        def compact_matrix():
            recs = [orjson.loads(v) for v in compact]
            return np.array([r["values"] for r in recs], dtype=float)

        def binary_records():
            return decode_batch(binary)

        def binary_matrix():
            good, _ = decode_batch(binary)
            return feature_matrix([r for _, r in good], schema)

        assert np.array_equal(compact_matrix(), to_matrix_today(), equal_nan=True)
        assert np.array_equal(binary_matrix(), to_matrix_today(), equal_nan=True)
        size = np.mean([len(v) for v in values])
        for label, f, nbytes in (("json (stdlib) loads", stdlib, size),
                                 ("orjson loads, one array", one_array, size),
                                 ("decode_batch (orjson + validate)", per_record, size),
                                 ("-> matrix, feature_matrix before", to_matrix_before, size),
                                 ("-> matrix, feature_matrix now", to_matrix_today, size),
                                 ("-> matrix, compact JSON (schema + values)", compact_matrix,
                                  np.mean([len(v) for v in compact])),
                                 ("decode_batch, binary records", binary_records, np.mean([len(v) for v in binary])),
                                 ("-> matrix, binary records", binary_matrix, np.mean([len(v) for v in binary]))):
            rows.append([n_tests, label, round(best(f) / n * 1e6, 1), int(nbytes)])
    print("\n## Decoding wide records (us per record, best of 5, batches of %d)\n" % args.batch)
    print(fmt_table(["tests", "path", "us/record", "bytes/record"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
