"""The plant phase's lean clients (bridge/_bench/_lean.py) against a real Mosquitto: what the
publisher sends the subscriber gets, every message once, in order per topic, timed."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from bridge._bench._clients import Layout, PublishResult, SubscribeResult
from bridge._bench._lean import publisher, subscriber
from bridge._mosquitto import MosquittoProcess, find_mosquitto
from bridge.testing import unique_topic

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed"),
]

_ctx = multiprocessing.get_context("spawn")


def _done(queue: Any) -> Any:
    kind, value = queue.get(timeout=60)
    assert kind == "done"
    return value


@pytest.mark.parametrize("rate", [None, 4_000.0])
def test_every_reading_arrives_once_in_order_and_timed(rate: float | None) -> None:
    prefix = unique_topic()
    layout = Layout(tuple(range(1, 21)), (1,) * 20, 20 * 30, prefix + "/{cid}")
    with MosquittoProcess() as broker:
        sub_out, pub_out, go = _ctx.Queue(), _ctx.Queue(), _ctx.Event()
        listen = (broker.port, prefix + "/#", layout.count(), "arrivals", 10.0, 0.0, sub_out)
        sub = _ctx.Process(target=subscriber, args=listen, daemon=True)
        sub.start()
        assert sub_out.get(timeout=30) == ("ready", None)
        send = (broker.port, layout, rate, True, go, pub_out)
        pub = _ctx.Process(target=publisher, args=send, daemon=True)
        pub.start()
        assert pub_out.get(timeout=30) == ("ready", None)
        go.set()
        published: PublishResult = _done(pub_out)
        received: SubscribeResult = _done(sub_out)
        pub.join(10)
        sub.join(10)

    assert published.errors == 0
    sent = published.sent_ns
    assert len(sent) == layout.count() == 600
    assert sent == sorted(sent)
    assert received.count == 600
    assert not received.timed_out
    arrivals = received.arrivals
    assert set(arrivals) == {layout.topic.format(cid=cid) for cid in layout.ids}
    for k, cid in enumerate(layout.ids):
        times = list(arrivals[layout.topic.format(cid=cid)])
        assert len(times) == 30
        assert times == sorted(times)
        # the j-th arrival of a topic came after its j-th reading was sent
        assert all(t >= sent[j * 20 + k] for j, t in enumerate(times))
    if rate:  # paced: 600 readings at 4,000/s take about 0.15 s, not all at once
        assert (sent[-1] - sent[0]) / 1e9 >= 0.9 * 599 / rate
