"""Refusals at start-up and on the command line: a setting or a local file Photomarker cannot use."""

from __future__ import annotations

from models.errors.base import PhotomarkerError


class SettingsError(PhotomarkerError):
    """A PHOTOMARKER_* setting has a value Photomarker cannot start with."""

    code = "invalid-setting"
    http_status = 500
    issue_type = "exception"


class UnreadableFile(PhotomarkerError):
    """A local file given to the CLI cannot be read (missing, a directory, no permission)."""

    code = "unreadable-file"
    issue_type = "not-found"
