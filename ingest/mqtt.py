"""The paho-mqtt client the ingest uses: MQTT 5, persistent session, manual acks.

paho-mqtt is used directly (not aiomqtt) because acknowledging a message only after
its points were written needs ``manual_ack=True`` and ``Client.ack(mid, qos)``.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.config import IngestSettings
from wire import status_subscription, telemetry_subscription
from wire.sparkplug import data_subscriptions

# The broker's own counters (Mosquitto): messages it dropped (queue limits), and its uptime
# (which falls when it restarts). Read when the broker's ACL allows; nothing depends on them
# but the likely cause named beside a sequence gap.
SYS_TOPICS = ("$SYS/broker/publish/messages/dropped", "$SYS/broker/uptime")


def connect_properties(max_inflight: int, session_expiry: int) -> Properties:
    """CONNECT properties: how long the broker keeps our session, and our in-flight window.

    Receive Maximum is the number of QoS 1 messages the broker may have sent us without
    our PUBACK; as we ack only after writing, it bounds what we hold in memory.
    """
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry
    props.ReceiveMaximum = max_inflight
    return props


def subscriptions(
    site: str, share_group: str | None, sparkplug_group: str | None = None
) -> list[tuple[str, SubscribeOptions]]:
    """Telemetry (shared when a group is set) and status (every worker: statuses are few,
    retained, and rewriting the same status point is harmless); with ``sparkplug_group``
    also Sparkplug B node and device messages (delivered at the QoS they were sent with:
    Sparkplug data is QoS 0, its deaths QoS 1)."""
    sparkplug = [] if sparkplug_group is None else data_subscriptions(sparkplug_group)
    return [
        *((f, SubscribeOptions(qos=1)) for f in sparkplug),
        (telemetry_subscription(share_group, site=site), SubscribeOptions(qos=1)),
        # retainHandling=1: retained statuses only when the subscription is new, not
        # again on every reconnect of a resumed session.
        (status_subscription(site), SubscribeOptions(qos=1, retainHandling=1)),
    ]


def make_client(settings: IngestSettings) -> mqtt.Client:
    """A configured (not yet connected) client: credentials, TLS, reconnect delays."""
    options = settings.ingest
    url = settings.mqtt
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=options.client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    if url.username is not None:
        client.username_pw_set(url.username, url.password)
    if (tls := settings.mqtt_tls_context()) is not None:
        client.tls_set_context(tls)
    client.reconnect_delay_set(options.reconnect_min_delay, options.reconnect_max_delay)
    # Dead letters are the only messages we publish; let a few be in flight at once.
    client.max_inflight_messages_set(100)
    return client
