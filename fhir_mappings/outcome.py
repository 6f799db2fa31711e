"""Errors → FHIR OperationOutcome: the one place a refusal becomes FHIR."""

from __future__ import annotations

from typing import Any

from models.errors import PhotomarkerError


def error_code_system(canonical: str) -> str:
    """Code system of Photomarker's stable error codes (``models.errors`` ``code``s)."""
    return f"{canonical.rstrip('/')}/CodeSystem/photomarker-error"


def operation_outcome(error: PhotomarkerError, canonical: str) -> dict[str, Any]:
    """An OperationOutcome with one error issue carrying the stable code and the reason."""
    issue: dict[str, Any] = {
        "severity": "error",
        "code": error.issue_type,
        "details": {
            "coding": [{"system": error_code_system(canonical), "code": error.code}],
            "text": error.message,
        },
        "diagnostics": error.message,
    }
    if error.expression:
        issue["expression"] = [error.expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}
