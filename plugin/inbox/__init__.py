"""The inbox's web side: the subscription notification receiver and the app's public keys.

``init_inbox(app, settings)`` registers both blueprints, the per-process inbox runtime, and
the inbox's Celery tasks (so a worker built by ``create_app`` knows them).
"""

from __future__ import annotations

from flask import Flask

from plugin.settings import Settings


def init_inbox(app: Flask, settings: Settings) -> None:
    import workers.inbox.tasks  # noqa: F401  (registers the inbox tasks with the app's Celery)
    from plugin.inbox.jwks import jwks
    from plugin.inbox.notifications import notifications
    from workers.inbox.runtime import EXTENSION, InboxRuntime

    app.extensions.setdefault(EXTENSION, InboxRuntime(settings))
    app.register_blueprint(jwks)
    app.register_blueprint(notifications)
