"""The polling fallback: new Media and image DocumentReferences since a persisted cursor.

Each poll searches ``Media?_lastUpdated=gt<cursor - overlap>&_sort=_lastUpdated`` (and the same
for DocumentReference), page by page, and hands every hit to the intake, which de-duplicates on
id + versionId — so the overlap (a server may commit a resource after the lastUpdated it stamped)
costs a few re-sightings, never a second job. The cursor (the newest lastUpdated handled) lives
in the job store's database and moves after each page. The very first poll only sets the cursor
to the newest resource on the server: switching the inbox on does not score a clinic's history
(``photomarker inbox poll --since`` does, on purpose).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from workers.inbox.intake import Intake
from workers.inbox.notification import PHOTO_TYPES

log = logging.getLogger(__name__)

PAGE_SIZE = 100
# At most this many pages per type per poll; the cursor carries the rest to the next poll.
MAX_PAGES = 20


@dataclass
class PollReport:
    outcomes: Counter[str] = field(default_factory=Counter)
    initialised: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"outcomes": dict(self.outcomes), "initialised": self.initialised, "searches": self.searches}


def fhir_instant_utc(moment: datetime) -> str:
    """An instant in UTC with milliseconds, the form servers compare most reliably."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_instant(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def poll_once(intake: Intake, *, since: datetime | None = None) -> PollReport:
    """One poll of every photo type; ``since`` overrides the stored cursor (an operator's choice)."""
    report = PollReport()
    for resource_type in PHOTO_TYPES:
        _poll_type(intake, resource_type, report, since)
    report.outcomes.update(intake.outcomes)
    return report


def _poll_type(intake: Intake, resource_type: str, report: PollReport, since: datetime | None) -> None:
    settings = intake.svc.settings
    store = intake.runtime.store(intake.svc)
    base = intake.fhir_base
    client = intake.client()
    stored = store.cursor(base, resource_type)
    cursor = since or (parse_instant(stored) if stored else None)
    if cursor is None:
        newest = client.search(resource_type, {"_sort": "-_lastUpdated", "_count": "1"})
        found = [_last_updated(r) for r in _resources(newest)]
        start = next((moment for moment in found if moment is not None), datetime.now(UTC))
        store.set_cursor(base, resource_type, fhir_instant_utc(start))
        report.initialised.append(resource_type)
        return
    lower = cursor - timedelta(seconds=settings.inbox_poll_overlap_s)
    params = {
        "_lastUpdated": "gt" + fhir_instant_utc(lower),
        "_sort": "_lastUpdated",
        "_count": str(PAGE_SIZE),
    }
    report.searches.append(f"{resource_type}?_lastUpdated={params['_lastUpdated']}&_sort=_lastUpdated")
    newest_seen = cursor
    page = client.search(resource_type, params)
    for _ in range(MAX_PAGES):
        for resource in _resources(page):
            if resource.get("resourceType") != resource_type or not isinstance(resource.get("id"), str):
                continue
            intake.consider(f"{resource_type}/{resource['id']}", resource, "poll")
            moment = _last_updated(resource)
            if moment is not None and moment > newest_seen:
                newest_seen = moment
        if newest_seen > cursor:
            store.set_cursor(base, resource_type, fhir_instant_utc(newest_seen))
        following = _next_page(page, base)
        if following is None:
            return
        page = client.search(*following)
    log.info("inbox poll: %s has more than %d pages; the next poll goes on", resource_type, MAX_PAGES)


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    entries = bundle.get("entry")
    found = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") not in (None, "match"):
            continue  # _include'd resources are not hits
        found.append(entry["resource"])
    return found


def _last_updated(resource: dict[str, Any]) -> datetime | None:
    meta = resource.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, dict) else None
    return parse_instant(value) if isinstance(value, str) else None


def _next_page(bundle: dict[str, Any], base: str) -> tuple[str, dict[str, str]] | None:
    """The next page as (path, params) relative to ``base``; a link off the server is not followed."""
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            url = link["url"]
            prefix = base.rstrip("/") + "/"
            if not url.startswith(prefix):
                log.warning("inbox poll: a next link points off the FHIR server; not followed")
                return None
            parts = urlsplit(url[len(prefix) :])
            return parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
    return None
