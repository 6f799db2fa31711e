"""The EHR's ``smart_style_url``: read once per launch, checked value by value, served as CSS variables.

SMART lets the EHR hint colours, fonts and sizes so an embedded app looks at home. The document
is fetched only from the launch's own servers (the FHIR server's or the authorization server's
origin) and only values that are plainly a colour, a length or a font list are used — anything
else is dropped, so the EHR's hints can never inject CSS.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from models.errors import SmartDiscoveryFailed
from plugin.clinician.context import ClinicianContext
from plugin.smart.discovery import get_json
from plugin.smart.store import Launch

_COLOUR = re.compile(r"^(#[0-9a-fA-F]{3,8}|rgba?\(\s*[0-9., %]{5,40}\))$")
_LENGTH = re.compile(r"^\d{1,3}(\.\d{1,2})?(px|em|rem)$")
_FONT = re.compile(r"^[A-Za-z0-9 ,'\"\-]{1,200}$")
# smart_style_url key → (CSS variable, check)
_KEYS = {
    "color_background": ("--ehr-background", _COLOUR),
    "color_text": ("--ehr-text", _COLOUR),
    "color_highlight": ("--ehr-highlight", _COLOUR),
    "color_error": ("--ehr-error", _COLOUR),
    "color_success": ("--ehr-success", _COLOUR),
    "dim_border_radius": ("--ehr-radius", _LENGTH),
    "dim_font_size": ("--ehr-font-size", _LENGTH),
    "dim_spacing_size": ("--ehr-spacing", _LENGTH),
    "font_family_body": ("--ehr-font-body", _FONT),
    "font_family_heading": ("--ehr-font-heading", _FONT),
}


def style_css(context: ClinicianContext) -> str:
    style = context.launch.style
    if style is None:
        style = _read_style(context)
        read = style

        def remember(launch: Launch) -> None:
            launch.style = read

        context.update(remember)
    lines = [f"  {name}: {value};" for name, value in sorted(style.items())]
    return ":root {\n" + "\n".join(lines) + "\n}\n" if lines else "/* the EHR gave no style */\n"


def _read_style(context: ClinicianContext) -> dict[str, str]:
    url = context.launch.smart_style_url
    if not url or not _trusted_origin(url, context):
        return {}
    try:
        document = get_json(url, context.settings, what="the EHR's style")
    except SmartDiscoveryFailed:
        return {}  # the app's own look is fine; a missing style is no reason to fail
    style: dict[str, str] = {}
    for key, (name, check) in _KEYS.items():
        value = document.get(key)
        if isinstance(value, str) and check.match(value.strip()):
            style[name] = value.strip()
    return style


def _trusted_origin(url: str, context: ClinicianContext) -> bool:
    def origin(value: str) -> tuple[str, str | None, int | None]:
        parts = urlsplit(value)
        return parts.scheme, parts.hostname, parts.port

    trusted = {
        origin(context.launch.iss),
        origin(str(context.launch.config.get("authorization_endpoint", ""))),
    }
    return urlsplit(url).scheme in ("http", "https") and origin(url) in trusted
