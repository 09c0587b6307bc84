"""`runhours demo`."""

import typer

app = typer.Typer(help="demo (not implemented yet)", no_args_is_help=False)
