"""The Flask application factory: ``create_app(settings=None)`` builds the web app and its Celery app.

Nothing happens at import time. Tests build an app with their own settings; ``photomarker web``,
``serve`` and ``worker`` build one from the environment. Blueprints are split by audience:
machine clients (``plugin.api.jobs``), operators (``plugin.api.health``) and auditors
(``plugin.audit_console``, at ``/audit``); the SMART launch, clinician and inbox blueprints come
with their issues.
"""

from __future__ import annotations

from flask import Flask

from plugin.api.health import health
from plugin.api.jobs import api_v1
from plugin.audit_console import init_audit_console
from plugin.clinician import init_clinician
from plugin.http_errors import register_error_handlers
from plugin.inbox import init_inbox
from plugin.security import apply_security_headers
from plugin.settings import Settings, load_settings
from workers.celery_app import EXTENSION, Services, celery_config, celery_init_app
from workers.credentials import fernet_for


def create_app(settings: Settings | None = None) -> Flask:
    """A Photomarker web app for ``settings`` (default: read from the environment)."""
    settings = settings or load_settings()
    if settings.credential_key is not None:
        fernet_for(settings)  # a bad key stops start-up here, not at the first stored credential
    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings,
        # Werkzeug refuses bigger bodies with 413 before they are read.
        MAX_CONTENT_LENGTH=settings.effective_api_max_body_bytes,
        CELERY=celery_config(settings),
    )
    app.extensions[EXTENSION] = Services(settings)
    celery_init_app(app, settings)
    register_error_handlers(app)
    apply_security_headers(app)
    app.register_blueprint(health)
    app.register_blueprint(api_v1)
    init_audit_console(app, settings)
    init_inbox(app, settings)
    init_clinician(app)
    return app
