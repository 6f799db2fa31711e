"""``GET /.well-known/jwks.json``: the public half of the inbox's signing key, with kid and alg.

The FHIR server's authorization server reads it (``jwks_url`` in its client registration) to
verify the inbox's client assertions. Public by nature; cached briefly so rotation shows soon.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from workers.celery_app import services
from workers.inbox.keys import public_jwks

jwks = Blueprint("inbox_jwks", __name__)


@jwks.get("/.well-known/jwks.json")
def public_keys() -> Response:
    response = jsonify(public_jwks(services().settings))
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response
