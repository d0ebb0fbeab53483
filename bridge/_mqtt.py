"""A small typed asyncio adapter around paho-mqtt 2.x (MQTT 5, QoS 1, manual acks).

Why not aiomqtt: aiomqtt 2.x acknowledges QoS 1 messages as soon as they arrive, and the
bridge must not acknowledge a reading before it is durably stored. So:

- paho's network loop runs in its own thread (``loop_start``) and reconnects with back-off;
- every message is appended to an :class:`Inbox` (a deque, thread-safe for append/popleft)
  and the asyncio side is woken with ``call_soon_threadsafe`` only when it is waiting;
- the pipeline calls :meth:`MqttClient.ack` after the batch that held the message committed;
  a message received on an earlier connection is never acked on a later one (its ``mid``
  means nothing there; the broker redelivers it from the persistent session);
- back-pressure on QoS 1 is MQTT 5's Receive Maximum: the broker sends no more than that
  many unacknowledged messages, so a stalled pipeline makes the broker queue;
- ``publish`` is paho's (thread-safe, non-blocking); :meth:`MqttClient.wait_window` keeps
  the number of unacknowledged QoS 1 publishes under ``window``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.errors import BrokerUnavailable

__all__ = ["Inbound", "Inbox", "MqttClient", "MqttOptions"]

log = logging.getLogger("openspc.mqtt")

SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(slots=True)
class Inbound:
    """One received MQTT message, as the pipeline sees it."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int
    received_at: datetime
    received: float  # time.monotonic() at receipt
    response_topic: str | None = None
    correlation_data: bytes | None = None


