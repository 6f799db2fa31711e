"""The inbox's signing key: generated once (mode 0600), loaded for assertions, published as a JWKS.

The FHIR server's authorization server verifies the inbox's client assertions with the public
half, which it reads from the JWKS the app serves at ``/.well-known/jwks.json`` (or from a copy
registered by hand). The ``kid`` is the RFC 7638 thumbprint, so it changes exactly when the key does.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from models.errors import SettingsError
from plugin.settings import Settings

KeyAlg = Literal["RS384", "ES384"]
ALGS: tuple[KeyAlg, ...] = ("RS384", "ES384")
DEFAULT_KEY_FILE = Path("keys") / "inbox-backend.pem"


@dataclass(frozen=True)
class SigningKey:
    """A private key with the JOSE algorithm it signs with and its key id."""

    key: RSAKey | ECKey
    alg: KeyAlg
    kid: str

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = dict(self.key.as_dict(private=False))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]})
        return jwk


def key_path(settings: Settings) -> Path:
    """Where the inbox's private key lives."""
    return settings.inbox_private_key_path or settings.data_dir / DEFAULT_KEY_FILE


def generate_key(path: Path, alg: KeyAlg, *, replace: bool = False) -> SigningKey:
    """Write a new private key to ``path`` (0600, atomically); refuses to overwrite unless ``replace``."""
    if path.exists() and not replace:
        raise SettingsError(f"{path} already exists; pass --replace to make a new key")
    key: RSAKey | ECKey = RSAKey.generate_key(2048) if alg == "RS384" else ECKey.generate_key("P-384")
    pem = key.as_pem(private=True)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    # O_EXCL + 0600 from the first byte: the key is never readable by anyone else, not even briefly.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return load_key(path)


def load_key(path: Path) -> SigningKey:
    """The signing key in ``path``; refused when other users could read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SettingsError(
            f"no inbox key at {path}; run `photomarker keys generate` "
            "(or set PHOTOMARKER_INBOX_PRIVATE_KEY_PATH)"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsError(f"{path} is readable by other users; run chmod 600 on it")
    key, alg = _import(path, path.read_bytes())
    if not key.is_private:
        raise SettingsError(f"{path} holds a public key; the inbox needs the private key")
    return SigningKey(key=key, alg=alg, kid=key.thumbprint())


def _import(path: Path, pem: bytes) -> tuple[RSAKey | ECKey, KeyAlg]:
    try:
        return RSAKey.import_key(pem), "RS384"
    except (ValueError, TypeError, JoseError):
        pass
    try:
        key = ECKey.import_key(pem)
    except (ValueError, TypeError, JoseError):
        raise SettingsError(f"{path} does not hold an RSA or P-384 private key (PEM)") from None
    if key.curve_name != "P-384":
        raise SettingsError(f"{path} holds an EC key on {key.curve_name}; ES384 needs P-384")
    return key, "ES384"


def public_jwks(settings: Settings) -> dict[str, Any]:
    """The JWKS the app publishes: the inbox key's public half, or no keys when there is none yet."""
    path = key_path(settings)
    if not path.exists():
        return {"keys": []}
    return {"keys": [load_key(path).public_jwk()]}
