"""The operators' HTTP API (FastAPI) and the alert console page it serves.

>>> app = create_app(AlertStore.in_data_dir(Path("var")), influx)   # doctest: +SKIP

Served by ``runhours analytics --http-port P`` or ``runhours alerts serve``.
"""

from analytics.console.api import create_app
from analytics.console.auth import Authenticator, AuthError, Principal
from analytics.console.server import ConsoleError, ConsoleServer

__all__ = [
    "AuthError",
    "Authenticator",
    "ConsoleError",
    "ConsoleServer",
    "Principal",
    "create_app",
]
