"""The message bus: events to many handlers (failures isolated), commands to exactly one."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bridge.bus import MessageBus


@dataclass(frozen=True)
class Happened:
    n: int


@dataclass(frozen=True)
class Other:
    n: int


@dataclass(frozen=True)
class DoIt:
    n: int


async def test_each_event_reaches_its_handlers_in_order() -> None:
    seen: list[tuple[str, int]] = []

    async def first(event: Happened) -> None:
        seen.append(("first", event.n))

    def second(event: Happened) -> None:
        seen.append(("second", event.n))

    bus = MessageBus({Happened: [first, second], Other: [lambda e: seen.append(("other", e.n))]})
    await bus.publish([Happened(1), Other(2), Happened(3)])
    assert seen == [("first", 1), ("second", 1), ("other", 2), ("first", 3), ("second", 3)]


async def test_a_failing_handler_is_logged_and_isolated(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    def broken(event: Happened) -> None:
        raise RuntimeError("broker gone")

    bus = MessageBus()
    bus.subscribe(Happened, broken)
    bus.subscribe(Happened, lambda e: seen.append(e.n))
    await bus.publish([Happened(1), Happened(2)])
    assert seen == [1, 2]
    assert bus.failures == 2
    assert "broken" in caplog.text
    assert "broker gone" in caplog.text


async def test_an_event_without_handlers_is_ignored() -> None:
    bus = MessageBus()
    await bus.publish([Other(1)])
    assert bus.failures == 0


async def test_a_command_runs_its_one_handler_and_publishes_its_events() -> None:
    seen: list[int] = []

    async def handle(command: DoIt) -> list[Happened]:
        return [Happened(command.n * 10)]

    bus = MessageBus({Happened: [lambda e: seen.append(e.n)]}, {DoIt: handle})
    assert await bus.execute(DoIt(4)) == [Happened(40)]
    assert seen == [40]


async def test_a_command_error_reaches_the_caller_and_publishes_nothing() -> None:
    seen: list[int] = []

    async def handle(command: DoIt) -> list[Happened]:
        raise ValueError(f"refused {command.n}")

    bus = MessageBus({Happened: [lambda e: seen.append(e.n)]}, {DoIt: handle})
    with pytest.raises(ValueError, match="refused 1"):
        await bus.execute(DoIt(1))
    assert seen == []


async def test_a_command_has_exactly_one_handler() -> None:
    async def handle(command: DoIt) -> list[Happened]:
        return []

    bus = MessageBus()
    bus.register(DoIt, handle)
    with pytest.raises(ValueError, match="already has a handler"):
        bus.register(DoIt, handle)
    with pytest.raises(LookupError, match="no handler for Other"):
        await bus.execute(Other(1))
