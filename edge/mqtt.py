"""How an edge agent reaches the broker: address, credentials and TLS, as aiomqtt wants them."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from contract.settings import MqttUrl, RunhoursSettings


@dataclass(frozen=True)
class Broker:
    """Broker address and credentials (``mqtt://user:pass@host:port`` or ``mqtts://…``)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        tls_insecure: bool = False,
    ) -> Broker:
        p = MqttUrl.parse(url)
        return cls(
            p.host,
            p.port,
            p.username,
            p.password,
            p.tls,
            ca_file,
            cert_file,
            key_file,
            tls_insecure,
        )

    @classmethod
    def from_settings(cls, settings: RunhoursSettings) -> Broker:
        return cls.from_url(
            settings.mqtt_url,
            ca_file=settings.mqtt_ca_file,
            cert_file=settings.mqtt_cert_file,
            key_file=settings.mqtt_key_file,
            tls_insecure=settings.mqtt_tls_insecure,
        )

    @property
    def url(self) -> str:
        """The address without credentials, for messages."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def tls_params(self) -> aiomqtt.TLSParameters | None:
        """TLS settings for aiomqtt; system CAs unless ``ca_file`` is given."""
        if not self.tls:
            return None
        return aiomqtt.TLSParameters(
            ca_certs=str(self.ca_file) if self.ca_file else None,
            certfile=str(self.cert_file) if self.cert_file else None,
            keyfile=str(self.key_file) if self.key_file else None,
            cert_reqs=ssl.CERT_NONE if self.tls_insecure else ssl.CERT_REQUIRED,
        )

    def client(
        self,
        identifier: str,
        *,
        will: aiomqtt.Will | None = None,
        max_inflight: int = 20,
        timeout: float = 10.0,
        keepalive: int = 30,
    ) -> aiomqtt.Client:
        """A fresh MQTT 5 client (clean start, no session expiry: the edge buffer is our state)."""
        client = aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
            clean_start=True,
            keepalive=keepalive,
            timeout=timeout,
            max_inflight_messages=max_inflight,
            tls_params=self.tls_params(),
            tls_insecure=self.tls_insecure if self.tls else None,
        )
        # aiomqtt warns above 10 pending publishes; our window is deliberate.
        client.pending_calls_threshold = max_inflight + 2
        return client
