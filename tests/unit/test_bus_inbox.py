"""The inbox between the MQTT adapter and the pipeline: bounded, batched, wakeable."""

from __future__ import annotations

import asyncio
import threading

from bridge._mqtt import Inbox


async def test_take_waits_for_the_first_item_then_takes_a_batch() -> None:
    inbox = Inbox(maxlen=100)
    inbox.bind(asyncio.get_running_loop())
    taking = asyncio.create_task(inbox.take(3, 0.0))
    await asyncio.sleep(0)
    assert not taking.done()
    for item in range(5):
        inbox.put(item)
    assert await asyncio.wait_for(taking, 1) == [0, 1, 2]
    assert await inbox.take(3, 0.0) == [3, 4]
    assert len(inbox) == 0


async def test_take_waits_at_most_max_wait_for_a_batch_to_fill() -> None:
    inbox = Inbox(maxlen=100)
    inbox.bind(asyncio.get_running_loop())
    inbox.put("a")
    assert await asyncio.wait_for(inbox.take(10, 0.01), 1) == ["a"]


async def test_a_put_from_another_thread_wakes_the_consumer() -> None:
    inbox = Inbox(maxlen=100)
    inbox.bind(asyncio.get_running_loop())
    taking = asyncio.create_task(inbox.take(10, 0.0))
    await asyncio.sleep(0)
    thread = threading.Thread(target=inbox.put, args=("from paho",))
    thread.start()
    thread.join()
    assert await asyncio.wait_for(taking, 1) == ["from paho"]


async def test_take_returns_nothing_once_stopped_and_empty() -> None:
    inbox = Inbox(maxlen=100)
    inbox.bind(asyncio.get_running_loop())
    stop = asyncio.Event()
    taking = asyncio.create_task(inbox.take(10, 0.0, stop))
    await asyncio.sleep(0)
    stop.set()
    inbox.wake()
    assert await asyncio.wait_for(taking, 1) == []


async def test_droppable_items_are_dropped_when_full_the_others_never() -> None:
    inbox = Inbox(maxlen=2)
    inbox.bind(asyncio.get_running_loop())
    assert inbox.put(1, droppable=True)
    assert inbox.put(2, droppable=True)
    assert not inbox.put(3, droppable=True)  # QoS 0: dropped and counted
    assert inbox.put(4)  # QoS 1: the broker's Receive Maximum bounds these
    assert inbox.dropped == 1
    assert await inbox.take(10, 0.0) == [1, 2, 4]
