"""STDF throughput: stream-ct's reader vs the STDF parsers on PyPI, on lot2.stdf.gz.

The file is decompressed into memory first (parsers that only take a path get it from a
temporary file, which stays in the page cache). Each row runs until it has used at least
``--seconds`` (and at least once) and reports the median pass. PTR/s counts the file's
52,403 PTRs per pass; parts/s counts its 1,569 PRRs per pass.

The other parsers are not project dependencies; install them beside the project to get
their rows (a row says why it is missing otherwise)::

    python -m venv --system-site-packages /tmp/stdf-bench
    /tmp/stdf-bench/bin/pip install pystdf stdf-convert Semi-ATE-STDF stdfast
    /tmp/stdf-bench/bin/python benchmarks/stdf_convert.py
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# this script's folder would shadow the PyPI package ``stdf_convert`` with this very file
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

from stream_ct.recording import message_to_line  # noqa: E402
from stream_ct.stdf.convert import part_messages  # noqa: E402
from stream_ct.stdf.reader import StdfReader  # noqa: E402

STDF_DIR = Path(os.environ.get("STREAM_CT_STDF_DIR") or REPO.parent / "shared/data/stdf")


def ours_records(raw: bytes, path: str) -> None:
    for _ in StdfReader(raw):
        pass


def ours_conversion(raw: bytes, path: str) -> None:
    """What ``convert`` does per part, minus the disk: record, JSON value, recording line."""
    for message in part_messages(StdfReader(raw, name="lot2.stdf")):
        message_to_line(message)


def pystdf_records(raw: bytes, path: str) -> None:
    from pystdf.IO import Parser

    class Sink:
        def after_send(self, _source, data):
            pass

    parser = Parser(inp=io.BytesIO(raw))
    parser.addSink(Sink())
    parser.parse()


def stdf_convert_tables(raw: bytes, path: str) -> None:
    import stdf_convert

    stdf_convert.tables(path)


def semi_ate_records(raw: bytes, path: str) -> None:
    from Semi_ATE.STDF import records_from_file

    for _ in records_from_file(path):
        pass


def stdfast_rows(raw: bytes, path: str) -> None:
    import stdfast

    stdfast.get_rows(io.BytesIO(raw))


ROWS = [
    ("stream-ct StdfReader", "Apache-2.0", "part records (dicts)", ours_records, None),
    ("stream-ct full conversion", "Apache-2.0", "records + JSON + recording line", ours_conversion, None),
    ("pystdf 1.4", "GPL-2.0 (baseline only)", "every record parsed, no parts", pystdf_records, "pystdf"),
    ("stdf-convert 0.3 (Rust)", "MIT", "Arrow table per record type", stdf_convert_tables, "stdf_convert"),
    ("Semi-ATE-STDF 0.1.28", "MIT", "record objects, no parts", semi_ate_records, "Semi_ATE.STDF"),
    ("stdfast 0.2 (Rust)", "BSD-2-Clause", "rows per part", stdfast_rows, "stdfast"),
]


def measure(fn, raw: bytes, path: str, seconds: float) -> float:
    times: list[float] = []
    start = time.perf_counter()
    while not times or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn(raw, path)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=str(STDF_DIR / "lot2.stdf.gz"), help="STDF file (default lot2.stdf.gz)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per row (default 3)")
    args = parser.parse_args()
    packed = Path(args.file).read_bytes()
    raw = gzip.decompress(packed) if packed[:2] == b"\x1f\x8b" else packed
    reader = StdfReader(raw)
    parts = sum(1 for _ in reader)
    ptrs, prrs = reader.stats.ptr, reader.stats.prr
    print(f"{Path(args.file).name}: {len(raw):,} bytes uncompressed, {ptrs:,} PTRs, {prrs:,} PRRs, "
          f"{parts:,} part records; Python {sys.version.split()[0]}")
    header = f"{'parser':28} {'license':24} {'output':34} {'PTR/s':>11} {'parts/s':>9}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "lot2.stdf")
        Path(path).write_bytes(raw)
        for name, licence, output, fn, module in ROWS:
            try:
                if module:
                    __import__(module)
                elapsed = measure(fn, raw, path, args.seconds)
            except ImportError:
                print(f"{name:28} {licence:24} skipped: not installed (pip install it beside the project)")
                continue
            except BaseException as exc:  # noqa: BLE001 - Rust panics are BaseException
                if isinstance(exc, KeyboardInterrupt):
                    raise
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                print(f"{name:28} {licence:24} failed on this file: {reason}")
                continue
            print(f"{name:28} {licence:24} {output:34} {ptrs / elapsed:11,.0f} {prrs / elapsed:9,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
