"""``stream-ct models list|show|promote|rollback`` and ``stream-ct retrain``: the operator's hands.

``promote`` and ``rollback`` verify the artifact, move the registry's champion pointer and
announce the version on ``ct.models``, so every serve instance swaps to it; ``retrain`` asks
the serve instances of a consumer, over ``ct.control``, to request a retrain now.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

import orjson
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from stream_ct.config import ConsumerConfig, add_override_option
from stream_ct.events import EventLog
from stream_ct.kafka_io import (ACK_WAIT_S, CONTROL_TOPIC, MODELS_TOPIC, WORKER_GROUP, close_at_once,
                                ensure_control_topics, group_members, make_producer)
from stream_ct.registry import IntegrityError, Registry, announcement


def version_rows(registry: Registry, name: str) -> list[dict[str, Any]]:
    """Every version, and every retrain request settled without one (skipped or failed:
    ``Registry.unversioned``) but those a version answered after all, in the order they were
    settled."""
    champion = registry.champion(name)
    rows, answered = [], set()
    for version in registry.versions(name):
        meta = registry.meta(name, version)
        key = meta.get("primary_metric")
        failed = [g["name"] for g in meta.get("gates", []) if not g["passed"]]
        trigger = meta.get("trigger", {})
        answered.add(trigger.get("request_id"))
        rows.append({"version": version, "champion": version == champion, "decision": meta.get("decision"),
                     "reason": trigger.get("reason"), "requested_at": trigger.get("requested_at"),
                     "created_at": meta.get("created_at"), "rows": meta.get("data_window", {}).get("rows"),
                     key: (meta.get("metrics", {}).get("candidate") or {}).get(key),
                     "failed_gates": failed, "parent_version": meta.get("parent_version")})
    for entry in registry.unversioned(name):
        if entry.get("request_id") not in answered:  # e.g. failed, then read again and trained
            rows.append({"version": None, "champion": False, **{
                k: entry.get(k) for k in ("decision", "reason", "requested_at", "created_at", "rows", "failed_gates",
                                          "detail", "request_id")}})
    return sorted(rows, key=lambda r: r["created_at"] or 0)


def publish_champion(registry: Registry, name: str, version: int, reason: str, bootstrap: str | None,
                     consumer: str) -> None:
    """Verify, announce on ct.models, move the pointer once Kafka has acknowledged the
    announcement, and record the event. A version whose files fail verification, or whose
    announcement Kafka does not take, is refused in one line, and nothing moves: the pointer
    used to move first, and a failed send (which ``flush`` does not raise) left every serve
    instance on the old champion while the command said the new one was."""
    try:
        registry.verify(name, version)
    except IntegrityError as exc:
        raise ValueError(f"{exc}; v{version} is not made champion (pointer and ct.models unchanged): "
                         "stream-ct models show --version N says whether a version verifies") from None
    value = announcement(registry, name, version, reason)
    ensure_control_topics(bootstrap)
    producer = make_producer(bootstrap)
    try:
        sent = producer.send(MODELS_TOPIC, key=name.encode(), value=value)
        producer.flush(timeout=ACK_WAIT_S)
        if sent.failed() and isinstance(sent.exception, (KafkaConnectionError, KafkaTimeoutError)):
            raise sent.exception  # the broker is away: the command says so (exit 3)
        if sent.failed():
            raise ValueError(f"Kafka refused the announcement of {name} v{version} on {MODELS_TOPIC} "
                             f"({type(sent.exception).__name__}: {sent.exception}); v{version} is not made "
                             "champion (pointer unchanged)")
        registry.set_champion(name, version)
        EventLog(producer, "models-cli", consumer).emit(reason, model=name, version=version, manual=True)
        producer.flush(timeout=ACK_WAIT_S)
    finally:
        close_at_once(producer)  # after a flush that timed out: the command says so at once (exit 3)


def _local_time(at: Any) -> str:
    """``at`` (epoch seconds) as local time, or blank when it is none, or not a time."""
    if not isinstance(at, (int, float)) or isinstance(at, bool):  # time.localtime(None) is now
        return ""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _print(data: Any, as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if as_json else text)


def _run_models(args) -> int:
    config = ConsumerConfig.load(args.config, args.set)
    registry = Registry(args.registry or config.registry.path)
    name = config.model.name
    if args.action == "list":
        rows = version_rows(registry, name)
        lines = [f"{'':2}{'version':>7}  {'decision':9} {'asked':19}  {'reason':24} {'rows':>7}  metric   "
                 "failed gates"]
        for r in rows:
            value = None if r["version"] is None else r.get(registry.meta(name, r["version"]).get("primary_metric"))
            # a request settled as failed is kept as it came, its fields maybe not serve's types
            asked = _local_time(r["requested_at"])
            rows_ = r["rows"] if isinstance(r["rows"], int) else ""
            gates = ", ".join(map(str, r["failed_gates"])) if isinstance(r["failed_gates"], list) else ""
            lines.append(f"{'*' if r['champion'] else ' ':2}{r['version'] or '-':>7}  {r['decision'] or '':9} "
                         f"{asked:19}  {_text(r['reason'])[:24]:24} {rows_:>7}  "
                         f"{'' if value is None else f'{value:.4f}':8} "
                         f"{_text(r.get('detail')) or gates}")
        _print(rows, args.json, "\n".join(lines) if rows else f"no versions of {name} in {registry.root}")
        return 0
    if args.action == "show":
        version = args.version or registry.champion(name)
        if version is None:
            raise ValueError(f"{name} has no champion yet; name a version with --version")
        meta = registry.meta(name, version)
        try:
            registry.verify(name, version)
            meta["verified"] = True
        except IntegrityError as exc:
            meta["verified"] = f"NO: {exc}"
        gates = "\n".join(f"  {'pass' if g['passed'] else 'FAIL'}  {g['name']:18} {g['detail']}"
                          for g in meta.get("gates", []))
        text = (f"{name} v{version} ({meta.get('decision')}, trigger {meta.get('trigger', {}).get('reason')}, "
                f"parent v{meta.get('parent_version')}, code {meta.get('code_version')}, "
                f"verified {meta['verified']})\nwindow: {meta.get('data_window')}\nmetrics: {meta.get('metrics')}\n"
                f"gates:\n{gates}")
        _print(meta, args.json, text)
        return 0
    if args.action == "promote":
        if args.version is None:
            raise ValueError("promote needs --version N")
        publish_champion(registry, name, args.version, "promote", args.bootstrap_servers, config.consumer.name)
        _print({"model": name, "champion": args.version}, args.json, f"{name}: v{args.version} is now the champion")
        return 0
    current = registry.champion(name)
    if current is None:
        hint = (f"to make v{args.version} the champion, promote it: stream-ct models promote {args.config} "
                f"--version {args.version}" if args.version is not None else
                f"the first champion comes from the first retrain, or from stream-ct models promote {args.config} "
                "--version N")
        raise ValueError(f"{name} has no champion in {registry.root}, so there is nothing to roll back; {hint}")
    target = args.version
    if target is None:
        parent = registry.meta(name, current).get("parent_version")
        if parent is None:
            raise ValueError(f"{name} v{current} has no previous version to roll back to; name one with --version")
        target = parent
    publish_champion(registry, name, target, "rollback", args.bootstrap_servers, config.consumer.name)
    _print({"model": name, "champion": target, "from": current}, args.json,
           f"{name}: rolled back from v{current} to v{target}")
    return 0


def _run_retrain(args) -> int:
    config = ConsumerConfig.load(args.config, args.set)
    group = config.consumer.group_id
    if group_members(group, args.bootstrap_servers) == 0:  # serve reads ct.control from its end: lost
        raise ValueError(f"no serve instance of {config.consumer.name} is running (consumer group {group} has "
                         f"no members), so none would answer; start stream-ct serve {args.config} first (one "
                         "just started joins within seconds: try again then), and give retrain the --set options "
                         "serve was given")
    ensure_control_topics(args.bootstrap_servers)
    producer = make_producer(args.bootstrap_servers)
    try:
        producer.send(CONTROL_TOPIC, key=config.consumer.name.encode(), value=orjson.dumps(
            {"consumer": config.consumer.name, "command": "retrain", "reason": args.reason, "at": time.time(),
             "command_id": uuid.uuid4().hex}))
        producer.flush(timeout=ACK_WAIT_S)
    finally:
        close_at_once(producer)  # after a flush that timed out: the command says so at once (exit 3)
    print(f"asked the serve instances of {config.consumer.name} to retrain: {args.reason}")
    if group_members(WORKER_GROUP, args.bootstrap_servers) == 0:
        print(f"warning: no retrain worker is running (consumer group {WORKER_GROUP} has no members): the request "
              "waits in ct.retrain until one starts (stream-ct retrain-worker)", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        description="Inspect the registry and move the champion; promote/rollback reach every serve instance.",
        epilog="examples: stream-ct models list consumers/yield.toml\n"
               "          stream-ct models show consumers/yield.toml --version 3 --json\n"
               "          stream-ct models rollback consumers/yield.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["list", "show", "promote", "rollback"])
    p.add_argument("config", help="consumer definition (TOML)")
    p.add_argument("--version", type=int, default=None,
                   help="the version to show or promote, or to roll back to (show: default the champion; "
                        "rollback: default the champion's parent)")
    p.add_argument("--registry", default=None, help="registry folder (default: the definition's [registry] path)")
    p.add_argument("--bootstrap-servers", default=None)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_override_option(p, "consumer.name=yield-lot2 (as serve was given it)")
    p.set_defaults(func=_run_models)

    r = subparsers.add_parser(
        "retrain",
        description="Publish a manual retrain command on ct.control for a consumer's serve instances.",
        epilog='example: stream-ct retrain consumers/yield.toml --reason "new probe card"')
    r.add_argument("config", help="consumer definition (TOML)")
    r.add_argument("--reason", required=True)
    r.add_argument("--bootstrap-servers", default=None)
    add_override_option(r, "consumer.name=yield-lot2 (as serve was given it)")
    r.set_defaults(func=_run_retrain)
