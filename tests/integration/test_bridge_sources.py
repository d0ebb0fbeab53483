"""Extension points: an extra inbound source registered at bootstrap, and Pipeline.submit."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.app import bootstrap
from bridge.domain import SourceStatusChanged
from bridge.pipeline import Submission
from bridge.readings import InvalidReading
from bridge.testing import unique_topic
from tests.integration.conftest import TIMEOUT, BridgeFactory, char, open_probe

pytestmark = pytest.mark.mosquitto


class LineSource:
    """A toy vendor protocol on ``<root>/#``: ``"<id>=<value>"``, ``"<id>:offline"``."""

    def __init__(self, root: str) -> None:
        self.topic_filter = f"{root}/#"

    def decode(
        self, topic: str, payload: bytes, received_at: datetime
    ) -> Sequence[Submission | SourceStatusChanged | InvalidReading]:
        text = payload.decode()
        if text.endswith(":offline"):
            return [SourceStatusChanged(int(text.split(":")[0]), online=False)]
        key, _, value = text.partition("=")
        if not value:
            return [InvalidReading(f"not id=value: {text!r}", topic)]
        return [Submission(int(key), (float(value),), received_at, topic)]


async def test_an_extra_source_feeds_the_pipeline_and_reports_its_rejects(
    mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    factory = BridgeFactory(mosquitto, unique_topic("openspc"), tmp_path)
    prefix, root = factory.prefix, unique_topic("vendor")
    app = await bootstrap(factory.settings([char(1), char(2)]), sources=[LineSource(root)])
    await app.start(connect_timeout=TIMEOUT)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        async with open_probe(mosquitto, f"{prefix}/#") as probe:
            await probe.publish(f"{root}/line3", "1=4.5")
            await probe.publish(f"{root}/line3", "garbage")
            await probe.publish(f"{root}/line3", "7=1.0")
            await probe.publish(f"{root}/line3", "1=nan")
            await probe.publish(f"{root}/line3", "2:offline")
            [sample] = await probe.wait_for(f"{prefix}/char/1/sample")
            assert sample["payload"]["value"] == 4.5
            errors = await probe.wait_for(f"{prefix}/bridge/errors", count=3)
            assert "not id=value" in errors[0]["reason"]
            assert "unknown characteristic" in errors[1]["reason"]
            assert "not a finite number" in errors[2]["reason"]
            await probe.wait_for(f"{prefix}/char/2/meta", lambda m: m["payload"]["online"] is False)
            stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            assert app.pipeline.submit(
                2,
                [3.25],
                datetime(2026, 1, 1, tzinfo=UTC),
                source="test",
                ack=lambda: stored.set_result(None),
            )
            await asyncio.wait_for(stored, TIMEOUT)
            refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            app.pipeline.submit(
                2,
                [float("inf")],
                datetime(2026, 1, 1, tzinfo=UTC),
                source="test",
                ack=lambda: refused.set_result(None),
            )
            await asyncio.wait_for(refused, TIMEOUT)  # acknowledged once, not stored
            [error] = await probe.wait_for(
                f"{prefix}/bridge/errors", lambda e: e["topic"] == "test"
            )
            assert "not a finite number" in error["reason"]
            [two] = await probe.wait_for(f"{prefix}/char/2/sample")
            assert two["payload"]["value"] == 3.25
            assert two["payload"]["timestamp"] == "2026-01-01T00:00:00.000Z"
        assert await app.store.count("readings", 2) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)


async def test_a_changed_subgroup_size_starts_the_characteristic_afresh(
    bridge_factory: BridgeFactory, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = await bridge_factory.start([char(5, subgroup_size=5)])
    async with open_probe(bridge_factory.broker, f"{topic_prefix}/#") as probe:
        for value in ("1", "2"):
            await probe.publish(f"{topic_prefix}/char/5/reading", value)
        await probe.publish(f"{topic_prefix}/char/5/reading", '{"values": [1, 2, 3, 4, 5]}')
        await probe.wait_for(f"{topic_prefix}/char/5/sample")
        await bridge_factory.stop(app)
        await bridge_factory.start([char(5, subgroup_size=2)])
        assert "starting it afresh" in caplog.text
        await probe.publish(f"{topic_prefix}/char/5/reading", '{"values": [7, 9]}')
        samples = await probe.wait_for(
            f"{topic_prefix}/char/5/sample", lambda m: m["payload"]["values"] == [7.0, 9.0]
        )
        assert samples[0]["payload"]["range"] == 2.0


async def test_a_failing_extra_subscriber_is_isolated(
    bridge_factory: BridgeFactory, topic_prefix: str
) -> None:
    from bridge.domain import SampleRecorded

    app = await bridge_factory.start([char(1)])

    def broken(event: SampleRecorded) -> None:
        raise RuntimeError("a plug-in with a bug")

    app.bus.subscribe(SampleRecorded, broken)
    async with open_probe(bridge_factory.broker, f"{topic_prefix}/#") as probe:
        for value in ("1", "2"):
            await probe.publish(f"{topic_prefix}/char/1/reading", value)
        samples = await probe.wait_for(f"{topic_prefix}/char/1/sample", count=2)
        assert [s["payload"]["value"] for s in samples] == [1.0, 2.0]
        await probe.wait_for(f"{topic_prefix}/bridge/metrics", lambda m: m["handler_failures"] == 2)
    assert await app.store.count("samples", 1) == 2


async def test_another_sources_number_is_a_c_charts_count_and_refused_elsewhere(
    mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    """A Sparkplug-like source gives plain numbers: a c chart takes one as its count (a whole,
    non-negative number); a p chart needs defectives and inspected, so it refuses it."""
    factory = BridgeFactory(mosquitto, unique_topic("openspc"), tmp_path)
    prefix, root = factory.prefix, unique_topic("vendor")
    chars = [char(3, chart="c", baseline=2), char(4, chart="p")]
    app = await bootstrap(factory.settings(chars), sources=[LineSource(root)])
    await app.start(connect_timeout=TIMEOUT)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        async with open_probe(mosquitto, f"{prefix}/#") as probe:
            for text in ("3=4", "3=2.5", "3=-1", "4=3", "3=6.0"):
                await probe.publish(f"{root}/line3", text)
            samples = await probe.wait_for(f"{prefix}/char/3/sample", count=2)
            assert [s["payload"]["value"] for s in samples] == [4, 6]
            assert [s["payload"]["statistic"] for s in samples] == [4.0, 6.0]
            errors = await probe.wait_for(f"{prefix}/bridge/errors", count=3)
            reasons = [e["reason"] for e in errors]
            assert "defects = 2.5: must be a whole number" in reasons[0]
            assert "defects = -1: must not be negative" in reasons[1]
            assert "a p chart takes counts" in reasons[2]
            [limits] = await probe.wait_for(f"{prefix}/char/3/limits")
            assert (limits["payload"]["chart"], limits["payload"]["center_line"]) == ("c", 5.0)
        assert await app.store.count("samples", 3) == 2
        assert await app.store.count("samples", 4) == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
