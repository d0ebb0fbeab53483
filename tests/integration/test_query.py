"""The query command (docs/topics.md, "Query"), against the real bridge, a real Mosquitto
and SQLite and PostgreSQL: pages to the end, time ranges, refusals, the reply tree."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.conftest import BridgeFactory, Probe, char

pytestmark = pytest.mark.mosquitto

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
COUNT = 23
FIXED = {"center_line": 10.0, "ucl": 13.0, "lcl": 7.0}  # judged from the first sample


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


async def feed(probe: Probe, prefix: str) -> list[dict[str, Any]]:
    """COUNT readings a minute apart, some with context; the published samples, in order."""
    for i in range(COUNT):
        reading: dict[str, Any] = {"value": 10 + (i % 5) / 10, "ts": iso(T0 + timedelta(minutes=i))}
        if i % 4 == 0:
            reading["context"] = {"part": f"P-{i}", "lot": "L42"}
        await probe.publish(f"{prefix}/char/1/reading", json.dumps(reading))
    found = await probe.wait_for(f"{prefix}/char/1/sample", count=COUNT)
    return [m["payload"] for m in found]


class Asker:
    """An HMI user asking queries with its own reply topic."""

    def __init__(self, probe: Probe, prefix: str, user: str = "kim") -> None:
        self.probe, self.prefix, self.user = probe, prefix, user
        self.reply = f"{prefix}/reply/{user}/query"

    async def ask(self, body: dict[str, Any], reply: str | None = None) -> dict[str, Any]:
        reply = reply or self.reply
        correlation = uuid.uuid4().bytes
        await self.probe.request(f"{self.prefix}/cmd/query/{self.user}", body, reply, correlation)
        await self.probe.wait_until(
            lambda: any(
                m.properties.CorrelationData == correlation for m in self.probe.matching(reply)
            )
        )
        [answer] = [
            m for m in self.probe.matching(reply) if m.properties.CorrelationData == correlation
        ]
        data: dict[str, Any] = answer.json()
        return data


async def test_paging_back_to_the_first_sample_gives_every_sample_as_published(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    await bridge_factory.start([char(1, **FIXED)], history_size=5)
    published = await feed(probe, topic_prefix)
    asker = Asker(probe, topic_prefix)
    pages: list[list[dict[str, Any]]] = []
    body: dict[str, Any] = {"characteristic_id": 1, "limit": 10}
    while True:
        answer = await asker.ask(body)
        assert answer["type"] == "query_result"
        payload = answer["payload"]
        assert payload["characteristic_id"] == 1
        pages.append(payload["samples"])
        if payload["next_before_sample_id"] is None:
            break
        assert payload["next_before_sample_id"] == payload["samples"][0]["sample_id"]
        body = {
            "characteristic_id": 1,
            "limit": 10,
            "before_sample_id": payload["samples"][0]["sample_id"],
        }
    assert [len(page) for page in pages] == [10, 10, 3]
    everything = [s for page in reversed(pages) for s in page]  # each page oldest first
    assert [s["excluded"] for s in everything] == [False] * COUNT
    assert everything == published  # a live sample carries excluded: false too
    assert published[0]["context"] == {"part": "P-0", "lot": "L42"}
    assert published[1]["context"] == {}


async def test_a_time_range_gives_the_samples_in_it_oldest_first(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    await bridge_factory.start([char(1, **FIXED)], history_size=5)
    published = await feed(probe, topic_prefix)
    asker = Asker(probe, topic_prefix)
    # [10:05, 10:09): four samples; the default limit holds them all
    body = {
        "characteristic_id": 1,
        "from": iso(T0 + timedelta(minutes=5)),
        "to": "2026-12-07T11:09:00+01:00",
    }
    answer = await asker.ask(body)
    samples = answer["payload"]["samples"]
    assert [s["sample_id"] for s in samples] == [p["sample_id"] for p in published[5:9]]
    assert answer["payload"]["next_before_sample_id"] is None
    # the same range two at a time: the newer two, then the older two, then nothing more
    first = await asker.ask({**body, "limit": 2})
    assert [s["sample_id"] for s in first["payload"]["samples"]] == [
        p["sample_id"] for p in published[7:9]
    ]
    older = first["payload"]["next_before_sample_id"]
    assert older == published[7]["sample_id"]
    second = await asker.ask({**body, "limit": 2, "before_sample_id": older})
    assert [s["sample_id"] for s in second["payload"]["samples"]] == [
        p["sample_id"] for p in published[5:7]
    ]
    assert second["payload"]["next_before_sample_id"] is None
    # a range with nothing in it
    empty = await asker.ask({"characteristic_id": 1, "to": iso(T0)})
    assert empty["payload"] == {
        "characteristic_id": 1,
        "samples": [],
        "next_before_sample_id": None,
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"characteristic_id": 1, "limit": 0}, "'limit' must be an integer from 1 to 1000, got 0"),
        (
            {"characteristic_id": 1, "limit": 1001},
            "'limit' must be an integer from 1 to 1000, got 1001",
        ),
        ({"characteristic_id": 99}, "unknown characteristic 99"),
        ({"characteristic_id": "1"}, "'characteristic_id' must be an integer from 1 to"),
        ({"characteristic_id": 1, "from": "yesterday"}, "'from' must be an ISO 8601 time"),
        ({"characteristic_id": 1, "to": "2026-12-07T10:00:00"}, "(no zone)"),
        (
            {"characteristic_id": 1, "from": "2026-12-07T11:00:00Z", "to": "2026-12-07T10:00:00Z"},
            "'from' must be before 'to'",
        ),
        ({"characteristic_id": 1, "page": 2}, "unknown field(s): page"),
    ],
)
async def test_a_bad_query_is_refused_in_the_reply_and_on_errors(
    bridge_factory: BridgeFactory,
    probe: Probe,
    topic_prefix: str,
    body: dict[str, Any],
    reason: str,
) -> None:
    app = await bridge_factory.start([char(1, **FIXED)])
    answer = await Asker(probe, topic_prefix).ask(body)
    assert answer["ok"] is False
    assert reason in answer["error"]
    [error] = await probe.wait_for(f"{topic_prefix}/bridge/errors")
    assert error["topic"] == f"{topic_prefix}/cmd/query/kim"
    assert reason in error["reason"]
    assert app.metrics.commands_rejected == 1
    # the bridge goes on: a reading still becomes a sample
    await probe.publish(f"{topic_prefix}/char/1/reading", "10.5")
    await probe.wait_for(f"{topic_prefix}/char/1/sample")


async def test_a_reply_topic_outside_the_senders_tree_gets_no_reply(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    await bridge_factory.start([char(1, **FIXED)])
    asker = Asker(probe, topic_prefix)
    elsewhere = f"{topic_prefix}/reply/alice/stolen"
    correlation = b"c1"
    await probe.request(
        f"{topic_prefix}/cmd/query/kim", {"characteristic_id": 1}, elsewhere, correlation
    )
    [error] = await probe.wait_for(f"{topic_prefix}/bridge/errors")
    assert "not in kim's reply tree" in error["reason"]
    # a proper query after it is answered, and nothing ever went to alice's tree
    answer = await asker.ask({"characteristic_id": 1})
    assert answer["type"] == "query_result"
    assert probe.matching(elsewhere) == []


async def test_a_sample_excluded_by_an_acknowledgement_says_so(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    await bridge_factory.start([char(1, **FIXED)])
    for value in ("10.1", "20.0", "10.2"):  # 20.0 is beyond the UCL: rule 1
        await probe.publish(f"{topic_prefix}/char/1/reading", value)
    [violation] = await probe.wait_for(f"{topic_prefix}/char/1/violation")
    body = {"violation_id": violation["payload"]["violation_id"], "reason": "Measurement Error"}
    await probe.publish(f"{topic_prefix}/cmd/ack/kim", json.dumps({**body, "exclude_sample": True}))
    await probe.wait_for(f"{topic_prefix}/char/1/ack")
    await probe.wait_for(f"{topic_prefix}/char/1/sample", count=3)
    answer = await Asker(probe, topic_prefix).ask({"characteristic_id": 1})
    samples = answer["payload"]["samples"]
    assert [s["values"] for s in samples] == [[10.1], [20.0], [10.2]]
    assert [s["excluded"] for s in samples] == [False, True, False]
    assert samples[1]["sample_id"] == violation["payload"]["sample_id"]
