"""How an edge agent reaches the broker: address, credentials and TLS, as aiomqtt wants them,
and a client that does not mistake a refused publish for a delivered one."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from contract.settings import MqttUrl, RunhoursSettings, tls_context


class PublishRefused(aiomqtt.MqttError):
    """The broker answered a QoS 1 publish with an MQTT 5 failure reason code (PUBACK ≥ 0x80,
    e.g. Not authorized by its ACL, Packet too large, Quota exceeded): nothing was delivered."""


class Client(aiomqtt.Client):
    """aiomqtt's client, except that a refused publish raises ``PublishRefused``.

    aiomqtt (2.5) completes ``publish`` on any PUBACK, whatever its reason code, so a message
    the broker refused would count as delivered and its samples would leave the buffer. Here
    the first refusal fails every publish waiting on this connection and every later one: the
    agent reconnects with backoff and resends them (a resent accepted sample is stored as the
    same point), until the broker accepts them or the buffer's bounds drop them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusal: PublishRefused | None = None
        self._refused = asyncio.Event()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:  # leave the publish pending: ``publish`` raises instead
            if self._refusal is None:
                self._refusal = PublishRefused(
                    f"the broker refused a publish: {reason_code} (check its ACL for this "
                    "client's topics, its message size limit and quotas); samples kept"
                )
            self._refused.set()
            return
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish(self, /, *args: Any, **kwargs: Any) -> None:
        """``aiomqtt.Client.publish``; raises ``PublishRefused`` once the broker refused one."""
        if self._refusal is not None:
            raise self._refusal
        sent = asyncio.ensure_future(super().publish(*args, **kwargs))
        refused = asyncio.ensure_future(self._refused.wait())
        try:
            await asyncio.wait({sent, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
            if not sent.done():
                sent.cancel()
                await asyncio.gather(sent, return_exceptions=True)
        if sent.cancelled():
            raise self._refusal or PublishRefused("the broker refused a publish")
        sent.result()  # accepted, or failed on its own (e.g. timed out)


@dataclass(frozen=True)
class Broker:
    """Broker address and credentials (``mqtt://user:pass@host:port`` or ``mqtts://…``)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
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
        p = settings.mqtt  # mqtt_url shows *** where the password is; this holds it
        return cls(
            p.host,
            p.port,
            p.username,
            p.password,
            p.tls,
            settings.mqtt_ca_file,
            settings.mqtt_cert_file,
            settings.mqtt_key_file,
            settings.mqtt_tls_insecure,
        )

    @property
    def url(self) -> str:
        """The address without credentials, for messages."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context (``contract.settings.tls_context``); ``None`` without TLS."""
        if not self.tls:
            return None
        return tls_context(self.ca_file, self.cert_file, self.key_file, self.tls_insecure)

    def client(
        self,
        identifier: str,
        *,
        will: aiomqtt.Will | None = None,
        max_inflight: int = 20,
        timeout: float = 10.0,
        keepalive: int = 30,
    ) -> Client:
        """A fresh MQTT 5 client (clean start, no session expiry: the edge buffer is our state)."""
        client = Client(
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
            tls_context=self.tls_context(),
        )
        # aiomqtt warns above 10 pending publishes; our window is deliberate.
        client.pending_calls_threshold = max_inflight + 2
        return client
