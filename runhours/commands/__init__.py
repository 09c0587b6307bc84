"""One module per `runhours` sub-command; runhours/cli.py registers them."""
