"""Identities and secrets: broker accounts per machine and per service, the local CA and its
certificates, InfluxDB users with least privilege, and the files that hold them.

``runhours credentials …`` and ``runhours services up --secure`` use this; see
docs/security.md for what each role may do.
"""

from runhours.security.errors import SecurityError
from runhours.security.files import new_secret, write_private
from runhours.security.layout import SecurityDir

__all__ = ["SecurityDir", "SecurityError", "new_secret", "write_private"]
