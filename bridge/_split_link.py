"""The bridge's link as three MQTT connections: readings, results, history (docs/bridge.md,
"Three connections").

One connection that reads and publishes ties the two together: the PUBACKs of the bridge's
publishes arrive behind the readings the broker sends, so under overload the bridge must read
on (and hold readings) to learn that its publishes were taken, and the retained history it
sends within its byte budget waits in the same socket in front of the next ``sample``.
:class:`SplitLink` keeps one :class:`~bridge._mqtt.MqttClient` per job, each with a client id
of its own under the bridge's (``<client_id>-results``, ``<client_id>-history``, reserved for
the bridge's user by the guard plugin like the partitions' ids):

- **readings** (the bridge's ``client_id``): subscriptions, the persistent session that
  queues readings while the bridge is away, the PUBACKs of readings (after commit), the
  retained status with its Last Will. Past ``buffer_max`` unacknowledged readings it stops
  reading the socket and never has to read on: nothing it waits for is behind the readings.
- **results**: everything else the bridge publishes, in the order it was made: events
  (``sample``, ``violation``, ``ack``, replies, errors; never dropped) and the retained state
  whose order with them HMIs rely on (``limits`` after the baseline's last sample, ``alarms``,
  ``meta``, ``causes``; coalesced while held). The pipeline waits while more than
  ``outbound_max`` are outstanding.
- **history**: each characteristic's retained ``history``, the bulk of the bytes, within its
  budget (bridge/_retained.py); coalesced per topic while held. It trails the live samples by
  design, so nothing waits for it and nothing waits behind it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
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
    """A :class:`~bridge.ports.BrokerLink` over three connections (module docstring);
    ``is_history`` tells a history topic (:meth:`bridge.wire.Topics.is_history`)."""

    def __init__(
        self,
        readings: MqttClient,
        results: MqttClient,
        history: MqttClient,
        is_history: Callable[[str], bool],
    ) -> None:
        self.readings = readings
        self.results = results
        self.history = history
        self._is_history = is_history
        self._publishing = (results, history)
        self._all = (readings, results, history)

    @classmethod
    def from_options(
        cls, options: MqttOptions, inbox: Inbox, is_history: Callable[[str], bool]
    ) -> SplitLink:
        return cls(
            MqttClient(options, inbox),
            MqttClient(publishing_options(options, "results"), Inbox(16)),
            MqttClient(publishing_options(options, "history"), Inbox(16)),
            is_history,
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
    def generation(self) -> int:
        return self.readings.generation

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

    # --- publishing: results and history ---------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        coalesce: bool = False,
    ) -> None:
        to = self.history if coalesce and self._is_history(topic) else self.results
        to.publish(topic, payload, qos=qos, retain=retain, coalesce=coalesce)

    def reply(self, message: Inbound, payload: bytes) -> None:
        self.results.reply(message, payload)

    async def wait_window(self, limit: int | None = None) -> None:
        """Wait while more than ``outbound_max`` (or ``limit``) results are outstanding
        (history is bounded by its budget and by coalescing: at most one held message a
        topic)."""
        await self.results.wait_window(limit)

    @property
    def on_denied(self) -> Callable[[str, str], None] | None:
        return self.results.on_denied

    @on_denied.setter
    def on_denied(self, callback: Callable[[str, str], None] | None) -> None:
        for link in self._all:
            link.on_denied = callback

    @property
    def first_denial(self) -> tuple[str, str] | None:
        for link in (self.results, self.history, self.readings):
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
        return self.results.window_waits

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
        return await self._each(MqttClient.wait_confirmed, wait_s)

    async def flush(self, wait_s: float) -> bool:
        return await self._each(MqttClient.flush, wait_s)

    async def _each(
        self, wait: Callable[[MqttClient, float], Awaitable[bool]], wait_s: float
    ) -> bool:
        """``wait`` on every connection in turn, all within ``wait_s``; True if all were."""
        deadline = time.monotonic() + wait_s
        done = True
        for link in self._all:
            done = await wait(link, max(0.0, deadline - time.monotonic())) and done
        return done

    async def stop(self) -> None:
        """The publishing connections first (each waits for its DISCONNECT), then readings."""
        for link in self._publishing:
            await link.stop()
        await self.readings.stop()

    def abort(self) -> None:
        for link in self._all:
            link.abort()
