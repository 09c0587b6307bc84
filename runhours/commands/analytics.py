"""`runhours analytics`."""

import typer

app = typer.Typer(help="analytics (not implemented yet)", no_args_is_help=False)
