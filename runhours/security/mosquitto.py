"""Mosquitto's password file: who may log in to the broker, and telling the broker to reload.

Entries are ``user:$7$iterations$salt$hash`` (PBKDF2-HMAC-SHA512, the format
``mosquitto_passwd`` writes since Mosquitto 2.0), so runhours needs no Mosquitto binary to
manage them. Every password runhours generates is random (144 bits or more), so the hash
protects against nothing a slow hash would; Mosquitto's default iteration count is kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import signal
from pathlib import Path

from runhours.security.errors import SecurityError
from runhours.security.files import write_private

ITERATIONS = 101  # mosquitto_passwd's default


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The password file's hash of ``password`` (``$7$…``)."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, hashed: str) -> bool:
    """Does ``password`` match a ``$7$`` entry (as the broker would decide)?"""
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


class PasswordFile:
    """The broker's password file, read whole and written back atomically (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> dict[str, str]:
        """User → hash, in file order; an absent file has no users."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        users: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user:
                raise SecurityError(f"{self.path}:{number}: not user:hash")
            users[user] = hashed
        return users

    def users(self) -> list[str]:
        return list(self.entries())

    def set(self, user: str, password: str) -> None:
        """Add ``user`` or change its password."""
        if ":" in user or "\n" in user or not user:
            raise SecurityError(f"user name {user!r}: must be non-empty, without ':' or newlines")
        entries = self.entries()
        entries[user] = hash_password(password)
        self._write(entries)

    def remove(self, user: str) -> bool:
        """Remove ``user``; False if it had no entry."""
        entries = self.entries()
        if entries.pop(user, None) is None:
            return False
        self._write(entries)
        return True

    def _write(self, entries: dict[str, str]) -> None:
        write_private(self.path, "".join(f"{u}:{h}\n" for u, h in entries.items()))


def reload_broker(pid_file: Path) -> bool:
    """SIGHUP the broker of ``pid_file``: it re-reads the password file and ACL and
    disconnects clients whose login is no longer valid. False if it does not run."""
    try:
        pid = int(pid_file.read_text().strip())
        if b"mosquitto" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False  # a stale pid file; the number now belongs to someone else
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return False
    return True
