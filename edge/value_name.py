"""The check a device config's value name goes through (``wire.payloads.VALUE_NAME``)."""

from __future__ import annotations

from wire.payloads import VALUE_NAME


def checked_value_name(name: str) -> str:
    """``name`` if it is a value name; else a ValueError that says the rule (a field validator)."""
    if not VALUE_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a value name ([a-z][a-z0-9_]{{0,63}}, with its unit as "
            "suffix, e.g. spindle_speed_rpm)"
        )
    return name
