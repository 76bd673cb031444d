"""Errors that tell the user which subject and which file went wrong, and how."""

from __future__ import annotations

from pathlib import Path


class HeadmriError(Exception):
    """Base class for every error the pipeline raises on purpose."""


class InputError(HeadmriError):
    """Bad input: names the subject (when known), the file (when known) and what is wrong."""

    def __init__(self, message: str, *, subject: str | None = None, path: str | Path | None = None):
        self.subject = subject
        self.path = None if path is None else str(path)
        self.reason = message
        parts = []
        if subject:
            parts.append(f"subject {subject}")
        if path is not None:
            parts.append(f"file {path}")
        where = ", ".join(parts)
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(HeadmriError):
    """A configuration that validates against the schema but cannot be run (for example, too few subjects)."""


class LeakageError(HeadmriError):
    """A subject-level split that would leak: one subject in two sets of a fold, or in two test folds."""
