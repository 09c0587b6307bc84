"""``runhours doctor``: is a running deployment able to keep its promises?

Each check talks to the real broker or database with the configured credentials and says
``ok``, ``warn`` (data is at risk) or ``fail`` (data is not flowing). The broker's queue is
probed, not assumed: an offline persistent session is sent a burst of messages, and what
the broker keeps for it is what it will keep for the ingest in an outage.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from common.settings import RunhoursSettings
from store import InfluxClient, InfluxError, InfluxForbidden
from wire import (
    INGEST_STATE_SUBSCRIPTION,
    ROOT,
    WireError,
    decode_ingest_state,
    parse_ingest_state_topic,
)

Status = Literal["ok", "warn", "fail"]
PROBE_ROOT = f"{ROOT}/probe"  # the queue probe's own topics (docs/deploy.md, the ACL)
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


class _Client:
    """A small synchronous paho MQTT 5 client for the probes."""

    def __init__(
        self, settings: RunhoursSettings, client_id: str, *, clean: bool, expiry: int = 0
    ) -> None:
        url = settings.mqtt
        self.received: list[mqtt.MQTTMessage] = []
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        self.error: str | None = None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if url.username is not None:
            self.client.username_pw_set(url.username, url.password)
        if (tls := settings.mqtt_tls_context()) is not None:
            self.client.tls_set_context(tls)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.received.append(m)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = expiry
        self.client.connect_async(url.host, url.port, clean_start=clean, properties=props)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.error = f"the broker refused the connection: {reason}"
        self.connected.set()

    def wait(self, timeout: float = 10) -> str | None:
        """None when connected, else why not."""
        if not self.connected.wait(timeout):
            return "no answer from the broker"
        return self.error

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _until(condition: Callable[[], bool], timeout: float) -> None:
    """Wait for ``condition``, or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def check_influx(settings: RunhoursSettings) -> Check:
    try:
        with InfluxClient.from_settings(settings) as client:
            client.query("SHOW MEASUREMENTS LIMIT 1")
    except InfluxForbidden:  # valid credentials: the ingest's account writes, never reads
        return Check(
            "InfluxDB",
            "ok",
            f"{settings.influx_url}, database {settings.influx_db!r} "
            f"(user {settings.influx_user!r} may write it, not read it)",
        )
    except InfluxError as exc:
        return Check("InfluxDB", "fail", str(exc))
    return Check("InfluxDB", "ok", f"{settings.influx_url}, database {settings.influx_db!r}")


def check_broker(settings: RunhoursSettings) -> list[Check]:
    """Reachable; which ingest workers are online; the broker's own drop counter."""
    name = f"runhours-doctor-{uuid.uuid4().hex[:8]}"
    probe = _Client(settings, name, clean=True)
    try:
        if (error := probe.wait()) is not None:
            return [Check("broker", "fail", error)]
        checks = [Check("broker", "ok", f"{settings.mqtt.host}:{settings.mqtt.port}")]
        probe.client.subscribe([(INGEST_STATE_SUBSCRIPTION, 1), (SYS_DROPPED, 0)])
        _until(probe.subscribed.is_set, 5)
        _until(lambda: False, 1.5)  # retained states and one $SYS period, if quick
        online: list[str] = []
        offline: list[str] = []
        dropped: int | None = None
        for message in probe.received:
            if message.topic == SYS_DROPPED:
                dropped = int(message.payload.split()[0])
                continue
            try:
                worker = parse_ingest_state_topic(message.topic)
                state = decode_ingest_state(bytes(message.payload))
            except (WireError, ValueError):
                continue
            (online if state.online else offline).append(f"{worker} (site {state.site})")
        if online:
            checks.append(Check("ingest", "ok", "online: " + ", ".join(sorted(online))))
        else:
            gone = f"; offline: {', '.join(sorted(offline))}" if offline else ""
            checks.append(
                Check("ingest", "warn", f"no ingest worker online: edge agents hold{gone}")
            )
        if dropped:
            checks.append(
                Check(
                    "broker drops",
                    "warn",
                    f"the broker has dropped {dropped} messages since it started ({SYS_DROPPED})"
                    "; see docs/deploy.md for queue limits",
                )
            )
        elif dropped == 0:
            checks.append(Check("broker drops", "ok", "none since the broker started"))
        return checks
    finally:
        probe.close()


