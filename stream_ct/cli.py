"""The ``stream-ct`` command line: each command lives in its own module's ``register``.

Exit codes: 0 success, 1 a check or gate said no, 2 bad input or configuration, 3 a service
(the broker) is not running or not reachable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback

#: Every command: the module whose ``register(subparsers)`` adds it, and its line in
#: ``stream-ct --help`` (in that order). The overview imports no module: the commands'
#: scikit-learn, scipy and river took it 3 s.
COMMANDS = {
    "broker": ("stream_ct.broker", "start, stop or inspect the local Apache Kafka broker"),
    "simulate": ("stream_ct.simulate", "write a simulated test-floor stream with known drift onsets"),
    "replay": ("stream_ct.replay", "publish a recording (JSONL) to a topic"),
    "record": ("stream_ct.replay", "save a topic to a recording (JSONL)"),
    "serve": ("stream_ct.serve", "run a serving instance for a consumer definition"),
    "retrain-worker": ("stream_ct.retrain_worker", "run a retrain worker (its own consumer group on ct.retrain)"),
    "stdf": ("stream_ct.stdf.cli", "publish or convert STDF V4 test data files"),
    "demo": ("stream_ct.demo", "run the whole loop end to end on a throwaway local broker"),
    "models": ("stream_ct.models_cli", "list, show, promote or roll back model versions"),
    "retrain": ("stream_ct.models_cli", "request a retrain now (manual trigger)"),
    "adaptive": ("stream_ct.adaptive", "how well the first K tests predict the outcome (adaptive-test view)"),
    "report": ("stream_ct.report", "build an HTML report (drift, metrics, gates, timeline) from ct.events"),
    "check": ("stream_ct.check", "validate consumer definitions (TOML) and summarize them"),
}
#: Commands that wait out a broker outage (demo runs the services and their broker); every
#: other command gives up on an unreachable broker within ``kafka_io.ONE_SHOT_BOOTSTRAP_MS``.
PATIENT_COMMANDS = ("serve", "retrain-worker", "demo")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of ``command`` alone: only its module is imported (the
    others' scikit-learn, scipy and river took a ``models promote`` seconds to import). An
    unknown ``command`` gets the overview: each command's name and line, none imported."""
    parser = argparse.ArgumentParser(
        prog="stream-ct",
        description="Streaming continuous training for semiconductor test data.",
        epilog="example: stream-ct broker start && stream-ct serve consumers/yield.toml",
    )
    parser.add_argument("--log-json", action="store_true",
                        help="service log lines as JSON objects (or set STREAM_CT_LOG_FORMAT=json)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command is None:
        modules = dict.fromkeys(module for module, _ in COMMANDS.values())
    elif command in COMMANDS:
        modules = [COMMANDS[command][0]]
    else:
        for name, (_, line) in COMMANDS.items():
            subparsers.add_parser(name, help=line)
        return parser
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    if args.log_json:
        os.environ["STREAM_CT_LOG_FORMAT"] = "json"  # children (training, services started by demo) too
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    from stream_ct.broker import BrokerError
    from stream_ct.kafka_io import bootstrap_servers, one_shot
    from stream_ct.registry import IntegrityError

    try:
        with contextlib.nullcontext() if args.command in PATIENT_COMMANDS else one_shot():
            return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader went away (| head): not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except (BrokerError, IntegrityError, OSError, ValueError) as exc:  # OSError: a missing or unreadable path
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KafkaConnectionError, KafkaTimeoutError) as exc:
        given = getattr(args, "bootstrap_servers", None)
        address = given or bootstrap_servers()
        where = "--bootstrap-servers" if given else "STREAM_CT_BOOTSTRAP"
        print(f"error: cannot reach Kafka at {address} ({type(exc).__name__}{_raised_in(exc)}): start a broker "
              f"with `stream-ct broker start` or point {where} at yours", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


def _command_in(argv: list[str]) -> str:
    """The command ``argv`` names, or "" (the overview) when it names none or asks for help first.

    >>> _command_in(["--log-json", "serve", "c.toml"]), _command_in(["--help", "serve"]), _command_in([])
    ('serve', '', '')
    """
    for arg in argv:
        if arg in ("-h", "--help"):
            return ""
        if not arg.startswith("-"):
            return arg
    return ""


def _raised_in(exc: BaseException) -> str:
    """", in <file>:<line> <function>" of the innermost stream_ct frame the error passed, so a
    report says which call met the outage ("" if none)."""
    frames = traceback.extract_tb(exc.__traceback__)[1:]  # below main(), which caught it
    ours = [f for f in frames if f"{os.sep}stream_ct{os.sep}" in f.filename]
    return f", in {os.path.basename(ours[-1].filename)}:{ours[-1].lineno} {ours[-1].name}" if ours else ""


if __name__ == "__main__":
    sys.exit(main())
