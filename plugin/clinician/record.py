"""What the EHR already holds, as the patient view shows it: earlier results, the trends, the banner."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_mappings import codes
from plugin.clinician.charts import TrendPoint, trend_svg
from plugin.clinician.context import ClinicianContext
from plugin.clinician.results import TREND_CODES, ResultView, result_view
from workers.fhir_client import FhirClient

# Value axis of each trend when the results leave it room (TIS 0–9; Hb around the WHO cut-offs).
_TREND_RANGE = {"tis": (0.0, 9.0), "hb-estimate-conjunctiva-photo": (6.0, 16.0)}


def earlier_results(context: ClinicianContext, client: FhirClient) -> list[ResultView]:
    """The patient's Photomarker Observations (any status but entered-in-error)."""
    system = codes.local_system(context.settings.canonical)
    wanted = ",".join(f"{system}|{code}" for code in codes.ANALYSIS_CODES.values())
    bundle = client.search("Observation", {"subject": context.patient, "code": wanted, "_count": "200"})
    views = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
            continue
        if resource.get("status") == "entered-in-error":
            continue
        view = result_view(resource, link=f"Observation/{resource.get('id')}")
        if view is not None:
            views.append(view)
    return views


def trends(views: list[ResultView]) -> list[dict[str, Any]]:
    """One chart per trended code; results without a conclusion are marked, never plotted as values."""
    shown = []
    for code, title in TREND_CODES.items():
        points = [
            _point(view, view.effective) for view in views if view.code == code and view.effective is not None
        ]
        points.sort(key=lambda p: p.when.timestamp())
        low, high = _TREND_RANGE[code]
        shown.append(
            {
                "title": title,
                "points": points,
                "any_without_conclusion": any(not p.conclusive for p in points),
                "svg": trend_svg(title, points, low=low, high=high, chart_id=f"trend-{code}"),
            }
        )
    return shown


def _point(view: ResultView, when: datetime) -> TrendPoint:
    value = _number(view) if view.conclusive else None
    if value is None:
        label = view.brief if not view.conclusive else f"{view.headline or 'No value'} (not a number)"
    else:
        label = view.headline or ""
    return TrendPoint(when, value, label, view.link)


def _number(view: ResultView) -> float | None:
    """The numeric part of the headline ("11.2 g/dL" → 11.2, "5 of 9" → 5)."""
    head = (view.headline or "").split(" ", 1)[0]
    try:
        return float(head)
    except ValueError:
        return None


def banner(patient: dict[str, Any]) -> dict[str, str | None]:
    names = patient.get("name") or []
    name = names[0] if names and isinstance(names[0], dict) else {}
    shown = (
        name.get("text")
        or " ".join([*(str(g) for g in name.get("given") or []), str(name.get("family") or "")]).strip()
    )
    identifiers = [i for i in patient.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
    return {
        "name": shown or "Name not recorded",
        "birth_date": patient.get("birthDate"),
        "gender": patient.get("gender"),
        "identifier": str(identifiers[0]["value"]) if identifiers else None,
    }
