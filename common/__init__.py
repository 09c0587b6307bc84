"""Shared plumbing every runhours package may use: the root error (``errors``), the
settings (``settings``), durations and times (``times``), retry backoff (``backoff``) and
secret redaction (``redact``).

Nothing here may import another runhours package, so every layer can depend on it.
"""
