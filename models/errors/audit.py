"""Audit trail errors: the trail could not do what was asked, and is left unchanged."""

from __future__ import annotations

from models.errors.base import PhotomarkerError


class AuditError(PhotomarkerError):
    """The audit trail could not do what was asked; the trail itself is unchanged."""

    code = "audit-error"
    http_status = 500
    issue_type = "exception"


class AuditKeyMismatch(AuditError):
    """The HMAC key given (or its absence) is not the one the chain was started with.

    Appending with another key would split the chain into parts no single key verifies.
    """

    code = "audit-key-mismatch"


class InvalidAuditRecord(AuditError):
    """A record the store refuses to keep as given (e.g. a naive ``recorded`` time)."""

    code = "invalid-audit-record"
    http_status = 400
    issue_type = "invalid"
