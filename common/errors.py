"""The root of every runhours error.

Every exception runhours raises on purpose derives from :class:`RunhoursError`, so a
caller can tell "runhours said no, and says why" from a bug: the CLI catches it once,
prints its message and exits with its ``exit_code``; anything else is a bug and keeps its
traceback. Errors that callers also meet as a built-in kind keep that base too
(``WireError`` is a ``ValueError``, ``InfluxError`` a ``RuntimeError``).

It lives here because every package may import ``common`` and ``common`` imports none
of ours. The whole tree, package by package, is in docs/design.md ("Errors").
"""


class RunhoursError(Exception):
    """Something runhours refuses or cannot do; the message says what and, where it can,
    how to fix it (the field, the file, the command to run)."""

    exit_code: int = 2
    """The exit code of `runhours` when this error ends a command."""
