"""The auditor console in a real browser (headless Debian chromium driven by Playwright)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from audit.record import AuditOutcome
from tests.browser import LiveServer, assert_accessible, failed_requests
from tests.console.conftest import AUDITOR, PASSWORD, Console, sample_events


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    with LiveServer(app) as live:
        yield live.url


def sign_in(page: Page, server: str, password: str = PASSWORD) -> None:
    page.goto(f"{server}/audit/")
    page.get_by_label("Auditor name").fill(AUDITOR)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_search_page_open_and_export(
    browser_page: Page, server: str, console: Console, tmp_path: Path
) -> None:
    page = browser_page
    console.store.append_many(sample_events())
    sign_in(page, server)
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()

    page.get_by_label("Patient").fill("Patient/p1")
    # Keyboard use: Enter in a field submits the search.
    page.get_by_label("Patient").press("Enter")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator("tbody td", has_text="Patient/p2")).to_have_count(0)

    page.get_by_label("Export every match as").select_option("csv")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export").click()
    saved = tmp_path / "export.csv"
    download_info.value.save_as(saved)
    exported = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert {row["patient"] for row in exported} == {"Patient/p1"}
    # The 60 sample events plus the auditor's own search of that patient, itself in the trail.
    assert [row["event"] for row in exported].count("audit.search") == 1 and len(exported) == 61
    (export,) = console.events("audit.export")
    assert export.record.agent_who == f"auditor:{AUDITOR}" and export.record.source_ip == "127.0.0.1"

    page.get_by_role("button", name="Next page (older)").click()
    expect(rows).to_have_count(10)  # keyset: the 10 older than page 1, whatever was added since
    expect(page.get_by_role("button", name="Next page (older)")).to_have_count(0)

    first_seq = rows.first.locator("a").inner_text()
    rows.first.locator("a").click()
    expect(page.get_by_role("heading", name=f"Audit event {first_seq}")).to_be_visible()
    expect(page.locator("dd", has_text="Patient/p1")).to_be_visible()
    assert "Patient" not in page.url  # no patient reference in any URL the browser visited


def test_wrong_password_is_refused_and_recorded(browser_page: Page, server: str, console: Console) -> None:
    page = browser_page
    sign_in(page, server, password="definitely not it")
    expect(page.get_by_role("alert")).to_contain_text("wrong name or password")
    expect(page.get_by_role("heading", name="Auditor sign-in")).to_be_visible()
    (failed,) = console.events("auditor.login")
    assert failed.record.outcome == AuditOutcome.MINOR_FAILURE


def test_post_without_the_token_is_refused(browser_page: Page, server: str, console: Console) -> None:
    page = browser_page
    sign_in(page, server)
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    # The browser's own cookie, but a body without the token: what a forged cross-site form sends.
    response = page.request.post(f"{server}/audit/verify", form={"nothing": "here"})
    assert response.status == 403
    assert console.events("audit.verify") == []
    assert len(console.events("auditor.csrf-rejected")) == 1


def test_console_pages_pass_axe_and_load_everything(
    browser_page: Page, server: str, console: Console
) -> None:
    page = browser_page
    failures = failed_requests(page)
    console.store.append_many(sample_events())
    page.goto(f"{server}/audit/")
    assert_accessible(page, "auditor sign-in")
    sign_in(page, server)
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    assert_accessible(page, "audit search")
    page.locator("tbody tr").first.locator("a").click()
    expect(page.get_by_role("heading", name=re.compile("Audit event"))).to_be_visible()
    assert_accessible(page, "audit event")
    assert failures == []  # the favicon included
