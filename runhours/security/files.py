"""Generating secrets and writing the files that hold them (owner-only, atomically)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE = 0o600


def new_secret(nbytes: int = 24) -> str:
    """A random password or token: ``nbytes`` bytes, URL-safe (letters, digits, ``-_``)."""
    return secrets.token_urlsafe(nbytes)


def write_private(path: Path, data: str | bytes, mode: int = PRIVATE) -> Path:
    """Write ``data`` to ``path`` with ``mode`` (default 0600) from the first byte on.

    The file is written beside its target and renamed over it, so a reader sees the old
    or the new content, never half of it, and never with wider permissions.
    """
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
