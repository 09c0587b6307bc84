"""`runhours usage`."""

import typer

app = typer.Typer(help="usage (not implemented yet)", no_args_is_help=False)
