"""The one error of the security tooling."""

from __future__ import annotations

from common.errors import RunhoursError


class SecurityError(RunhoursError, RuntimeError):
    """The security directory is missing, incomplete, holds a file it cannot read, or was
    asked for something it refuses; the message names the file or the field."""
