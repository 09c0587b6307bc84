"""`runhours billing`."""

import typer

app = typer.Typer(help="billing (not implemented yet)", no_args_is_help=False)
