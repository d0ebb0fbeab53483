"""Group commit (bridge/_group_commit.py) with the real inbox: a batch is what waits now,
plus what arrives while the previous batch is being written, and never more than asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge._group_commit import take_batch
from bridge.pipeline import Inbox


def inbox_with(*items: int) -> Inbox:
    inbox = Inbox(1000)
    inbox.bind(asyncio.get_running_loop())
    for item in items:
        inbox.put(item)
    return inbox


async def whole_batch(*args: Any, **kwargs: Any) -> list[Any]:
    """``take_batch``'s batch whole: the parts it hands over while a write is in flight,
    in order, then what it returns."""
    parts: list[Any] = []

    async def part(items: list[Any]) -> None:
        parts.extend(items)

    rest = await take_batch(*args, part=part, **kwargs)
    return parts + rest


async def test_nothing_being_written_takes_what_waits_at_once() -> None:
    inbox = inbox_with(1, 2, 3)
    assert await asyncio.wait_for(whole_batch(inbox, 10, 0.0, None), 1.0) == [1, 2, 3]
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    inbox.put(4)
    assert await asyncio.wait_for(whole_batch(inbox, 10, 0.0, done), 1.0) == [4]


async def test_a_write_in_flight_is_waited_for_and_what_arrived_meanwhile_joins() -> None:
    inbox = inbox_with(1)
    writing = asyncio.get_running_loop().create_future()
    taking = asyncio.create_task(whole_batch(inbox, 10, 0.0, writing))
    await asyncio.sleep(0)
    inbox.put(2)
    inbox.put(3)
    await asyncio.sleep(0.01)
    assert not taking.done()  # the write has not finished: the batch keeps gathering
    inbox.put(4)
    writing.set_result(None)
    assert await asyncio.wait_for(taking, 1.0) == [1, 2, 3, 4]
    assert len(inbox) == 0


async def test_a_group_is_never_more_than_batch_max() -> None:
    inbox = inbox_with(1, 2)
    writing = asyncio.get_running_loop().create_future()
    taking = asyncio.create_task(whole_batch(inbox, 3, 0.0, writing))
    await asyncio.sleep(0)
    for item in (3, 4, 5):
        inbox.put(item)
    writing.set_result(None)
    assert await asyncio.wait_for(taking, 1.0) == [1, 2, 3]
    assert await whole_batch(inbox, 3, 0.0, writing) == [4, 5]
    full = asyncio.get_running_loop().create_future()  # never finishes
    # batch_max reached without waiting for the write
    assert await asyncio.wait_for(whole_batch(inbox_with(7, 8, 9), 3, 0.0, full), 1.0) == [7, 8, 9]


async def test_a_failed_write_ends_the_wait_and_is_left_to_the_pipeline() -> None:
    inbox = inbox_with(1)
    writing = asyncio.get_running_loop().create_future()
    taking = asyncio.create_task(whole_batch(inbox, 10, 0.0, writing))
    await asyncio.sleep(0)
    inbox.put(2)
    writing.set_exception(RuntimeError("the database said no"))
    assert await asyncio.wait_for(taking, 1.0) == [1, 2]
    with pytest.raises(RuntimeError):
        writing.result()  # still there for the pipeline's wait_written


async def test_a_positive_batch_ms_keeps_the_fixed_wait() -> None:
    inbox = inbox_with(1)
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, inbox.put, 2)
    started = loop.time()
    assert await whole_batch(inbox, 10, 0.2, None) == [1, 2]
    assert loop.time() - started >= 0.2  # waited the whole batch_ms for more


async def test_stop_with_nothing_waiting_returns_nothing() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await whole_batch(inbox_with(), 10, 0.0, None, stop) == []


async def test_what_is_taken_is_counted_before_the_wait_for_the_write() -> None:
    """While the write in flight is retried through an outage, the items already taken are
    the pipeline's to hold: counted at once, so that ``buffer_max`` sees them."""
    inbox = inbox_with(1, 2)
    held: list[int] = []
    writing = asyncio.get_running_loop().create_future()
    taking = asyncio.create_task(whole_batch(inbox, 10, 0.0, writing, None, held.append))
    await asyncio.sleep(0.01)
    assert not taking.done()
    assert sum(held) == 2  # counted while still waiting for the write
    inbox.put(3)
    writing.set_result(None)
    assert await asyncio.wait_for(taking, 1.0) == [1, 2, 3]
    assert sum(held) == 3


async def test_a_batch_too_soon_after_the_last_waits_for_the_interval_and_gathers() -> None:
    """``not_before`` (``commit_interval_ms``): what arrives until then joins the batch."""
    inbox = inbox_with(1)
    loop = asyncio.get_running_loop()
    taking = asyncio.create_task(whole_batch(inbox, 10, 0.0, None, not_before=loop.time() + 0.05))
    await asyncio.sleep(0.01)
    assert not taking.done()  # too soon after the last batch
    inbox.put(2)
    assert await asyncio.wait_for(taking, 1.0) == [1, 2]


async def test_a_full_batch_or_a_reading_after_a_quiet_spell_goes_at_once() -> None:
    loop = asyncio.get_running_loop()
    full = inbox_with(1, 2, 3)
    later = loop.time() + 10.0
    assert await asyncio.wait_for(whole_batch(full, 3, 0.0, None, not_before=later), 1.0) == [
        1,
        2,
        3,
    ]
    quiet = inbox_with(4)
    past = loop.time() - 1.0
    assert await asyncio.wait_for(whole_batch(quiet, 3, 0.0, None, not_before=past), 0.1) == [4]


async def test_with_part_the_batch_is_handed_over_while_the_write_lasts() -> None:
    """``part``: what waits now and what arrives during the write is parsed at once (in
    order); what arrived just before the write ended is returned; nothing twice or lost."""
    inbox = inbox_with(1, 2)
    parts: list[list[int]] = []
    seen_before_write_ended: list[list[int]] = []
    writing = asyncio.get_running_loop().create_future()

    async def part(items: list[int]) -> None:
        parts.append(items)
        if not writing.done():
            seen_before_write_ended.append(items)

    taking = asyncio.create_task(take_batch(inbox, 10, 0.0, writing, part=part))
    await asyncio.sleep(0.01)
    assert parts == [[1, 2]]  # parsed without waiting for the write
    inbox.put(3)
    await asyncio.sleep(0.01)
    assert parts == [[1, 2], [3]]
    assert not taking.done()
    inbox.put(4)
    inbox.put(5)
    writing.set_result(None)
    rest = await asyncio.wait_for(taking, 1.0)
    assert [x for p in parts for x in p] + rest == [1, 2, 3, 4, 5]
    assert seen_before_write_ended[:2] == [[1, 2], [3]]


async def test_with_part_a_batch_stops_at_batch_max() -> None:
    inbox = inbox_with(1, 2)
    parts: list[list[int]] = []

    async def part(items: list[int]) -> None:
        parts.append(items)

    writing = asyncio.get_running_loop().create_future()
    taking = asyncio.create_task(take_batch(inbox, 3, 0.0, writing, part=part))
    await asyncio.sleep(0.01)
    for item in (3, 4, 5):
        inbox.put(item)
    assert await asyncio.wait_for(taking, 1.0) == []  # full before the write ended
    assert [x for p in parts for x in p] == [1, 2, 3]
    assert len(inbox) == 2
