"""Who may use the alert console and its API: users, roles, passwords, tokens, sessions.

Users live in a TOML file that ``runhours users`` writes (the service only reads it, and
re-reads it when it changes: a removed user or token stops working at the next request)::

    [users.jdoe]
    role = "operator"                      # viewer: read; operator: also ack, resolve, maintenance
    password = "$argon2id$v=19$m=65536,…"  # argon2id (argon2-cffi), never the password itself

    [users.jdoe.tokens]                    # API tokens: id = hash of the whole token
    k3x9w2ab = "$argon2id$v=19$…"

A browser logs in with a password and gets a session cookie; scripts send
``Authorization: Bearer rht_<id>_<secret>``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.errors import RunhoursError

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
USER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
TOKEN = re.compile(r"rht_(?P<id>[a-z0-9]{8})_(?P<secret>[A-Za-z0-9_-]{43})")
SESSION_SECONDS = 12 * 3600

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (argon2-cffi's default)


class AuthError(RunhoursError, ValueError):
    """The users file, a user name, a role or a password is invalid; the message says why."""


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(hashed: str, secret: str) -> bool:
    try:
        return _hasher.verify(hashed, secret)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> tuple[str, str]:
    """A fresh API token and its id (the id is part of the token, and not secret)."""
    token_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
    return token_id, f"rht_{token_id}_{secrets.token_urlsafe(32)}"


def is_loopback(host: str) -> bool:
    """Does ``host`` (an address to listen on) reach only this machine?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


@dataclass(frozen=True)
class Principal:
    """Who is asking, as far as the console is concerned."""

    name: str
    role: Role

    @property
    def operator(self) -> bool:
        return self.role == "operator"


@dataclass
class User:
    name: str
    role: Role
    password: str | None = None  # argon2 hash
    tokens: dict[str, str] = field(default_factory=dict)  # id → argon2 hash


def read_users(path: Path) -> dict[str, User]:
    """Parse the users file; an invalid entry raises ``AuthError`` naming it."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise AuthError(f"{path}: no such users file (create one: runhours users add)") from None
    except tomllib.TOMLDecodeError as exc:
        raise AuthError(f"{path}: not valid TOML: {exc}") from None
    users: dict[str, User] = {}
    for name, entry in (data.get("users") or {}).items():
        where = f"{path}: users.{name}"
        if not USER_NAME.fullmatch(name) or not isinstance(entry, dict):
            raise AuthError(f"{where}: not a valid user (names: [A-Za-z0-9_.@-]{{1,64}})")
        role = entry.get("role")
        if role not in ROLES:
            raise AuthError(f"{where}.role: {role!r} must be viewer or operator")
        password = entry.get("password")
        tokens = entry.get("tokens") or {}
        if not isinstance(tokens, dict) or not all(isinstance(v, str) for v in tokens.values()):
            raise AuthError(f"{where}.tokens: must map token ids to hashes")
        users[name] = User(name, role, password if isinstance(password, str) else None, tokens)
    return users


@dataclass
class _Session:
    user: str
    expires: float


class Authenticator:
    """Checks logins, tokens and sessions against the users file (re-read when it changes).

    Verified tokens are remembered (by their SHA-256) until the file changes, so a script
    polling the API pays argon2's cost once, not per request.
    """

    def __init__(self, path: Path, session_seconds: float = SESSION_SECONDS) -> None:
        self.path = path
        self.session_seconds = session_seconds
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}
        self._sessions: dict[str, _Session] = {}
        self._verified: dict[str, str] = {}  # sha256(token) → user name
        self._dummy = hash_secret(secrets.token_urlsafe(16))  # unknown users cost the same
        self.users()  # fail now, at start, on a missing or broken file

    def users(self) -> dict[str, User]:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._users = read_users(self.path)
                self._stamp = stamp
                self._verified.clear()
            return self._users

    def _principal(self, name: str) -> Principal | None:
        user = self.users().get(name)
        return Principal(user.name, user.role) if user else None

    def check_password(self, name: str, password: str) -> Principal | None:
        user = self.users().get(name)
        hashed = user.password if user and user.password else self._dummy
        if not verify_secret(hashed, password) or user is None or user.password is None:
            return None
        return Principal(user.name, user.role)

    def check_token(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        users = self.users()
        with self._lock:
            known = self._verified.get(digest)
        if known is not None:
            return self._principal(known)
        match = TOKEN.fullmatch(token)
        if match is None:
            return None
        for user in users.values():
            hashed = user.tokens.get(match["id"])
            if hashed is not None and verify_secret(hashed, token):
                with self._lock:
                    self._verified[digest] = user.name
                return Principal(user.name, user.role)
        return None

    def open_session(self, principal: Principal) -> str:
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
            self._sessions[session_id] = _Session(principal.name, now + self.session_seconds)
        return session_id

    def check_session(self, session_id: str) -> Principal | None:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None or session.expires <= time.monotonic():
            return None
        return self._principal(session.user)  # a removed user's session ends with them

    def close_session(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
