from runhours.cli import app

app()
