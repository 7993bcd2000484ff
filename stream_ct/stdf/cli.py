"""``stream-ct stdf publish|convert``: STDF V4 files to a Kafka topic or a recording.

Exit codes: 0 done, 2 a bad input file (the error line says how many parts went out
before it), 3 Kafka is not reachable or did not acknowledge, 130 stopped by Ctrl-C or
SIGTERM (a line says how many parts went out).
"""

from __future__ import annotations

import argparse
import os
import sys

from stream_ct.binary_record import add_encoding_argument
from stream_ct.kafka_io import records_topic
from stream_ct.record import MESSAGE_KEYS
from stream_ct.replay import sigterm_as_interrupt
from stream_ct.stdf.convert import convert, say
from stream_ct.stdf.errors import StdfError

EPILOG = """examples:
  stream-ct stdf publish lot2.stdf.gz wafer3.stdf --topic ct.parts
  stream-ct stdf convert lot2.stdf.gz --out lot2.jsonl
  ssh tester cat lot2.stdf.gz | stream-ct stdf convert /dev/stdin --out lot2.jsonl
Inputs may be plain, .gz, .bz2 or single-file .zip STDF V4 files, or a pipe (not of a zip)."""


def register(subparsers) -> None:
    """Add the ``stdf`` command and its ``publish`` and ``convert`` subcommands."""
    stdf = subparsers.add_parser("stdf",
                                 description="Read STDF V4 files into part records.", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = stdf.add_subparsers(dest="stdf_command", metavar="ACTION", required=True)

    pub = actions.add_parser("publish", help="send one message per part to a Kafka topic",
                             epilog="example: stream-ct stdf publish lot2.stdf.gz --topic ct.parts",
                             description="Publish the parts of STDF files to a Kafka topic "
                                         "(key lot/wafer/part or, with --key wafer or lot, lot/wafer or lot; "
                                         "timestamp = test time).")
    pub.add_argument("files", nargs="+", metavar="FILE", help="STDF V4 files")
    pub.add_argument("--topic", required=True, type=records_topic, help="Kafka topic to publish to")
    pub.add_argument("--bootstrap-servers", metavar="HOST:PORT", default=None,
                     help="Kafka bootstrap servers (default: $STREAM_CT_BOOTSTRAP or 127.0.0.1:9092)")
    pub.add_argument("--quiet", action="store_true", help="no progress lines")
    add_encoding_argument(pub)
    add_key_argument(pub)
    pub.set_defaults(func=run_publish)

    conv = actions.add_parser("convert", help="write the parts as a recording (JSON lines)",
                              epilog="example: stream-ct stdf convert lot2.stdf.gz --out lot2.jsonl",
                              description="Write the parts of STDF files to a recording that "
                                          "`stream-ct replay` can publish (gzip if --out ends in .gz).")
    conv.add_argument("files", nargs="+", metavar="FILE", help="STDF V4 files")
    conv.add_argument("--out", required=True, metavar="RECORDING", help="output recording, e.g. parts.jsonl")
    conv.add_argument("--quiet", action="store_true", help="no progress lines")
    add_encoding_argument(conv)
    add_key_argument(conv)
    conv.set_defaults(func=run_convert)


def add_key_argument(parser) -> None:
    """``--key part|wafer|lot``: the message key of each part."""
    parser.add_argument("--key", choices=sorted(MESSAGE_KEYS), default="part",
                        help="message key: lot/wafer/part (default), lot/wafer, which keeps each wafer's parts "
                             "together in one partition, or lot, which keeps each lot's: what the drift charts "
                             "need when several serve instances share the topic (docs/operate.md)")


def _missing(files: list[str]) -> str | None:
    """The error line for the first of ``files`` that is not there or is a directory; a pipe
    (``/dev/stdin``, a FIFO, ``<(zcat ...)``) is read like a file."""
    for path in files:
        if not os.path.exists(path):
            return f"error: {path}: no such file"
        if os.path.isdir(path):
            return f"error: {path}: is a directory, not an STDF file"
    return None


def _overwrites(files: list[str], out: str) -> str | None:
    """The error line when ``out`` is one of the input ``files``: opening it for writing would
    empty the STDF file before it is read."""
    for path in files:
        if os.path.exists(out) and os.path.samefile(path, out):
            return f"error: --out {out} is the input file {path}; give the recording another name"
    return None


def run_convert(args) -> int:
    if (problem := _missing(args.files) or _overwrites(args.files, args.out)):
        print(problem, file=sys.stderr)
        return 2
    try:
        with sigterm_as_interrupt():  # stopped as by Ctrl-C: the recording closed whole, the count said
            convert(args.files, args.out, progress=not args.quiet, encoding=args.encoding, key=args.key)
    except StdfError as exc:
        say(f"error: {exc}")
        return 2
    return 0


def run_publish(args) -> int:
    from kafka.errors import KafkaError

    from stream_ct.kafka_io import bootstrap_servers
    from stream_ct.stdf.publish import PublishError, publish

    if (problem := _missing(args.files)):
        print(problem, file=sys.stderr)
        return 2
    bootstrap = bootstrap_servers(args.bootstrap_servers)
    try:
        with sigterm_as_interrupt():  # stopped as by Ctrl-C: what was sent acknowledged, the count said
            publish(args.files, args.topic, bootstrap, progress=not args.quiet, encoding=args.encoding,
                    key=args.key)
    except StdfError as exc:
        say(f"error: {exc}")
        return 2
    except (KafkaError, PublishError) as exc:
        say(f"error: Kafka at {bootstrap}: {exc} (is the broker running? try: stream-ct broker start)")
        return 3
    return 0
