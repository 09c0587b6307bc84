"""Helpers every command shares: the --config option, the consoles and clean error exits."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
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


def log_at(log_level: str) -> None:
    """A service command's logging at ``--log-level`` (httpx from warnings: it logs a line
    per request)."""
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        fail(f"--log-level {log_level!r}: use debug, info, warning or error")
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM and SIGINT set: a service command's clean stop."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return stop


# Settings from the config file and the environment; a bad one raises SettingsError, which
# the CLI reports (runhours/cli.py).
load = load_settings
