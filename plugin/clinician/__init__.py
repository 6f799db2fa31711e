"""The clinician app: the SMART launch (``plugin.smart``) and the patient view under ``/clinician``.

``init_clinician(app)`` registers both blueprints. Everything the pages use — templates, one
stylesheet, one small script — is served from this package: no CDN.
"""

from __future__ import annotations

from flask import Flask


def init_clinician(app: Flask) -> None:
    # Imported here so that plugin.smart may use this package's page helpers without a cycle.
    from plugin.clinician.views import clinician
    from plugin.smart.views import smart

    app.register_blueprint(smart)
    app.register_blueprint(clinician)
