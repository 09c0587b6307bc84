"""The fault suite: what runhours promises when a part of the chain fails (docs/reliability.md)."""
