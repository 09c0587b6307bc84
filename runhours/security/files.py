"""Generating secrets and writing the files that hold them (owner-only, atomically)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

PRIVATE = 0o600


def new_secret(nbytes: int = 24) -> str:
    """A random password or token: ``nbytes`` bytes, URL-safe (letters, digits, ``-_``)."""
    return secrets.token_urlsafe(nbytes)


def write_private(path: Path, data: str | bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` with ``mode`` from the first byte on: by default the
    mode the file has (a rewrite keeps its permissions), else 0600.

    The file is written beside its target and renamed over it, so a reader sees the old
    or the new content, never half of it, and never with wider permissions.
    """
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = PRIVATE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner may enter (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def toml_value(value: Any) -> str:
    """A TOML value for a string, path, number, bool or list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def render_toml(header: str, values: dict[str, Any]) -> str:
    """``values`` as TOML: plain keys first, then one table per dict value."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    tables = {k: v for k, v in values.items() if isinstance(v, dict)}
    lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if k not in tables]
    for name, table in tables.items():
        lines += ["", f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"
