"""The security directory: every identity and secret of one deployment, in one place.

::

    <dir>/                   0700
      security.toml          where the broker and the database are (nothing secret)
      secrets.toml           0600  every generated service password (the source of truth)
      ca.pem, ca.key         the local CA (the key: 0600, never copied anywhere)
      broker/                the broker's server certificate and key, password file, CRL
      edge/SITE/LINE/        one settings file per machine (0600): its broker identity
      ingest.toml …          one settings file per service role (0600), rendered from secrets
      console/users.toml     the alert console's users (hashed passwords and tokens)

``runhours credentials init`` and ``runhours services up --secure`` create it; everything
in it is created once and reused, so running either again changes nothing.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from runhours.security.errors import SecurityError
from runhours.security.files import (
    PRIVATE,
    new_secret,
    private_dir,
    render_toml,
    write_private,
)
from runhours.security.mosquitto import PasswordFile, check_password
from runhours.security.tls import CertificateAuthority

Privilege = Literal["WRITE", "READ", "ALL", "ADMIN"]


@dataclass(frozen=True)
class Role:
    """A service account: its broker user (if it uses the broker) and its InfluxDB rights,
    on the database (``influx``) and on the ingest's state database beside it
    (``influx_state``, store/schema.py).

    InfluxDB 1.x grants per database, not per measurement. The ingest only writes the
    database; it reads back nothing but its own bookkeeping, which it keeps in its state
    database. Analytics reads telemetry and writes its own measurements (rollups, alerts,
    maintenance): 1.x can express that only as ALL on the database (docs/security.md)."""

    name: str
    mqtt: bool
    influx: Privilege | None
    what: str
    influx_state: Privilege | None = None


ROLES: tuple[Role, ...] = (
    Role("ingest", True, "WRITE", "stores telemetry and statuses, writes dead letters", "ALL"),
    Role("analytics", True, "ALL", "alerts, rollups, maintenance; the alert console", "READ"),
    Role(
        "grafana", False, "READ", "dashboards (and `runhours dashboards check`): read only", "READ"
    ),
    Role("admin", False, "ADMIN", "creates the databases and the users above; nothing else"),
)
ROLES_BY_NAME = {role.name: role for role in ROLES}


@dataclass
class Meta:
    """Where things are, as the clients see them (``security.toml``; nothing secret)."""

    broker_host: str = "127.0.0.1"
    broker_port: int = 8883  # password over TLS
    mtls_port: int = 8884  # client certificate (common name = user name)
    broker_names: list[str] = field(default_factory=lambda: ["localhost", "127.0.0.1", "::1"])
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "runhours"
    ca_file: str = ""  # the CA as clients find it; default: <dir>/ca.pem
    data_dir: str = ""
    broker_pid_file: str = ""  # a local broker to SIGHUP after a change; "" = none
    reload_hint: str = ""  # else: how to reload the broker by hand (shown after a change)
    # Docker Compose: files that containers read as another user (machine identities,
    # console users) are 0644, kept from other host users by the 0700 directory.
    container_readable: bool = False

    def broker_url(self, mtls: bool = False) -> str:
        host = f"[{self.broker_host}]" if ":" in self.broker_host else self.broker_host
        return f"mqtts://{host}:{self.mtls_port if mtls else self.broker_port}"


class SecurityDir:
    """Paths and contents of one security directory (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.meta_file = self.root / "security.toml"
        self.secrets_file = self.root / "secrets.toml"
        self.ca = CertificateAuthority(self.root / "ca.pem", self.root / "ca.key")
        self.broker_dir = self.root / "broker"
        self.server_cert = self.broker_dir / "server.pem"
        self.server_key = self.broker_dir / "server.key"
        self.passwd = PasswordFile(self.broker_dir / "passwd")
        self.crl = self.broker_dir / "crl.pem"
        self.revoked_file = self.broker_dir / "revoked.toml"
        self.edge_dir = self.root / "edge"
        self.console_users = self.root / "console" / "users.toml"

    @property
    def shared_mode(self) -> int:
        """The mode of files a service reads: 0600, or 0644 for containers (see Meta)."""
        return 0o644 if self.meta().container_readable else 0o600

    def role_file(self, role: str) -> Path:
        return self.root / f"{role}.toml"

    @property
    def exists(self) -> bool:
        return self.meta_file.exists() and self.secrets_file.exists()

    def require(self) -> SecurityDir:
        if not self.exists:
            raise SecurityError(
                f"{self.root}: no security directory here; create it with "
                "`runhours credentials init` or `runhours services up --secure`"
            )
        return self

    # -- metadata and secrets ----------------------------------------------------------

    def meta(self) -> Meta:
        data = tomllib.loads(self.meta_file.read_text()) if self.meta_file.exists() else {}
        meta = Meta(**{k: v for k, v in data.items() if k in Meta.__dataclass_fields__})
        meta.ca_file = meta.ca_file or str(self.ca.cert_file)
        return meta

    def write_meta(self, meta: Meta) -> None:
        header = "Where the broker and the database are (runhours credentials); nothing secret."
        write_private(self.meta_file, render_toml(header, asdict(meta)), mode=0o644)

    def secrets(self) -> dict[str, dict[str, str]]:
        """``{"mqtt": {user: password}, "influx": {user: password}, "console": {…}}``."""
        if not self.secrets_file.exists():
            return {}
        data = tomllib.loads(self.secrets_file.read_text())
        return {k: dict(v) for k, v in data.items() if isinstance(v, dict)}

    def write_secrets(self, secrets: dict[str, dict[str, str]]) -> None:
        header = "Generated passwords of this deployment. Keep secret (mode 0600)."
        text = render_toml(header, dict(sorted(secrets.items())))
        write_private(self.secrets_file, text, mode=PRIVATE)

    def ensure_secret(self, group: str, name: str) -> str:
        """The password ``group.name``, generated and saved the first time it is asked for."""
        secrets = self.secrets()
        value = secrets.get(group, {}).get(name)
        if value is None:
            value = new_secret()
            secrets.setdefault(group, {})[name] = value
            self.write_secrets(secrets)
        return value

    def rotate_secret(self, group: str, name: str) -> str:
        secrets = self.secrets()
        value = secrets.setdefault(group, {})[name] = new_secret()
        self.write_secrets(secrets)
        return value

    # -- creating it -----------------------------------------------------------------------

    def init(self, meta: Meta) -> list[str]:
        """Create what is missing (CA, broker certificate, service passwords, role files);
        keep what exists. Returns what it created, for the user."""
        private_dir(self.root)
        private_dir(self.broker_dir)
        # Containers enter these two as another user (Meta.container_readable).
        shared = 0o755 if meta.container_readable else 0o700
        for folder in (self.edge_dir, self.console_users.parent):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(shared)
        created: list[str] = []
        if not self.ca.exists:
            self.ca = CertificateAuthority.create(self.ca.cert_file, self.ca.key_file)
            created.append(f"certificate authority {self.ca.cert_file}")
        if self._server_names() != sorted(meta.broker_names):
            self.ca.issue(
                "runhours broker",
                self.server_cert,
                self.server_key,
                server_names=meta.broker_names,
            )
            created.append(f"broker certificate for {', '.join(meta.broker_names)}")
        if not self.crl.exists():
            self.ca.write_crl(self.revoked_serials(), self.crl)
        self.write_meta(meta)
        for role in ROLES:
            if role.mqtt:
                self._ensure_broker_user(role.name, self.ensure_secret("mqtt", role.name))
            if role.influx:
                self.ensure_secret("influx", role.name)
        if not meta.container_readable:  # containers get theirs from compose (env files)
            self.render_roles()
        if not self.console_users.exists():
            from runhours.security.users import add_user

            password = self.ensure_secret("console", "admin")
            add_user(self.console_users, "admin", "operator", password, mode=self.shared_mode)
            created.append(f"console operator admin (password: {self.secrets_file} [console])")
        return created

    def _server_names(self) -> list[str]:
        if not self.server_cert.exists():
            return []
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(self.server_cert.read_bytes())
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return []
        return sorted(str(getattr(n, "value", n)) for n in names)

    def _ensure_broker_user(self, user: str, password: str) -> None:
        hashed = self.passwd.entries().get(user)
        if hashed is None or not check_password(password, hashed):
            self.passwd.set(user, password)

    def revoked_serials(self) -> list[int]:
        if not self.revoked_file.exists():
            return []
        return [int(s) for s in tomllib.loads(self.revoked_file.read_text()).get("serials", [])]

    # -- the services' settings -------------------------------------------------------------

    def role_settings(self, role: Role) -> dict[str, Any]:
        """The shared settings (``RunhoursSettings`` fields) of one service role."""
        meta, secrets = self.meta(), self.secrets()
        values: dict[str, Any] = {}
        if role.mqtt:
            values["mqtt_url"] = meta.broker_url().replace("://", f"://{role.name}@", 1)
            values["mqtt_password"] = secrets["mqtt"][role.name]
            values["mqtt_ca_file"] = meta.ca_file
        if role.influx:
            values["influx_url"] = meta.influx_url
            values["influx_db"] = meta.influx_db
            values["influx_user"] = role.name
            values["influx_password"] = secrets["influx"][role.name]
        if meta.data_dir:
            values["data_dir"] = meta.data_dir
        return values

    def render_roles(self) -> None:
        """Write ``<role>.toml`` for each role: ``runhours <command> --config <that file>``."""
        for role in ROLES:
            header = (
                f"runhours settings of the {role.name} role ({role.what}).\n"
                "Generated by runhours from secrets.toml; mode 0600: it holds passwords.\n"
                "Environment variables (RUNHOURS_*) override these."
            )
            text = render_toml(header, self.role_settings(role))
            write_private(self.role_file(role.name), text, mode=PRIVATE)
