"""Reading context through a real bridge, a real Mosquitto, SQLite and PostgreSQL
(docs/topics.md, "Context"): stored per reading and per sample, and an open subgroup's
context carried across a restart of the bridge."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import BridgeFactory, Probe, char

pytestmark = pytest.mark.mosquitto


async def test_context_is_stored_and_survives_a_restart_with_its_open_subgroup(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    chars = [char(1, subgroup_size=3, ucl=13.0, lcl=7.0)]
    topic = f"{topic_prefix}/char/1/reading"
    app = await bridge_factory.start(chars)
    await probe.publish(topic, json.dumps({"value": 10.0, "context": {"part": "A", "lot": "L1"}}))
    await probe.publish(topic, json.dumps({"value": 10.1, "batch": "B9"}))
    await probe.wait_until(lambda: app.metrics.readings_received == 2)
    await bridge_factory.stop(app)  # two readings of three: the subgroup is open

    again = await bridge_factory.start(chars)
    await probe.publish(topic, json.dumps({"value": 9.9, "context": {"lot": "L2"}}))
    [sample] = await probe.wait_for(f"{topic_prefix}/char/1/sample")
    merged = {"part": "A", "lot": "L2", "batch": "B9"}
    assert sample["payload"]["values"] == [10.0, 10.1, 9.9]
    assert sample["payload"]["context"] == merged
    readings = await again.store.rows("readings", 1)
    assert [r.context for r in readings] == [
        {"part": "A", "lot": "L1"},
        {"batch": "B9"},
        {"lot": "L2"},
    ]
    assert [(r.batch, r.operator) for r in readings] == [(None, None), ("B9", None), (None, None)]
    [stored] = await again.store.rows("samples", 1)
    assert stored.context == merged
    # and a restart publishes it back in the history, from the database
    await bridge_factory.stop(again)
    probe.messages.clear()
    await bridge_factory.start(chars)
    [history] = await probe.wait_for(f"{topic_prefix}/char/1/history")
    assert [s["context"] for s in history["payload"]["samples"]] == [merged]
