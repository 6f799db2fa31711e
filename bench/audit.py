"""Audit store speed: appends per second, and searches over a large trail (default 1,000,000 events).

    .venv/bin/python bench/audit.py [--json] [--events N] [--appends N] [--url URL]

1. Appends: ``AuditStore.append`` one event at a time, each its own durable transaction
   (SQLite WAL, synchronous=FULL), as the web and worker processes append. Target ≥ 1,000/s.
2. Seeding: ``append_many`` in batches (one lock, one executemany per batch, the chain computed
   in Python) fills the trail to ``--events``.
3. Queries: the first page (100 events) of one patient's trail, the same with a time window,
   a deeper keyset page, one user's events, recent failures, and a time window. Each query is
   run for 50 different values; median and worst are reported. Target: patient query ≤ 200 ms.
4. Verify: the whole chain recomputed.

Without ``--url`` a temporary SQLite file is used and deleted afterwards. With ``--url`` (e.g. an
empty PostgreSQL database) the events are appended there and left in place.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# This file is named audit.py: with its own folder first on sys.path, `import audit` would find it
# instead of the package. Put the repository root there instead (also works without an install).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from audit.events import AuditFilter  # noqa: E402
from audit.record import AuditAction, AuditOutcome, AuditRecord  # noqa: E402
from audit.store import AuditStore  # noqa: E402

T0 = datetime(2025, 1, 1, tzinfo=UTC)
PATIENTS = 20_000
USERS = 500
KINDS = [
    ("photo.read", AuditAction.READ, "read"),
    ("analysis.requested", AuditAction.EXECUTE, None),
    ("observation.written", AuditAction.CREATE, "create"),
    ("media.search", AuditAction.EXECUTE, "search-type"),
    ("login", AuditAction.EXECUTE, None),
    ("launch", AuditAction.EXECUTE, None),
    ("input.refused", AuditAction.READ, "read"),
    ("audit.export", AuditAction.EXECUTE, "search-type"),
]
SAMPLES = 50
BATCH = 10_000


def synthetic_record(n: int) -> AuditRecord:
    """Event ``n`` of a plausible trail: one every 0.5 s, 20,000 patients, 500 users, 5 % failures."""
    event, action, subtype = KINDS[n % len(KINDS)]
    failed = n % 20 == 7
    return AuditRecord(
        event=event,
        action=action,
        subtype=subtype,
        recorded=T0 + timedelta(milliseconds=500 * n),
        outcome=AuditOutcome.SERIOUS_FAILURE if failed else AuditOutcome.SUCCESS,
        outcome_reason="unsupported-media-type: image/gif" if failed else None,
        agent_who=f"Practitioner/{(n * 7919) % USERS}",
        agent_client_id="photomarker-web",
        agent_token_jti=f"{n:016x}",
        source_ip="10.0.0.1",
        patient=f"Patient/{(n * 104729) % PATIENTS}",
        entities=(f"Media/{n}", f"Observation/{n}"),
        purpose_of_use="TREAT",
        query="patient=Patient/1&_count=20" if subtype == "search-type" else None,
    )


def measure_appends(store: AuditStore, count: int, start: int) -> float:
    began = time.perf_counter()
    for n in range(start, start + count):
        store.append(synthetic_record(n))
    return count / (time.perf_counter() - began)


def seed(store: AuditStore, start: int, total: int) -> float:
    began = time.perf_counter()
    for first in range(start, total, BATCH):
        store.append_many(synthetic_record(n) for n in range(first, min(first + BATCH, total)))
    return time.perf_counter() - began


def timed(query: Callable[[], Any]) -> dict[str, float]:
    """Median and worst of SAMPLES runs; each run draws its own patient, user or window."""
    durations = []
    for _ in range(SAMPLES):
        began = time.perf_counter()
        query()
        durations.append((time.perf_counter() - began) * 1000)
    return {"median_ms": round(statistics.median(durations), 2), "max_ms": round(max(durations), 2)}


def measure_queries(store: AuditStore, total: int) -> dict[str, dict[str, float]]:
    rng = random.Random(7)  # noqa: S311 (choosing benchmark samples, not secrets)
    span = timedelta(milliseconds=500 * total)

    def patient() -> str:
        return f"Patient/{rng.randrange(PATIENTS)}"

    def window(length: timedelta) -> tuple[datetime, datetime]:
        since = T0 + span * rng.random()
        return since, since + length

    def patient_month() -> AuditFilter:
        since, until = window(timedelta(days=30))
        return AuditFilter(patient=patient(), since=since, until=until)

    def last_hour() -> AuditFilter:
        since, until = window(timedelta(hours=1))
        return AuditFilter(since=since, until=until)

    failures = AuditFilter(outcome=AuditOutcome.SERIOUS_FAILURE)
    queries: dict[str, Callable[[], Any]] = {
        "patient_first_page": lambda: store.search(AuditFilter(patient=patient()), limit=100),
        "patient_newest_page": lambda: store.search(
            AuditFilter(patient=patient()), limit=100, newest_first=True
        ),
        "patient_in_30_days": lambda: store.search(patient_month(), limit=100),
        "patient_keyset_page": lambda: store.search(
            AuditFilter(patient=patient()), after_seq=total // 2, limit=100
        ),
        "user_first_page": lambda: store.search(
            AuditFilter(agent=f"Practitioner/{rng.randrange(USERS)}"), limit=100
        ),
        "failures_newest_page": lambda: store.search(failures, limit=100, newest_first=True),
        "one_hour_window": lambda: store.search(last_hour(), limit=100),
    }
    return {name: timed(query) for name, query in queries.items()}


def run(url: str | None, events: int, appends: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="photomarker-bench-") as scratch:
        target = url or f"sqlite:///{Path(scratch) / 'audit.sqlite'}"
        with AuditStore.from_url(target) as store:
            start = store.head()[0]
            appends_per_s = measure_appends(store, appends, start)
            seed_s = seed(store, start + appends, events)
            queries = measure_queries(store, events)
            began = time.perf_counter()
            verdict = store.verify()
            verify_s = time.perf_counter() - began
            return {
                "backend": store.engine.dialect.name,
                "events": verdict.checked,
                "appends_per_s": round(appends_per_s),
                "seed_s": round(seed_s, 1),
                "seed_events_per_s": round((events - start - appends) / seed_s),
                "queries": queries,
                "verify_s": round(verify_s, 1),
                "verify_ok": verdict.ok,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--events", type=int, default=1_000_000, help="trail size for the queries")
    parser.add_argument("--appends", type=int, default=2_000, help="single appends to time")
    parser.add_argument("--url", help="SQLAlchemy URL of an empty audit database (default: temporary SQLite)")
    args = parser.parse_args()
    figures = run(args.url, args.events, args.appends)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"backend                {figures['backend']}")
    appends, seeding = figures["appends_per_s"], figures["seed_events_per_s"]
    print(f"appends                {appends:,}/s (one durable transaction each; target ≥ 1,000/s)")
    print(f"seeding                {figures['seed_s']} s ({seeding:,} events/s, append_many)")
    print(f"trail                  {figures['events']:,} events")
    for name, timing in figures["queries"].items():
        print(f"{name:<22} median {timing['median_ms']:>6} ms   max {timing['max_ms']:>6} ms")
    print(" " * 23 + "(target: patient query ≤ 200 ms)")
    print(f"verify                 {figures['verify_s']} s, {'intact' if figures['verify_ok'] else 'BROKEN'}")


if __name__ == "__main__":
    main()
