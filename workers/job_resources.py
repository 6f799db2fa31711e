"""What a job's FHIR resources say, read without the models: the photos a series ``List`` names,
who a Provenance names as requester, and what a transaction wrote.

Light on purpose (no torch): the inbox's follow-up and the web side read these too.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_mappings.context import Requester
from models.errors import InvalidRequest

# "Type/id" at the end of a location, before any "/_history/…".
_LOCATION = re.compile(r"(?:^|/)([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?/?$")


def written_references(response: dict[str, Any]) -> tuple[str, ...]:
    """``Type/id`` of every resource a transaction created or found (conditional creates).

    Servers give ``location`` relative or absolute, with or without ``_history``.
    """
    found: list[str] = []
    entries = response.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        location = entry.get("response", {}).get("location") if isinstance(entry, dict) else None
        match = _LOCATION.search(location) if isinstance(location, str) else None
        if match and match.group(1) not in found:
            found.append(match.group(1))
    return tuple(found)


def series_references(resource: dict[str, Any]) -> list[str]:
    """The photo references of a series job's ``List`` (as ``plugin.api.jobs.series_list`` wrote it)."""
    entries = resource.get("entry")
    items = [
        entry.get("item")
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
    ]
    references = [
        item["reference"]
        for item in items
        if isinstance(item, dict) and isinstance(item.get("reference"), str)
    ]
    if len(references) < 2:
        raise InvalidRequest("the series job names fewer than two photos")
    return references


# A verified fhirUser ("Practitioner/7" or an absolute URL) as the jobs API and the clinician app
# record it; anything else (an API token's name, the inbox service) is named, not referenced.
_FHIR_USER = re.compile(
    r"^(?:https://[^\s]+/)?(?:Practitioner|PractitionerRole|Patient|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}$"
)


def requester_of(requested_by: str) -> Requester:
    """Who the Provenance names: the clinician's fhirUser as a reference when it was verified."""
    kind, _, who = requested_by.partition(":")
    if kind == "clinician" and _FHIR_USER.match(who):
        return Requester(reference=who, display=requested_by)
    return Requester(display=requested_by)
