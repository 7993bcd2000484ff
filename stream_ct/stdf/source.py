"""Open an STDF input (path, bytes or binary file), plain or compressed, as a byte stream.

Compression is recognised by its magic bytes, not the file name: gzip, bzip2, and zip
archives holding exactly one file.

>>> import gzip
>>> src = open_source(gzip.compress(b"STDF bytes"), "x.stdf.gz")
>>> src.read(4), src.size
(b'STDF', 30)
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import zipfile
import zlib
from typing import BinaryIO

from stream_ct.stdf.errors import StdfError

#: Errors the decompressors raise for corrupt or truncated archives.
DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile)


class Source:
    """A readable stream of uncompressed STDF bytes; ``position`` and ``size`` count the
    bytes of the file itself (compressed), for progress."""

    def __init__(self, raw: BinaryIO, stream: BinaryIO, size: int, owns_raw: bool):
        self._raw, self._stream, self.size, self._owns_raw = raw, stream, size, owns_raw
        self._read1 = getattr(stream, "read1", stream.read)
        self._error: BaseException | None = None

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end). A cut or corrupt archive's error is raised
        once every byte decompressed before it has been returned, by the next call."""
        if self._error is not None:
            raise self._error
        pieces, size = [], 0
        try:
            while size < n:
                piece = self._read1(n - size)  # one decompressor step: its bytes come before its error
                if not piece:
                    break
                pieces.append(piece)
                size += len(piece)
        except DECOMPRESS_ERRORS as exc:
            if not pieces:
                raise
            self._error = exc
        return b"".join(pieces)

    @property
    def position(self) -> int:
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self._stream is not self._raw:
            self._stream.close()
        if self._owns_raw:
            self._raw.close()


def source_name(source) -> str:
    """The name used in messages: the file's base name, or ``<bytes>``."""
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source))
    return os.path.basename(str(getattr(source, "name", "<bytes>")))


def open_source(source, name: str) -> Source:
    """Open ``source`` (a path, bytes, or a binary file object) for reading STDF bytes."""
    owns_raw = True
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw: BinaryIO = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        raw = open(source, "rb")
    else:
        raw, owns_raw = source, False
    try:
        size = os.fstat(raw.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        size = len(raw.getbuffer()) if isinstance(raw, io.BytesIO) else 0
    if raw.seekable():
        start = raw.tell()
        magic = raw.read(4)
        raw.seek(start)
    else:
        # A pipe cannot seek back after reading the magic bytes: peek at them through a buffer.
        if not hasattr(raw, "peek"):
            raw = io.BufferedReader(raw)
        magic = raw.peek(4)[:4]
    try:
        if magic[:2] == b"\x1f\x8b":
            stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb")
        elif magic[:3] == b"BZh":
            stream = bz2.BZ2File(raw, "rb")
        elif magic in (b"PK\x03\x04", b"PK\x05\x06"):  # a file's header, or an empty archive's end
            if not raw.seekable():  # zipfile seeks to the directory at the end ("File is not a zip file")
                if owns_raw:
                    raw.close()
                raise StdfError(name, "a zip archive cannot be read from a pipe (its directory is at its end): "
                                      "pipe the unzipped file instead, e.g. unzip -p lot2.zip | ...")
            archive = zipfile.ZipFile(raw)
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) != 1:
                if owns_raw:
                    raw.close()
                raise StdfError(name, f"zip archive must hold exactly one file, it holds {len(members)}")
            try:
                stream = archive.open(members[0])
            except (NotImplementedError, RuntimeError) as exc:  # Deflate64, a password
                if owns_raw:
                    raw.close()
                raise StdfError(name, f"cannot read {members[0].filename} in the zip archive ({exc}): "
                                      "unzip it with a tool that can, and read the file") from exc
        else:
            stream = raw
    except DECOMPRESS_ERRORS as exc:
        if owns_raw:
            raw.close()
        raise StdfError(name, f"cannot open compressed file ({exc})", offset=0) from exc
    return Source(raw, stream, size, owns_raw)
