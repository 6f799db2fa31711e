"""Shared fixtures: settings isolated per test, a real FHIR server, frozen non-UTC time zone."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fhir_server import running_fhir_server

# The browser fixtures, registered once: one Playwright (and one chromium) per session. Imported
# into two conftests they were two session fixtures, and a second sync Playwright cannot start
# while the first is running.
pytest_plugins = ("tests.browser",)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True, scope="session")
def _non_utc_time_zone() -> Iterator[None]:
    # Run everything in a zone far from UTC so a naive datetime or a lost offset shows.
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    yield
    if previous is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = previous
    time.tzset()


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's PHOTOMARKER_* environment or writes to their data dir."""
    for name in list(os.environ):
        if name.startswith("PHOTOMARKER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PHOTOMARKER_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real FHIR R4 server process (sekmet-fhir) on 127.0.0.1."""
    with running_fhir_server(tmp_path_factory.mktemp("fhir-server")) as base_url:
        yield base_url
