"""How the clinician pages write dates, probabilities and photo names: one way each, everywhere.

A probability is a whole percent ("82 %"), never "0.82" in one place and "82 %" in another, and
never more digits than the model can stand behind; "<1 %" and ">99 %" instead of 0 % and 100 %,
which no calibrated model means. A photo is named the way a clinician would say it — "Photo of
20 Nov 2026 · Left forearm" — and its FHIR id appears only in a details line.
"""

from __future__ import annotations

from datetime import date, datetime

from fhir_mappings.wording import percent as fhir_percent

# A non-breaking space keeps "82" and "%" on one line when a label wraps.
_NBSP = "\u00a0"


def percent(probability: float) -> str:
    """0.823 → "82 %"; the ends say "<1 %" / ">99 %" rather than a certainty no model has."""
    return fhir_percent(probability, space=_NBSP)


def day(when: date | datetime | None) -> str | None:
    """20 Nov 2026 — day first, the month as a word: unambiguous in every EHR's locale."""
    if when is None:
        return None
    # The date where the photo was taken (its own offset), not where the server runs.
    shown = when.date() if isinstance(when, datetime) else when
    return f"{shown.day} {shown:%b %Y}"


def photo_label(taken_at: datetime | None, body_site: str | None, *, noun: str = "Photo") -> str:
    """ "Photo of 20 Nov 2026 · Left forearm" (or "Video of …"); whichever part is unknown says so."""
    when = day(taken_at)
    first = f"{noun} of {when}" if when else f"{noun} (date not recorded)"
    return f"{first} · {body_site}" if body_site else first


def series_label(count: int, first_label: str) -> str:
    """ "Series of 3 photos · Photo of 20 Nov 2026 · Left forearm": what one series analysis names."""
    return f"Series of {count} photos · {first_label}"


def clip_length(seconds: float | None) -> str:
    """A video's length as a phone shows it: "0:08", "1:05"; "length not stated" when unknown."""
    if seconds is None:
        return "length not stated"
    whole = max(1, round(seconds))  # a clip under half a second still shows as a clip
    return f"{whole // 60}:{whole % 60:02d}"


def clip_words(seconds: float | None) -> str:
    """The same length in words for the caption and screen readers: "8 s", "1 min 5 s"."""
    if seconds is None:
        return "length not stated"
    whole = max(1, round(seconds))
    minutes, rest = divmod(whole, 60)
    if not minutes:
        return f"{rest}{_NBSP}s"
    return f"{minutes}{_NBSP}min {rest}{_NBSP}s" if rest else f"{minutes}{_NBSP}min"
