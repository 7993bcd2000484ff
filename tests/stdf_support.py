"""What the STDF tests share: where the real sample files are, and the ``stdf`` command alone."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from stream_ct.stdf.cli import register

STDF_DIR = Path(os.environ.get("STREAM_CT_STDF_DIR")
                or Path(__file__).resolve().parents[2] / "shared/data/stdf")
needs_data = pytest.mark.skipif(
    not (STDF_DIR / "lot2.stdf.gz").is_file(),
    reason=f"STDF sample files not found in {STDF_DIR} (set STREAM_CT_STDF_DIR to the folder)")


def main(argv: list[str]) -> int:
    """``stream-ct`` with only the ``stdf`` command."""
    parser = argparse.ArgumentParser(prog="stream-ct")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)
