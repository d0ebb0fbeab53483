"""The pipeline's guarantees around poison messages and replies, with a fake store and a
fake MQTT link: no broker, no database, milliseconds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import pytest

from bridge._mqtt import Inbound, Inbox
from bridge.bus import MessageBus
from bridge.domain import AcknowledgeViolation, SampleRecorded
from bridge.errors import CommandRejected
from bridge.pipeline import CharacteristicRoute, Pipeline
from bridge.store import BatchWrite, DeadLetter
from engine import CharacteristicEngine, CharacteristicSpec

T = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
P = "openspc"


@dataclass
class FakeStore:
    """Commits what a unit of work wrote; refuses text a database would refuse."""

    url: str = "fake://"
    readings: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    transactions: int = 0
    _next: int = 1

    async def allocate(self, name: str, count: int) -> int:
        start, self._next = self._next, self._next + count
        return start

    def unit_of_work(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)


@dataclass
class FakeUnitOfWork:
    store: FakeStore
    staged: BatchWrite = field(default_factory=BatchWrite)
    letters: list[DeadLetter] = field(default_factory=list)

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def write_batch(self, batch: BatchWrite, now: datetime) -> None:
        self.store.transactions += 1
        for row in batch.readings:
            for key in ("batch", "operator"):
                if row[key] is not None:
                    row[key].encode("utf-8")  # a lone surrogate raises, as in SQLite
        self.staged = batch

    async def add_dead_letters(self, letters: list[DeadLetter], now: datetime) -> None:
        self.letters = list(letters)

    async def commit(self) -> None:
        self.store.readings += self.staged.readings
        self.store.samples += self.staged.samples
        self.store.dead += self.letters


@dataclass
class FakeLink:
    generation: int = 1
    sessions: int = 1
    acked: list[int] = field(default_factory=list)
    published: list[tuple[str, bytes]] = field(default_factory=list)
    replies: list[tuple[str, bytes]] = field(default_factory=list)
    reply_error: Exception | None = None

    def ack(self, message: Inbound) -> None:
        self.acked.append(message.mid)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, **kw: Any) -> None:
        self.published.append((topic, payload))

    def reply(self, message: Inbound, payload: bytes) -> None:
        if self.reply_error is not None:
            raise self.reply_error
        assert message.response_topic is not None
        self.replies.append((message.response_topic, payload))

    async def wait_window(self) -> None:
        return None

    def errors(self) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p in self.published if t == f"{P}/bridge/errors"]


def build() -> tuple[Pipeline, FakeStore, FakeLink, list[int], list[Any]]:
    store, link = FakeStore(), FakeLink()
    recorded: list[int] = []
    commands: list[Any] = []
    bus = MessageBus({SampleRecorded: [lambda e: recorded.append(e.sample.characteristic_id)]})

    async def refuse(command: Any) -> list[Any]:
        commands.append(command)
        raise CommandRejected(f"violation {command.request['violation_id']} does not exist")

    bus.register(AcknowledgeViolation, refuse)
    routes = {cid: CharacteristicRoute(cid, 1, 25) for cid in (1, 2)}
    engines = {cid: CharacteristicEngine(CharacteristicSpec(cid)) for cid in (1, 2)}
    pipeline = Pipeline(
        prefix=P,
        routes=routes,
        engines=engines,
        store=store,  # type: ignore[arg-type]  # a fake with the same surface
        mqtt=link,  # type: ignore[arg-type]
        bus=bus,
        inbox=Inbox(100),
        clock=lambda: T,
    )
    return pipeline, store, link, recorded, commands


_mid = iter(range(1, 1_000_000))


def msg(topic: str, payload: str | bytes, response_topic: str | None = None) -> Inbound:
    data = payload if isinstance(payload, bytes) else payload.encode()
    return Inbound(f"{P}/{topic}", data, 1, next(_mid), 1, T, 0.0, response_topic, b"c")


async def run(pipeline: Pipeline, items: list[Inbound]) -> None:
    pipeline.held += len(items)
    await pipeline.process(items)
    await pipeline.wait_written()


async def test_a_poison_message_is_dead_lettered_and_the_rest_of_its_batch_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bridge.readings.text_fault", lambda *a, **k: None)
    monkeypatch.setattr("engine.alarms._context.text_fault", lambda *a, **k: None)
    pipeline, store, link, recorded, _ = build()
    poison = json.dumps({"value": 1.5, "batch": "\ud800"})
    items = [
        *(msg("char/2/reading", str(v)) for v in (1, 2, 3)),
        msg("char/1/reading", poison),
        msg("char/1/reading", "4"),
        msg("char/2/reading", "5"),
    ]
    await run(pipeline, items)
    assert [(r["characteristic_id"], r["value"]) for r in store.readings] == [
        (2, 1.0), (2, 2.0), (2, 3.0), (1, 4.0), (2, 5.0),
    ]  # fmt: skip
    assert [s["characteristic_id"] for s in store.samples] == [2, 2, 2, 1, 2]
    assert [(d.topic, d.payload) for d in store.dead] == [(f"{P}/char/1/reading", poison.encode())]
    assert "surrogates not allowed" in store.dead[0].reason
    assert sorted(link.acked) == sorted(m.mid for m in items)  # each exactly once
    assert recorded == [2, 2, 2, 1, 2]  # the poison's sample is not published
    [error] = link.errors()
    assert error["reason"].startswith("kept as a dead letter: UnicodeEncodeError")
    assert pipeline.metrics.dead_letters == 1
    assert pipeline.held == 0


async def test_a_reply_that_raises_touches_neither_the_batch_nor_the_acks() -> None:
    pipeline, store, link, recorded, commands = build()
    link.reply_error = ValueError("Publish topic cannot contain wildcards")
    command = msg(
        "cmd/ack/alice",
        '{"violation_id": 9, "reason": "Other"}',
        response_topic=f"{P}/reply/alice/x",
    )
    items = [
        msg("char/1/reading", "1"),
        msg("char/1/reading", "2"),
        command,
        msg("char/1/reading", "3"),
    ]
    await run(pipeline, items)
    assert [r["value"] for r in store.readings] == [1.0, 2.0, 3.0]  # none twice
    assert recorded == [1, 1, 1]
    assert sorted(link.acked) == sorted(m.mid for m in items)
    assert len(commands) == 1
    reasons = [e["reason"] for e in link.errors()]
    assert reasons == [
        "violation 9 does not exist",
        "reply not sent: Publish topic cannot contain wildcards",
    ]
    assert pipeline.held == 0


@pytest.mark.parametrize(
    "response_topic", [f"{P}/#", f"{P}/bridge/status", f"{P}/reply/bob/x", f"{P}/reply//x"]
)
async def test_a_command_with_a_foreign_response_topic_is_not_carried_out(
    response_topic: str,
) -> None:
    pipeline, store, link, _, commands = build()
    command = msg("cmd/ack/alice", '{"violation_id": 9, "reason": "Other"}', response_topic)
    await run(pipeline, [msg("char/1/reading", "1"), command, msg("char/1/reading", "2")])
    assert commands == []
    assert link.replies == []
    assert [r["value"] for r in store.readings] == [1.0, 2.0]
    [error] = link.errors()
    assert error["topic"] == f"{P}/cmd/ack/alice"
    assert error["reason"].startswith("not carried out: response topic")
    assert pipeline.metrics.commands_rejected == 1
    assert len(link.acked) == 3
