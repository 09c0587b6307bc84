"""`runhours users`: who may log in to the alert console, and as what."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from runhours.commands._common import ConfigOption, console, err_console, load
from runhours.commands._tables import Col, fit_table

app = typer.Typer(
    help="Alert console users: viewers read, operators also acknowledge, resolve and record "
    "maintenance. Kept hashed (argon2id) in the users file, by default "
    "<data_dir>/security/console/users.toml ([analytics] users_file); a running console "
    "picks changes up at once. See docs/security.md.",
    no_args_is_help=True,
)

FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        help="Users file (default: [analytics] users_file, else "
        "<data_dir>/security/console/users.toml).",
        dir_okay=False,
    ),
]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="User name.")]
StdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of stdin (no prompt)."
    ),
]


def _path(config: Path | None, given: Path | None) -> Path:
    if given is not None:
        return given
    from analytics.service import AnalyticsSettings

    settings = load(AnalyticsSettings, config)
    return settings.users_file or settings.data_dir / "security" / "console" / "users.toml"


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@app.command()
def add(
    name: NameArgument,
    role: Annotated[
        str, typer.Option(help="viewer (read) or operator (ack, resolve, maintenance).")
    ],
    password_stdin: StdinOption = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="No browser login; API tokens only.")
    ] = False,
    file: FileOption = None,
    config: ConfigOption = None,
) -> None:
    """Add a console user; asks for the password (twice) unless --password-stdin."""
    from runhours.security.users import add_user

    path = _path(config, file)
    add_user(path, name, role, None if no_password else _password(password_stdin))
    console.print(f"added {role} {name} to {path}", highlight=False)


@app.command()
def passwd(
    name: NameArgument,
    password_stdin: StdinOption = False,
    file: FileOption = None,
    config: ConfigOption = None,
) -> None:
    """Set a user's password (sessions already open stay open until they expire)."""
    from runhours.security.users import set_password

    path = _path(config, file)
    set_password(path, name, _password(password_stdin))
    console.print(f"password of {name} changed", highlight=False)


@app.command()
def token(name: NameArgument, file: FileOption = None, config: ConfigOption = None) -> None:
    """Make an API token for a user and print it, once (only its hash is kept).

    Scripts send it as `Authorization: Bearer <token>`.
    """
    from runhours.security.users import add_token

    token_id, value = add_token(_path(config, file), name)
    err_console.print(f"token {token_id} for {name} (shown once; revoke: runhours users "
                      f"revoke-token {name} {token_id}):", highlight=False)  # fmt: skip
    print(value)


@app.command("revoke-token")
def revoke_token(
    name: NameArgument,
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (users list).")],
    file: FileOption = None,
    config: ConfigOption = None,
) -> None:
    """Revoke one API token of a user."""
    from runhours.security.users import revoke_token as revoke

    revoke(_path(config, file), name, token_id)
    console.print(f"revoked token {token_id} of {name}", highlight=False)


@app.command()
def remove(name: NameArgument, file: FileOption = None, config: ConfigOption = None) -> None:
    """Remove a user: their sessions and tokens stop working at the next request."""
    from runhours.security.users import remove_user

    remove_user(_path(config, file), name)
    console.print(f"removed {name}", highlight=False)


@app.command("list")
def list_(file: FileOption = None, config: ConfigOption = None) -> None:
    """List the users, their roles and token ids (no secrets)."""
    from runhours.security.users import list_users

    path = _path(config, file)
    users = list_users(path)
    rows = [
        [user.name, user.role, "yes" if user.password else "no", ", ".join(user.tokens) or "-"]
        for user in users
    ]
    cols = [Col("user"), Col("role"), Col("password"), Col("API tokens", figure=False)]
    console.print(fit_table(console, cols, rows, title=str(path)))
