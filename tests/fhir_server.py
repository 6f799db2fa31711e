"""Start a real FHIR R4 server (sekmet-fhir) on 127.0.0.1 for the tests, and stop it after."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        nested = isinstance(merged.get(key), dict) and isinstance(value, dict)
        merged[key] = _merged(merged[key], value) if nested else value
    return merged


@contextmanager
def running_fhir_server(workdir: Path, config_overrides: dict[str, Any] | None = None) -> Iterator[str]:
    """Yield the base URL of a fresh, empty sekmet FHIR server bound to loopback only.

    ``config_overrides`` is deep-merged into sekmet's settings (e.g. ``server_auth``,
    ``subscriptions``); without it the server is the open one every other test uses.
    """
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/fhir"
    config = {
        "base_url": base_url,
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(workdir),
        "db_path": str(workdir / "sekmet.db"),
        "own_private_key_path": str(workdir / "keys" / "sekmet_private.pem"),
        "simulator": {"enabled": False},
        "validation": {"inbound": "strict"},
        "log_inbound": False,
    }
    config = _merged(config, config_overrides or {})
    config_path = workdir / "settings.yaml"
    config_path.write_text(yaml.safe_dump(config))
    sekmet = Path(sys.executable).with_name("sekmet")
    log = (workdir / "sekmet.log").open("wb")
    env = {**os.environ, "SEKMET_CONFIG": str(config_path)}
    process = subprocess.Popen(
        [str(sekmet), "serve", "--config", str(config_path)],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                tail = (workdir / "sekmet.log").read_text()[-3000:]
                raise RuntimeError(f"the FHIR test server exited at start-up:\n{tail}")
            try:
                if httpx.get(f"{base_url}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the FHIR test server did not answer /metadata within 60 s")
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
