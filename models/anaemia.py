"""WHO haemoglobin cut-offs for anaemia by age, sex and pregnancy (WHO guideline, 2024)."""

from __future__ import annotations

from models.results import PatientFacts

# (upper age bound in months, exclusive; cut-off g/dL) for children, from the WHO 2024 table.
_CHILD_CUTOFFS: tuple[tuple[int, float], ...] = (
    (24, 10.5),  # 6–23 months
    (60, 11.0),  # 24–59 months
    (144, 11.5),  # 5–11 years
    (180, 12.0),  # 12–14 years
)
_WOMEN = 12.0
_MEN = 13.0
# Trimester is rarely in the record; 11.0 holds for the 1st and 3rd (10.5 in the 2nd), so 11.0
# flags the more patients when it is unknown.
_PREGNANT = 11.0


def anaemia_cutoff(facts: PatientFacts) -> float | None:
    """Haemoglobin (g/dL) below which WHO calls this person anaemic; None when it cannot say."""
    if facts.pregnant:
        return _PREGNANT
    if facts.age_months is None:
        return None
    if facts.age_months < 6:
        return None  # WHO sets no cut-off under six months.
    for upper, cutoff in _CHILD_CUTOFFS:
        if facts.age_months < upper:
            return cutoff
    if facts.sex == "female":
        return _WOMEN
    if facts.sex == "male":
        return _MEN
    return None


def is_anaemic(g_dl: float, facts: PatientFacts) -> bool | None:
    cutoff = anaemia_cutoff(facts)
    return None if cutoff is None else g_dl < cutoff
