"""compose.yaml describes the production stack, and every command in it is one the CLI has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from plugin.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document = yaml.safe_load((REPO / "compose.yaml").read_text())
    found: dict[str, Any] = document["services"]
    return found


def test_the_stack_has_every_part(services: dict[str, Any]) -> None:
    assert {
        "web",
        "worker-gpu-skin",
        "worker-gpu-conjunctiva",
        "worker-cpu",
        "beat",
        "redis",
        "postgres",
        "fhir",
    } <= set(services)
    redis = services["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"  # queued jobs survive a Redis restart
    assert services["fhir"]["profiles"] == ["dev"]  # production talks to the EHR's server


def test_gpu_workers_reserve_an_nvidia_gpu_and_route_by_photo_kind(services: dict[str, Any]) -> None:
    for name, queue in [("worker-gpu-skin", "skin"), ("worker-gpu-conjunctiva", "conjunctiva")]:
        service = services[name]
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
        assert service["environment"]["PHOTOMARKER_DEVICE"] == "cuda"
        command = service["command"]
        assert command[command.index("--queues") + 1] == queue
    assert services["worker-cpu"]["environment"]["PHOTOMARKER_DEVICE"] == "cpu"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), name


def test_every_photomarker_command_exists_and_its_options_parse(services: dict[str, Any]) -> None:
    checked = 0
    for name, service in services.items():
        command = service.get("command")
        if not command or command[0] != "photomarker":
            continue
        subcommand = main.commands.get(command[1])
        assert isinstance(subcommand, click.Command), f"{name}: photomarker has no {command[1]!r} command"
        # Parses the options exactly as the CLI would, without running anything.
        subcommand.make_context(command[1], list(command[2:]))
        checked += 1
    assert checked == 5  # web, three workers, beat


def test_secrets_come_from_the_environment(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            if re.search(r"KEY|PASSWORD|SECRET|TOKEN", variable):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), (
                    f"{name}: {variable} is set in the file"
                )
            if variable.endswith("DATABASE_URL"):
                assert "${POSTGRES_PASSWORD:?" in str(value), f"{name}: {variable} embeds a password"


def test_the_image_serves_what_compose_runs() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "gunicorn" in dockerfile and "psycopg" in dockerfile
    assert "USER photomarker" in dockerfile


def test_workers_are_restarted_by_compose_and_by_the_documented_systemd_unit(
    services: dict[str, Any],
) -> None:
    for name, service in services.items():
        if name.startswith("worker") or name == "beat":
            assert service["restart"] in ("unless-stopped", "always", "on-failure"), name
    unit = (REPO / "workers" / "deploy" / "photomarker-worker@.service").read_text()
    assert "\nRestart=on-failure\n" in unit
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    argv = exec_start.removeprefix("ExecStart=").split()
    assert argv[0].endswith("/photomarker") and argv[1] == "worker"
    with click.Context(main) as ctx:
        command = main.get_command(ctx, "worker")
        assert command is not None
        command.make_context("worker", [a.replace("%i", "skin") for a in argv[2:]])  # options parse
    assert "workers/deploy/photomarker-worker@.service" in (REPO / "README.md").read_text()
