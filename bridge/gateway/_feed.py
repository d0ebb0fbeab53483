"""The gateway's one MQTT connection: the bridge's results in, read-only (docs/gateway.md).

A reconnect loop around aiomqtt's client (aiomqtt 2.x: MQTT 3.1.1, clean session, nothing
kept by the broker; QoS 0, so no acknowledgement to send per message: what a dropped
connection loses is sent on from the retained history when it is back). At each connect it
subscribes to the live result topics and, until their retained messages have stopped
arriving, to ``history`` too: that is how a new or restarted gateway learns what it needs to
replay, and how samples published while it was cut off from the broker are sent on. While
the broker is away every client is told ``broker unavailable``; the feed resumes by itself
when it returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import uuid
from typing import Any, Final

import aiomqtt

from bridge.config import Settings
from bridge.errors import BrokerUnavailable
from bridge.gateway._hub import Hub
from bridge.gateway._protocol import error_message
from bridge.gateway._state import Characteristics, sample_id_of
from bridge.gateway._topics import AT_CONNECT, HISTORY, filters, parse_topic

__all__ = ["BROKER_UNAVAILABLE", "BrokerRefused", "Feed"]

log = logging.getLogger("openspc.gateway")

BROKER_UNAVAILABLE: Final = error_message("broker unavailable")
SETTLE_S: Final = 0.3
"""The retained messages are in once none arrived for this long after the SUBACK."""
SETTLE_MAX_S: Final = 15.0
BACKOFF_S: Final = (0.5, 10.0)  # first and longest wait between connection attempts
MAX_QUEUED: Final = 100_000  # aiomqtt's inbound queue (it drops beyond, with a warning)
_REFUSED_CODES: Final = {4, 5, 134, 135}  # bad user name or password, not authorized


class BrokerRefused(BrokerUnavailable):
    """The broker refused the gateway's credentials, or its subscription, at start-up."""

    def __init__(self, host: str, port: int, reason: str = "") -> None:
        super().__init__(host, port, reason)
        self.args = (f"MQTT broker {host}:{port} refused the gateway: {reason}",)


def _code(value: Any) -> int:
    return int(getattr(value, "value", value))


def _envelope(raw: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("payload"), dict):
        return None
    return message


class Feed:
    """Reads the bridge's results and hands them to the hub and the state."""

    def __init__(self, settings: Settings, hub: Hub, characteristics: Characteristics) -> None:
        self.settings = settings
        self.hub = hub
        self.chars = characteristics
        self.prefix = settings.bridge.topic_prefix
        self.ready = asyncio.Event()  # the first connection's retained messages are in
        self.connected = False
        self.down = False  # a connection attempt failed, or the connection was lost
        self._ever_connected = False
        self._last_retained = 0.0
        self._loop = asyncio.get_running_loop()
        self.received = 0

    # --- connection ----------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        broker = self.settings.broker
        gateway = self.settings.gateway
        return aiomqtt.Client(
            broker.host,
            broker.port,
            username=gateway.username,
            password=gateway.password if gateway.username is not None else None,
            identifier=f"openspc-gateway-{uuid.uuid4().hex[:12]}",
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=True,
            keepalive=broker.keepalive,
            timeout=10,
            max_queued_incoming_messages=MAX_QUEUED,
            tls_context=ssl.create_default_context() if broker.tls else None,
        )

    async def run(self) -> None:
        """Forever (cancel to stop). Raises :class:`BrokerRefused` when the broker refuses
        the first connection's credentials or subscription; later refusals are retried."""
        delay = BACKOFF_S[0]
        while True:
            try:
                async with self._client() as client:
                    await self._subscribe(client)
                    delay = BACKOFF_S[0]
                    self._up()
                    settle = asyncio.create_task(self._settle(client), name="gateway-settle")
                    try:
                        async for message in client.messages:
                            self._take(message)
                    finally:
                        settle.cancel()
            except aiomqtt.MqttError as exc:
                self._refused_at_start(exc)
                self._lost(str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_S[1])

    def _refused_at_start(self, exc: aiomqtt.MqttError) -> None:
        if self._ever_connected or not isinstance(exc, aiomqtt.MqttCodeError):
            return
        if exc.rc is not None and _code(exc.rc) in _REFUSED_CODES:
            broker = self.settings.broker
            who = self.settings.gateway.username
            user = f"user {who!r}" if who is not None else "an anonymous client"
            raise BrokerRefused(broker.host, broker.port, f"{exc} (connecting as {user})")

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        topics = filters(self.prefix, AT_CONNECT)
        self._last_retained = self._loop.time()
        granted = await client.subscribe([(topic, 0) for topic in topics])
        refused = [t for t, code in zip(topics, granted, strict=False) if _code(code) >= 0x80]
        if refused and not self._ever_connected:
            broker = self.settings.broker
            raise BrokerRefused(broker.host, broker.port, f"may not read {', '.join(refused)}")
        if refused:
            log.error("the broker refused the subscription to %s", ", ".join(refused))

    async def _settle(self, client: aiomqtt.Client) -> None:
        started = self._loop.time()
        while True:
            await asyncio.sleep(SETTLE_S / 3)
            now = self._loop.time()
            if now - self._last_retained >= SETTLE_S or now - started >= SETTLE_MAX_S:
                break
        try:
            await client.unsubscribe(filters(self.prefix, (HISTORY,)))
        except aiomqtt.MqttError:
            return  # the connection is going: the next one subscribes afresh
        self.ready.set()
        known = sum(1 for s in self.chars.states.values() if s.known)
        log.info("retained state in: %d characteristics announced by the bridge", known)

    def _up(self) -> None:
        broker = self.settings.broker
        log.info("connected to the broker %s:%d", broker.host, broker.port)
        self.connected = True
        self.down = False
        self._ever_connected = True

    def _lost(self, why: str) -> None:
        was = self.connected
        first = not self.down
        self.connected = False
        self.down = True
        broker = self.settings.broker
        if was or first:
            log.warning("broker %s:%d unavailable: %s", broker.host, broker.port, why)
            self.hub.to_all(BROKER_UNAVAILABLE)
        else:
            log.debug("broker %s:%d still unavailable: %s", broker.host, broker.port, why)

    # --- messages ------------------------------------------------------------------------

    def _take(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
        if message.retain:
            self._last_retained = self._loop.time()
        self.received += 1
        self.on_message(str(message.topic), raw, bool(message.retain))

    def on_message(self, topic: str, raw: bytes, retained: bool = False) -> None:  # noqa: C901  routes every message the gateway hears
        """Route one message from the broker (parsed once, passed on as it came)."""
        parsed = parse_topic(self.prefix, topic)
        if parsed is None:
            return
        cid, kind = parsed
        if kind == "meta":
            self.chars.on_meta(cid, raw)
        elif kind == "limits":
            if self.chars.on_limits(cid, raw):
                self.hub.to_subscribers(cid, raw)
        elif not raw:
            return  # a retained message cleared
        elif kind == "ack":
            self.hub.to_all(raw)
        elif (message := _envelope(raw)) is None:
            log.debug("not an envelope on %s: ignored", topic)
        elif kind == "sample":
            sample_id = sample_id_of(message["payload"])
            if sample_id is not None and self.chars.on_sample(cid, sample_id, raw, retained):
                self.hub.sample(cid, raw)
        elif kind == "violation":
            self.hub.violation(cid, message["payload"].get("severity"), raw)
        elif kind == HISTORY:
            samples = message["payload"].get("samples")
            if isinstance(samples, list):
                for missed in self.chars.on_history(cid, samples):
                    self.hub.sample(cid, missed)
