"""`runhours alerts`."""

import typer

app = typer.Typer(help="alerts (not implemented yet)", no_args_is_help=False)
