"""Writing the alert console's users file (the service only reads it: ``analytics.console.auth``).

Passwords and tokens are stored as argon2id hashes; the file is written atomically with
mode 0600, and the running console picks the change up at its next request.
"""

from __future__ import annotations

from pathlib import Path

from analytics.console.auth import (
    ROLES,
    USER_NAME,
    AuthError,
    Role,
    User,
    hash_secret,
    new_token,
    read_users,
)
from runhours.security.files import toml_value, write_private

MIN_PASSWORD = 12


def _load(path: Path) -> dict[str, User]:
    return read_users(path) if path.exists() else {}


def _save(path: Path, users: dict[str, User], mode: int | None = None) -> None:
    lines = [
        "# Alert console users (runhours users): hashes only (argon2id), never passwords.",
        "# role: viewer (read) or operator (also acknowledge, resolve, record maintenance).",
    ]
    for user in users.values():
        lines += ["", f"[users.{toml_value(user.name)}]", f"role = {toml_value(user.role)}"]
        if user.password:
            lines.append(f"password = {toml_value(user.password)}")
        if user.tokens:
            lines.append(f"[users.{toml_value(user.name)}.tokens]")
            lines += [f"{k} = {toml_value(v)}" for k, v in user.tokens.items()]
    write_private(path, "\n".join(lines) + "\n", mode=mode)  # a rewrite keeps the mode


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"password: at least {MIN_PASSWORD} characters, please")


def add_user(
    path: Path, name: str, role: str, password: str | None, mode: int | None = None
) -> User:
    """Add a user (with a password for the browser, or none: tokens only). A new file
    gets ``mode`` (default 0600)."""
    if not USER_NAME.fullmatch(name):
        raise AuthError(f"user name {name!r}: use [A-Za-z0-9_.@-], 1 to 64 characters")
    if role not in ROLES:
        raise AuthError(f"--role {role!r}: viewer or operator")
    users = _load(path)
    if name in users:
        raise AuthError(f"user {name!r} already exists in {path}")
    if password is not None:
        _check_password(password)
    checked: Role = "operator" if role == "operator" else "viewer"
    user = User(name, checked, hash_secret(password) if password is not None else None)
    users[name] = user
    _save(path, users, mode)
    return user


def _user(users: dict[str, User], name: str, path: Path) -> User:
    if name not in users:
        raise AuthError(f"no user {name!r} in {path}")
    return users[name]


def set_password(path: Path, name: str, password: str) -> None:
    _check_password(password)
    users = _load(path)
    _user(users, name, path).password = hash_secret(password)
    _save(path, users)


def add_token(path: Path, name: str) -> tuple[str, str]:
    """A new API token for ``name``: (its id, the token, shown once and never stored)."""
    users = _load(path)
    user = _user(users, name, path)
    token_id, token = new_token()
    user.tokens[token_id] = hash_secret(token)
    _save(path, users)
    return token_id, token


def revoke_token(path: Path, name: str, token_id: str) -> None:
    users = _load(path)
    if _user(users, name, path).tokens.pop(token_id, None) is None:
        raise AuthError(f"{name} has no token {token_id!r}")
    _save(path, users)


def remove_user(path: Path, name: str) -> None:
    users = _load(path)
    _user(users, name, path)
    del users[name]
    _save(path, users)


def list_users(path: Path) -> list[User]:
    return list(_load(path).values())
