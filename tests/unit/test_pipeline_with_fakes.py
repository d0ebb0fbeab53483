"""The pipeline's guarantees (docs/reliability.md) with the fakes of bridge/testing.py: the
real bridge from ``bootstrap(settings, store=FakeStore(), link=FakeLink(), clock=...)``, its
pipeline, bus and handlers, and no broker, no database: milliseconds per test."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bridge.app import Bridge, bootstrap
from bridge.config import Settings
from bridge.pipeline import Inbound
from bridge.testing import FakeLink, FakeStore, ManualClock

P = "openspc"


def settings(chars: list[dict[str, Any]] | None = None, **bridge: Any) -> Settings:
    return Settings(
        broker={"host": "127.0.0.1", "port": 1883, "client_id": "fake"},
        database={"url": "sqlite+aiosqlite:///never-opened.db"},
        bridge={"topic_prefix": P, **bridge},
        characteristic=chars or [{"id": 1, "name": "One"}, {"id": 2, "name": "Two"}],
    )


async def built(
    chars: list[dict[str, Any]] | None = None, **bridge: Any
) -> tuple[Bridge, FakeStore, FakeLink]:
    store, link = FakeStore(), FakeLink(prefix=P)
    app = await bootstrap(settings(chars, **bridge), store=store, link=link, clock=ManualClock())
    return app, store, link


async def drain(app: Bridge) -> None:
    """Run the pipeline until everything delivered so far is through."""
    stop = asyncio.Event()
    stop.set()
    await app.pipeline.run(stop)


def stored(store: FakeStore, cid: int | None = None) -> list[float]:
    return [r["value"] for r in store.readings if cid is None or r["characteristic_id"] == cid]


async def test_bootstrap_on_fakes_subscribes_the_pipeline_s_filters() -> None:
    _, _, link = await built()
    assert link.subscriptions == [
        f"{P}/char/+/reading",
        f"{P}/cmd/ack/+",
        f"{P}/cmd/char/+/recalculate",
        f"{P}/cmd/query/+",
    ]


async def test_the_whole_bridge_starts_runs_and_stops_on_the_fakes() -> None:
    app, store, link = await built()
    await app.start()
    stop = asyncio.Event()
    running = asyncio.create_task(app.run(stop))
    link.deliver("char/1/reading", "1.5")
    [sample] = await link.published_on("char/1/sample")
    stop.set()
    await running
    assert sample["payload"]["value"] == 1.5
    assert stored(store) == [1.5]
    assert link.acked == [1]
    assert [m["online"] for m in link.messages("bridge/status")] == [False]  # at the stop
    assert {m["payload"]["characteristic_id"] for m in link.messages("char/1/meta")} == {1}


async def test_a_reading_is_acknowledged_only_after_the_commit_that_stored_it() -> None:
    app, store, link = await built(batch_max=4)
    at_ack: list[tuple[int, bool]] = []  # (packet id, its reading stored already?)
    values: dict[int, float] = {}

    def on_ack(message: Inbound) -> None:
        at_ack.append((message.mid, values[message.mid] in stored(store)))

    link.on_ack = on_ack
    for v in range(10):
        values[link.deliver("char/1/reading", str(v + 0.5)).mid] = v + 0.5
    await drain(app)
    assert at_ack == [(mid, True) for mid in values]
    assert store.commits == 3  # batches of 4, 4, 2: one transaction each
    assert app.pipeline.held == 0


async def test_each_characteristic_sees_its_readings_in_order_across_batches() -> None:
    app, store, link = await built(batch_max=3)
    sent: dict[int, list[float]] = {1: [], 2: []}
    for k in range(20):
        cid = 1 if k % 3 else 2
        sent[cid].append(float(k))
        link.deliver(f"char/{cid}/reading", str(float(k)))
    await drain(app)
    for cid in (1, 2):
        assert stored(store, cid) == sent[cid]
        samples = [m["payload"] for m in link.messages(f"char/{cid}/sample")]
        assert [s["value"] for s in samples] == sent[cid]
        seqs = [s["seq"] for s in store.samples if s["characteristic_id"] == cid]
        assert seqs == list(range(1, len(sent[cid]) + 1))
    assert link.acked == list(range(1, 21))


async def test_a_command_mid_batch_sees_what_came_before_it_and_nothing_after() -> None:
    app, store, link = await built(batch_max=500)
    for v in (10.0, 12.0, 10.0, 12.0):
        link.deliver("char/1/reading", str(v))
    command = link.deliver(
        "cmd/char/1/recalculate", '{"last": 100}', response_topic=f"{P}/reply/kim/1"
    )
    for v in (100.0, 200.0):
        link.deliver("char/1/reading", str(v))
    await drain(app)
    [limits] = [m["payload"] for m in link.messages("char/1/limits")]
    assert limits["center_line"] == pytest.approx(11.0)  # the four before it, not the two after
    assert [json.loads(p) for _, p in link.replies] == [{"ok": True}]
    assert stored(store, 1) == [10.0, 12.0, 10.0, 12.0, 100.0, 200.0]
    assert link.acked == list(range(1, 8))  # in order: the command after the four before it
    assert command.mid == 5


async def test_a_redelivered_reading_with_ts_is_acknowledged_and_not_stored_again() -> None:
    app, store, link = await built()
    reading = '{"value": 5.5, "ts": "2026-12-07T06:00:00Z"}'
    first = link.deliver("char/1/reading", reading)
    await drain(app)
    again = link.deliver("char/1/reading", reading)  # e.g. after a crash before the PUBACK
    await drain(app)
    assert stored(store) == [5.5]
    assert len(link.messages("char/1/sample")) == 1
    assert link.acked == [first.mid, again.mid]
    assert app.metrics.readings_duplicate == 1


async def test_a_batch_stored_as_the_connection_dropped_is_recognised_when_resent() -> None:
    app, store, link = await built()
    store.on_commit = link.drop  # the connection is lost while the batch commits
    sent = [link.deliver("char/1/reading", str(v)) for v in (1.0, 2.0)]  # no ts: no identity
    await drain(app)
    assert stored(store) == [1.0, 2.0]
    assert link.acked == []  # the connection is gone: nothing can be acknowledged on it
    store.on_commit = None
    link.reconnect(session_present=True)
    for m in sent:  # the broker sends them again: same packet ids, marked DUP
        link.deliver("char/1/reading", m.payload, mid=m.mid, dup=True)
    link.deliver("char/1/reading", "3.0")
    await drain(app)
    assert stored(store) == [1.0, 2.0, 3.0]
    assert link.acked == [1, 2, 3]
    assert app.metrics.readings_duplicate == 2
    assert app.pipeline.held == 0


async def test_what_a_lost_connection_delivered_is_skipped_then_taken_when_resent() -> None:
    app, store, link = await built()
    sent = [link.deliver("char/1/reading", str(v)) for v in (1.0, 2.0)]
    link.drop()  # lost before the pipeline took them: their acks could never be sent
    await drain(app)
    assert store.readings == []
    assert link.acked == []
    assert app.pipeline.held == 0
    link.reconnect(session_present=True)
    for m in sent:
        link.deliver("char/1/reading", m.payload, mid=m.mid, dup=True)
    await drain(app)
    assert stored(store) == [1.0, 2.0]  # once each
    assert link.acked == [1, 2]


async def test_a_database_outage_is_waited_out_acks_withheld_nothing_lost() -> None:
    app, store, link = await built(batch_max=4)
    link.deliver("char/1/reading", "-1.0")
    await drain(app)  # ids are reserved now: the outage meets the batch's write itself
    store.outage = True
    stop = asyncio.Event()
    running = asyncio.create_task(app.pipeline.run(stop))
    for v in range(10):
        link.deliver(f"char/{1 + v % 2}/reading", str(float(v)))
    await store.refused.wait()
    store.refused.clear()
    await store.refused.wait()  # tried again: waited out, not given up
    assert link.acked == [1]
    assert stored(store) == [-1.0]
    assert app.pipeline.held + len(app.inbox) == 10  # held, none dropped
    assert [r for r in link.errors() if r.startswith("database unavailable")] == [
        "database unavailable, retrying: fake database down"
    ]
    store.outage = False
    stop.set()
    await running
    assert stored(store, 1) == [-1.0, 0.0, 2.0, 4.0, 6.0, 8.0]
    assert stored(store, 2) == [1.0, 3.0, 5.0, 7.0, 9.0]
    assert store.dead == []
    assert link.acked == list(range(1, 12))
    assert app.pipeline.held == 0
    assert app.metrics.db_errors == 1


async def test_a_poison_message_is_dead_lettered_and_the_rest_committed_and_acked() -> None:
    app, store, link = await built(batch_max=500)
    store.poison = lambda row: row["value"] == 13.0
    items = [link.deliver(f"char/{1 + v % 2}/reading", str(float(v))) for v in range(10, 17)]
    await drain(app)
    assert stored(store) == [10.0, 11.0, 12.0, 14.0, 15.0, 16.0]
    assert [(d.topic, d.payload) for d in store.dead] == [(f"{P}/char/2/reading", b"13.0")]
    assert store.dead[0].reason.startswith("FakePoison: row refused: 13.0")
    assert sorted(link.acked) == [m.mid for m in items]  # the poison too: it is kept
    published = [m["payload"]["value"] for m in link.messages("char/2/sample")]
    assert published == [11.0, 15.0]  # the poison's sample is not published
    assert [e for e in link.errors() if "dead letter" in e] == [
        "kept as a dead letter: FakePoison: row refused: 13.0"
    ]
    assert app.metrics.dead_letters == 1


async def test_a_reply_that_raises_touches_neither_the_batch_nor_the_acks() -> None:
    app, store, link = await built()
    link.reply_error = ValueError("Publish topic cannot contain wildcards")
    link.deliver("char/1/reading", "1")
    link.deliver("char/1/reading", "2")
    link.deliver(
        "cmd/ack/alice",
        '{"violation_id": 9, "reason": "Other"}',
        response_topic=f"{P}/reply/alice/x",
    )
    link.deliver("char/1/reading", "3")
    await drain(app)
    assert stored(store) == [1.0, 2.0, 3.0]  # none twice
    assert link.acked == [1, 2, 3, 4]
    assert link.errors() == [
        "violation 9 does not exist; nothing acknowledged",
        "reply not sent: Publish topic cannot contain wildcards",
    ]
    assert app.pipeline.held == 0


@pytest.mark.parametrize(
    "response_topic", [f"{P}/#", f"{P}/bridge/status", f"{P}/reply/bob/x", f"{P}/reply//x"]
)
async def test_a_command_with_a_foreign_response_topic_is_not_carried_out(
    response_topic: str,
) -> None:
    app, store, link = await built()
    link.deliver("char/1/reading", "1")
    link.deliver(
        "cmd/ack/alice", '{"violation_id": 9, "reason": "Other"}', response_topic=response_topic
    )
    link.deliver("char/1/reading", "2")
    await drain(app)
    assert link.replies == []
    assert stored(store) == [1.0, 2.0]
    [error] = link.messages("bridge/errors")
    assert error["topic"] == f"{P}/cmd/ack/alice"
    assert error["reason"].startswith("not carried out: response topic")
    assert app.metrics.commands_rejected == 1
    assert link.acked == [1, 2, 3]


async def test_a_write_starts_while_the_last_batch_publishes_but_never_two_behind() -> None:
    """Batch k+1 is written while batch k's results wait for the broker (``wait_window``),
    but batch k+2 is not: with the broker taking nothing, the pipeline stops after two
    stored batches, only the first acked; released, every batch is stored, acked and
    published in order (docs/bridge.md, steps 4-6)."""
    store = FakeStore()
    taking = asyncio.Event()
    window_waits: list[int] = []

    class SlowBroker(FakeLink):
        async def wait_window(self, limit: int | None = None) -> None:
            window_waits.append(len(store.readings))
            await taking.wait()

    link = SlowBroker(prefix=P)
    app = await bootstrap(
        settings([{"id": 1, "name": "One"}], batch_max=1),
        store=store,
        link=link,
        clock=ManualClock(),
    )
    for value in range(5):
        link.deliver("char/1/reading", str(float(value)))
    stop = asyncio.Event()
    running = asyncio.create_task(app.pipeline.run(stop))
    for _ in range(1000):  # the loop's turns, no wall-clock wait: fakes answer at once
        if len(store.readings) >= 2 and window_waits:
            break
        await asyncio.sleep(0)
    for _ in range(200):  # more turns: a third batch would be written by now
        await asyncio.sleep(0)
    assert stored(store) == [0.0, 1.0]  # the second written while the first publishes
    assert link.acked == [1]  # the second waits for the first's publishing to be acked
    assert [m["payload"]["value"] for m in link.messages("char/1/sample")] == [0.0]
    taking.set()
    stop.set()
    await asyncio.wait_for(running, 5.0)
    assert stored(store) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert link.acked == [1, 2, 3, 4, 5]
    samples = [m["payload"]["value"] for m in link.messages("char/1/sample")]
    assert samples == [0.0, 1.0, 2.0, 3.0, 4.0]
