"""``history`` goes out at most once a second per characteristic (docs/bridge.md,
"history"), through bursts of readings and the idle moments between them (where an idle
flush once sent it on every pause: 37 kB/s for four characteristics in the demo)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid

import aiomqtt
import pytest

from bridge._mosquitto import MosquittoProcess
from tests.integration.conftest import BridgeFactory, Probe, char

pytestmark = pytest.mark.mosquitto

CHARS = (1, 2, 3)
BURSTS = 12  # a burst every 0.3 s: about 3.6 s of readings with pauses between
JITTER = 0.2  # seconds the broker and this loaded machine may add between two deliveries


async def test_history_goes_out_at_most_once_a_second_through_bursts_and_pauses(
    bridge_factory: BridgeFactory, mosquitto: MosquittoProcess, probe: Probe, topic_prefix: str
) -> None:
    await bridge_factory.start([char(cid) for cid in CHARS], history_size=20)
    arrivals: dict[str, list[float]] = {}
    async with aiomqtt.Client(
        "127.0.0.1", mosquitto.port, identifier=f"rate-{uuid.uuid4().hex[:8]}"
    ) as client:
        await client.subscribe(f"{topic_prefix}/char/+/history", qos=1)

        async def listen() -> None:
            async for message in client.messages:
                if not message.retain:  # the retained one from before this test's readings
                    arrivals.setdefault(str(message.topic), []).append(time.monotonic())

        listener = asyncio.create_task(listen())
        try:
            for burst in range(BURSTS):
                for cid in CHARS:
                    for k in range(3):
                        await probe.publish(
                            f"{topic_prefix}/char/{cid}/reading", f"{10 + (burst + k) % 4 / 10}"
                        )
                await asyncio.sleep(0.3)  # a pause: the pipeline goes idle
            await probe.wait_for(f"{topic_prefix}/char/3/sample", count=BURSTS * 3)
            await asyncio.sleep(1.5)  # the last history, due up to a second later
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
    assert sorted(arrivals) == [f"{topic_prefix}/char/{cid}/history" for cid in CHARS]
    for topic, times in arrivals.items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) >= 3, topic  # histories did go out while the readings came
        assert min(gaps) >= 1.0 - JITTER, (topic, gaps)
        assert len(times) - 1 <= (times[-1] - times[0]) + JITTER, (topic, gaps)
