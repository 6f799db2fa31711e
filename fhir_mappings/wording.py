"""A probability worded for people: a whole percent, the one format of the Observation texts and
the clinician pages.

Never "0.82" in one place and "82 %" in another, never more digits than a model can stand behind,
and "<1 %" / ">99 %" instead of 0 % and 100 %, which no calibrated model means. The exact value
stays in the Observation's ``valueQuantity`` and components.
"""

from __future__ import annotations


def percent(probability: float, *, space: str = " ") -> str:
    """0.823 → "82 %"; ``space`` goes between number and sign (the pages pass a non-breaking one)."""
    shown = round(max(0.0, min(1.0, probability)) * 100)
    if shown < 1:
        return f"<1{space}%"
    if shown > 99:
        return f">99{space}%"
    return f"{shown}{space}%"
