"""STDF V4 input: read test data files into part records, convert them to recordings, or
publish them to Kafka (``stream-ct stdf publish|convert``). See docs/stdf.md."""

from stream_ct.stdf.errors import StdfError
from stream_ct.stdf.reader import ReadStats, StdfReader, read_parts

__all__ = ["StdfError", "StdfReader", "ReadStats", "read_parts"]