class Inbox:
    """A bounded FIFO filled from any thread, drained by one asyncio consumer."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._items: deque[Any] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()
        self._wake_pending = False
        self.dropped = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any, *, droppable: bool = False) -> bool:
        """Add an item (from any thread). A droppable item (QoS 0) is dropped when full."""
        if droppable and len(self._items) >= self.maxlen:
            self.dropped += 1
            return False
        self._items.append(item)
        if not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            # the loop may be closed already when we are shutting down
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._event.set)
        return True

    def wake(self) -> None:
        """Wake the consumer (from the loop's thread), e.g. to notice a stop request."""
        self._event.set()

    async def take(
        self, max_items: int, max_wait: float, stop: asyncio.Event | None = None
    ) -> list[Any]:
        """Wait for at least one item; then gather up to ``max_items``, waiting at most
        ``max_wait`` seconds for more. Returns [] when ``stop`` is set and nothing is queued."""
        while not self._items:
            if stop is not None and stop.is_set():
                return []
            self._wake_pending = False
            self._event.clear()
            if self._items:
                break
            await self._event.wait()
        if len(self._items) < max_items and max_wait > 0:
            deadline = time.monotonic() + max_wait
            while len(self._items) < max_items:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    break
                self._wake_pending = False
                self._event.clear()
                try:
                    await asyncio.wait_for(self._event.wait(), remaining)
                except TimeoutError:
                    break
        count = min(max_items, len(self._items))
        return [self._items.popleft() for _ in range(count)]


@dataclass
class MqttOptions:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: bool = False
    keepalive: int = 60
    receive_maximum: int = 10_000
    window: int = 10_000
    will_topic: str | None = None
    will_payload: bytes = b""
    subscriptions: Sequence[str] = field(default_factory=tuple)


class MqttClient:
    """The bridge's one MQTT connection. ``start()``, then ``ack``/``publish``, ``stop()``."""

    def __init__(self, options: MqttOptions, inbox: Inbox) -> None:
        self.options = options
        self.inbox = inbox
        self.generation = 0
        self.connected = asyncio.Event()
        self.subscribed = asyncio.Event()  # set on the first SUBACK after each connect
        self.on_connect: Callable[[], None] | None = None  # called in paho's thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._published = 0  # QoS>0 publishes handed to paho (asyncio thread only)
        self._completed = 0  # of which acknowledged (paho thread only)
        self._filters: list[str] = list(options.subscriptions)
        self.last_error: str = ""
        self.aborted = False
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if options.username:
            client.username_pw_set(options.username, options.password)
        if options.tls:
            client.tls_set()
        if options.will_topic:
            client.will_set(options.will_topic, options.will_payload, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        self._client = client

    # --- paho thread ------------------------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.last_error = str(reason_code)
            log.warning("broker refused the connection: %s", reason_code)
            return
        self.generation += 1
        log.info(
            "connected to %s:%s (session present: %s)",
            self.options.host,
            self.options.port,
            flags.session_present,
        )
        if self._filters:
            client.subscribe([(f, SubscribeOptions(qos=1)) for f in self._filters])
        if self.on_connect is not None:
            self.on_connect()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.connected.set)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.connected.clear)
            self._loop.call_soon_threadsafe(self.subscribed.clear)
        if reason_code.value != 0:
            log.warning("disconnected from the broker: %s; reconnecting", reason_code)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        self.inbox.put(
            Inbound(
                topic=message.topic,
                payload=bytes(message.payload),
                qos=message.qos,
                mid=message.mid,
                generation=self.generation,
                received_at=datetime.now(UTC),
                received=time.monotonic(),
                response_topic=response_topic,
                correlation_data=correlation,
            ),
            droppable=message.qos == 0,
        )

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker refused subscriptions: %s", ", ".join(failed))
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.subscribed.set)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._completed += 1

    # --- asyncio side -----------------------------------------------------------------

    def add_subscription(self, topic_filter: str) -> None:
        """Subscribe now (if connected) and on every later connect."""
        if topic_filter in self._filters:
            return
        self._filters.append(topic_filter)
        if self._client.is_connected():
            self._client.subscribe(topic_filter, options=SubscribeOptions(qos=1))

    async def start(self, wait_s: float | None = None) -> None:
        """Connect in the background; with ``wait_s``, wait that long for the first CONNACK."""
        self._loop = asyncio.get_running_loop()
        self.inbox.bind(self._loop)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: no hints
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = max(1, min(65_535, self.options.receive_maximum))
        self._client.connect_async(
            self.options.host,
            self.options.port,
            keepalive=self.options.keepalive,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()
        if wait_s is not None:
            try:
                await asyncio.wait_for(self.connected.wait(), wait_s)
            except TimeoutError:
                raise BrokerUnavailable(
                    self.options.host, self.options.port, self.last_error or "no answer"
                ) from None

    def ack(self, message: Inbound) -> None:
        if message.qos == 0 or message.generation != self.generation:
            return
        self._client.ack(message.mid, message.qos)

    @property
    def outstanding(self) -> int:
        return self._published - self._completed

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        if self.aborted:
            return
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            if qos > 0:
                self._published += 1
        else:
            log.warning("publish to %s failed: %s", topic, paho.error_string(info.rc))

    def reply(self, message: Inbound, payload: bytes) -> None:
        """Answer an MQTT 5 request on its response topic, with its correlation data."""
        if not message.response_topic:
            return
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho: no hints
        if message.correlation_data is not None:
            props.CorrelationData = message.correlation_data
        self.publish(message.response_topic, payload, qos=1, properties=props)

    async def wait_window(self) -> None:
        """Wait while more than ``window`` QoS 1 publishes are unacknowledged."""
        # ASYNC110 allowed: the count is moved by paho's thread; polling is cheaper than waking
        # the loop from paho on every PUBACK, and only happens under back-pressure
        while self.outstanding > self.options.window and self._client.is_connected():  # noqa: ASYNC110
            await asyncio.sleep(0.002)

    async def flush(self, wait_s: float) -> bool:
        """Wait until every QoS 1 publish is acknowledged (or ``wait_s`` seconds)."""
        deadline = time.monotonic() + wait_s
        while self.outstanding > 0 and time.monotonic() < deadline:
            if not self._client.is_connected():
                return False
            await asyncio.sleep(0.005)
        return self.outstanding <= 0

    async def stop(self) -> None:
        """Disconnect cleanly (no Last Will) and stop paho's thread."""
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self.connected.clear()

    def abort(self) -> None:
        """Drop the connection without DISCONNECT (the broker sends the Last Will); tests."""
        self.aborted = True
        self._client.loop_stop()
        sock = self._client.socket()
        if sock is not None:
            sock.close()
