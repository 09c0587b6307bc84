"""Helpers every command shares: the --config option, the consoles and clean error exits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from common.settings import load_settings

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML settings file; RUNHOURS_* environment variables override it.",
        exists=False,
        dir_okay=False,
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """``error: <message>`` on standard error (the message as written: ``[edge]`` stays), exit."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


# Settings from the config file and the environment; a bad one raises SettingsError, which
# the CLI reports (runhours/cli.py).
load = load_settings
