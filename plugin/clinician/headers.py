"""The clinician pages' security headers: own stylesheet, script and images only; framed by the EHR.

Set before the app-wide defaults of ``plugin.security`` (which only fill in what is missing, and
drop ``X-Frame-Options`` when a page's CSP names the origins that may frame it).
"""

from __future__ import annotations

from flask import Response

from workers.celery_app import services


def page_headers(response: Response) -> Response:
    ancestors = services().settings.clinician_frame_ancestors.strip()
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; "
        f"form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    )
    # Patient data: no copy in a browser or proxy cache; no referrer leaks photo URLs to the EHR.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
