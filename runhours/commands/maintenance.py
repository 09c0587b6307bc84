"""`runhours maintenance`."""

import typer

app = typer.Typer(help="maintenance (not implemented yet)", no_args_is_help=False)
