"""The auditor console through Flask's test client: login, CSRF, search, paging, detail, verify, export."""

from __future__ import annotations

import csv
import io
import json
import re
import time

from click.testing import CliRunner

from audit.record import AuditOutcome
from plugin.cli import main
from tests.console.conftest import AUDITOR, PASSWORD, Console, csrf_from, sample_events


def test_pages_need_a_login(console: Console) -> None:
    for path in ("/audit/", "/audit/events/1"):
        response = console.client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].endswith("/audit/login")


def test_login_is_recorded_with_who_where_and_outcome(console: Console) -> None:
    refused = console.login(password="not the password at all")
    assert refused.status_code == 401
    assert "wrong name or password" in refused.get_data(as_text=True)
    assert console.login().status_code == 302
    failed, succeeded = console.events("auditor.login")
    assert failed.record.outcome == AuditOutcome.MINOR_FAILURE
    assert failed.record.agent_who == f"auditor:{AUDITOR}"
    assert failed.record.outcome_reason == "auditor-login-failed: wrong name or password"
    assert succeeded.record.outcome == AuditOutcome.SUCCESS
    assert succeeded.record.source_ip == "127.0.0.1"


def test_a_password_typed_as_the_name_is_not_stored(console: Console) -> None:
    console.login(name="my secret pass!", password="x")
    (failed,) = console.events("auditor.login")
    assert failed.record.agent_who == "auditor:unknown"


def test_session_cookie_holds_no_secrets_and_is_scoped(console: Console) -> None:
    console.login()
    cookie = console.client.get_cookie("photomarker_audit", path="/audit")
    assert cookie is not None
    assert PASSWORD not in cookie.value
    assert cookie.http_only and cookie.same_site == "Strict"


def test_post_without_csrf_token_is_refused(console: Console) -> None:
    console.login()
    for path in ("/audit/verify", "/audit/export", "/audit/logout"):
        response = console.client.post(path, data={"format": "csv"})
        assert response.status_code == 403
        assert "csrf-rejected" in response.get_data(as_text=True)
    wrong = console.client.post("/audit/verify", data={"csrf_token": "forged"})
    assert wrong.status_code == 403
    assert len(console.events("auditor.csrf-rejected")) == 4
    assert console.events("audit.verify") == []


def test_login_form_itself_needs_the_token(console: Console) -> None:
    response = console.client.post("/audit/login", data={"name": AUDITOR, "password": PASSWORD})
    assert response.status_code == 403


def test_search_by_patient_pages_newest_first_and_is_audited(console: Console) -> None:
    console.store.append_many(sample_events())
    console.login()
    first = console.post("/audit/", {"patient": "Patient/p1"})
    html = first.get_data(as_text=True)
    assert first.status_code == 200
    assert html.count("<td>Patient/p1</td>") == 50 and "Patient/p2" not in html.split("<tbody>")[1]
    after = re.findall(r'name="after" value="(\d+)"', html)
    assert len(after) == 1
    second = console.post("/audit/", {"patient": "Patient/p1", "after": after[0]}).get_data(as_text=True)
    assert second.count("<td>Patient/p1</td>") == 10 and "Next page (older)" not in second
    searches = [s for s in console.events("audit.search") if s.record.patient]
    assert [s.record.patient for s in searches] == ["Patient/p1", "Patient/p1"]
    assert searches[1].record.query == f"patient=Patient%2Fp1&after={after[0]}"
    assert searches[0].record.agent_who == f"auditor:{AUDITOR}"


def test_search_filters_never_travel_in_the_url(console: Console) -> None:
    console.login()
    html = console.client.get("/audit/").get_data(as_text=True)
    assert 'method="get"' not in html
    # A GET with filters in the query string ignores them: nothing invites putting them there.
    response = console.client.get("/audit/", query_string={"patient": "Patient/p1"})
    assert response.status_code == 200
    assert all(s.record.patient is None for s in console.events("audit.search"))


def test_search_by_agent_event_outcome_and_dates(console: Console) -> None:
    console.store.append_many(sample_events())
    console.login()
    html = console.post(
        "/audit/",
        {
            "agent": "Practitioner/0",
            "event": "analysis.finished",
            "outcome": "4",
            "since": "2026-03-01",
            "until": "2026-03-01",
        },
    ).get_data(as_text=True)
    rows = html.split("<tbody>")[1].split("</tbody>")[0].count("<tr>")
    # i % 3 == 0, i % 10 == 0, even, within the day (all 180 minutes are): i in 0, 30, 60 … 150.
    assert rows == 6
    assert "✗ Minor failure" in html  # the outcome is a word and a symbol, not only a colour
    bad = console.post("/audit/", {"since": "yesterday"})
    assert bad.status_code == 400 and "a date like" in bad.get_data(as_text=True)


