"""The ``stream-ct`` command line: each command lives in its own module's ``register``.

Exit codes: 0 success, 1 a check or gate said no, 2 bad input or configuration, 3 a service
is not running, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: module -> the commands it registers; imported lazily so ``--help`` stays fast.
COMMAND_MODULES = (
    "stream_ct.broker",
    "stream_ct.simulate",

    "stream_ct.replay",
    "stream_ct.serve",
    "stream_ct.retrain_worker",
    "stream_ct.stdf.cli",
    "stream_ct.demo",

)


class UserError(Exception):
    """A failure the user can fix; printed as one ``error:`` line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-ct",
        description="Streaming continuous training for semiconductor test data.",
        epilog="example: stream-ct broker start && stream-ct serve consumers/yield.toml",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command module that is not part of this build
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from stream_ct.broker import BrokerError

    try:
        return int(args.func(args) or 0)
    except (UserError, BrokerError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
