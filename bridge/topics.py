"""The bridge's own topics, parsed in one place (docs/topics.md): ids, commands, reply trees.

Pure functions, no I/O. A characteristic id in a topic is ASCII digits without a leading
zero (``openspc/char/02/reading``, ``openspc/char/٢/reading``, ``+1`` and `` 1`` name no
characteristic: Python's ``int()`` would take all four). A command's MQTT 5 response topic
must lie in the sender's reply tree, ``<prefix>/reply/<user>/...``, which the broker lets
only that user read (docs/security.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_REPLY_TOPIC_CHARS",
    "CommandTopic",
    "Topics",
    "parse_id",
    "reply_topic_fault",
]

_ID = re.compile(r"(?:0|[1-9][0-9]{0,11})")
"""ASCII digits, no leading zero, at most 12 of them (an id from config is an int)."""

MAX_REPLY_TOPIC_CHARS = 256
"""A longer response topic is refused: nobody needs one, and it would be echoed."""


def parse_id(level: str) -> int | None:
    """The characteristic id one topic level names, or None when it names none."""
    if _ID.fullmatch(level) is None:
        return None
    return int(level)


@dataclass(frozen=True, slots=True)
class CommandTopic:
    """What a command topic says: ``ack`` with its ``user``, or ``recalculate`` with the
    characteristic ``key`` (the level as sent) and its ``characteristic_id`` (None when the
    level is not an id)."""

    kind: str
    user: str = ""
    key: str = ""
    characteristic_id: int | None = None


class Topics:
    """Build and parse the topics under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._char = f"{prefix}/char/"
        self._ack = f"{prefix}/cmd/ack/"
        self._recalc = f"{prefix}/cmd/char/"
        self.errors = f"{prefix}/bridge/errors"
        self.reply_root = f"{prefix}/reply/"

    def reading_key(self, topic: str) -> str | None:
        """The id level of ``<prefix>/char/<id>/reading`` as sent (None: another topic)."""
        if topic.startswith(self._char) and topic.endswith("/reading"):
            key = topic[len(self._char) : -len("/reading")]
            if "/" not in key:
                return key
        return None

    def command(self, topic: str) -> CommandTopic | None:
        """The command a topic carries, or None when it is not a command topic."""
        if topic.startswith(self._ack):
            return CommandTopic("ack", user=topic[len(self._ack) :])
        if topic.startswith(self._recalc) and topic.endswith("/recalculate"):
            key = topic[len(self._recalc) : -len("/recalculate")]
            if "/" not in key:
                return CommandTopic("recalculate", key=key, characteristic_id=parse_id(key))
        return None

    def reply_fault(self, response_topic: str, user: str | None) -> str | None:
        """Why the bridge must not answer on ``response_topic`` (None: it may).

        ``user`` is the command's sender (an acknowledgement's topic names it); None for a
        command whose sender the bridge cannot know (recalculate): then any one user's tree
        is accepted, and the broker's ACL sees to it that only that user reads it.
        """
        return reply_topic_fault(response_topic, self.reply_root, user)


def reply_topic_fault(response_topic: str, reply_root: str, user: str | None) -> str | None:
    """Why ``response_topic`` is not in ``<reply_root><user>/...`` (None: it is)."""
    shown = response_topic[:80] + ("..." if len(response_topic) > 80 else "")
    if len(response_topic) > MAX_REPLY_TOPIC_CHARS:
        return f"response topic longer than {MAX_REPLY_TOPIC_CHARS} characters"
    if "\x00" in response_topic:
        return "response topic contains NUL"
    if "+" in response_topic or "#" in response_topic:
        return f"response topic {shown!r} contains a wildcard"
    if not response_topic.startswith(reply_root):
        where = f"{reply_root}{user}/..." if user else f"{reply_root}<user>/..."
        return f"response topic {shown!r} is not in the reply tree {where}"
    levels = response_topic[len(reply_root) :].split("/")
    if any(not level for level in levels):
        return f"response topic {shown!r} has an empty level"
    if user is not None and levels[0] != user:
        return f"response topic {shown!r} is not in {user}'s reply tree {reply_root}{user}/..."
    return None
