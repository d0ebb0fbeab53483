"""The router: which way a delivery goes, by its topic alone; asked again, the same answer."""

from __future__ import annotations

from bridge.pipeline import CharacteristicRoute
from bridge.pipeline._router import Router, ToCommand, ToReading, Unrouted
from bridge.wire.topics import CommandTopic, Topics

ROUTES = {
    1: CharacteristicRoute(1, 1, 25),
    2: CharacteristicRoute(2, 1, 25, topic="plant/line1/gauge"),
    3: CharacteristicRoute(3, 1, 25, topic="plant/+/temp"),
}


def routes_of(router: Router, topics: list[str]) -> list[object]:
    return [router.route(topic) for topic in topics]


def test_every_kind_of_topic_routes_the_same_the_second_time() -> None:
    router = Router(Topics("p"), ROUTES)
    topics = [
        "p/char/1/reading",
        "p/char/9/reading",  # no such characteristic: routed, refused by the batcher
        "p/char/x/reading",
        "plant/line1/gauge",
        "plant/line7/temp",
        "p/cmd/ack/alice",
        "p/cmd/char/1/recalculate",
        "elsewhere/1",
    ]
    first = routes_of(router, topics)
    assert first == [
        ToReading(1, own_topic=False, key="1"),
        ToReading(9, own_topic=False, key="9"),
        ToReading(None, own_topic=False, key="x"),
        ToReading(2, own_topic=True),
        ToReading(3, own_topic=True),
        ToCommand(CommandTopic("ack", user="alice")),
        ToCommand(CommandTopic("recalculate", key="1", characteristic_id=1)),
        Unrouted(),
    ]
    assert routes_of(router, topics) == first


def test_what_the_router_keeps_of_a_wildcard_is_bounded() -> None:
    router = Router(Topics("p"), ROUTES)
    many = [f"plant/line{k}/temp" for k in range(3 * router._readings_max)]
    assert all(route == ToReading(3, own_topic=True) for route in routes_of(router, many))
    assert len(router._readings) <= router._readings_max
