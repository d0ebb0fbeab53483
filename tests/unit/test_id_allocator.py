"""IdAllocator (bridge/store/_store.py): ids in blocks, the next block reserved ahead in the
background so that a batch seldom waits for one, blocks that grow under a steady stream, and
a failed reservation ahead made again in the caller's sight (docs/performance.md)."""

from __future__ import annotations

import asyncio

import pytest

from bridge.store import IdAllocator


class Counter:
    """The counter table: hands out blocks in order; ``gate`` holds a reservation until
    set; ``fail`` makes the next reservations fail."""

    def __init__(self) -> None:
        self.next = 1
        self.calls: list[tuple[str, int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = 0

    async def allocate(self, name: str, count: int) -> int:
        self.calls.append((name, count))
        await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise ConnectionRefusedError("database down")
        start, self.next = self.next, self.next + count
        return start


async def take(ids: IdAllocator, count: int) -> list[int]:
    await ids.reserve("sample", count)
    return [ids.take("sample") for _ in range(count)]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_next_block_is_reserved_ahead_and_taken_without_waiting() -> None:
    counter = Counter()
    ids = IdAllocator(counter, block=10)
    assert await take(ids, 4) == [1, 2, 3, 4]
    assert counter.calls == [("sample", 10)]  # more than half left: nothing ahead yet
    assert await take(ids, 2) == [5, 6]
    await settle()
    assert len(counter.calls) == 2  # half taken: the next block is on its way
    counter.gate.clear()  # from now on a reservation would wait
    assert await take(ids, 4) == [7, 8, 9, 10]
    got = await asyncio.wait_for(take(ids, 3), 1.0)  # the spare: no wait for the database
    assert got[0] == 11  # the block reserved ahead, in order
    assert len(counter.calls) == 2
    counter.gate.set()


async def test_a_batch_larger_than_the_spare_gets_a_block_of_its_own() -> None:
    counter = Counter()
    ids = IdAllocator(counter, block=10)
    await take(ids, 6)
    await settle()
    got = await take(ids, 25)
    # the spare (ids 11 to 30, twice the first block) is too small: abandoned, and a block
    # of at least 25 reserved for this batch, waited for
    assert counter.calls[:2] == [("sample", 10), ("sample", 20)]
    assert counter.calls[2][1] >= 25
    assert got == list(range(31, 56))


async def test_a_failed_reservation_ahead_is_made_again_by_the_batch_that_needs_it() -> None:
    counter = Counter()
    ids = IdAllocator(counter, block=10)
    await take(ids, 6)  # the reservation ahead starts ...
    counter.fail = 1  # ... and fails
    await settle()
    first = await take(ids, 4)
    then = await take(ids, 5)  # needs a new block: reserved again, here, and waited for
    assert first == [7, 8, 9, 10]
    assert len(set(first + then)) == 9
    assert counter.fail == 0


async def test_an_outage_reaches_the_caller_which_waits_it_out() -> None:
    counter = Counter()
    ids = IdAllocator(counter, block=10, ahead=False)
    counter.fail = 1
    with pytest.raises(ConnectionRefusedError):
        await ids.reserve("sample", 3)
    assert await take(ids, 3) == [1, 2, 3]


async def test_blocks_used_up_quickly_grow_up_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("bridge.store._store.time.monotonic", lambda: now[0])
    monkeypatch.setattr(IdAllocator, "BLOCK_MAX", 80)
    counter = Counter()
    ids = IdAllocator(counter, block=10)
    seen: list[int] = []
    for _ in range(60):  # a steady stream: a block lasts well under GROW_SECONDS
        seen += await take(ids, 5)
        await settle()
        now[0] += 0.1
    sizes = [count for _, count in counter.calls]
    assert sizes[:4] == [10, 20, 40, 80]
    assert max(sizes) == 80
    assert len(seen) == len(set(seen)) == 300
    now[0] += 60  # a quiet spell: the size stays, it does not grow further
    before = len(counter.calls)
    for _ in range(3):
        seen += await take(ids, 30)
        await settle()
        now[0] += IdAllocator.GROW_SECONDS + 1
    assert all(count <= 80 for _, count in counter.calls[before:])
    assert len(seen) == len(set(seen))
