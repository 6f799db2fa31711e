"""API tokens for machine clients: 256 random bits shown once, stored only as their SHA-256.

``photomarker tokens create NAME`` prints a token; requests send it as ``Authorization: Bearer
…``. A database leak gives hashes of random 256-bit values, which are useless to an attacker.
Revoking keeps the row (the name stays in the audit trail's vocabulary) and stops the token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from models.errors import InvalidRequest
from workers.job_schema import api_tokens
from workers.jobs import JobStore

TOKEN_PREFIX = "pmk_"  # noqa: S105  (a visible prefix so leaked tokens are recognisable)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
# Longest bearer value worth hashing; anything longer is not one of ours.
_MAX_TOKEN_LENGTH = 256


@dataclass(frozen=True)
class ApiToken:
    name: str
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokens:
    """Create, check, list and revoke API tokens in the job store."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def create(self, name: str) -> str:
        """A new token for ``name`` (a revoked name may be given a new one); returns it, once."""
        if not _NAME.match(name):
            raise InvalidRequest(
                "a token name is 1–100 of letters, digits and _ . @ - (starting alphanumeric)"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._store.now()
        with self._store.write() as connection:
            existing = connection.execute(
                select(api_tokens.c.revoked_at).where(api_tokens.c.name == name)
            ).first()
            if existing is not None and existing.revoked_at is None:
                raise InvalidRequest(f"a token named {name!r} exists; revoke it first")
            if existing is None:
                connection.execute(
                    insert(api_tokens).values(name=name, token_sha256=_digest(token), created_at=now)
                )
            else:
                connection.execute(
                    update(api_tokens)
                    .where(api_tokens.c.name == name)
                    .values(token_sha256=_digest(token), created_at=now, revoked_at=None)
                )
        return token

    def verify(self, token: str) -> str | None:
        """The name of the active token ``token`` is, or None."""
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            return None
        with self._store.engine.connect() as connection:
            row = connection.execute(
                select(api_tokens.c.name, api_tokens.c.revoked_at).where(
                    api_tokens.c.token_sha256 == _digest(token)
                )
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        return str(row.name)

    def list_tokens(self) -> list[ApiToken]:
        with self._store.engine.connect() as connection:
            rows = connection.execute(select(api_tokens).order_by(api_tokens.c.name)).mappings().all()
        return [ApiToken(row["name"], row["created_at"], row["revoked_at"]) for row in rows]

    def revoke(self, name: str) -> bool:
        """Stop the token named ``name``; False when there is no active one."""
        with self._store.write() as connection:
            result = connection.execute(
                update(api_tokens)
                .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=self._store.now())
            )
            return bool(result.rowcount == 1)
