"""How an edge agent reaches the broker: address, credentials and TLS (``Broker``), and an
asyncio MQTT 5 client (``Client``) that does not mistake a refused publish for a delivered one.

The client is paho-mqtt driven from the running event loop through paho's public API for
external loops (``on_socket_open`` … ``loop_read``/``loop_write``/``loop_misc``), as paho's
own asyncio example does: no thread per connection, so a fleet of thousands of agents runs
in one loop. A publish completes on paho's ``on_publish(client, userdata, mid, reason_code,
properties)`` for its message id, and only when the PUBACK means delivered: a failure reason
code (≥ 0x80: not authorized by the ACL, packet too large, quota exceeded) raises
``PublishRefused``; 0x10 "no matching subscribers" (the broker discarded the message) raises
``NoSubscribers`` when the publish asked for a subscriber (telemetry). The agent then keeps
the samples buffered, reconnects with backoff and resends.

>>> async with Broker.from_url("mqtt://localhost:1883").client("edge-cnc-01") as client:
...     await client.publish(topic, payload, qos=1, require_subscriber=True)
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict, Unpack

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from common.errors import RunhoursError
from common.settings import MqttUrl, RunhoursSettings, tls_context


class MqttError(RunhoursError):
    """The broker cannot be reached, refused the connection, dropped it, or did not answer
    in time; the message says which (the agent keeps its samples and reconnects)."""


class PublishRefused(MqttError):
    """The broker answered a QoS 1 publish with an MQTT 5 failure reason code (PUBACK ≥ 0x80,
    e.g. Not authorized by its ACL, Packet too large, Quota exceeded): nothing was delivered."""


class NoSubscribers(MqttError):
    """The broker answered PUBACK 0x10 "No matching subscribers" and discarded the message:
    nobody, not even an offline persistent session, was there to take it."""


NO_MATCHING_SUBSCRIBERS = 0x10


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSL socket that closes itself when its handshake fails."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


@dataclass(frozen=True)
class Will:
    """The message the broker publishes when the connection ends without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class Message:
    """A message received on a subscription."""

    topic: str
    payload: bytes
    retain: bool


class ClientOptions(TypedDict, total=False):
    """``Client``'s keyword arguments (its defaults apply to those left out)."""

    will: Will | None
    max_inflight: int
    timeout: float
    keepalive: int


