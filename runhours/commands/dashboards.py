"""`runhours dashboards`."""

import typer

app = typer.Typer(help="dashboards (not implemented yet)", no_args_is_help=False)