def test_event_detail_shows_everything_and_is_audited(console: Console) -> None:
    console.store.append_many(sample_events(1, 3))
    console.login()
    html = console.client.get("/audit/events/2").get_data(as_text=True)
    stored = console.store.get(2)
    assert stored is not None and stored.hash in html and "Media/m1" in html
    (read,) = console.events("audit.read")
    assert read.record.patient == "Patient/p0" and read.record.entities == ("audit-event:2",)
    assert console.client.get("/audit/events/999").status_code == 404


def test_verify_runs_on_demand_and_shows_the_last_result(console: Console) -> None:
    console.store.append_many(sample_events(1, 5))
    console.login()
    assert "Never checked" in console.client.get("/audit/").get_data(as_text=True)
    assert console.post("/audit/verify").status_code == 302
    # It runs in the background; the verdict lands in the trail when done.
    deadline = time.monotonic() + 10
    while not console.events("audit.verify") and time.monotonic() < deadline:
        time.sleep(0.05)
    (verdict,) = console.events("audit.verify")
    assert verdict.record.outcome == AuditOutcome.SUCCESS and verdict.record.source_ip == "127.0.0.1"
    html = console.client.get("/audit/").get_data(as_text=True)
    assert "✓ Intact" in html and f"auditor:{AUDITOR}" in html


def test_export_downloads_the_current_search_and_is_audited(console: Console) -> None:
    console.store.append_many(sample_events())
    console.login()
    response = console.post("/audit/export", {"format": "csv", "patient": "Patient/p2"})
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment; filename=audit-")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 60
    (export,) = console.events("audit.export")
    assert export.record.patient == "Patient/p2" and export.record.query == "_format=csv&patient=Patient%2Fp2"
    ndjson = console.post("/audit/export", {"format": "ndjson", "patient": "Patient/p2"})
    lines = ndjson.get_data(as_text=True).splitlines()
    # 60 events plus the first export's own audit.export, which is about that patient too.
    assert len(lines) == 61 and json.loads(lines[0])["resourceType"] == "AuditEvent"
    bundle = json.loads(console.post("/audit/export", {"format": "fhir", "patient": "Patient/p0"}).get_data())
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) == 60


def test_headers_are_strict_and_nothing_comes_from_elsewhere(console: Console) -> None:
    page = console.client.get("/audit/login")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    assert "http" not in page.get_data(as_text=True).split("<body>")[0]
    assert console.client.get("/audit/static/console.css").status_code == 200


def test_ehr_origins_may_frame_the_console(tmp_path: object) -> None:
    from pathlib import Path

    from plugin.app import create_app
    from plugin.settings import load_settings
    from workers.celery_app import services

    app = create_app(
        load_settings(
            data_dir=Path(str(tmp_path)) / "d", audit_console_frame_ancestors="https://ehr.example.org"
        )
    )
    page = app.test_client().get("/audit/login")
    assert page.headers["Content-Security-Policy"].endswith("frame-ancestors https://ehr.example.org")
    assert "X-Frame-Options" not in page.headers
    assert "SameSite=None" in page.headers["Set-Cookie"] and "Secure" in page.headers["Set-Cookie"]
    services(app).close()


def test_logout_ends_the_session(console: Console) -> None:
    console.login()
    assert console.post("/audit/logout").status_code == 302
    assert console.client.get("/audit/").status_code == 302
    assert len(console.events("auditor.logout")) == 1


def test_cli_creates_an_auditor_from_stdin(tmp_path: object, console: Console) -> None:
    from pathlib import Path

    data = Path(str(tmp_path)) / "data"
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["audit", "user", "create", "bo.b"],
        input="another long password\n",
        env={"PHOTOMARKER_DATA_DIR": str(data)},
    )
    assert result.exit_code == 0, result.output
    assert "another long password" not in result.output
    assert console.login("bo.b", "another long password").status_code == 302
    (created,) = console.events("auditor.created")
    assert created.record.entities == ("auditor:bo.b",)
    again = runner.invoke(
        main,
        ["audit", "user", "create", "bo.b"],
        input="another long password\n",
        env={"PHOTOMARKER_DATA_DIR": str(data)},
    )
    assert again.exit_code == 1 and "exists" in again.output
    short = runner.invoke(
        main, ["audit", "user", "create", "carol"], input="short\n", env={"PHOTOMARKER_DATA_DIR": str(data)}
    )
    assert short.exit_code == 1


def test_csrf_token_is_renewed_at_login(console: Console) -> None:
    before = csrf_from(console.client.get("/audit/login"))
    console.login()
    assert csrf_from(console.client.get("/audit/")) != before


def test_cookie_is_secure_over_https(console: Console) -> None:
    page = console.client.get("/audit/login", base_url="https://localhost")
    assert "Secure" in page.headers["Set-Cookie"]
    plain = console.app.test_client().get("/audit/login")
    assert "Secure" not in plain.headers["Set-Cookie"]
