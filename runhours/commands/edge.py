"""`runhours edge`."""

import typer

app = typer.Typer(help="edge (not implemented yet)", no_args_is_help=False)
