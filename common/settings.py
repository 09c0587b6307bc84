"""Settings every service shares (docs/design.md "Configuration").

Read from a TOML file given by ``--config`` and from ``RUNHOURS_*`` environment
variables, which win. A service adds its own section by subclassing
``RunhoursSettings`` with a nested model (``[edge]`` → ``RUNHOURS_EDGE__FIELD``).
"""

from __future__ import annotations

import ssl
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from pydantic import SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from common.errors import RunhoursError
from common.redact import MASK, masked_url


class SettingsError(RunhoursError, ValueError):
    """A configuration file or variable is invalid; the message names the field."""


@dataclass(frozen=True)
class MqttUrl:
    """A parsed ``mqtt://[user:pass@]host:port`` or ``mqtts://…`` broker URL.

    ``str()`` and ``repr()`` never show the password: see ``masked``.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        shown = masked_url(url)  # error messages name the URL, never its password
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise ValueError(f"{shown!r}: not a URL ({exc})") from None
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"{shown!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"{shown!r}: no host")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ValueError(f"{shown!r}: invalid port") from None
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    @property
    def masked(self) -> str:
        """The URL to show: ``mqtt://ingest:***@broker:1883`` (no password, ever)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = ""
        if self.username is not None:  # quoted: a machine's user name holds slashes
            name = quote(self.username, safe="")
            user = f"{name}:{MASK}@" if self.password else f"{name}@"
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"

    def __str__(self) -> str:
        return self.masked


def tls_context(
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    insecure: bool = False,
) -> ssl.SSLContext:
    """The TLS context of every runhours MQTT client, so a setting means the same to each.

    Trusts ``ca_file`` (else the system CAs), presents ``cert_file``/``key_file`` when given;
    ``insecure`` skips the certificate and host name checks (testing only).
    """
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class RunhoursSettings(BaseSettings):
    """Connection settings shared by every runhours service.

    Secrets are ``SecretStr`` (shown as ``**********``). A password written into
    ``mqtt_url`` moves to ``mqtt_password`` and ``mqtt_url`` keeps ``***`` in its place,
    so the URL can be logged as it is: ``mqtt://ingest:***@broker:1883``.
    """

    model_config = SettingsConfigDict(
        env_prefix="RUNHOURS_",
        env_nested_delimiter="__",
        extra="forbid",
        hide_input_in_errors=True,  # a rejected value may be a secret
    )

    mqtt_url: str = "mqtt://localhost:1883"
    mqtt_password: SecretStr | None = None
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    mqtt_tls_insecure: bool = False
    influx_url: str = "http://localhost:8086"
    influx_db: str = "runhours"
    influx_user: str | None = None
    influx_password: SecretStr | None = None
    influx_token: SecretStr | None = None
    data_dir: Path = Path("./var")

    @model_validator(mode="before")
    @classmethod
    def _password_out_of_url(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("mqtt_url"), str):
            return data
        try:
            url = MqttUrl.parse(data["mqtt_url"])
        except ValueError:
            return data  # the field validator reports it, naming the field
        if url.password is None or url.password == MASK:
            return data
        if data.get("mqtt_password") is not None:
            raise ValueError(
                "mqtt_url carries a password and mqtt_password is set too: give it once"
            )
        return {**data, "mqtt_url": url.masked, "mqtt_password": url.password}

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        MqttUrl.parse(value)
        return value

    @field_validator("influx_url")
    @classmethod
    def _influx_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{masked_url(value)!r}: must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError(
                f"{masked_url(value)!r}: put the credentials in influx_user and "
                "influx_password (or influx_token), not in the URL"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _mqtt_credentials(self) -> RunhoursSettings:
        url = MqttUrl.parse(self.mqtt_url)
        if self.mqtt_password is None:
            if url.password == MASK:
                raise ValueError(
                    "mqtt_url: the password is masked (***); set mqtt_password "
                    "(RUNHOURS_MQTT_PASSWORD) or write the password into the URL"
                )
            return self
        if url.username is None:
            raise ValueError(
                f"mqtt_url {url.masked!r} has no user name for mqtt_password: write "
                "mqtt://USER@host (RUNHOURS_MQTT_URL, if set, wins over the config file)"
            )
        self.mqtt_url = replace(url, password=MASK).masked
        return self

    @property
    def mqtt(self) -> MqttUrl:
        """The broker URL with the real password (for clients; ``str()`` masks it)."""
        url = MqttUrl.parse(self.mqtt_url)
        if url.password not in (None, MASK):  # set without validation (model_copy)
            return url
        secret = self.mqtt_password.get_secret_value() if self.mqtt_password else None
        return replace(url, password=secret)

    def mqtt_tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``mqtts://`` (``None`` for ``mqtt://``); see ``tls_context``."""
        if not self.mqtt.tls:
            return None
        return tls_context(
            self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file, self.mqtt_tls_insecure
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment variables win over the TOML file (passed as init kwargs).
        return (env_settings, init_settings)


S = TypeVar("S", bound=RunhoursSettings)


def describe_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(root)"
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def read_toml(
    path: Path,
    error: type[ValueError] = SettingsError,
    what: str = "file",
    example: str | None = None,
    *,
    parse_float: Callable[[str], Any] = float,
) -> dict[str, Any]:
    """Read a TOML file; a missing or malformed file raises ``error`` naming the file.

    Every runhours file format (settings, contracts, rules) is read through here, so
    they all fail the same way: ``contracts.toml: not valid TOML: … (line 3, column 1)``.
    ``parse_float=decimal.Decimal`` reads every float as an exact decimal (money).
    """
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh, parse_float=parse_float)
    except FileNotFoundError:
        hint = f" (see {example})" if example else ""
        raise error(f"{path}: no such {what}{hint}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def load_settings(cls: type[S], path: Path | None = None, **overrides: Any) -> S:
    """Build settings from ``path`` (TOML, optional), the environment and ``overrides``."""
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**data)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc, str(path or "settings"))) from None
