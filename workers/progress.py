"""How far a video's or a series' analysis has got: frames (or photos) analysed of those taken.

The worker holding the job writes one row per job (``photomarker_job_progress``) after each batch
of frames; the clinician app's progress line and the jobs API read it. It is a display aid only:
a job's outcome lives in the job store, a job taken over by another worker simply counts again,
and a failed write of progress never fails the analysis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from workers.job_schema import job_progress

log = logging.getLogger(__name__)

ProgressUnit = Literal["frame", "photo"]
# Called by the analysis with (analysed so far, in all): a video's frames, a series' photos.
FrameCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    unit: ProgressUnit

    def words(self) -> str:
        """ "frame 8 of 24" — what the clinician's progress line says."""
        return f"{self.unit} {self.done} of {self.total}"

    def as_json(self) -> dict[str, object]:
        return {"done": self.done, "total": self.total, "unit": self.unit}


class ProgressBoard:
    """Progress rows in the job store's database."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    def report(self, job_id: str, progress: Progress) -> None:
        values = {
            "done": progress.done,
            "total": progress.total,
            "unit": progress.unit,
            "updated_at": self._clock(),
        }
        try:
            with self._engine.begin() as connection:
                changed = connection.execute(
                    update(job_progress).where(job_progress.c.job_id == job_id).values(**values)
                ).rowcount
                if not changed:
                    connection.execute(insert(job_progress).values(job_id=job_id, **values))
        except IntegrityError:
            return  # another writer made the row first; the next report updates it
        except SQLAlchemyError as exc:
            # The job store is briefly away: the analysis goes on, the progress line waits.
            log.info("progress not recorded (%s)", type(exc).__name__)

    def get(self, job_id: str) -> Progress | None:
        query = select(job_progress).where(job_progress.c.job_id == job_id)
        with self._engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        if row is None:
            return None
        return Progress(int(row["done"]), int(row["total"]), cast(ProgressUnit, row["unit"]))

    def reporter(self, job_id: str, unit: ProgressUnit) -> FrameCallback:
        """A callback for the analysis that records this job's progress in ``unit``s."""

        def report(done: int, total: int) -> None:
            self.report(job_id, Progress(done, total, unit))

        return report
