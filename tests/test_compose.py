"""docker-compose.yml stays in step with the CLI: no Docker engine runs here, so check it statically."""

from __future__ import annotations

import posixpath
import re
import shlex
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse docker-compose.yml (pip install pyyaml)")

from stream_ct.cli import build_parser  # noqa: E402
from stream_ct.config import ConsumerConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def stream_ct_commands(service: dict) -> list[list[str]]:
    """Every ``stream-ct ...`` invocation of a service (``sh -c`` strings split on ``&&``)."""
    command = service.get("command") or []
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if argv[:2] == ["sh", "-c"] or argv[:2] == ["/bin/sh", "-c"]:
        return [shlex.split(part) for part in re.split(r"&&|;", argv[2])
                if shlex.split(part)[:1] == ["stream-ct"]]
    return [argv] if argv[:1] == ["stream-ct"] else []


APP_SERVICES = {name: s for name, s in SERVICES.items() if stream_ct_commands(s)}


def test_the_services_that_run_stream_ct_are_found():
    assert {"serve", "retrain-worker", "replay"} <= set(APP_SERVICES)


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_every_stream_ct_command_parses(name):
    parser = build_parser()
    for argv in stream_ct_commands(APP_SERVICES[name]):
        try:
            args = parser.parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"service {name}: `{shlex.join(argv)}` is not accepted by the stream-ct CLI (see stderr)")
        assert getattr(args, "func", None), f"service {name}: `{shlex.join(argv)}` names no command"


def _workdir(service: dict) -> str:
    dockerfile = (service.get("build") or {}).get("dockerfile_inline", "")
    found = re.findall(r"^\s*WORKDIR\s+(\S+)", dockerfile, flags=re.M)
    return found[-1] if found else "/"


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> named volume or host path."""
    out = {}
    for v in service.get("volumes") or []:
        source, target = (v.split(":")[:2] if isinstance(v, str) else (v.get("source"), v.get("target")))
        out[target] = source
    return out


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_kafka_is_apache_kafka_4():
    image = SERVICES["kafka"]["image"]
    assert re.fullmatch(r"apache/kafka:4\.\d+(\.\d+)?", image), image
    assert "healthcheck" in SERVICES["kafka"]


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_bootstrap_points_at_the_kafka_service(name):
    service = APP_SERVICES[name]
    bootstrap = _environment(service).get("STREAM_CT_BOOTSTRAP")
    assert bootstrap, f"service {name}: set STREAM_CT_BOOTSTRAP (e.g. kafka:9092)"
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    assert host in SERVICES and port.isdigit(), f"service {name}: {bootstrap} is not a compose service:port"
    assert f"PLAINTEXT://{bootstrap}" in SERVICES[host]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert host in (service.get("depends_on") or {}), f"service {name}: add depends_on {host}"


def test_registry_volume_is_shared_by_serve_and_retrain_worker():
    volumes = COMPOSE.get("volumes") or {}
    for name in ("serve", "retrain-worker"):
        service = SERVICES[name]
        mounts = _mounts(service)
        registry_mounts = {t: s for t, s in mounts.items() if s in volumes and "registry" in t}
        assert registry_mounts, f"service {name}: mount the named registry volume"
        target = next(iter(registry_mounts))
        workdir = _workdir(service)
        for argv in stream_ct_commands(service):
            args = build_parser().parse_args(argv[1:])
            if getattr(args, "registry", None):
                path = args.registry
            elif getattr(args, "config", None):
                path = ConsumerConfig.load(REPO / args.config).registry.path
            else:
                continue
            resolved = posixpath.normpath(posixpath.join(workdir, path))
            assert resolved == target, f"service {name}: registry {path!r} resolves to {resolved}, mount is {target}"
