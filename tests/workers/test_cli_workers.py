"""`photomarker tokens …` and `photomarker jobs …`: what an operator types and what they get back."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from click.testing import CliRunner, Result

from plugin.api.tokens import ApiTokens
from plugin.cli import main
from workers.job_records import NewJob
from workers.jobs import JobStore


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def data_dir() -> Path:
    return Path(os.environ["PHOTOMARKER_DATA_DIR"])


def store() -> JobStore:
    data_dir().mkdir(parents=True, exist_ok=True)
    return JobStore.from_url(f"sqlite:///{data_dir() / 'jobs.sqlite'}")


def test_tokens_are_printed_once_stored_hashed_listed_and_revoked() -> None:
    created = run("tokens", "create", "inbox-robot")
    assert created.exit_code == 0, created.output
    token = created.output.strip()
    assert token.startswith("pmk_") and len(token) > 40
    assert ApiTokens(store()).verify(token) == "inbox-robot"
    raw = b"".join(p.read_bytes() for p in data_dir().glob("jobs.sqlite*"))
    assert token.encode() not in raw

    assert run("tokens", "create", "inbox-robot").exit_code == 1  # one active token per name
    listed = json.loads(run("tokens", "list", "--json").output)
    assert [(t["name"], t["active"]) for t in listed] == [("inbox-robot", True)]
    assert token not in run("tokens", "list").output

    assert run("tokens", "revoke", "inbox-robot").exit_code == 0
    assert ApiTokens(store()).verify(token) is None
    assert run("tokens", "revoke", "inbox-robot").exit_code == 1
    assert run("tokens", "create", "bad name!").exit_code == 1


def test_jobs_list_show_and_retry() -> None:
    jobs = store()
    jobs.create(
        NewJob(id="a" * 32, queue="skin", kind="auto", requested_by="api-token:t", reference="Media/1")
    )
    jobs.claim("a" * 32, worker="w", lease_s=60, max_jobs=1)
    jobs.fail("a" * 32, code="fhir-server-error", message="FHIR server answered 500 to POST /")
    jobs.create(NewJob(id="b" * 32, queue="conjunctiva", kind="conjunctiva", requested_by="api-token:t"))

    listed = run("jobs", "list")
    assert listed.exit_code == 0
    assert "a" * 32 in listed.output and "fhir-server-error" in listed.output
    failed_only = json.loads(run("jobs", "list", "--status", "failed", "--json").output)
    assert [job["id"] for job in failed_only] == ["a" * 32]

    shown = json.loads(run("jobs", "show", "a" * 32).output)
    assert shown["error"] == {"code": "fhir-server-error", "message": "FHIR server answered 500 to POST /"}
    assert shown["requested_by"] == "api-token:t" and shown["worker"] == "w"
    assert run("jobs", "show", "c" * 32).exit_code == 1

    retried = run("jobs", "retry", "a" * 32)
    assert retried.exit_code == 0, retried.output
    again = jobs.get("a" * 32)
    assert again is not None and (again.status, again.error_code) == ("queued", None)
    with sqlite3.connect(data_dir() / "broker.sqlite") as broker:
        assert broker.execute("SELECT count(*) FROM kombu_message").fetchone()[0] == 1

    jobs.claim("a" * 32, worker="w", lease_s=60, max_jobs=1)
    jobs.finish("a" * 32, written=["Observation/1"])
    refused = run("jobs", "retry", "a" * 32)
    assert refused.exit_code == 1 and "it is done" in refused.output


def test_the_service_commands_exist_with_their_options() -> None:
    for command, option in [
        ("worker", "--queues"),
        ("worker", "--concurrency"),
        ("serve", "--port"),
        ("web", "--workers"),
        ("beat", "--help"),
    ]:
        result = run(command, "--help")
        assert result.exit_code == 0 and option in result.output, (command, result.output)
    assert run("worker", "--queues", "bones").exit_code == 2
