"""The split link's routing (docs/bridge.md, "Three connections"): history apart, every
other result on one connection in the order it was made, readings and their acks on the
bridge's own. paho is replaced by recorders (tests/unit/test_outbound.py)."""

from __future__ import annotations

from bridge._mqtt import Inbox, MqttClient, MqttOptions
from bridge._split_link import SplitLink, publishing_options
from bridge.wire import Topics
from tests.unit.test_outbound import FakePaho, puback

TOPICS = Topics("p")


def split() -> tuple[SplitLink, FakePaho, FakePaho, FakePaho]:
    options = MqttOptions("127.0.0.1", 1, "bridge", status_topic=TOPICS.status)
    link = SplitLink.from_options(options, Inbox(10), TOPICS.is_history)
    fakes = FakePaho(), FakePaho(), FakePaho()
    for client, fake in zip((link.readings, link.results, link.history), fakes, strict=True):
        client._client = fake  # type: ignore[assignment]  # the recorder stands in for paho
    return (link, *fakes)


def test_history_goes_apart_and_every_other_result_keeps_its_order() -> None:
    link, readings, results, history = split()
    link.publish(TOPICS.sample(1), b"s1")
    link.publish(TOPICS.history(1), b"h1", retain=True, coalesce=True)
    link.publish(TOPICS.limits(1), b"l1", retain=True, coalesce=True)
    link.publish(TOPICS.sample(1), b"s2")
    link.publish(TOPICS.alarms(1), b"a1", retain=True, coalesce=True)
    link.publish(TOPICS.history(1), b"h2", retain=True, coalesce=True)

    assert results.sent == [
        (TOPICS.sample(1), b"s1"),
        (TOPICS.limits(1), b"l1"),
        (TOPICS.sample(1), b"s2"),
        (TOPICS.alarms(1), b"a1"),
    ]
    assert history.sent == [(TOPICS.history(1), b"h1"), (TOPICS.history(1), b"h2")]
    assert readings.sent == []  # the readings connection publishes only the bridge's status
    assert link.outstanding == 6
    puback(link.results, results)
    puback(link.history, history)
    assert link.outstanding == 4


def test_a_history_sent_without_coalescing_stays_with_the_results() -> None:
    """Only retained state may travel apart: anything published as an event keeps its
    place among the events, whatever its topic."""
    link, _readings, results, history = split()
    link.publish(TOPICS.history(2), b"h")
    assert results.sent == [(TOPICS.history(2), b"h")]
    assert history.sent == []


def test_the_publishing_connections_have_ids_of_their_own_and_no_subscriptions() -> None:
    readings = MqttOptions(
        "broker", 1883, "plant-bridge", username="bridge", status_topic=TOPICS.status
    )
    readings.subscriptions = ("p/char/+/reading",)
    results = publishing_options(readings, "results")
    assert (results.client_id, results.username, results.host) == (
        "plant-bridge-results",
        "bridge",
        "broker",
    )
    assert results.subscriptions == ()
    assert results.status_topic is None  # the status and its Will stay with the readings
    assert isinstance(
        SplitLink.from_options(readings, Inbox(1), TOPICS.is_history).readings, MqttClient
    )


def test_is_history_knows_only_a_characteristics_history() -> None:
    assert TOPICS.is_history(TOPICS.history(12))
    assert not TOPICS.is_history(TOPICS.sample(12))
    assert not TOPICS.is_history("q/char/12/history")  # another prefix
    assert not TOPICS.is_history("p/bridge/history")
