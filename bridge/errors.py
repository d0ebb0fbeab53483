"""Exceptions shared across the bridge: few, named by their cause, carrying their data.

An SPC signal is never an exception (it is an event); these are for inputs the bridge
refuses and for services it cannot reach.
"""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "BrokerRefused",
    "BrokerUnavailable",
    "ClientIdInUse",
    "CommandElsewhere",
    "CommandRejected",
    "InvalidCommand",
    "PublishRefused",
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


class CommandElsewhere(BridgeError):
    """A command that another partition of the cluster carries out (docs/scale-out.md):
    this one acknowledges it to the broker and says nothing."""

    def __init__(self, command: str, partition: int) -> None:
        self.command = command
        self.partition = partition
        super().__init__(f"{command}: not for partition {partition}")


class BrokerUnavailable(BridgeError):
    """The MQTT broker could not be reached or refused the connection."""

    def __init__(self, host: str, port: int, reason: str = "") -> None:
        self.host = host
        self.port = port
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"MQTT broker {host}:{port} unavailable{detail}")


class BrokerRefused(BridgeError):
    """The MQTT broker answered, and refused the bridge: its CONNACK (wrong user name or
    password, not authorized) or, at start-up, a PUBACK (its ACL). Waiting will not mend it."""

    def __init__(self, host: str, port: int, user: str | None, reason: str) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.reason = reason
        super().__init__(
            f"MQTT broker {host}:{port} refused the connection of user {user!r}: {reason}"
            " (check [broker] username and password, and the broker's password file)"
        )


class PublishRefused(BrokerRefused):
    """At start-up the broker refused a publish of the bridge (MQTT 5 PUBACK 0x87)."""

    def __init__(self, host: str, port: int, user: str | None, topic: str, reason: str) -> None:
        self.topic = topic
        BridgeError.__init__(
            self,
            f"MQTT broker {host}:{port} refused to let user {user!r} publish to {topic}:"
            f" {reason} (the broker's ACL must let the bridge write its topics;"
            " docs/broker.md)",
        )
        self.host, self.port, self.user, self.reason = host, port, user, reason


class ClientIdInUse(BridgeError):
    """Another client connected with the bridge's client id and kept its session."""

    def __init__(self, client_id: str, user: str | None, other_online_at: str) -> None:
        self.client_id = client_id
        self.user = user
        self.other_online_at = other_online_at
        super().__init__(
            f"another client uses this bridge's MQTT client id {client_id!r} (user {user!r}):"
            f" a bridge with it said online at {other_online_at} and took the session back"
            " right after this one connected; stopping this bridge so the two do not knock"
            " each other off (give each bridge its own [broker] client_id)"
        )


class StoreUnavailable(BridgeError):
    """The database could not be written; the batch will be retried."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"database {url} unavailable: {reason}")
