"""Helpers every command shares: the --config option and clean error exits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console

from contract.settings import RunhoursSettings, SettingsError, load_settings

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

S = TypeVar("S", bound=RunhoursSettings)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def load(cls: type[S], config: Path | None, **overrides: object) -> S:
    """Settings from the config file and the environment, or a clean error exit."""
    try:
        return load_settings(cls, config, **overrides)
    except SettingsError as exc:
        fail(str(exc))