class Client:
    """One MQTT 5 connection (clean start, no session expiry: the edge buffer is our state).

    ``async with client:`` connects (``MqttError`` if it cannot) and disconnects cleanly, so
    the broker drops the will. A lost connection fails every operation waiting on it, and
    ends ``messages()``, with ``MqttError``.
    """

    def __init__(
        self,
        broker: Broker,
        identifier: str,
        *,
        will: Will | None = None,
        max_inflight: int = 20,
        timeout: float = 10.0,
        keepalive: int = 30,
    ) -> None:
        self.broker = broker
        self.timeout = timeout  # s: to connect, and for an operation without its own
        self.keepalive = keepalive
        self._paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=identifier,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        if broker.username is not None:
            self._paho.username_pw_set(broker.username, broker.password)
        if (context := broker.tls_context()) is not None:
            # paho leaves a socket open when the TLS handshake fails (a certificate it must
            # refuse): this one closes itself then. sslsocket_class is ssl's documented hook.
            context.sslsocket_class = _ClosingSSLSocket
            self._paho.tls_set_context(context)
        if will is not None:
            self._paho.will_set(will.topic, will.payload, will.qos, will.retain)
        self._paho.max_inflight_messages_set(max_inflight)
        self._paho.connect_timeout = timeout
        self._paho.on_connect = self._on_connect
        self._paho.on_disconnect = self._on_disconnect
        self._paho.on_publish = self._on_publish
        self._paho.on_subscribe = self._on_subscribe
        self._paho.on_message = self._on_message
        self._paho.on_socket_open = self._on_socket_open
        self._paho.on_socket_close = self._on_socket_close
        self._paho.on_socket_register_write = self._on_socket_register_write
        self._paho.on_socket_unregister_write = self._on_socket_unregister_write
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0  # the event loop's thread: paho calls some callbacks from connect's
        self._fd: int | None = None  # the socket we watch for reading
        self._writing = False
        self._misc: asyncio.Task[None] | None = None
        self._connack: asyncio.Future[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}  # mid → its PUBACK or SUBACK
        self._need_subscriber: set[int] = set()
        self._messages: asyncio.Queue[Message | None] = asyncio.Queue()
        self._closed = asyncio.Event()
        self._lost: MqttError | None = None
        self._leaving = False

    # -- the API ---------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.disconnect()

    async def connect(self) -> None:
        """Open the connection and wait for a CONNACK that accepts it."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._connack = self._loop.create_future()
        broker = self.broker
        try:
            # Blocking: the TCP connect and the TLS handshake (up to `timeout`).
            await self._loop.run_in_executor(
                None,
                lambda: self._paho.connect(
                    broker.host, broker.port, self.keepalive, clean_start=True
                ),
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            if (sock := self._paho.socket()) is not None:
                sock.close()  # opened before the failure; paho does not close it
            raise MqttError(str(exc) or type(exc).__name__) from None
        try:
            async with asyncio.timeout(self.timeout):
                await self._connack
        except TimeoutError:
            self._close_socket()
            raise MqttError(f"no CONNACK from {broker.url} within {self.timeout:g} s") from None
        except MqttError:
            self._close_socket()
            raise

    async def disconnect(self) -> None:
        """Send DISCONNECT (the broker then drops the will) and close the socket."""
        if self._paho.socket() is not None and not self._closed.is_set():
            self._leaving = True
            if self._paho.disconnect() == mqtt.MQTT_ERR_SUCCESS:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.timeout):
                        await self._closed.wait()
        self._close_socket()

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,
        require_subscriber: bool = False,
    ) -> None:
        """Publish and wait until the broker has it (the PUBACK at QoS 1, the write at 0);
        raise unless it was delivered (``PublishRefused``, ``NoSubscribers``, ``MqttError``)."""
        self._check()
        info = self._paho.publish(topic, payload, qos, retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise MqttError(f"cannot publish to {topic}: {mqtt.error_string(info.rc)}")
        if require_subscriber:
            self._need_subscriber.add(info.mid)
        await self._answer(info.mid, timeout, "PUBACK")

    async def subscribe(
        self, topic: str, *, qos: int = 1, timeout: float | None = None
    ) -> list[ReasonCode]:
        """Subscribe and wait for the SUBACK; returns its reason codes."""
        self._check()
        rc, mid = self._paho.subscribe(topic, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"cannot subscribe to {topic}: {mqtt.error_string(rc)}")
        codes: list[ReasonCode] = await self._answer(mid, timeout, "SUBACK")
        return codes

    async def messages(self) -> AsyncIterator[Message]:
        """The messages of the subscriptions, in arrival order, until the connection is lost
        (then ``MqttError``) or closed (then the iteration ends)."""
        while True:
            message = await self._messages.get()
            if message is None:
                self._messages.put_nowait(None)  # for the next reader too
                if self._lost is not None:
                    raise self._lost
                return
            yield message

    # -- waiting for the broker's answer ---------------------------------------------------

    def _check(self) -> None:
        if self._lost is not None:
            raise self._lost
        if self._closed.is_set() or self._loop is None:
            raise MqttError(f"not connected to {self.broker.url}")

    async def _answer(self, mid: int, timeout: float | None, what: str) -> Any:
        assert self._loop is not None
        answer = self._loop.create_future()
        self._pending[mid] = answer
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                return await answer
        except TimeoutError:
            raise MqttError(f"no {what} from {self.broker.url} within {limit:g} s") from None
        finally:
            self._pending.pop(mid, None)
            self._need_subscriber.discard(mid)

    def _settle(self, mid: int, result: Any = None, error: MqttError | None = None) -> None:
        answer = self._pending.get(mid)
        if answer is None or answer.done():
            return
        if error is None:
            answer.set_result(result)
        else:
            answer.set_exception(error)

    # -- paho's callbacks (on the loop's thread unless said otherwise) ---------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Any = None,
    ) -> None:
        if self._connack is None or self._connack.done():
            return
        if reason_code.is_failure:
            self._connack.set_exception(
                MqttError(f"the broker {self.broker.url} refused the connection: {reason_code}")
            )
        else:
            self._connack.set_result(None)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Any = None,
    ) -> None:
        if not self._leaving and self._lost is None:
            self._lost = MqttError(f"connection to {self.broker.url} lost: {reason_code}")
        error = self._lost or MqttError(f"disconnected from {self.broker.url}")
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(error)
        for mid in list(self._pending):
            self._settle(mid, error=error)
        self._messages.put_nowait(None)
        self._closed.set()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            self._settle(
                mid,
                error=PublishRefused(
                    f"the broker refused a publish: {reason_code} (check its ACL for this "
                    "client's topics, its message size limit and quotas); samples kept"
                ),
            )
        elif reason_code.value == NO_MATCHING_SUBSCRIBERS and mid in self._need_subscriber:
            self._settle(
                mid,
                error=NoSubscribers(
                    "the broker had no subscriber for the telemetry (PUBACK 0x10) and "
                    "discarded it: is an ingest running? samples kept"
                ),
            )
        else:
            self._settle(mid)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Any,
    ) -> None:
        self._settle(mid, reason_codes)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._messages.put_nowait(Message(message.topic, bytes(message.payload), message.retain))

    # -- the socket in the event loop ------------------------------------------------------

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # From the thread that runs connect(): hand the socket to the loop.
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._watch, sock)

    def _watch(self, sock: Any) -> None:
        current = self._paho.socket()
        if current is None or current is not sock or self._loop is None:
            return  # closed meanwhile
        self._fd = current.fileno()
        self._loop.add_reader(self._fd, self._readable)
        self._misc = self._loop.create_task(self._housekeeping())
        self._want_write()

    def _on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._thread:
            self._want_write()
        else:
            self._loop.call_soon_threadsafe(self._want_write)

    def _want_write(self) -> None:
        if self._fd is not None and not self._writing and self._paho.want_write():
            assert self._loop is not None
            self._loop.add_writer(self._fd, self._writable)
            self._writing = True

    def _on_socket_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if threading.get_ident() == self._thread:
            self._stop_writing()

    def _stop_writing(self) -> None:
        if self._writing and self._fd is not None and self._loop is not None:
            self._loop.remove_writer(self._fd)
        self._writing = False

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # Before paho closes it (so the descriptor is not yet anyone else's).
        if threading.get_ident() == self._thread:
            self._forget_socket()

    def _forget_socket(self) -> None:
        if self._loop is not None and not self._loop.is_closed() and self._fd is not None:
            self._stop_writing()
            self._loop.remove_reader(self._fd)
            if self._misc is not None:
                self._misc.cancel()
        self._fd = None

    def _readable(self) -> None:
        try:
            while True:
                self._paho.loop_read()
                sock = self._paho.socket()
                # TLS may hold decrypted bytes that no longer show on the socket.
                if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                    break
        except Exception as exc:  # a broken connection: the same as a lost one
            self._lose(exc)

    def _writable(self) -> None:
        try:
            self._paho.loop_write()
        except Exception as exc:
            self._lose(exc)
            return
        if not self._paho.want_write():
            self._stop_writing()

    async def _housekeeping(self) -> None:
        """Keepalive pings, and a connection whose pings go unanswered counts as lost."""
        while self._paho.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1)

    def _lose(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = MqttError(f"connection to {self.broker.url} lost: {exc}")
        self._close_socket()

    def _close_socket(self) -> None:
        """Close the socket now, whatever state paho is in (it is not used again)."""
        self._forget_socket()
        sock = self._paho.socket()
        if sock is not None:
            sock.close()
        if not self._closed.is_set():
            self._on_disconnect(self._paho, None, None, ReasonCode(PacketTypes.DISCONNECT))


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
        """The TLS context (``common.settings.tls_context``); ``None`` without TLS."""
        if not self.tls:
            return None
        return tls_context(self.ca_file, self.cert_file, self.key_file, self.tls_insecure)

    def client(self, identifier: str, **options: Unpack[ClientOptions]) -> Client:
        """A fresh client for this broker (connect it with ``async with``)."""
        return Client(self, identifier, **options)
