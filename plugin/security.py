"""Security headers on every response (a blueprint that serves pages may set its own first).

The defaults suit a JSON API that carries patient data: nothing is cached, sniffed, framed or
allowed to load. Pages added later (the SMART launch runs inside the EHR's frame) set their own
Content-Security-Policy and frame rules; ``setdefault`` leaves those alone.
"""

from __future__ import annotations

from flask import Flask, Response, request

DEFAULT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Results and job details are patient data: no browser or proxy may keep a copy.
    "Cache-Control": "no-store",
}
HSTS = "max-age=31536000; includeSubDomains"


def apply_security_headers(app: Flask) -> None:
    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in DEFAULT_HEADERS.items():
            if name == "X-Frame-Options" and _page_allows_framing(response):
                # The page's CSP frame-ancestors names the EHR; DENY would still block it in old browsers.
                continue
            response.headers.setdefault(name, value)
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response


def _page_allows_framing(response: Response) -> bool:
    policy = response.headers.get("Content-Security-Policy", "")
    return "frame-ancestors" in policy and "frame-ancestors 'none'" not in policy
