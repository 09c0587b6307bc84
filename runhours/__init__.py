"""runhours: the CLI, the demo and the local services runner."""

__version__ = "0.1.0"
