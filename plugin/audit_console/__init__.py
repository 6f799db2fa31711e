"""The auditor console at ``/audit``: log in, search the trail, read an event, verify, export.

``init_audit_console(app)`` registers the blueprint (``views``) and sets up the session cookie
it relies on (``session``). Everything it serves (pages, one stylesheet) comes from this
package: no script, no CDN.
"""

from __future__ import annotations

from flask import Flask

from plugin.audit_console.session import configure_session
from plugin.audit_console.verification import ChainVerifier
from plugin.audit_console.views import VERIFIER_EXTENSION, console
from plugin.settings import Settings


def init_audit_console(app: Flask, settings: Settings) -> None:
    """Mount the console on ``app`` under ``/audit``."""
    configure_session(app, settings)
    app.extensions[VERIFIER_EXTENSION] = ChainVerifier()
    app.register_blueprint(console)
