"""Exceptions shared across the bridge: few, named by their cause, carrying their data.

An SPC signal is never an exception (it is an event); these are for inputs the bridge
refuses and for services it cannot reach.
"""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "BrokerUnavailable",
    "CommandRejected",
    "InvalidCommand",
    "StoreUnavailable",
    "UnknownCharacteristic",
]


class BridgeError(Exception):
    """Base of the bridge's own exceptions."""


class UnknownCharacteristic(BridgeError):
    """A reading or command names a characteristic the config does not have."""

    def __init__(self, characteristic: str | int) -> None:
        self.characteristic = characteristic
        super().__init__(f"unknown characteristic {characteristic!r}")


class InvalidCommand(BridgeError):
    """A command's payload cannot be understood (not JSON, missing or wrong fields)."""

    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        self.reason = reason
        super().__init__(reason)


class CommandRejected(BridgeError):
    """A well-formed command that cannot be carried out; nothing was changed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class BrokerUnavailable(BridgeError):
    """The MQTT broker could not be reached or refused the connection."""

    def __init__(self, host: str, port: int, reason: str = "") -> None:
        self.host = host
        self.port = port
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"MQTT broker {host}:{port} unavailable{detail}")


class StoreUnavailable(BridgeError):
    """The database could not be written; the batch will be retried."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"database {url} unavailable: {reason}")
