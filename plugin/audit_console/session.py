"""The auditor's session: a signed cookie holding only who logged in, when, and a CSRF token.

No token, password or search is ever put in the cookie. The signing key comes from the settings
or is generated once into the data dir, so every web process on a machine shares it. The cookie
is scoped to ``/audit``, HttpOnly, and SameSite=Strict — unless the console may be framed by an
EHR, where a cross-site iframe only sends a SameSite=None; Secure cookie. Forged POSTs are then
stopped by the per-session CSRF token checked on every form.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from datetime import timedelta
from pathlib import Path

from flask import Flask, request, session
from flask.sessions import SecureCookieSessionInterface

from models.errors import CsrfRejected
from plugin.settings import Settings

COOKIE_NAME = "photomarker_audit"
CSRF_FIELD = "csrf_token"
_SECRET_FILE = "audit-console-secret.key"  # noqa: S105  (a file name, not a secret)


def configure_session(app: Flask, settings: Settings) -> None:
    framed = settings.audit_console_frame_ancestors.strip() != "'none'"
    app.config.update(
        SECRET_KEY=_secret_key(settings),
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_PATH="/audit",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="None" if framed else "Strict",
        # SameSite=None is refused by browsers without Secure; otherwise Secure follows the request.
        SESSION_COOKIE_SECURE=framed,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.audit_console_session_max_age_s),
    )
    app.session_interface = _SessionInterface()


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, marked Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        # Behind a TLS-terminating proxy this needs ProxyFix, like every other is_secure check.
        return super().get_cookie_secure(app) or request.is_secure


def _secret_key(settings: Settings) -> bytes:
    if settings.audit_console_secret_key is not None:
        return settings.audit_console_secret_key.get_secret_value().encode()
    path: Path = settings.data_dir / _SECRET_FILE
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        # O_EXCL: of processes starting together exactly one writes the key, the others read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


def csrf_token() -> str:
    """This session's CSRF token, created on first use (the login form needs one too)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def check_csrf() -> None:
    """Raise ``CsrfRejected`` unless the POSTed form carries this session's token."""
    sent = request.form.get(CSRF_FIELD, "")
    expected = session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRejected("the form's anti-forgery token is missing or wrong; reload the page")


def start(auditor: str) -> None:
    """A fresh session for ``auditor``: new CSRF token, so one planted before login is useless."""
    session.clear()
    session.permanent = True
    session["auditor"] = auditor
    session["login_at"] = int(time.time())
    session["csrf"] = secrets.token_urlsafe(32)


def current_auditor(max_age_s: int) -> str | None:
    """The logged-in auditor, or None (also once the session is older than ``max_age_s``)."""
    auditor, login_at = session.get("auditor"), session.get("login_at")
    if not isinstance(auditor, str) or not isinstance(login_at, int):
        return None
    # The browser drops the cookie at expiry, but a copied cookie must not outlive it either.
    if time.time() - login_at > max_age_s:
        session.clear()
        return None
    return auditor


def end() -> None:
    session.clear()
