"""No Docker engine here, so the deployment files are checked against the project instead."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from baton.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_compose_has_the_services_the_readme_promises() -> None:
    assert set(SERVICES) == {"postgresql", "temporal", "temporal-ui", "jaeger", "worker", "gateway"}
    assert SERVICES["temporal"]["environment"]["DB"].startswith("postgres")
    assert "7233:7233" in SERVICES["temporal"]["ports"]
    assert "4318:4318" in SERVICES["jaeger"]["ports"]
    assert SERVICES["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_worker_service_builds_this_project_and_runs_a_real_command() -> None:
    worker = SERVICES["worker"]
    assert worker["build"] == "."
    command = worker["command"]
    assert command[0] == "baton"
    build_parser().parse_args(command[1:])  # raises SystemExit if `baton worker` did not exist
    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in ("baton", "workflows", "activities", "examples"):
        assert f"COPY {folder} ./{folder}" in dockerfile
    assert 'CMD ["baton", "worker"]' in dockerfile


def test_every_variable_the_worker_needs_is_set_and_read() -> None:
    env = SERVICES["worker"]["environment"]
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    sources = "\n".join(p.read_text() for p in (ROOT / "baton").rglob("*.py"))
    for name in env:
        if name.startswith("BATON_"):
            assert re.search(rf'"{name}"', sources), f"{name} is set in compose but never read"
    grace = float(env["BATON_SHUTDOWN_GRACE_SECONDS"])
    stop = float(SERVICES["worker"]["stop_grace_period"].rstrip("s"))
    assert stop > grace  # compose waits longer than the worker drains


def test_gateway_service_runs_baton_serve_beside_the_worker() -> None:
    gateway = SERVICES["gateway"]
    assert gateway["build"] == "."
    args = build_parser().parse_args(gateway["command"][1:])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8300)
    assert "8300:8300" in gateway["ports"]
    env = gateway["environment"]
    assert env["TEMPORAL_ADDRESS"] == SERVICES["worker"]["environment"]["TEMPORAL_ADDRESS"]
    assert env["BATON_APP"] == SERVICES["worker"]["environment"]["BATON_APP"]  # the same app and queue
    assert env["BATON_AUDIT_DSN"] == SERVICES["worker"]["environment"]["BATON_AUDIT_DSN"]  # verifies that log
    ui = SERVICES["temporal-ui"]["environment"]
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == "http://localhost:8300/codec"
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"


def test_compose_server_gets_the_dynamic_config_baton_dev_uses() -> None:
    """The compose server and `baton dev` take the same latency settings (README, "Latency ...")."""
    from baton.devserver import DYNAMIC_CONFIG

    temporal = COMPOSE["services"]["temporal"]
    mounted = {volume.split(":")[0]: volume.split(":")[1] for volume in temporal["volumes"]}
    source = mounted["./deploy/dynamicconfig.yaml"]
    assert source.endswith(temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"])
    values = yaml.safe_load((ROOT / "deploy" / "dynamicconfig.yaml").read_text())
    assert {key: entries[0]["value"] for key, entries in values.items()} == DYNAMIC_CONFIG
