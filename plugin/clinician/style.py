"""The EHR's ``smart_style_url``: read once per launch, checked value by value, served as CSS variables.

SMART lets the EHR hint colours, fonts and sizes so an embedded app looks at home. The document
is fetched only from the launch's own servers (the FHIR server's or the authorization server's
origin) and only values that are plainly a colour, a length or a font list are used — anything
else is dropped, so the EHR's hints can never inject CSS. A background is taken only when it is
light enough for the app's own text colours to keep WCAG 2.1 AA contrast on it.
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
# A background at least this light keeps the app's muted text and links above 4.5:1.
_MIN_BACKGROUND_LUMINANCE = 0.8
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
    background = style.get("--ehr-background")
    if background is not None and (_luminance(background) or 0.0) < _MIN_BACKGROUND_LUMINANCE:
        del style["--ehr-background"]
    return style


def _luminance(colour: str) -> float | None:
    """WCAG relative luminance of ``#rgb``, ``#rrggbb(aa)`` or ``rgb(a)(r, g, b…)``; None if unreadable."""
    if colour.startswith("#"):
        digits = colour[1:]
        if len(digits) in (3, 4):
            digits = "".join(d * 2 for d in digits)
        channels = [int(digits[i : i + 2], 16) for i in (0, 2, 4)]
    else:
        numbers = re.findall(r"[0-9.]+", colour)
        if len(numbers) < 3 or "%" in colour:
            return None
        channels = [min(255, int(float(n))) for n in numbers[:3]]

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else float(((c + 0.055) / 1.055) ** 2.4)

    red, green, blue = (linear(c) for c in channels)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def _trusted_origin(url: str, context: ClinicianContext) -> bool:
    def origin(value: str) -> tuple[str, str | None, int | None]:
        parts = urlsplit(value)
        return parts.scheme, parts.hostname, parts.port

    trusted = {
        origin(context.launch.iss),
        origin(str(context.launch.config.get("authorization_endpoint", ""))),
    }
    return urlsplit(url).scheme in ("http", "https") and origin(url) in trusted
