"""Settings every service shares (DESIGN.md "Configuration").

Read from a TOML file given by ``--config`` and from ``RUNHOURS_*`` environment
variables, which win. A service adds its own section by subclassing
``RunhoursSettings`` with a nested model (``[edge]`` → ``RUNHOURS_EDGE__FIELD``).
"""

from __future__ import annotations

import ssl
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class SettingsError(ValueError):
    """A configuration file or variable is invalid; the message names the field."""


@dataclass(frozen=True)
class MqttUrl:
    """A parsed ``mqtt://[user:pass@]host:port`` or ``mqtts://…`` broker URL."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"{url!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"{url!r}: no host")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ValueError(f"{url!r}: invalid port") from None
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


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
    """Connection settings shared by every runhours service."""

    model_config = SettingsConfigDict(
        env_prefix="RUNHOURS_", env_nested_delimiter="__", extra="forbid"
    )

    mqtt_url: str = "mqtt://localhost:1883"
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    mqtt_tls_insecure: bool = False
    influx_url: str = "http://localhost:8086"
    influx_db: str = "runhours"
    influx_user: str | None = None
    influx_password: str | None = None
    influx_token: str | None = None
    data_dir: Path = Path("./var")

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        MqttUrl.parse(value)
        return value

    @field_validator("influx_url")
    @classmethod
    def _influx_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"{value!r}: must be an http:// or https:// URL")
        return value.rstrip("/")

    @property
    def mqtt(self) -> MqttUrl:
        return MqttUrl.parse(self.mqtt_url)

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
