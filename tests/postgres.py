"""A real PostgreSQL server for tests: the one named in the environment, a local one, or a throwaway one.

Order: ``PHOTOMARKER_TEST_POSTGRES_URL``; a server already answering on 127.0.0.1:5432 as user
``postgres``; else a fresh cluster made with the installed ``initdb``/``pg_ctl`` in a temporary
directory on a free port, stopped and deleted afterwards. With no PostgreSQL binaries at all the
tests fail (they do not skip): the audit store's PostgreSQL support is only real if it is tested.

``fresh_database`` gives each test its own database, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

URL_ENV = "PHOTOMARKER_TEST_POSTGRES_URL"
LOCAL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
INSTALL_HINT = (
    "PostgreSQL is needed for these tests and none was found: install it "
    "(`sudo apt-get install postgresql`, or run `bash tests/run.sh`), or point "
    f"{URL_ENV} at a server (e.g. postgresql://postgres@127.0.0.1:5432/postgres)."
)


def _conninfo(url: str) -> str:
    """libpq connection string for a SQLAlchemy URL."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(_conninfo(url), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _binaries() -> Path | None:
    """The newest installed PostgreSQL bin directory that has initdb and pg_ctl."""

    def version(initdb: Path) -> int:
        name = initdb.parent.parent.name
        return int(name) if name.isdigit() else 0

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if candidates:
        return candidates[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def _throwaway_cluster(bindir: Path) -> Iterator[str]:
    # initdb refuses to run as root, so the cluster belongs to the postgres user then.
    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no `postgres` user to own a test cluster")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="photomarker-pg-"))
    data = root / "data"
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    log = root / "server.log"
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
            check=True,
            capture_output=True,
        )
        # fsync off: a test cluster is thrown away, and syncing would only slow the suite.
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    except subprocess.CalledProcessError as exc:
        details = exc.stderr.decode(errors="replace") if exc.stderr else ""
        if log.exists():
            details += log.read_text(errors="replace")
        pytest.fail(f"could not start a throwaway PostgreSQL with {bindir}: {details}")
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """SQLAlchemy URL of a maintenance database on a running server (see the module docstring)."""
    given = os.environ.get(URL_ENV)
    if given:
        if not _answers(given):
            pytest.fail(f"{URL_ENV}={given} does not answer")
        yield given
        return
    if _answers(LOCAL_URL):
        yield LOCAL_URL
        return
    bindir = _binaries()
    if bindir is None:
        pytest.fail(INSTALL_HINT)
    with _throwaway_cluster(bindir) as url:
        yield url


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server for one test; dropped (forcibly) afterwards."""
    name = f"photomarker_test_{secrets.token_hex(6)}"
    with psycopg.connect(_conninfo(server_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(server_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(_conninfo(server_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
