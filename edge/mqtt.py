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


class NoSubscribers(aiomqtt.MqttError):
    """The broker answered PUBACK 0x10 "No matching subscribers" and discarded the message:
    nobody, not even an offline persistent session, was there to take it."""


NO_MATCHING_SUBSCRIBERS = 0x10


class Client(aiomqtt.Client):
    """aiomqtt's client, except that a publish only succeeds when it was delivered.

    aiomqtt (2.5) completes ``publish`` on any PUBACK, whatever its reason code, so a message
    the broker refused (≥ 0x80) or discarded for want of a subscriber (0x10) would count as
    delivered and its samples would leave the buffer. Here ``publish`` raises
    ``PublishRefused`` for the first and, when ``require_subscriber`` is set (telemetry),
    ``NoSubscribers`` for the second; the agent then reconnects with backoff and resends.

    This reaches into aiomqtt 2.5's internals (its paho client, its pending-publish table and
    ``_on_publish``), which is why pyproject.toml pins aiomqtt below 2.6; the tests that
    publish against an ACL and with no subscriber would catch a change.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outcomes: dict[int, aiomqtt.MqttError] = {}  # mid → why it was not delivered
        self._need_subscriber: set[int] = set()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            self._outcomes[mid] = PublishRefused(
                f"the broker refused a publish: {reason_code} (check its ACL for this "
                "client's topics, its message size limit and quotas); samples kept"
            )
        elif reason_code.value == NO_MATCHING_SUBSCRIBERS and mid in self._need_subscriber:
            self._outcomes[mid] = NoSubscribers(
                "the broker had no subscriber for the telemetry (PUBACK 0x10) and discarded "
                "it: is an ingest running? samples kept"
            )
        self._need_subscriber.discard(mid)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish(  # type: ignore[override]
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,
        require_subscriber: bool = False,
    ) -> None:
        """Publish and wait for the PUBACK; raise unless the message was delivered."""
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if qos == 0:
            return
        if require_subscriber:
            self._need_subscriber.add(info.mid)
        confirmation = asyncio.Event()
        try:
            if not info.is_published():
                with self._pending_call(info.mid, confirmation, self._pending_publishes):
                    await self._wait_for(confirmation.wait(), timeout=timeout)
        finally:
            self._need_subscriber.discard(info.mid)
            outcome = self._outcomes.pop(info.mid, None)
        if outcome is not None:
            raise outcome


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
