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
import time
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


class ThrowawayCluster:
    """A PostgreSQL cluster in a temporary directory on a free port; ``restart`` keeps its data."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # initdb refuses to run as root, so the cluster belongs to the postgres user then.
        self.as_user: list[str] = []
        owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root and there is no `postgres` user to own a test cluster")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="photomarker-pg-"))
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self.as_user, *argv], check=True, capture_output=True)

    def start(self) -> None:
        if not self.data.exists():
            self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            )
        # fsync off: a test cluster is thrown away, and syncing would only slow the suite.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = str(self.bindir / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        """An immediate stop: what a crash or a failover looks like to the clients."""
        subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )

    def restart(self, *, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_cluster(bindir: Path) -> Iterator[ThrowawayCluster]:
    cluster = ThrowawayCluster(bindir)
    try:
        cluster.start()
        yield cluster
    except subprocess.CalledProcessError as exc:
        details = exc.stderr.decode(errors="replace") if exc.stderr else ""
        if cluster.log.exists():
            details += cluster.log.read_text(errors="replace")
        pytest.fail(f"could not start a throwaway PostgreSQL with {bindir}: {details}")
    finally:
        cluster.remove()


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
    with throwaway_cluster(bindir) as cluster:
        yield cluster.url


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
