"""The base of the error hierarchy: what every Photomarker refusal carries.

It has a module of its own so that the area modules beside it can subclass it without taking it
from the package ``models.errors``, which imports those modules to re-export their classes and so
is only half-initialised while they load (a cycle).
"""

from __future__ import annotations

from typing import ClassVar


class PhotomarkerError(Exception):
    """Base of every expected failure; anything else is a bug."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400
    # FHIR IssueType (http://hl7.org/fhir/issue-type) for the OperationOutcome.
    issue_type: ClassVar[str] = "processing"

    def __init__(self, message: str, *, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # FHIRPath of the offending element, e.g. "Media.content.hash", when known.
        self.expression = expression

    def __str__(self) -> str:
        return self.message
