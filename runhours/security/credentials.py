"""One broker identity per machine: add, rotate, revoke and list them.

A machine's broker user name is its path, ``SITE/LINE/MACHINE``: the broker's ACL
(``deploy/mosquitto/acl``) binds every user to ``runhours/v1/<user name>/…`` with
``pattern`` rules, so a device can publish only its own telemetry and status. The
identity is a password (password file) or a client certificate whose common name is
the user name (mutual TLS); either way the machine's settings file ``edge/SITE/LINE/MACHINE.toml`` is
what the device needs (``runhours edge --config <that file>``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from common.settings import load_settings
from edge.config import EdgeSettings
from edge.mqtt import Broker
from runhours.security.errors import SecurityError
from runhours.security.files import new_secret, render_toml, write_private
from runhours.security.layout import SecurityDir
from runhours.security.mosquitto import reload_broker
from runhours.security.tls import read_certificate
from wire import MachineRef, WireError, validate_id

# Ids that would make a machine's topics collide with the services' own topics.
RESERVED = {
    # runhours/v1/ingest/… (ingest states), …/deadletter/…, …/probe/… (runhours doctor)
    "site": {"ingest", "deadletter", "probe"},
    "line": {"alerts"},  # runhours/v1/<site>/alerts/… belongs to analytics
}

Kind = Literal["password", "certificate"]
_CREATED = re.compile(r"; created (\S+)\.$", re.MULTILINE)


def parse_machine(text: str) -> MachineRef:
    """``SITE/LINE/MACHINE`` → ``MachineRef``; ids checked, reserved ids refused."""
    parts = text.split("/")
    if len(parts) != 3:
        raise SecurityError(
            f"--machine {text!r}: give SITE/LINE/MACHINE, e.g. plant1/line-a/cnc-01"
        )
    ref = MachineRef(*parts)
    for what, value in zip(("site", "line", "machine"), ref, strict=True):
        try:
            validate_id(value, what)
        except WireError as exc:
            raise SecurityError(f"--machine {text!r}: {exc}") from None
        if value in RESERVED.get(what, set()):
            raise SecurityError(
                f"--machine {text!r}: {what} {value!r} is reserved (its topics belong to a "
                "runhours service); choose another id"
            )
    return ref


def user_name(ref: MachineRef) -> str:
    """The broker user name (and certificate common name) of a machine."""
    return f"{ref.site}/{ref.line}/{ref.machine}"


@dataclass(frozen=True)
class MachineCredentials:
    """What ``add`` made, or what ``list`` found."""

    ref: MachineRef
    kind: Kind
    settings_file: Path
    created: str  # RFC 3339, from the settings file

    @property
    def user(self) -> str:
        return user_name(self.ref)


class Machines:
    """The machine identities of one security directory."""

    def __init__(self, security: SecurityDir) -> None:
        self.security = security.require()

    def _stem(self, ref: MachineRef) -> Path:
        # One folder per site and line: ids may contain dots, so no separator is safe.
        return self.security.edge_dir / ref.site / ref.line / ref.machine

    def settings_file(self, ref: MachineRef) -> Path:
        return self._stem(ref).with_name(f"{ref.machine}.toml")

    def cert_files(self, ref: MachineRef) -> tuple[Path, Path]:
        stem = self._stem(ref)
        return stem.with_name(f"{ref.machine}.pem"), stem.with_name(f"{ref.machine}.key")

    def get(self, ref: MachineRef) -> MachineCredentials | None:
        path = self.settings_file(ref)
        if not path.exists():
            return None
        text = path.read_text()
        data = tomllib.loads(text)
        kind: Kind = "certificate" if "mqtt_cert_file" in data else "password"
        created = next((m[1] for m in _CREATED.finditer(text)), "")
        return MachineCredentials(ref, kind, path, created)

    def list(self) -> list[MachineCredentials]:
        found = []
        for path in sorted(self.security.edge_dir.glob("*/*/*.toml")):
            line_dir = path.parent
            entry = self.get(MachineRef(line_dir.parent.name, line_dir.name, path.stem))
            if entry is not None:
                found.append(entry)
        return found

    def add(
        self,
        ref: MachineRef,
        *,
        kind: Kind | None = None,
        replace: bool = False,
        ca_path: str | None = None,
        broker_host: str | None = None,
    ) -> MachineCredentials:
        """Create the machine's identity and its settings file (0600).

        ``kind``: a password or a client certificate (default: a password, or the kind
        it had). ``replace`` rotates an existing identity: the old password stops working
        (the broker reloads) or the old certificate is revoked. ``ca_path`` and
        ``broker_host`` say where the device finds the CA and the broker (default: as
        this host sees them).
        """
        existing = self.get(ref)
        if existing is not None and not replace:
            raise SecurityError(
                f"{user_name(ref)} already has credentials ({existing.kind}, "
                f"{existing.settings_file}); rotate them with `runhours credentials rotate`"
            )
        if existing is not None:
            self._retire(ref, existing.kind)
        kind = kind or (existing.kind if existing is not None else "password")
        meta = self.security.meta()
        if broker_host:
            meta.broker_host = broker_host
        created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        values: dict[str, object] = {}
        if kind == "password":
            password = new_secret()
            self.security.passwd.set(user_name(ref), password)
            user = quote(user_name(ref), safe="")
            values["mqtt_url"] = meta.broker_url().replace("://", f"://{user}@", 1)
            values["mqtt_password"] = password
            values["mqtt_ca_file"] = ca_path or meta.ca_file
        else:
            cert, key = self.cert_files(ref)
            mode = self.security.shared_mode
            self.security.ca.issue(user_name(ref), cert, key, client=True, key_mode=mode)
            values["mqtt_url"] = meta.broker_url(mtls=True)
            values["mqtt_ca_file"] = ca_path or meta.ca_file
            values["mqtt_cert_file"] = str(cert)
            values["mqtt_key_file"] = str(key)
        values["edge"] = {"site": ref.site, "line": ref.line, "machine": ref.machine}
        header = (
            f"Broker identity of machine {user_name(ref)} ({kind}), made by "
            f"`runhours credentials add`; created {created}.\n"
            "Keep it secret (mode 0600): whoever holds it can publish this machine's telemetry.\n"
            "On the device: runhours edge --config <this file> (or merge it into its config)."
        )
        path = write_private(
            self.settings_file(ref), render_toml(header, values), mode=self.security.shared_mode
        )
        return MachineCredentials(ref, kind, path, created)

    def revoke(self, ref: MachineRef) -> MachineCredentials:
        """Remove the machine's identity: its password entry, or its certificate (CRL)."""
        existing = self.get(ref)
        if existing is None:
            # Still make sure no password entry survives (e.g. made by hand).
            if self.security.passwd.remove(user_name(ref)):
                return MachineCredentials(ref, "password", self.settings_file(ref), "")
            raise SecurityError(f"{user_name(ref)} has no credentials here ({self.security.root})")
        self._retire(ref, existing.kind)
        existing.settings_file.unlink()
        return existing

    def _retire(self, ref: MachineRef, kind: Kind) -> None:
        self.security.passwd.remove(user_name(ref))
        cert, key = self.cert_files(ref)
        if kind == "certificate" and cert.exists():
            serials = [*self.security.revoked_serials(), read_certificate(cert)[1]]
            write_private(
                self.security.revoked_file,
                render_toml("Serial numbers of revoked client certificates.", {"serials": serials}),
                mode=0o644,
            )
            self.security.ca.write_crl(serials, self.security.crl)
        cert.unlink(missing_ok=True)
        key.unlink(missing_ok=True)

    def reload(self) -> str:
        """Tell the broker about the change; returns what happened, for the user."""
        meta = self.security.meta()
        if meta.broker_pid_file and reload_broker(Path(meta.broker_pid_file)):
            return "the broker reloaded its password file, ACL and CRL"
        hint = meta.reload_hint or "send the broker SIGHUP (it re-reads its password file and CRL)"
        return f"the change takes effect when the broker reloads: {hint}"


def edge_dir_of(path: Path) -> Path:
    """The folder of machine settings files: ``path`` itself or its ``edge/``."""
    return path / "edge" if (path / "edge").is_dir() else path


def machine_broker(edge_dir: Path, ref: MachineRef, base: Broker) -> Broker:
    """``base`` (the broker's address and CA as this process reaches it) with the identity
    in ``ref``'s settings file under ``edge_dir``: its password, or its client certificate
    (found beside the file when the recorded path is another host's) and mTLS port."""
    path = edge_dir / ref.site / ref.line / f"{ref.machine}.toml"
    if not path.exists():
        raise SecurityError(
            f"{user_name(ref)}: no credentials in {edge_dir} (runhours credentials add "
            f"--machine {user_name(ref)})"
        )
    own = load_settings(EdgeSettings, path).broker
    if own.cert_file is None:
        return replace(base, username=own.username, password=own.password)
    key = own.key_file or path.with_suffix(".key")
    cert, key = ((p if p.exists() else path.with_name(p.name)) for p in (own.cert_file, key))
    return replace(base, port=own.port, username=None, password=None, cert_file=cert, key_file=key)
