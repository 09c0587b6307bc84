"""InfluxDB 1.x users with least privilege, made by the admin account (and only by it).

InfluxDB 1.x grants READ, WRITE or ALL per database, and admin rights globally. With
authentication on and no user yet, it accepts one statement without credentials:
creating the first admin. ``ensure_users`` uses that once, then logs in as the admin.
"""

from __future__ import annotations

from common.redact import scrub
from runhours.security.errors import SecurityError
from runhours.security.layout import ROLES, SecurityDir
from store import InfluxClient, InfluxError, quote_ident
from store.client import InfluxAuthError
from store.schema import ingest_state_database


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ensure_users(security: SecurityDir, url: str, database: str) -> list[str]:
    """Create (or update) the database and every role's user with its privilege.

    Idempotent: existing users get their current password and privilege again. Returns
    what it did, for the user. Errors never contain a password.
    """
    secrets = security.secrets().get("influx", {})
    passwords = [secrets.get(role.name) for role in ROLES]
    admin_password = secrets.get("admin")
    if admin_password is None:
        raise SecurityError(f"{security.secrets_file}: no [influx] admin password")

    def run(client: InfluxClient, statement: str) -> None:
        try:
            client.query(statement, epoch=None)
        except InfluxError as exc:
            raise SecurityError(f"InfluxDB at {url}: {scrub(str(exc), *passwords)}") from None

    done: list[str] = []
    with InfluxClient(url, database, username="admin", password=admin_password) as admin:
        try:
            admin.query("SHOW USERS", epoch=None)
        except InfluxAuthError:
            with InfluxClient(url, database) as anonymous:  # only works while no user exists
                run(
                    anonymous,
                    f"CREATE USER admin WITH PASSWORD {_literal(admin_password)} "
                    "WITH ALL PRIVILEGES",
                )
            done.append("created the InfluxDB admin user")
        except InfluxError as exc:
            raise SecurityError(f"InfluxDB at {url}: {scrub(str(exc), *passwords)}") from None
        state = ingest_state_database(database)
        for name in (database, state):
            run(admin, f"CREATE DATABASE {quote_ident(name)}")
        existing = {row["user"] for row in admin.query_rows("SHOW USERS", epoch=None)}
        for role in ROLES:
            if role.influx in (None, "ADMIN"):
                continue
            password = _literal(secrets[role.name])
            user = quote_ident(role.name)
            if role.name in existing:
                run(admin, f"SET PASSWORD FOR {user} = {password}")
            else:
                run(admin, f"CREATE USER {user} WITH PASSWORD {password}")
                done.append(f"created InfluxDB user {role.name} ({role.influx} on {database})")
            # GRANT replaces the privilege a user had on a database; REVOKE ALL first makes
            # "none" (no influx_state) take effect on an older deployment too.
            for name, privilege in ((database, role.influx), (state, role.influx_state)):
                if privilege is None:
                    run(admin, f"REVOKE ALL PRIVILEGES ON {quote_ident(name)} FROM {user}")
                else:
                    run(admin, f"GRANT {privilege} ON {quote_ident(name)} TO {user}")
    return done
