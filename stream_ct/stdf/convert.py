"""Turn STDF files into Kafka messages, and write them as a recording.

>>> import os, tempfile
>>> from stream_ct.stdf.writer import example_file
>>> folder = tempfile.mkdtemp()
>>> with open(os.path.join(folder, "a.stdf"), "wb") as f: _ = f.write(example_file())
>>> result = convert([os.path.join(folder, "a.stdf")], os.path.join(folder, "a.jsonl"), progress=False)
>>> result.parts, result.files[0].file
(2, 'a.stdf')
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator

from stream_ct.binary_record import ENCODERS
from stream_ct.record import MESSAGE_KEYS
from stream_ct.recording import Message, write_recording
from stream_ct.stdf.errors import StdfError
from stream_ct.stdf.progress import FileProgress
from stream_ct.stdf.reader import ReadStats, StdfReader
from stream_ct.stdf.source import source_name
from stream_ct.words import counted, were

if TYPE_CHECKING:
    from stream_ct.stdf.publish import PublishResult


@dataclass
class FileResult:
    """One input file: parts written or published, and what the reader counted."""

    file: str
    parts: int = 0
    stats: ReadStats = field(default_factory=ReadStats)

    def summary(self, verb: str) -> str:
        s = self.stats
        text = (f"{counted(self.parts, 'part')} {verb} ({counted(s.prr, 'PRR')}, {counted(s.ptr, 'PTR')}, "
                f"{counted(s.mpr, 'MPR')}, {counted(s.ftr, 'FTR')})")
        if s.parts_without_tests:
            text += f"; {counted(s.parts_without_tests, 'part')} without test results skipped"
        if s.unclosed_parts:
            text += f"; {counted(s.unclosed_parts, 'part')} without a PRR skipped"
        if s.retests:
            text += f"; {counted(s.retests, 'retest')} superseding an earlier part"
        if not s.mrr:
            text += "; no MRR (may be incomplete)"
        return text

    def warning(self) -> str | None:
        """The line saying the file may be incomplete (it has no MRR), else None."""
        s = self.stats
        if s.mrr:
            return None
        return (f"warning: {self.file}: no MRR, so the file may be incomplete (a partial copy, or still being "
                f"written); {were(s.left_open, 'part')} left open (a PIR without its PRR)")


@dataclass
class ConvertResult:
    """What ``convert`` wrote; ``error`` is set when a bad file stopped it."""

    out_path: str
    files: list[FileResult] = field(default_factory=list)
    error: str | None = None

    @property
    def parts(self) -> int:
        return sum(f.parts for f in self.files)


def open_reader(path, progress: bool) -> tuple[StdfReader, FileProgress | None]:
    """A reader for one file, with its progress line on stderr when ``progress``."""
    name = source_name(path)
    shown = FileProgress(name) if progress else None
    return StdfReader(path, name, progress=shown), shown


def say(line: str) -> None:
    """Print ``line`` on stderr, over the progress line a file may have left on a terminal."""
    print(("\r\033[K" if sys.stderr.isatty() else "") + line, file=sys.stderr, flush=True)


def file_done(entry: FileResult, shown: FileProgress | None, verb: str) -> None:
    """The file's summary line (with progress) and its warning (always) on stderr."""
    if shown:
        shown.done(entry.summary(verb))
    if (line := entry.warning()):
        say(line)


def stopped(result: ConvertResult | PublishResult, done: str) -> str:
    """The line of a convert or publish stopped by Ctrl-C (or SIGTERM): how many parts were ``done``."""
    text = f"{were(result.parts, 'part')} {done}"
    if not result.files:
        return f"stopped: {text}"
    entry = result.files[-1]
    return f"stopped during {entry.file}: {text}, {entry.parts:,} of them from {entry.file}"


def part_messages(reader: StdfReader, encoding: str = "json", key: str = "part") -> Iterator[Message]:
    """Kafka messages of one STDF file: key ``lot/wafer/part`` (``key="wafer"``:
    ``lot/wafer``, which keeps a wafer's parts together on any number of partitions), value
    the record (JSON, or ``"binary"``: ``stream_ct.binary_record``), timestamp the part's
    event time in ms, headers ``source=stdf`` and ``file=<name>``."""
    headers = [("source", b"stdf"), ("file", reader.name.encode("utf-8"))]
    encode, key_of = ENCODERS[encoding], MESSAGE_KEYS[key]
    for record in reader:
        yield Message(key_of(record).encode("utf-8"), encode(record), round(record["ts"] * 1000), headers, None)


def convert(paths: Iterable, out_path, progress: bool = True, encoding: str = "json",
            key: str = "part") -> ConvertResult:
    """Write the parts of STDF ``paths`` to the recording ``out_path`` (gzip if ``.gz``),
    their values in ``encoding`` and keyed by ``key`` (``part_messages``).

    A bad file raises ``StdfError`` that says how many parts were written before it (the
    recording keeps them) and carries the partial ``ConvertResult`` as ``.result``. Ctrl-C
    says on stderr how many were written, then goes on (``KeyboardInterrupt``).
    """
    result = ConvertResult(os.fspath(out_path))

    def messages() -> Iterator[Message]:
        for path in paths:
            reader, shown = open_reader(path, progress)
            entry = FileResult(reader.name, 0, reader.stats)
            result.files.append(entry)
            for message in part_messages(reader, encoding, key):
                yield message
                entry.parts += 1  # resumed: the recording has written the message
            file_done(entry, shown, "written")

    try:
        write_recording(result.out_path, messages())
    except StdfError as exc:
        note = f"{were(result.parts, 'part')} written to {result.out_path} before the error"
        result.error = f"{exc}: {note}"
        raise exc.with_note(note, result) from exc
    except KeyboardInterrupt:
        result.error = stopped(result, f"written to {result.out_path}")
        say(result.error)
        raise
    return result
