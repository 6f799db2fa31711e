"""Server-side, encrypted FHIR credentials: a job's message carries a handle, never the token.

A bearer token that lets a worker read photos and write results is stored Fernet-encrypted
(AES-128-CBC + HMAC-SHA256, with its creation time) in the job store and looked up by a random
handle. The key comes from ``PHOTOMARKER_CREDENTIAL_KEY`` or is generated once into the data dir
with mode 0600; web and workers need the same key. A credential older than
``credential_max_age_s`` no longer decrypts: the job fails rather than run with a stale token.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, insert, select

from models.errors import CredentialUnavailable, SettingsError
from plugin.settings import Settings
from workers.job_schema import fhir_credentials
from workers.jobs import JobStore

KEY_FILE = "credential.key"


def load_or_create_key(path: Path) -> bytes:
    """The Fernet key in ``path``, made (0600, atomically) when there is none yet."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(Fernet.generate_key())
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails when the name exists: of two processes starting together, one key wins
        # and both read it.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsError(f"{path} is readable by other users; run chmod 600 on it")
    key = path.read_bytes().strip()
    try:
        Fernet(key)
    except ValueError:
        raise SettingsError(f"{path} does not hold a Fernet key") from None
    return key


def fernet_for(settings: Settings) -> Fernet:
    if settings.credential_key is not None:
        try:
            return Fernet(settings.credential_key.get_secret_value().encode())
        except ValueError:
            raise SettingsError(
                "PHOTOMARKER_CREDENTIAL_KEY: not a Fernet key (url-safe base64 of 32 bytes)"
            ) from None
    return Fernet(load_or_create_key(settings.data_dir / KEY_FILE))


class CredentialStore:
    """Encrypted bearer tokens in the job store, addressed by random handles."""

    def __init__(self, store: JobStore, fernet: Fernet, *, max_age_s: int) -> None:
        self._store = store
        self._fernet = fernet
        self._max_age_s = max_age_s

    @classmethod
    def from_settings(cls, settings: Settings, store: JobStore) -> CredentialStore:
        return cls(store, fernet_for(settings), max_age_s=settings.credential_max_age_s)

    def put(self, secret: str) -> str:
        """Store ``secret``; returns the handle a message may carry."""
        handle = secrets.token_urlsafe(24)
        ciphertext = self._fernet.encrypt(secret.encode())
        with self._store.write() as connection:
            connection.execute(
                insert(fhir_credentials).values(handle=handle, ciphertext=ciphertext, created_at=time.time())
            )
        return handle

    def get(self, handle: str) -> str:
        with self._store.engine.connect() as connection:
            ciphertext = connection.execute(
                select(fhir_credentials.c.ciphertext).where(fhir_credentials.c.handle == handle)
            ).scalar()
        if ciphertext is None:
            raise CredentialUnavailable("the job's FHIR credential is no longer stored")
        try:
            return self._fernet.decrypt(ciphertext, ttl=self._max_age_s).decode()
        except InvalidToken:
            # Expired, or encrypted under another key: either way unusable, and said plainly.
            raise CredentialUnavailable(
                "the job's FHIR credential has expired or cannot be decrypted"
            ) from None

    def delete(self, handle: str) -> None:
        with self._store.write() as connection:
            connection.execute(delete(fhir_credentials).where(fhir_credentials.c.handle == handle))

    def delete_expired(self) -> int:
        """Forget credentials past their age (a job that still needs one fails on it anyway)."""
        limit = time.time() - self._max_age_s
        with self._store.write() as connection:
            result = connection.execute(delete(fhir_credentials).where(fhir_credentials.c.created_at < limit))
            return int(result.rowcount or 0)
