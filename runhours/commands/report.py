"""`runhours report`."""

import typer

app = typer.Typer(help="report (not implemented yet)", no_args_is_help=False)
