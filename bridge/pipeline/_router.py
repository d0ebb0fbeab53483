"""The router: which way a delivery goes, by its topic alone.

In this order: a command (``<prefix>/cmd/...``); a characteristic's own topic (exact, then
its wildcard filters); the default ``<prefix>/char/<id>/reading``; a registered source's
filter (Sparkplug B); else nobody reads it (reported on the errors topic).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from paho.mqtt.client import topic_matches_sub

from bridge.pipeline._model import CharacteristicRoute, InboundSource
from bridge.wire.topics import CommandTopic, Topics, parse_id

__all__ = ["Route", "Router", "ToCommand", "ToReading", "ToSource", "Unrouted"]


@dataclass(frozen=True, slots=True)
class ToCommand:
    command: CommandTopic


@dataclass(frozen=True, slots=True)
class ToReading:
    """A reading of characteristic ``characteristic_id`` (None: ``key`` names none)."""

    characteristic_id: int | None
    own_topic: bool  # the characteristic's own topic: its value_path applies
    key: str = ""


@dataclass(frozen=True, slots=True)
class ToSource:
    source: InboundSource


@dataclass(frozen=True, slots=True)
class Unrouted:
    pass


Route = ToCommand | ToReading | ToSource | Unrouted

_UNROUTED = Unrouted()


class Router:
    """Topic -> :data:`Route`; and every filter the bridge subscribes to."""

    def __init__(
        self,
        topics: Topics,
        routes: Mapping[int, CharacteristicRoute],
        sources: Iterable[InboundSource] = (),
    ) -> None:
        self.topics = topics
        self.routes = dict(routes)
        self.sources: list[InboundSource] = list(sources)
        self._own_topics = {r.topic: r.id for r in routes.values() if r.topic}
        self._own_filters = [
            (r.topic, r.id)
            for r in routes.values()
            if r.topic and ("+" in r.topic or "#" in r.topic)
        ]
        # topic -> its reading route, for known characteristics only; bounded (a wildcard
        # topic may match many topics): cleared when full
        self._readings: dict[str, ToReading] = {}
        self._readings_max = 2 * len(self.routes) + 1024

    def add_source(self, source: InboundSource) -> None:
        self.sources.append(source)

    def topic_filters(self) -> list[str]:
        """Every filter the bridge subscribes to."""
        filters = self.topics.subscriptions()
        filters += sorted({r.topic for r in self.routes.values() if r.topic})
        filters += [s.topic_filter for s in self.sources]
        return list(dict.fromkeys(filters))

    def route(self, topic: str) -> Route:
        # a characteristic's reading topics, once seen, are looked up (docs/performance.md):
        # what they route to depends on the topic alone, and the parse below is a few us
        found = self._readings.get(topic)
        if found is not None:
            return found
        route = self._route(topic)
        if isinstance(route, ToReading) and route.characteristic_id in self.routes:
            if len(self._readings) >= self._readings_max:
                self._readings.clear()
            self._readings[topic] = route
        return route

    def _route(self, topic: str) -> Route:
        command = self.topics.command(topic)
        if command is not None:
            return ToCommand(command)
        cid = self._own_topics.get(topic)
        if cid is None:
            for topic_filter, fid in self._own_filters:
                if topic_matches_sub(topic_filter, topic):
                    cid = fid
                    break
        if cid is not None:
            return ToReading(cid, own_topic=True)
        key = self.topics.reading_key(topic)
        if key is not None:
            return ToReading(parse_id(key), own_topic=False, key=key)
        for source in self.sources:
            if topic_matches_sub(source.topic_filter, topic):
                return ToSource(source)
        return _UNROUTED
