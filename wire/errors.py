"""The error for anything that breaks the wire contract."""

from common.errors import RunhoursError


class WireError(RunhoursError, ValueError):
    """A topic or payload does not follow the v1 wire contract.

    The message names the offending field and says why, e.g.
    ``samples.0.ts: naive timestamp (no zone): 2026-10-01T08:00:00``.
    """
