"""The bridge's link as three MQTT connections: readings, events, state (docs/bridge.md,
"Three connections").

One connection that reads and publishes ties the two together: the PUBACKs of the bridge's
publishes arrive behind the readings the broker sends, so under overload the bridge must read
on (and hold readings) to learn that its publishes were taken, and the retained history it
sends within its byte budget waits in the same socket in front of the next ``sample``.
:class:`SplitLink` keeps one :class:`~bridge._mqtt.MqttClient` per job, each with a client id
of its own under the bridge's (``<client_id>-events``, ``<client_id>-state``, reserved for the
bridge's user by the guard plugin like the partitions' ids):

- **readings** (the bridge's ``client_id``): subscriptions, the persistent session that
  queues readings while the bridge is away, the PUBACKs of readings (after commit), the
  retained status with its Last Will. Past ``buffer_max`` unacknowledged readings it stops
  reading the socket and never has to read on: nothing it waits for is behind the readings.
- **events**: ``sample``, ``violation``, ``ack``, replies, errors; in order, never dropped.
  The pipeline waits while more than ``outbound_max`` of them are outstanding.
- **state**: retained state published with ``coalesce=True`` (``history``, ``alarms``,
  ``limits``, ``meta``, ``causes``): a newer message of a topic replaces one still held.

Events and state keep their own order each; between them, as between any two topics, MQTT
promises none (a retained ``history`` already trails the live samples by design).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from bridge._mqtt import MqttClient, MqttOptions
from bridge.errors import ClientIdInUse
from bridge.pipeline import AckTracker, Inbound, Inbox


def publishing_options(readings: MqttOptions, role: str) -> MqttOptions:
    """The options of a publishing connection: the readings connection's broker and user,
    its own client id, no subscriptions, no status topic, the lean path for its PUBACKs."""
    return replace(
        readings,
        client_id=f"{readings.client_id}-{role}",
        role=role,
        status_topic=None,
        status_payload=None,
        subscriptions=(),
        receive_maximum=16,  # it subscribes to nothing
        lean_inbound=True,
    )


class SplitLink:
    """A :class:`~bridge.ports.BrokerLink` over three connections (module docstring)."""

    def __init__(self, readings: MqttClient, events: MqttClient, state: MqttClient) -> None:
        self.readings = readings
        self.events = events
        self.state = state
        self._publishing = (events, state)
        self._all = (readings, events, state)

    @classmethod
    def from_options(cls, options: MqttOptions, inbox: Inbox) -> SplitLink:
        return cls(
            MqttClient(options, inbox),
            MqttClient(publishing_options(options, "events"), Inbox(16)),
            MqttClient(publishing_options(options, "state"), Inbox(16)),
        )

    # --- the readings connection's: reading, acks, subscriptions, status ---------------

    @property
    def options(self) -> MqttOptions:
        return self.readings.options

    @property
    def inbox(self) -> Inbox:
        return self.readings.inbox

    @property
    def acks(self) -> AckTracker:
        return self.readings.acks

    @property
    def connected(self) -> asyncio.Event:
        return self.readings.connected

    @property
    def disconnected(self) -> asyncio.Event:
        return self.readings.disconnected

    @property
    def subscribed(self) -> asyncio.Event:
        return self.readings.subscribed

    @property
    def status_checked(self) -> asyncio.Event:
        return self.readings.status_checked

    @property
    def fatal(self) -> asyncio.Event:
        return self.readings.fatal

    @property
    def foreign_online(self) -> str | None:
        return self.readings.foreign_online

    @property
    def taken_over(self) -> ClientIdInUse | None:
        return self.readings.taken_over

    @property
    def connections(self) -> int:
        return self.readings.connections

    @property
    def over_receive(self) -> int:
        return self.readings.over_receive

    @property
    def status_reasserted(self) -> int:
        return self.readings.status_reasserted

    @property
    def connects_refused(self) -> int:
        return self.readings.connects_refused

    @property
    def paused(self) -> bool:
        return self.readings.paused

    def ack(self, message: Inbound) -> None:
        self.readings.ack(message)

    def add_subscription(self, topic_filter: str, *, retained: bool = False) -> None:
        self.readings.add_subscription(topic_filter, retained=retained)

    async def wait_answer(self) -> None:
        """The broker's first answer to each connection (a refusal raises
        :class:`~bridge.errors.BrokerRefused`): the start-up's publishes then go out, and a
        refusal of one of them is seen before readings are taken."""
        await self.readings.wait_answer()
        for link in self._publishing:
            await link.wait_answer()

    async def wait_readable(self, event: asyncio.Event, wait_s: float) -> bool:
        return await self.readings.wait_readable(event, wait_s)

    def say_offline(self, payload: bytes) -> None:
        self.readings.say_offline(payload)

    # --- publishing: events and state ---------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        coalesce: bool = False,
    ) -> None:
        to = self.state if coalesce else self.events
        to.publish(topic, payload, qos=qos, retain=retain, coalesce=coalesce)

    def reply(self, message: Inbound, payload: bytes) -> None:
        self.events.reply(message, payload)

    async def wait_window(self) -> None:
        """Wait while more than ``outbound_max`` events are outstanding (state is bounded by
        coalescing: at most one held message a topic)."""
        await self.events.wait_window()

    @property
    def on_denied(self) -> Callable[[str, str], None] | None:
        return self.events.on_denied

    @on_denied.setter
    def on_denied(self, callback: Callable[[str, str], None] | None) -> None:
        for link in self._all:
            link.on_denied = callback

    @property
    def first_denial(self) -> tuple[str, str] | None:
        for link in (self.events, self.state, self.readings):
            if link.first_denial is not None:
                return link.first_denial
        return None

    @property
    def outstanding(self) -> int:
        return sum(link.outstanding for link in self._all)

    @property
    def outstanding_bytes(self) -> int:
        return sum(link.outstanding_bytes for link in self._all)

    @property
    def outstanding_max(self) -> int:
        return max(link.outstanding_max for link in self._all)

    @property
    def window_waits(self) -> int:
        return self.events.window_waits

    @property
    def coalesced(self) -> int:
        return sum(link.coalesced for link in self._all)

    @property
    def refused(self) -> int:
        return sum(link.refused for link in self._all)

    @property
    def denied(self) -> int:
        return sum(link.denied for link in self._all)

    @property
    def retry_pending(self) -> int:
        return sum(link.retry_pending for link in self._all)

    # --- all three -----------------------------------------------------------------------

    async def start(self, wait_s: float | None = None) -> None:
        """Start the publishing connections in the background, then the readings one (with
        ``wait_s``: wait that long for its CONNACK, as :meth:`MqttClient.start`)."""
        for link in self._publishing:
            await link.start()
        await self.readings.start(wait_s)

    async def wait_confirmed(self, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        confirmed = True
        for link in self._all:
            left = max(0.0, deadline - time.monotonic())
            confirmed = await link.wait_confirmed(left) and confirmed
        return confirmed

    async def flush(self, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        flushed = True
        for link in self._all:
            left = max(0.0, deadline - time.monotonic())
            flushed = await link.flush(left) and flushed
        return flushed

    async def stop(self) -> None:
        """The publishing connections first (each waits for its DISCONNECT), then readings."""
        for link in self._publishing:
            await link.stop()
        await self.readings.stop()

    def abort(self) -> None:
        for link in self._all:
            link.abort()
