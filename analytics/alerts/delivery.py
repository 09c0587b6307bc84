"""Delivering alert transitions: MQTT (retained), InfluxDB (``alerts``), webhook.

Each channel is an ``OutboxWorker`` thread that reads the history after its cursor in
``AlertStore`` and hands every row, in order, to its ``Sender``. A failing send is
retried with exponential backoff until it succeeds (the head row blocks the rows
behind it, which keeps the order); the evaluator only appends to the history and
never waits for a channel.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any, Protocol

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from analytics.alerts.store import AlertStore
from common.backoff import backoff_delay
from common.errors import RunhoursError
from common.redact import scrub, url_origin
from common.settings import RunhoursSettings
from store import InfluxClient, Point
from store.schema import (
    ALERTS,
    FIELD_ALERT_ID,
    FIELD_STATUS,
    FIELD_VALUE,
    TAG_LINE,
    TAG_MACHINE,
    TAG_RULE,
    TAG_SEVERITY,
    TAG_SITE,
)
from wire import alert_topic

log = logging.getLogger("runhours.alerts.delivery")

# The `alerts` measurement's status per transition kind (re-notifications and
# escalations are still "firing", with the current severity).
STATUS = {
    "firing": "firing",
    "escalated": "firing",
    "renotified": "firing",
    "acked": "acked",
    "resolved": "resolved",
}


class DeliveryError(RunhoursError, RuntimeError):
    """A channel could not deliver a transition; it will be retried."""


class Sender(Protocol):
    """Delivers one transition (its JSON body); raises to have it retried."""

    def send(self, seq: int, body: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _epoch_ms(text: str) -> int:
    from datetime import datetime

    from wire import to_epoch_ms

    return to_epoch_ms(datetime.fromisoformat(text))


class InfluxSender:
    """One point per transition in the ``alerts`` measurement (Grafana annotations, tables)."""

    def __init__(self, client: InfluxClient) -> None:
        self.client = client

    def send(self, seq: int, body: dict[str, Any]) -> None:
        alert = body["alert"]
        fields: dict[str, float | str] = {
            FIELD_ALERT_ID: alert["id"],
            FIELD_STATUS: STATUS[body["event"]],
        }
        if alert.get("value") is not None:
            fields[FIELD_VALUE] = float(alert["value"])
        tags = {
            TAG_SITE: alert["site"],
            TAG_LINE: alert["line"],
            TAG_MACHINE: alert["machine"],
            TAG_RULE: alert["rule"],
            TAG_SEVERITY: alert["severity"],
        }
        try:
            self.client.write([Point(ALERTS, tags, fields, _epoch_ms(body["at"]))])
        except Exception as exc:
            raise DeliveryError(f"InfluxDB: {exc}") from exc

    def close(self) -> None:
        pass


class WebhookSender:
    """A JSON POST per transition; any 2xx answer counts as delivered.

    Webhook URLs often carry a token in their path or query: messages (logged, and kept
    as the channel's last error) name only the scheme and host (``shown``).
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.shown = f"webhook {url_origin(url)}"
        self._http = httpx.Client(timeout=timeout)

    def send(self, seq: int, body: dict[str, Any]) -> None:
        try:
            response = self._http.post(
                self.url,
                content=json.dumps(body, separators=(",", ":")).encode(),
                headers={"Content-Type": "application/json", "X-Runhours-Delivery": str(seq)},
            )
        except (httpx.HTTPError, ValueError) as exc:
            reason = scrub(f"{type(exc).__name__}: {exc}", self.url)
            raise DeliveryError(f"{self.shown}: {reason}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"{self.shown} answered {response.status_code}")

    def close(self) -> None:
        self._http.close()


class MqttSender:
    """A retained message per active alert on its alert topic; an empty one clears it."""

    def __init__(self, settings: RunhoursSettings, timeout: float = 10.0) -> None:
        url = settings.mqtt
        self.timeout = timeout
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"runhours-alerts-{os.getpid()}",
            protocol=mqtt.MQTTv5,
        )
        if url.username:
            self._client.username_pw_set(url.username, url.password)
        if (context := settings.mqtt_tls_context()) is not None:
            self._client.tls_set_context(context)
        self._client.reconnect_delay_set(1, 10)
        self._client.connect_async(url.host, url.port)
        self._client.loop_start()

    def send(self, seq: int, body: dict[str, Any]) -> None:
        alert = body["alert"]
        topic = alert_topic(alert["site"], alert["rule"], alert["machine"])
        if alert["state"] == "resolved":
            if body["event"] != "resolved":
                return  # e.g. acked after resolution: nothing active to show
            payload = b""
        else:
            payload = json.dumps(
                {**alert, "event": body["event"], "at": body["at"]}, separators=(",", ":")
            ).encode()
        if not self._client.is_connected():
            raise DeliveryError("MQTT broker not connected")
        info = self._client.publish(topic, payload, qos=1, retain=True)
        try:
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"MQTT publish to {topic}: {exc}") from exc
        if not info.is_published():
            raise DeliveryError(f"MQTT publish to {topic} not acknowledged in {self.timeout} s")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class OutboxWorker:
    """A thread delivering one channel's history rows in order, retrying with backoff."""

    def __init__(
        self,
        store: AlertStore,
        channel: str,
        sender: Sender,
        *,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        poll: float = 0.2,
        from_start: bool = False,
    ) -> None:
        self.store = store
        self.channel = channel
        self.sender = sender
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.poll = poll
        self.delivered = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        store.open_channel(channel, from_start=from_start)
        self._thread = threading.Thread(target=self._run, name=f"outbox-{channel}", daemon=True)

    def start(self) -> OutboxWorker:
        self._thread.start()
        return self

    def wake(self) -> None:
        """New history was committed: look now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.sender.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.store.undelivered(self.channel)
            except Exception:  # the store is busy or gone: try again shortly
                log.exception("outbox %s: reading the history failed", self.channel)
                self._stop.wait(self.poll)
                continue
            if not batch:
                self._wake.wait(self.poll)
                self._wake.clear()
                continue
            for item in batch:
                if self._stop.is_set():
                    return
                try:
                    self.sender.send(item.seq, item.body)
                except Exception as exc:
                    attempts = self.store.failed(self.channel, str(exc))
                    # attempts counts from 1; doubling from base_delay, no jitter (one worker per
                    # channel: nothing to spread).
                    delay = backoff_delay(
                        attempts - 1, self.base_delay, self.max_delay, jitter=False
                    )
                    log.warning(
                        "outbox %s: attempt %d failed (%s); retry in %.1f s",
                        self.channel,
                        attempts,
                        exc,
                        delay,
                    )
                    self._stop.wait(delay)
                    break
                self.store.delivered(self.channel, item.seq)
                self.delivered += 1
