"""`runhours simulate`."""

import typer

app = typer.Typer(help="simulate (not implemented yet)", no_args_is_help=False)
