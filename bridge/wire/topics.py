"""Every topic of the bridge's own tree, built and parsed in one place (docs/topics.md).

Pure functions, no I/O. :class:`Topics` builds each topic under one prefix (results
``<prefix>/char/<id>/<leaf>``, the bridge's ``<prefix>/bridge/...``, commands
``<prefix>/cmd/...``, reply trees ``<prefix>/reply/<user>/...``, the subscriptions and the
broker's ACL patterns) and parses what comes in (readings, commands, response topics).

A characteristic id in a topic is ASCII digits without a leading zero
(``openspc/char/02/reading``, ``openspc/char/٢/reading``, ``+1`` and `` 1`` name no
characteristic: Python's ``int()`` would take all four). A command's MQTT 5 response topic
must lie in the sender's reply tree, ``<prefix>/reply/<user>/...``, which the broker lets
only that user read (docs/security.md). Sparkplug B topics (``spBv1.0/...``) are the
Sparkplug package's (bridge/sparkplug/_types.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ACK",
    "ALARMS",
    "CAUSES",
    "DEFAULT_PREFIX",
    "HISTORY",
    "LIMITS",
    "MAX_REPLY_TOPIC_CHARS",
    "META",
    "READING",
    "SAMPLE",
    "VIOLATION",
    "CommandTopic",
    "Topics",
    "parse_id",
    "reading_topic",
    "reply_topic_fault",
]

DEFAULT_PREFIX = "openspc"
"""``[bridge] topic_prefix`` when the config names none."""

# the leaves of <prefix>/char/<id>/<leaf> (docs/topics.md)
READING = "reading"
SAMPLE = "sample"
VIOLATION = "violation"
ACK = "ack"
LIMITS = "limits"
HISTORY = "history"
ALARMS = "alarms"
META = "meta"
CAUSES = "causes"

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


def reading_topic(prefix: str, characteristic_id: int | str) -> str:
    """``<prefix>/char/<id>/reading``: a characteristic's standard reading topic."""
    return f"{prefix}/char/{characteristic_id}/{READING}"


class Topics:
    """Build and parse the topics under one prefix.

    A characteristic id may be given as a string too (a template's ``"{cid}"``, a
    wildcard's ``"+"``)."""

    __slots__ = (
        "_ack",
        "_char",
        "_recalc",
        "ack_filter",
        "bridge_tree",
        "char_tree",
        "cluster",
        "errors",
        "metrics",
        "prefix",
        "query_filter",
        "reading_filter",
        "recalculate_filter",
        "reply_root",
        "status",
        "tree",
    )

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self._char = f"{prefix}/char/"
        self._ack = f"{prefix}/cmd/ack/"
        self._recalc = f"{prefix}/cmd/char/"
        # the bridge's own, flat JSON (docs/topics.md)
        self.status = f"{prefix}/bridge/status"
        self.errors = f"{prefix}/bridge/errors"
        self.metrics = f"{prefix}/bridge/metrics"
        self.cluster = f"{prefix}/bridge/cluster"
        self.reply_root = f"{prefix}/reply/"
        # the filters the bridge subscribes to, and the trees the ACL names
        self.reading_filter = f"{prefix}/char/+/{READING}"
        self.ack_filter = f"{prefix}/cmd/ack/+"
        self.recalculate_filter = f"{prefix}/cmd/char/+/recalculate"
        self.query_filter = f"{prefix}/cmd/query/+"
        self.tree = f"{prefix}/#"
        self.char_tree = f"{prefix}/char/#"
        self.bridge_tree = f"{prefix}/bridge/#"

    # --- building -------------------------------------------------------------------------

    def char(self, characteristic_id: int | str, leaf: str) -> str:
        """``<prefix>/char/<id>/<leaf>``."""
        return f"{self._char}{characteristic_id}/{leaf}"

    def reading(self, characteristic_id: int | str) -> str:
        return f"{self._char}{characteristic_id}/{READING}"

    def sample(self, characteristic_id: int | str) -> str:
        return f"{self._char}{characteristic_id}/{SAMPLE}"

    def violation(self, characteristic_id: int | str) -> str:
        return f"{self._char}{characteristic_id}/{VIOLATION}"

    def ack(self, characteristic_id: int | str) -> str:
        return f"{self._char}{characteristic_id}/{ACK}"

    def limits(self, characteristic_id: int | str) -> str:
        return f"{self._char}{characteristic_id}/{LIMITS}"

    def history(self, characteristic_id: int | str) -> str:
        return f"{self._char}{characteristic_id}/{HISTORY}"

    def alarms(self, characteristic_id: int | str) -> str:
        return f"{self._char}{characteristic_id}/{ALARMS}"

    def meta(self, characteristic_id: int | str) -> str:
        return f"{self._char}{characteristic_id}/{META}"

    def causes(self, characteristic_id: int | str) -> str:
        return f"{self._char}{characteristic_id}/{CAUSES}"

    def char_filter(self, leaf: str) -> str:
        """``<prefix>/char/+/<leaf>``: one leaf of every characteristic."""
        return f"{self._char}+/{leaf}"

    def node(self, node: str) -> str:
        """``<prefix>/bridge/nodes/<node>``: one bridge node of a cluster."""
        return f"{self.prefix}/bridge/nodes/{node}"

    def node_metrics(self, node: str) -> str:
        """``<prefix>/bridge/nodes/<node>/metrics``: a cluster node's metrics."""
        return f"{self.node(node)}/metrics"

    @property
    def node_metrics_filter(self) -> str:
        """Every cluster node's metrics."""
        return f"{self.prefix}/bridge/nodes/+/metrics"

    def node_of_metrics(self, topic: str) -> str | None:
        """The node whose metrics ``topic`` carries, or None for any other topic."""
        head, tail = f"{self.prefix}/bridge/nodes/", "/metrics"
        if not (topic.startswith(head) and topic.endswith(tail)):
            return None
        node = topic[len(head) : -len(tail)]
        return node if node and "/" not in node else None

    def subscriptions(self) -> list[str]:
        """The filters of the bridge's own inbound topics: readings and commands."""
        return [self.reading_filter, self.ack_filter, self.recalculate_filter]

    def ack_command(self, user: str) -> str:
        """``<prefix>/cmd/ack/<user>``: where ``user`` acknowledges violations."""
        return f"{self._ack}{user}"

    def recalculate_command(self, characteristic_id: int | str) -> str:
        """``<prefix>/cmd/char/<id>/recalculate``."""
        return f"{self._recalc}{characteristic_id}/recalculate"

    def query_command(self, user: str) -> str:
        """``<prefix>/cmd/query/<user>``: where ``user`` asks for older samples."""
        return f"{self.prefix}/cmd/query/{user}"

    def reply(self, user: str, *levels: str) -> str:
        """``<prefix>/reply/<user>[/<level>...]``: in ``user``'s reply tree."""
        return "/".join((f"{self.reply_root}{user}", *levels))

    def reply_tree(self, user: str) -> str:
        """``<prefix>/reply/<user>/#``: all of ``user``'s reply tree (an ACL pattern)."""
        return self.reply(user, "#")

    def role(self, user: str) -> str:
        """``<prefix>/reply/<user>/role``: ``user``'s retained role message."""
        return self.reply(user, "role")

    # --- parsing --------------------------------------------------------------------------

    def is_history(self, topic: str) -> bool:
        """A characteristic's retained ``history`` (sent apart from the other results by a
        split link: bridge/_split_link.py)."""
        return topic.startswith(self._char) and topic.endswith(f"/{HISTORY}")

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
