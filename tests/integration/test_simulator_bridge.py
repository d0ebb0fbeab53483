"""End to end: a config file, its simulated gauges, the real bridge and Mosquitto: alarms."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.config import load_settings
from bridge.simulator import GaugePublisher, gauges_from_settings
from tests.integration.conftest import BridgeFactory, Probe

pytestmark = pytest.mark.mosquitto


@pytest.mark.parametrize("bridge_factory", ["sqlite"], indirect=True)
async def test_simulated_gauges_raise_alarms_through_the_bridge(
    bridge_factory: BridgeFactory,
    probe: Probe,
    mosquitto: MosquittoProcess,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    vendor_topic = f"{topic_prefix}-plant/line3/gauge7/od"
    config = tmp_path / "openspc.toml"
    config.write_text(
        f"""
[bridge]
topic_prefix = "{topic_prefix}"

[[characteristic]]
id = 1
name = "Shaft OD"
topic = "{vendor_topic}"
value_path = "data.od"
usl = 10.05
lsl = 9.95
baseline = 10

[[characteristic]]
id = 2
name = "Fill weight"
subgroup_size = 5
usl = 508.0
lsl = 492.0
baseline = 5
"""
    )
    settings = load_settings(config)
    await bridge_factory.start([c.model_dump() for c in settings.characteristic])
    publisher = GaugePublisher(
        "127.0.0.1", mosquitto.port, gauges_from_settings(settings, seed=5), rate=100
    )
    await asyncio.to_thread(publisher.start)
    try:
        for cid in (1, 2):
            [limits] = await probe.wait_for(f"{topic_prefix}/char/{cid}/limits", within=20)
            [violation] = await probe.wait_for(f"{topic_prefix}/char/{cid}/violation", within=20)
            assert violation["payload"]["characteristic_id"] == cid
            assert limits["payload"]["sample_count"] == (10 if cid == 1 else 5)
    finally:
        await asyncio.to_thread(publisher.stop)
    assert publisher.error is None
    assert probe.matching(f"{topic_prefix}/bridge/errors") == []
