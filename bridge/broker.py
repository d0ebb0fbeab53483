"""Former name of :mod:`bridge.mosquitto_admin` (Mosquitto users, ACLs and configuration),
kept so that ``from bridge.broker import ...`` goes on working; :class:`PlantBroker` now lives
with the other Mosquitto runner in :mod:`bridge._mosquitto`. New code imports from those."""

from __future__ import annotations

from typing import Any

from bridge import mosquitto_admin as _admin
from bridge._mosquitto import PlantBroker
from bridge.mosquitto_admin import *  # noqa: F403  # the alias re-exports the whole module

__all__ = [*_admin.__all__, "PlantBroker"]


def __getattr__(name: str) -> Any:
    """The admin module's other names too (``parse_characteristics``, ``validate_name``...)."""
    return getattr(_admin, name)
