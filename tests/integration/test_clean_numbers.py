"""Numbers without binary noise in every payload (docs/topics.md, "Numbers"): readings keep
the gauge's digits, computed figures go out with at most 10 significant digits. A real
bridge with every chart family; every number of every message it publishes is checked."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import BridgeFactory, Probe, char

pytestmark = pytest.mark.mosquitto

CHARACTERISTICS = [
    char(1, subgroup_size=1, baseline=5, usl=10.4, lsl=9.6),
    char(2, subgroup_size=5, baseline=3, usl=10.4, lsl=9.6),
    char(3, subgroup_size=12, baseline=3),
    char(4, ucl=10.7, lcl=9.1),  # fixed limits; the centre line is their midpoint
    char(5, chart="p", baseline=3),  # an average of 3 sizes: 151 / 3 has 17 digits
    char(6, chart="ewma", baseline=5),
    char(7, chart="cusum", baseline=5),
    char(8, chart="u", baseline=3),
]
SAMPLES = 12


def numbers(value: object) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from numbers(item)


def noisy(value: float) -> bool:
    return float(f"{value:.10g}") != value


def test_the_check_itself_tells_noise_from_digits() -> None:
    assert noisy(0.1 + 0.2)
    assert noisy((10.7 + 9.1) / 2)
    assert not noisy(10.123)
    assert not noisy(0.0283)


async def test_no_payload_carries_binary_noise(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    await bridge_factory.start(CHARACTERISTICS)
    rng = random.Random(7)
    for _ in range(SAMPLES):
        for cid, n in ((1, 1), (2, 5), (3, 12), (4, 1), (6, 1), (7, 1)):
            values = [round(10 + rng.gauss(0, 0.1), 3) for _ in range(n)]
            body: dict[str, Any] = {"values": values} if n > 1 else {"value": values[0]}
            await probe.publish(f"{topic_prefix}/char/{cid}/reading", json.dumps(body))
        inspected = rng.randint(45, 55)
        await probe.publish(
            f"{topic_prefix}/char/5/reading",
            json.dumps({"defectives": rng.randint(1, 6), "inspected": inspected}),
        )
        units = rng.choice([3, 7, 11])
        await probe.publish(
            f"{topic_prefix}/char/8/reading",
            json.dumps({"defects": rng.randint(1, 9), "units": units}),
        )
    for c in CHARACTERISTICS:
        await probe.wait_for(f"{topic_prefix}/char/{c['id']}/sample", count=SAMPLES)
        await probe.wait_for(f"{topic_prefix}/char/{c['id']}/limits")
    # a history from the store, too (the query command reads stored samples)
    await probe.request(
        f"{topic_prefix}/cmd/query/kim",
        {"characteristic_id": 2},
        f"{topic_prefix}/reply/kim/q",
        b"1",
    )
    await probe.wait_for(f"{topic_prefix}/reply/kim/q")
    await probe.wait_for(f"{topic_prefix}/bridge/metrics")
    checked, found = 0, []
    for message in probe.messages:
        try:
            data = json.loads(message.payload)
        except ValueError:
            continue
        for value in numbers(data):
            checked += 1
            if noisy(value):
                found.append((message.topic, value))
    assert found == []
    assert checked > 800
