"""The role messages: what each broker user may do, for the HMI (docs/topics.md, "Role").

For every user in the ``roles.json`` that ``openspc users`` keeps beside Mosquitto's password
file (``[bridge] users_file``), the bridge publishes, retained, QoS 1::

    <prefix>/reply/<user>/role
    {"type": "role", "payload": {"user": "kim", "role": "engineer",
     "may": ["acknowledge", "recalculate", "query"]}}

in the user's own reply tree, which only that user (and the bridge) may read. The HMI
hides what ``may`` does not list; the broker's ACL stays the one that decides. The file is
read at start-up and watched while the bridge runs: a user added or given another role gets
a new message, a removed user's message is cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from bridge.wire.payloads import dumps, envelope
from bridge.wire.topics import Topics

__all__ = ["MAY", "RolePublisher", "read_roles", "role_payload"]

log = logging.getLogger("openspc.roles")

MAY: Mapping[str, tuple[str, ...]] = {
    "hmi": ("acknowledge", "query"),
    "engineer": ("acknowledge", "recalculate", "query"),
}
"""What each role may ask of the bridge; every other role: nothing."""

CHECK_SECONDS = 5.0
"""How often the users file is looked at for changes while the bridge runs."""


def role_payload(user: str, role: str) -> dict[str, object]:
    return {"user": user, "role": role, "may": list(MAY.get(role, ()))}


def read_roles(path: Path) -> dict[str, str]:
    """User -> role from a ``roles.json`` (bridge/mosquitto_admin.py writes it); ValueError
    or OSError when it cannot be read."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("users", []), list):
        raise ValueError('not a users file of `openspc users` (no "users" list)')
    found: dict[str, str] = {}
    for entry in data.get("users", []):
        if not isinstance(entry, dict):
            raise ValueError(f"a user entry that is not an object: {entry!r:.40}")
        name, role = entry.get("name"), entry.get("role")
        if not isinstance(name, str) or not isinstance(role, str) or not name:
            raise ValueError(f"a user entry without a name and role: {entry!r:.60}")
        if "/" in name or "+" in name or "#" in name:
            raise ValueError(f"user {name!r:.40} cannot name a topic level")
        found[name] = role
    return found


class RetainedPublisher(Protocol):
    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None: ...


class RolePublisher:
    """Publishes (and keeps current) the retained role message of every user in ``path``."""

    def __init__(self, mqtt: RetainedPublisher, prefix: str, path: Path) -> None:
        self.mqtt = mqtt
        self.prefix = prefix
        self.path = path
        self.published: dict[str, str] = {}  # user -> role, as last published
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file read
        self.every = CHECK_SECONDS

    def topic(self, user: str) -> str:
        return Topics(self.prefix).role(user)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def publish_all(self) -> int:
        """Read the file and publish what changed since the last time; the users published.
        A file that cannot be read is logged once and changes nothing."""
        stamp = self._stamp()
        self._seen = stamp
        try:
            roles = read_roles(self.path)
        except (OSError, ValueError) as exc:
            log.warning("users file %s not read (%s): no role messages", self.path, exc)
            return 0
        for user, role in sorted(roles.items()):
            if self.published.get(user) != role:
                message = dumps(envelope("role", role_payload(user, role)))
                self.mqtt.publish(self.topic(user), message, qos=1, retain=True)
        for gone in sorted(set(self.published) - set(roles)):
            self.mqtt.publish(self.topic(gone), b"", qos=1, retain=True)  # clears it
        self.published = roles
        return len(roles)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish again whenever the file changes (looked at every ``every`` seconds),
        until ``stop``."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)
            if not stop.is_set() and self._stamp() != self._seen:
                self.publish_all()
