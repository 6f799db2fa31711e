"""Auditor accounts for the console at ``/audit``: names and salted scrypt password hashes.

Created by ``photomarker audit user create NAME``; checked by the console's login form. A
password is never stored or logged, only ``hashlib.scrypt`` of it with a random 16-byte salt.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, Table, Text, insert, select, update
from sqlalchemy.engine import Engine

from models.errors import InvalidRequest

# Described here, created by migration 0002 (``audit.schema`` covers the chain's own tables).
_metadata = MetaData()
auditor_user = Table(
    "auditor_user",
    _metadata,
    Column("name", Text, primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # scrypt of a megabyte "password" is a cheap denial of service
# N=2^14, r=8 (16 MiB, ~0.1 s): memory-hard per guess yet affordable per login in a web worker;
# the parameters are stored with each hash, so raising them later needs no migration.
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` for ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` hashes to ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
        return hmac.compare_digest(computed, bytes.fromhex(digest))
    except ValueError:
        return False


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=_KEY_BYTES
    )


@functools.cache
def _dummy_hash() -> str:
    # Checked against when the name is unknown, so a wrong name takes as long as a wrong password.
    return hash_password(secrets.token_urlsafe(16))


class AuditorUsers:
    """Create and check auditor accounts in the audit database (schema migrated by ``AuditStore``)."""

    def __init__(self, db: Engine) -> None:
        self._engine = db

    def create(self, name: str, password: str, *, replace: bool = False) -> None:
        """Add ``name`` (or give it a new password when ``replace``); refuses weak input."""
        if not NAME_PATTERN.match(name):
            raise InvalidRequest(
                "an auditor name is 1–100 of letters, digits and _ . @ - (starting alphanumeric)"
            )
        if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            raise InvalidRequest(
                f"a password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
            )
        hashed = hash_password(password)
        with self._engine.connect() as connection, connection.begin():
            exists = connection.execute(
                select(auditor_user.c.name).where(auditor_user.c.name == name)
            ).first()
            if exists is not None and not replace:
                raise InvalidRequest(f"an auditor named {name!r} exists")
            if exists is None:
                connection.execute(
                    insert(auditor_user).values(name=name, password_hash=hashed, created_at=datetime.now(UTC))
                )
            else:
                connection.execute(
                    update(auditor_user).where(auditor_user.c.name == name).values(password_hash=hashed)
                )

    def authenticate(self, name: str, password: str) -> bool:
        """Whether ``name`` is an auditor whose password is ``password``."""
        if not NAME_PATTERN.match(name) or len(password) > MAX_PASSWORD_LENGTH:
            return False
        with self._engine.connect() as connection:
            row = connection.execute(
                select(auditor_user.c.password_hash).where(auditor_user.c.name == name)
            ).first()
        if row is None:
            check_password(password, _dummy_hash())
            return False
        return check_password(password, str(row.password_hash))

    def names(self) -> list[str]:
        with self._engine.connect() as connection:
            return [
                str(r.name)
                for r in connection.execute(select(auditor_user.c.name).order_by(auditor_user.c.name))
            ]
