"""The bridge end to end: readings in over a real Mosquitto, SQLite, results out."""

from __future__ import annotations

import pytest

from tests.integration.conftest import BridgeFactory, Probe, char

pytestmark = pytest.mark.mosquitto


async def test_a_reading_becomes_a_sample_published_and_stored(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    app = await bridge_factory.start([char(1)])
    await probe.publish(f"{topic_prefix}/char/1/reading", "10.5")
    [sample] = await probe.wait_for(f"{topic_prefix}/char/1/sample")
    assert sample["type"] == "sample"
    payload = sample["payload"]
    assert payload["characteristic_id"] == 1
    assert payload["value"] == 10.5
    assert payload["values"] == [10.5]
    assert payload["range"] is None
    assert payload["zone"] is None
    assert payload["in_control"] is None
    assert payload["timestamp"].endswith("Z")
    rows = await app.store.rows("samples", 1)
    assert [(r.id, r.value) for r in rows] == [(payload["sample_id"], 10.5)]
    assert await app.store.count("readings", 1) == 1
