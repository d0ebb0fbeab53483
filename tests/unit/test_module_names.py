"""Renamed modules stay importable under their former names (docs/architecture.md)."""

from __future__ import annotations

from bridge import _mosquitto, broker, mosquitto_admin


def test_bridge_broker_is_an_alias_of_mosquitto_admin_and_the_runner() -> None:
    assert broker.PlantBroker is _mosquitto.PlantBroker
    assert broker.UserStore is mosquitto_admin.UserStore
    assert broker.Role is mosquitto_admin.Role
    # names outside __all__ too: the alias forwards every attribute
    assert broker.parse_characteristics is mosquitto_admin.parse_characteristics
    assert broker.GUARD_LIBRARY == mosquitto_admin.GUARD_LIBRARY
    assert set(broker.__all__) == {*mosquitto_admin.__all__, "PlantBroker"}


def test_mosquitto_admin_runs_no_broker() -> None:
    assert not hasattr(mosquitto_admin, "PlantBroker")
