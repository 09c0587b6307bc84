"""The ingest as a Sparkplug 3.0 primary host: its retained STATE, on a connection of its own.

Sparkplug edge nodes that name a primary host publish only while its STATE
(``spBv1.0/STATE/<host_id>``, retained, QoS 1) says ``{"online": true, "timestamp": T}``,
and its will says offline with the same ``T``. MQTT gives one will per connection and the
worker's main connection already carries the runhours ingest state, so STATE has its own
small connection, following the worker: online once the worker's subscriptions stand (and
its InfluxDB takes writes), offline when it loses the broker, stops, or holds the edges.
Going online again opens a new connection, so that the will is always dated like the
online STATE it would contradict (receivers keep the newest timestamp).
"""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest.config import IngestSettings
from wire.sparkplug import encode_state, state_topic

log = logging.getLogger(__name__)


class SparkplugHost:
    """``announce(online)`` from any thread; ``close()`` at the end (offline first)."""

    def __init__(self, settings: IngestSettings) -> None:
        self._settings = settings
        self.topic = state_topic(settings.ingest.sparkplug.host_id)
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._timestamp = 0
        self.online = False

    def announce(self, online: bool) -> None:
        with self._lock:
            if online and self._client is None:
                self._connect()
            elif not online and self._client is not None:
                self._disconnect()

    def close(self) -> None:
        self.announce(False)

    def _connect(self) -> None:
        settings = self._settings
        url = settings.mqtt
        self._timestamp = max(time.time_ns() // 1_000_000, self._timestamp + 1)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{settings.ingest.client_id}-sparkplug-host",
            protocol=mqtt.MQTTv5,
        )
        if url.username is not None:
            client.username_pw_set(url.username, url.password)
        if (tls := settings.mqtt_tls_context()) is not None:
            client.tls_set_context(tls)
        client.will_set(self.topic, encode_state(False, self._timestamp), qos=1, retain=True)
        stamp = self._timestamp

        def on_connect(c: mqtt.Client, _u: object, _f: object, code: object, _p: object) -> None:
            if getattr(code, "is_failure", False):
                log.error("Sparkplug STATE connection refused: %s", code)
                return
            c.publish(self.topic, encode_state(True, stamp), qos=1, retain=True)
            self.online = True
            log.info("Sparkplug primary host %s online", self.topic)

        client.on_connect = on_connect
        client.connect_async(url.host, url.port, keepalive=settings.ingest.keepalive)
        client.loop_start()
        self._client = client

    def _disconnect(self) -> None:
        client = self._client
        assert client is not None
        self._client = None
        if client.is_connected():
            info = client.publish(
                self.topic, encode_state(False, self._timestamp), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout=5)
            except (ValueError, RuntimeError) as exc:
                log.warning("could not announce the Sparkplug host offline: %s", exc)
        client.disconnect()
        client.loop_stop()
        self.online = False
