"""Playwright fixtures: the app served on 127.0.0.1 by werkzeug, and Debian's headless chromium.

The browser is the system's ``/usr/bin/chromium`` (``tests/run.sh`` installs it); Playwright is
never allowed to download one. Tests that need a browser skip, saying why, where it is missing.

``assert_accessible`` runs axe-core (the copy inside the ``axe-playwright-python`` wheel, so
nothing is fetched) on the page as it stands and fails on any serious or critical violation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Browser, Page, Response, sync_playwright
from werkzeug.serving import make_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class LiveServer:
    """``app`` served by werkzeug in a thread on a free port of 127.0.0.1."""

    def __init__(self, app: Flask) -> None:
        # Port 0: the OS picks a free port, so parallel runs never collide.
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium (tests/run.sh does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def browser_page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    context.close()


_AXE = Axe()
# What fails a page; "moderate" and "minor" findings are reported by axe but allowed.
_BLOCKING_IMPACTS = ("serious", "critical")


def assert_accessible(page: Page, what: str) -> None:
    """axe-core on ``page`` (all its rules, WCAG 2.1 A/AA included): no serious or critical violation."""
    violations = _AXE.run(page).response["violations"]
    blocking = [v for v in violations if v.get("impact") in _BLOCKING_IMPACTS]
    report = "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[node['target'] for node in v['nodes'][:3]]}"
        for v in blocking
    )
    assert not blocking, f"{what}: {report}"


def failed_requests(page: Page) -> list[str]:
    """A list that fills with "STATUS URL" for every response of 400 or more the page receives."""
    failures: list[str] = []

    def seen(response: Response) -> None:
        if response.status >= 400:
            failures.append(f"{response.status} {response.url}")

    page.on("response", seen)
    return failures