def probe_queue(settings: RunhoursSettings, burst: int) -> Check:
    """Send ``burst`` QoS 1 messages to an offline persistent session and count what the
    broker kept for it: below ``burst``, its queue limit drops data in an outage."""
    nonce = uuid.uuid4().hex[:8]
    topic = f"{PROBE_ROOT}/{nonce}"
    sub_id, pub_id = f"runhours-probe-sub-{nonce}", f"runhours-probe-pub-{nonce}"
    sub = _Client(settings, sub_id, clean=True, expiry=120)
    if (error := sub.wait()) is not None:
        return Check("broker queue", "fail", error)
    sub.client.subscribe(topic, qos=1)
    _until(sub.subscribed.is_set, 5)
    sub.close()  # the session stays, offline, with its subscription
    pub = _Client(settings, pub_id, clean=True)
    try:
        if (error := pub.wait()) is not None:
            return Check("broker queue", "fail", error)
        infos = [pub.client.publish(topic, b"x" * 64, qos=1) for _ in range(burst)]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        pub.close()
    again = _Client(settings, sub_id, clean=False, expiry=0)  # resume, then let it expire
    try:
        if (error := again.wait()) is not None:
            return Check("broker queue", "fail", error)
        last = [-1, time.monotonic()]

        def settled() -> bool:
            n = len(again.received)
            if n != last[0]:
                last[:] = [n, time.monotonic()]
            return n >= burst or time.monotonic() - float(last[1]) > 2.0

        _until(settled, 60)
        kept = len(again.received)
    finally:
        again.close()
    if kept < burst:
        return Check(
            "broker queue",
            "warn",
            f"the broker kept {kept} of {burst} messages for an offline session: its queue "
            f"limit (max_queued_messages/max_queued_bytes) drops a burst or outage beyond "
            "that; see docs/deploy.md for the sizing",
        )
    return Check("broker queue", "ok", f"kept all {burst} messages for an offline session")


def check_delivery(settings: RunhoursSettings, since: timedelta) -> Check:
    from ingest.status import delivery_status

    start = datetime.now(UTC) - since
    try:
        with InfluxClient.from_settings(settings) as client:
            machines, _ = delivery_status(client, start)
    except InfluxForbidden:
        return Check(
            "delivery",
            "warn",
            f"not checked: user {settings.influx_user!r} may not read the database (the "
            "ingest's account only writes); run the doctor again with an account that reads "
            "it, e.g. RUNHOURS_INFLUX_USER=analytics and its password (docs/security.md)",
        )
    except InfluxError as exc:
        return Check("delivery", "fail", str(exc))
    lost = [m for m in machines if m.troubled]
    if not lost:
        return Check("delivery", "ok", f"nothing lost by {len(machines)} machines")
    samples = sum(m.lost_samples or 0 for m in lost)
    dropped = sum(m.edge_dropped for m in lost)
    return Check(
        "delivery",
        "warn",
        f"{len(lost)} machines lost data: {samples} samples in transit, {dropped} dropped "
        "at the edge (`runhours ingest status`)",
    )


def run_checks(settings: RunhoursSettings, burst: int, since: timedelta) -> list[Check]:
    checks = [check_influx(settings), *check_broker(settings)]
    if burst and checks[1].status == "ok":
        checks.append(probe_queue(settings, burst))
    if checks[0].status == "ok":
        checks.append(check_delivery(settings, since))
    return checks
