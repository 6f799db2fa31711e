"""``photomarker audit verify|export`` as an auditor runs them, mounted the way the main CLI mounts it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from fhir.resources.R4B.bundle import Bundle

from audit.cli import EXIT_BROKEN, EXIT_CANNOT_CHECK, audit_cli
from audit.store import AuditStore
from plugin.settings import Settings
from tests.audit.tampering import MakeRecord, Tamperer

KEY = "correct horse battery staple"
# The commands' own logic does not depend on the backend (the store tests cover both); only
# verification runs on PostgreSQL here too.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _photomarker(settings: Settings | None) -> click.Group:
    """A stand-in for the main ``photomarker`` group: settings in ``ctx.obj``, ``audit`` mounted."""

    @click.group()
    @click.pass_context
    def main(ctx: click.Context) -> None:
        ctx.obj = {"settings": settings}

    main.add_command(audit_cli)
    return main


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", audit_database_url=db_url, audit_hmac_key=KEY)  # type: ignore[arg-type]


@pytest.fixture
def trail(db_url: str, make_record: MakeRecord) -> str:
    with AuditStore.from_url(db_url, hmac_key=KEY.encode()) as store:
        store.append_many(make_record(n) for n in range(8))
    return db_url


def _run(settings: Settings | None, *args: str) -> click.testing.Result:
    return CliRunner().invoke(_photomarker(settings), ["audit", *args], catch_exceptions=False)


def _last_event(url: str) -> tuple[str, str, str | None]:
    with AuditStore.from_url(url, hmac_key=KEY.encode()) as store:
        last = store.search(limit=1, newest_first=True).events[0].record
    return last.event, str(last.outcome), last.query


def test_verify_passes_and_is_itself_audited(trail: str, settings: Settings) -> None:
    result = _run(settings, "verify")
    assert result.exit_code == 0, result.output
    assert "intact: 8 events" in result.stdout
    assert _last_event(trail)[:2] == ("audit.verify", "0")
    assert _run(settings, "verify").exit_code == 0  # the recorded check is part of the chain


def test_verify_names_the_first_bad_event(trail: str, settings: Settings, tamper: Tamperer) -> None:
    tamper.drop_triggers()
    tamper.delete(5)
    tamper.set(7, patient="Patient/else")
    result = _run(settings, "verify")
    assert result.exit_code == EXIT_BROKEN
    assert "broken at event 5 (removed)" in result.stderr
    assert _last_event(trail)[:2] == ("audit.verify", "8")


@sqlite_only
def test_verify_with_the_wrong_key_cannot_check(trail: str, tmp_path: Path) -> None:
    wrong = Settings(data_dir=tmp_path, audit_database_url=trail, audit_hmac_key="guess")  # type: ignore[arg-type]
    result = _run(wrong, "verify")
    assert result.exit_code == EXIT_CANNOT_CHECK
    assert "different key" in result.stderr


@sqlite_only
def test_export_without_the_key_is_refused_before_writing(trail: str, tmp_path: Path) -> None:
    keyless = Settings(data_dir=tmp_path, audit_database_url=trail)
    result = _run(keyless, "export", "--format", "csv", "--out", str(tmp_path / "x.csv"))
    assert result.exit_code == EXIT_CANNOT_CHECK
    assert "no key was given" in result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_a_missing_sqlite_database_is_an_error_not_an_empty_pass(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, audit_database_url=f"sqlite:///{tmp_path / 'none.sqlite'}")
    result = _run(settings, "verify")
    assert result.exit_code != 0
    assert "no audit database" in result.output
    assert not (tmp_path / "none.sqlite").exists()


@sqlite_only
def test_export_csv_to_a_file_with_filters(trail: str, settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "export.csv"
    result = _run(
        settings, "export", "--format", "csv", "--patient", "Patient/2", "--since", "2025-03-01T08:05",
        "--until", "2025-03-01T17:20+09:00", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [row["seq"] for row in rows] == ["8"]  # number 7: Patient/2 at 08:07Z, before 08:20Z
    event, outcome, query = _last_event(trail)
    assert (event, outcome) == ("audit.export", "0")
    assert query is not None and "patient=Patient%2F2" in query and "_format=csv" in query


@sqlite_only
def test_export_fhir_and_ndjson_to_stdout(trail: str, settings: Settings) -> None:
    bundle = _run(settings, "export", "--format", "fhir", "--bundle-type", "searchset")
    assert bundle.exit_code == 0, bundle.output
    Bundle.model_validate_json(bundle.stdout)
    assert len(json.loads(bundle.stdout)["entry"]) == 8
    extension = json.loads(bundle.stdout)["entry"][0]["resource"]["extension"][-1]
    assert extension["url"] == f"{settings.canonical}/StructureDefinition/audit-chain-link"

    lines = _run(settings, "export", "--format", "ndjson", "--outcome", "8").stdout.splitlines()
    assert len(lines) == 2 and all(json.loads(line)["outcome"] == "8" for line in lines)


@sqlite_only
def test_export_rejects_a_bad_time(trail: str, settings: Settings) -> None:
    result = _run(settings, "export", "--since", "yesterday")
    assert result.exit_code == 2
    assert "ISO 8601" in result.output


@sqlite_only
def test_without_settings_the_environment_is_used(
    trail: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PHOTOMARKER_AUDIT_DATABASE_URL", trail)
    monkeypatch.setenv("PHOTOMARKER_AUDIT_HMAC_KEY", KEY)
    assert _run(None, "verify").exit_code == 0
    assert CliRunner().invoke(audit_cli, ["verify"]).exit_code == 0  # mounted nowhere at all
    fhir = _run(None, "export", "--format", "fhir")
    assert fhir.exit_code == 2 and "PHOTOMARKER_CANONICAL_BASE" in fhir.output
    monkeypatch.setenv("PHOTOMARKER_CANONICAL_BASE", "https://site.example/fhir/")
    assert _run(None, "export", "--format", "fhir").exit_code == 0

    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    monkeypatch.delenv("PHOTOMARKER_AUDIT_HMAC_KEY")
    assert _run(None, "verify").exit_code == EXIT_CANNOT_CHECK
    assert _run(None, "--hmac-key-file", str(key_file), "verify").exit_code == 0


def test_the_data_dir_is_the_last_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_record: MakeRecord
) -> None:
    monkeypatch.setenv("PHOTOMARKER_DATA_DIR", str(tmp_path))
    with AuditStore.from_url(f"sqlite:///{tmp_path / 'audit.sqlite'}") as store:
        store.append(make_record(1))
    result = _run(None, "verify")
    assert result.exit_code == 0 and "1 events" in result.stdout
