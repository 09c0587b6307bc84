"""`runhours ingest`."""

import typer

app = typer.Typer(help="ingest (not implemented yet)", no_args_is_help=False)
