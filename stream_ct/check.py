"""``stream-ct check``: validate consumer definitions before anything starts.

Prints one paragraph per valid file (what it reads, trains, detects and writes), one
``error:`` line per invalid file, and exits 0 when every file is valid, 2 otherwise.

>>> from stream_ct.config import ConsumerConfig
>>> cfg = ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "parts"}}, source="y.toml")
>>> print(describe(cfg).splitlines()[0])
y.toml: consumer "y" reads topic "parts" as consumer group "stream-ct-y". Model "y": classification
"""

from __future__ import annotations

import collections
import sys
import textwrap
from pathlib import Path

from stream_ct.config import ConfigError, ConsumerConfig
from stream_ct.kafka_io import EVENTS_TOPIC, MODELS_TOPIC, RETRAIN_TOPIC
from stream_ct.record import IDENTITY_FIELDS, OPTIONAL_IDENTITY, OUTCOME_FIELDS

#: The fields of the part record (``stream_ct.record``); a fairness gate groups by one of them.
RECORD_FIELDS = IDENTITY_FIELDS + OPTIONAL_IDENTITY + OUTCOME_FIELDS


def _list(values) -> str:
    return ", ".join(f'"{v}"' for v in values) if values else "nothing"


def describe(cfg: ConsumerConfig) -> str:
    """A one-paragraph summary of a valid consumer definition."""
    c, m, d = cfg.consumer, cfg.model, cfg.drift
    labels = getattr(getattr(cfg, "labels", None), "topic", "")
    policy = getattr(getattr(cfg, "triggers", None), "policy", "")
    writes = [cfg.predictions_topic, cfg.dlq_topic]
    text = (f'{cfg.source}: consumer "{c.name}" reads topic "{c.input_topic}" as consumer group "{c.group_id}"'
            + (f' and labels from "{labels}"' if labels else "")
            + f'. Model "{m.name}": '
            + ("anomaly detection (no labels)" if m.task == "anomaly" else f'{m.task} of "{m.target}"')
            + f" with {m.estimator}; features include "
            f"{_list(cfg.features.include)}, exclude {_list(cfg.features.exclude)}"
            + (f", and the fields {_list(cfg.features.fields)}" if cfg.features.fields else "")
            + ". Drift: ARL0 "
            f"{d.arl0:,.0f} records (false alarms at most once per that many records), window {d.window:,}, "
            f"stride {d.stride:,}, reference {d.reference_size:,} records"
            + (f'; triggers "{policy}"' if policy else "")
            + f'. Registry "{cfg.registry.path}" (relative to where serve and retrain-worker run). '
            f"Writes {', '.join(writes)}; uses {RETRAIN_TOPIC}, {MODELS_TOPIC}, {EVENTS_TOPIC}.")
    return textwrap.fill(text, width=100, break_on_hyphens=False, break_long_words=False)


def expand(paths: list[str]) -> list[Path]:
    """The files to check, each once: each path, or every ``*.toml`` in a directory."""
    out: dict[Path, Path] = {}
    for p in map(Path, paths):
        for f in sorted(p.glob("*.toml")) if p.is_dir() else [p]:
            out.setdefault(f.resolve(), f)
    return list(out.values())


def check(paths: list[str], out=None, err=None) -> int:
    """Check every file; 0 when all are valid, 2 otherwise."""
    out, err = out or sys.stdout, err or sys.stderr
    files = expand(paths)
    if not files:
        print(f"error: no consumer definitions (*.toml) in {', '.join(paths)}", file=err)
        return 2
    valid: list[ConsumerConfig] = []
    bad = 0
    for path in files:
        try:
            cfg = ConsumerConfig.load(path)
        except ConfigError as exc:
            print(f"error: {exc}", file=err)
            bad += 1
            continue
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: {path}: cannot read it ({exc}); pass a TOML file", file=err)
            bad += 1
            continue
        valid.append(cfg)
        print(describe(cfg) + "\n", file=out)
        if cfg.gates.fairness_by not in RECORD_FIELDS:
            print(f'warning: {cfg.source}: [gates] fairness_by = "{cfg.gates.fairness_by}" is none of the part '
                  f"record's fields ({', '.join(RECORD_FIELDS)}); the fairness gate compares nothing unless "
                  "your records carry it", file=err)
        if cfg.model.task != "anomaly" and not cfg.labels.topic and cfg.model.target not in RECORD_FIELDS:
            print(f'warning: {cfg.source}: [model] target = "{cfg.model.target}" is none of the part record\'s '
                  f"fields ({', '.join(RECORD_FIELDS)}) and no [labels] topic brings it: no part is labeled, so "
                  "the online model learns nothing and every retrain is skipped (quality:rows)", file=err)
    for what, key in (("consumer group", lambda c: c.consumer.group_id), ("model", lambda c: c.model.name)):
        seen = collections.defaultdict(list)
        for cfg in valid:
            seen[key(cfg)].append(cfg.source)
        for name, sources in seen.items():
            if len(sources) > 1:
                print(f'warning: {what} "{name}" is defined by {", ".join(sources)}; give each definition its own '
                      f"[consumer] name unless they are meant to share it", file=err)
    print(f"{len(valid)} valid, {bad} invalid", file=out)
    return 2 if bad else 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        description="Validate consumer definitions: one summary paragraph per valid file, one error line per "
                    "invalid one. Exit code 0 when all are valid, 2 otherwise.",
        epilog="example: stream-ct check consumers/*.toml")
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="consumer definition files or folders of them")
    p.set_defaults(func=lambda a: check(a.configs))
