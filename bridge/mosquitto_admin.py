"""Mosquitto administration: its configuration, its users and their access rights.

- :func:`render_config` turns the shipped ``mosquitto/mosquitto.conf`` into the text for a
  given :class:`BrokerLayout` (ports, bind address, directories). The shipped file is the
  one source of truth: rendered with the default layout it comes back unchanged.
- :func:`render_acl` turns a set of :class:`BrokerUser` (name, :class:`Role`, what it was
  given) into a Mosquitto ACL file. Mosquitto ACLs are per user, so the roles live in a small
  JSON file beside the password file and the ACL is regenerated from it on every change.
- :func:`render_guard_rules` writes the rules of the guard plugin
  (``mosquitto/plugin/openspc_guard.c``): which client ids are reserved for which users,
  and whose session keeps a queue while offline; :func:`guard_plugin` finds or builds it.
- :class:`UserStore` keeps the four files (password file made by ``mosquitto_passwd``,
  ``roles.json``, ``acl``, ``guard.rules``) in step; :func:`reload_broker` asks a running
  Mosquitto to re-read them (SIGHUP).

Running Mosquitto is not here: :class:`bridge._mosquitto.PlantBroker` runs the rendered
config with its users in a directory of its own (``openspc demo``, the security and HMI
tests), on the same process management as :class:`bridge._mosquitto.MosquittoProcess`.
``bridge.broker`` is this module's former name, kept as an alias.

docs/broker.md explains each role and every choice made in the configuration.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from bridge._package_data import broker_template, plugin_dir
from bridge.wire.topics import DEFAULT_PREFIX, Topics

__all__ = [
    "DEFAULT_BRIDGE_CLIENT_ID",
    "DEFAULT_TEMPLATE",
    "GUARD_SOURCE",
    "BrokerLayout",
    "BrokerNotRunning",
    "BrokerUser",
    "GuardPluginUnavailable",
    "InvalidPassword",
    "InvalidTopic",
    "InvalidUserName",
    "InvalidUserScope",
    "PasswordToolFailed",
    "Role",
    "UnknownUser",
    "UserStore",
    "check_password",
    "guard_plugin",
    "prepare_data_dir",
    "reload_broker",
    "render_acl",
    "render_config",
    "render_guard_rules",
]

DEFAULT_TEMPLATE = broker_template()  # package data (docs/packaging.md)
# the guard plugin's C source travels with the shipped config (docs/broker.md)
GUARD_SOURCE = plugin_dir() / "openspc_guard.c"
GUARD_LIBRARY = "openspc_guard.so"
DEFAULT_BRIDGE_CLIENT_ID = "openspc-bridge"  # [broker] client_id's default (bridge/config.py)
MIN_PASSWORD_LENGTH = 8
_BROKER_USER = "mosquitto"  # the user Mosquitto drops to when started as root

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_PREFIX = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")
# a Sparkplug group or edge node id: one topic level, no wildcard (Sparkplug B 3.0, 4.1.1)
_SPARKPLUG_ID = re.compile(r"[^/+#\s\x00]{1,64}")
_CHARACTERISTIC_ID = re.compile(r"[1-9][0-9]{0,17}")  # ASCII, no leading zeros (docs/topics.md)
_SPARKPLUG_OUT = ("NBIRTH", "NDATA", "NDEATH")
_SPARKPLUG_DEVICE_OUT = ("DBIRTH", "DDATA", "DDEATH")


class Role(StrEnum):
    """What a named broker user is for; each role maps to a fixed set of ACL lines."""

    HMI = "hmi"  # an operator's HMI: reads results, acknowledges as itself
    ENGINEER = "engineer"  # an HMI user who may also ask for control limits to be recalculated
    GAUGE = "gauge"  # a gauge or PLC: writes the readings of its characteristics / topics
    EDGE = "edge"  # a Sparkplug B edge node: writes its own births/data/deaths, reads commands
    BRIDGE = "bridge"  # the OpenSPC bridge: reads everything, the only writer of results
    GATEWAY = "gateway"  # the WebSocket gateway (openspc gateway): reads results, writes nothing


class InvalidUserName(ValueError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"user name {name!r} {reason}")


class InvalidTopic(ValueError):
    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        self.reason = reason
        super().__init__(f"topic {topic!r} {reason}")


class InvalidPassword(ValueError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"password {reason}")


class InvalidUserScope(ValueError):
    """An option that does not fit the user's role, or a bad characteristic/Sparkplug id."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"user {name!r}: {reason}")


class GuardPluginUnavailable(RuntimeError):
    """The guard plugin is not built and cannot be built here (no cc, no Mosquitto headers)."""

    def __init__(self, source: Path, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(
            f"cannot build Mosquitto's guard plugin from {source}: {reason} "
            "(run scripts/setup, or apt-get install gcc mosquitto-dev libmosquitto-dev)"
        )


class UnknownUser(LookupError):
    def __init__(self, name: str, roles_file: Path) -> None:
        self.name = name
        self.roles_file = roles_file
        super().__init__(f"no broker user {name!r} in {roles_file}")


class PasswordToolFailed(RuntimeError):
    def __init__(self, command: str, output: str) -> None:
        self.command = command
        self.output = output
        super().__init__(f"{command} failed: {output.strip() or 'no output'}")


class BrokerNotRunning(RuntimeError):
    def __init__(self, pid_file: Path, reason: str) -> None:
        self.pid_file = pid_file
        self.reason = reason
        super().__init__(f"cannot reload Mosquitto from pid file {pid_file}: {reason}")


def validate_name(name: str) -> str:
    """A user name usable in the password file, the ACL and as the ack topic's last level."""
    if not _NAME.fullmatch(name):
        raise InvalidUserName(
            name,
            "must be 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter "
            "or digit (no '/', '+', '#', ':' or spaces)",
        )
    return name


def validate_topic(topic: str) -> str:
    """A topic or filter that may safely go into one ACL line."""
    if not topic or len(topic) > 256:
        raise InvalidTopic(topic, "must be 1-256 characters")
    if any(ch.isspace() or ch == "\0" for ch in topic):
        raise InvalidTopic(topic, "must not contain spaces or control characters")
    if topic.startswith("$"):
        raise InvalidTopic(topic, "must not start with '$' (reserved by the broker)")
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise InvalidTopic(topic, "may use '#' only as the whole last level")
        if "+" in level and level != "+":
            raise InvalidTopic(topic, "may use '+' only as a whole level")
    return topic


def validate_prefix(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise InvalidTopic(prefix, "is not a usable topic prefix (levels of letters/digits)")
    return prefix


def check_password(name: str, password: str) -> str:
    """A password the broker may store for ``name``: one line, at least 8 characters, not
    the user name (docs/security.md). Raises :class:`InvalidPassword`."""
    if not password or "\n" in password or "\r" in password:
        raise InvalidPassword("must be one non-empty line")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidPassword(f"must be at least {MIN_PASSWORD_LENGTH} characters long")
    if password.casefold() == name.casefold():
        raise InvalidPassword("must not be the user name")
    return password


def validate_client_id(client_id: str) -> str:
    if not _CLIENT_ID.fullmatch(client_id):
        raise InvalidUserName(
            client_id,
            "is not a usable client id (1-64 letters, digits, '_', '.', ':', '@' or '-', "
            "starting with a letter or digit)",
        )
    return client_id


def parse_characteristics(text: str) -> tuple[int, ...]:
    """``"1,2"`` -> ``(1, 2)``: ASCII digits without leading zeros, as topics spell them."""
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not _CHARACTERISTIC_ID.fullmatch(part):
            raise InvalidTopic(
                text, "is not a list of characteristic ids (e.g. 1,2: digits 0-9, no leading 0)"
            )
        ids.append(int(part))
    return tuple(sorted(set(ids)))


@dataclass(frozen=True)
class BrokerUser:
    """A named broker user: its role, and what it was given (docs/broker.md).

    - gauge: ``characteristics`` (it writes ``<prefix>/char/<id>/reading`` for exactly
      those) and ``topics`` (a characteristic's own topics, filters allowed);
    - edge: its Sparkplug ``group`` and ``edge`` node, and ``topics``;
    - bridge: ``client_id``, the bridge's ``[broker] client_id``: that id and every id
      starting with ``<client_id>-`` are reserved for the bridge's users.

    ``legacy`` marks a gauge or edge user loaded from a roles.json written before scoping
    existed: it keeps its old, unscoped rights until it is added again (docs/broker.md).
    """

    name: str
    role: Role
    topics: tuple[str, ...] = ()
    characteristics: tuple[int, ...] = ()
    group: str | None = None
    edge: str | None = None
    client_id: str | None = None
    legacy: bool = False

    def __post_init__(self) -> None:
        validate_name(self.name)
        for topic in self.topics:
            validate_topic(topic)
        if self.topics and self.role not in (Role.GAUGE, Role.EDGE):
            raise InvalidUserScope(
                self.name, f"--topic is for gauge and edge users, not {self.role}"
            )
        if self.characteristics and self.role is not Role.GAUGE:
            raise InvalidUserScope(
                self.name, f"--characteristics is for gauge users, not {self.role}"
            )
        for cid in self.characteristics:
            if not _CHARACTERISTIC_ID.fullmatch(str(cid)):
                raise InvalidUserScope(self.name, f"characteristic id {cid!r} must be 1 or more")
        if (self.group is None) != (self.edge is None):
            raise InvalidUserScope(self.name, "--group and --edge go together")
        if self.group is not None and self.role is not Role.EDGE:
            raise InvalidUserScope(self.name, f"--group/--edge are for edge users, not {self.role}")
        for level in (self.group, self.edge):
            if level is not None and not _SPARKPLUG_ID.fullmatch(level):
                raise InvalidUserScope(
                    self.name,
                    f"Sparkplug id {level!r} must be 1-64 characters without '/', '+', '#', "
                    "spaces or NUL",
                )
        if self.client_id is not None:
            if self.role is not Role.BRIDGE:
                raise InvalidUserScope(
                    self.name, f"--client-id is for bridge users, not {self.role}"
                )
            validate_client_id(self.client_id)

    @property
    def bridge_client_id(self) -> str:
        return self.client_id or DEFAULT_BRIDGE_CLIENT_ID

    def to_json(self) -> dict[str, object]:
        entry: dict[str, object] = {"name": self.name, "role": self.role.value}
        if self.role in (Role.GAUGE, Role.EDGE):
            entry["topics"] = list(self.topics)
        if self.role is Role.GAUGE and not self.legacy:
            entry["characteristics"] = list(self.characteristics)
        if self.role is Role.EDGE and not self.legacy:
            entry["sparkplug"] = (
                None if self.group is None else {"group": self.group, "edge": self.edge}
            )
        if self.role is Role.BRIDGE:
            entry["client_id"] = self.bridge_client_id
        return entry

    @staticmethod
    def from_json(entry: dict[str, object]) -> BrokerUser:
        """One roles.json entry; entries of older files (no scoping) still load."""
        role = Role(str(entry["role"]))
        topics = tuple(str(t) for t in entry.get("topics", ()) or ())  # type: ignore[attr-defined]  # a JSON list
        characteristics = tuple(
            int(c)
            for c in entry.get("characteristics", ()) or ()  # type: ignore[attr-defined]  # a JSON list
        )
        sparkplug = entry.get("sparkplug")
        group = edge = None
        if isinstance(sparkplug, dict):
            group, edge = str(sparkplug["group"]), str(sparkplug["edge"])
        legacy = (role is Role.GAUGE and "characteristics" not in entry) or (
            role is Role.EDGE and "sparkplug" not in entry
        )
        client_id = entry.get("client_id")
        return BrokerUser(
            str(entry["name"]),
            role,
            topics,
            characteristics,
            group,
            edge,
            str(client_id) if client_id is not None else None,
            legacy,
        )


def _results(prefix: str) -> list[str]:
    """What every named user (and an anonymous browser) may read: results and status.

    Not ``<prefix>/#``: that would include every user's reply tree (docs/broker.md)."""
    topics = Topics(prefix)
    return [f"topic read {topics.char_tree}", f"topic read {topics.bridge_tree}"]


def _role_lines(user: BrokerUser, prefix: str) -> list[str]:
    topics = Topics(prefix)
    own_replies = f"topic read {topics.reply_tree(user.name)}"
    match user.role:
        case Role.HMI:
            return [
                *_results(prefix),
                own_replies,
                f"topic write {topics.ack_command(user.name)}",
                # older samples (docs/topics.md, "Query")
                f"topic write {topics.query_command(user.name)}",
            ]
        case Role.ENGINEER:
            return [
                *_results(prefix),
                own_replies,
                f"topic write {topics.ack_command(user.name)}",
                f"topic write {topics.query_command(user.name)}",
                f"topic write {topics.recalculate_filter}",
            ]
        case Role.GAUGE:
            if user.legacy:
                readings = [f"topic write {topics.reading_filter}"]
            else:
                readings = [f"topic write {topics.reading(c)}" for c in user.characteristics]
            return [
                *_results(prefix),
                *readings,
                *(f"topic write {topic}" for topic in user.topics),
            ]
        case Role.EDGE:
            if user.legacy:
                node = [
                    f"topic write spBv1.0/+/{kind}/#"
                    for kind in (*_SPARKPLUG_OUT, *_SPARKPLUG_DEVICE_OUT)
                ]
                node += ["topic read spBv1.0/+/NCMD/#", "topic read spBv1.0/+/DCMD/#"]
            elif user.group is not None:
                g, e = user.group, user.edge
                node = [f"topic write spBv1.0/{g}/{kind}/{e}" for kind in _SPARKPLUG_OUT]
                node += [f"topic write spBv1.0/{g}/{kind}/{e}/+" for kind in _SPARKPLUG_DEVICE_OUT]
                node += [f"topic read spBv1.0/{g}/NCMD/{e}", f"topic read spBv1.0/{g}/DCMD/{e}/+"]
            else:
                node = []
            return [
                *_results(prefix),
                *node,
                "topic read spBv1.0/STATE/#",
                *(f"topic write {topic}" for topic in user.topics),
            ]
        case Role.GATEWAY:
            return _results(prefix)
        case Role.BRIDGE:
            return [
                f"topic readwrite {Topics(prefix).tree}",
                "topic readwrite spBv1.0/#",
                "topic read #",
            ]


def render_acl(users: Iterable[BrokerUser], prefix: str = DEFAULT_PREFIX) -> str:
    """The Mosquitto ACL text for ``users``.

    Anonymous clients (the WebSocket listener's browsers; the MQTT listener refuses them)
    may read results and status only: no reply tree, no command, no reading."""
    validate_prefix(prefix)
    lines = [
        "# Generated by `openspc users` from roles.json beside the password file.",
        "# Do not edit: the next `openspc users add/remove` rewrites it (docs/broker.md).",
        "",
        "# Anonymous clients (browsers showing the HMI): read results and status, write nothing.",
        *_results(prefix),
    ]
    for user in sorted(users, key=lambda u: u.name):
        note = "  (legacy: unscoped, add it again with its scope)" if user.legacy else ""
        lines += ["", f"# {user.name}: {user.role.value}{note}", f"user {user.name}"]
        lines += _role_lines(user, prefix)
    return "\n".join(lines) + "\n"


def render_guard_rules(users: Iterable[BrokerUser]) -> str:
    """The guard plugin's rules (mosquitto/plugin/openspc_guard.c, docs/broker.md).

    Each bridge user's client id (default ``openspc-bridge``), and every id starting with it
    and ``-``, is reserved for the bridge users that name it; ``openspc-bridge`` stays
    reserved (for nobody) when no bridge user claims it. Only bridge users keep a queue
    while offline."""
    bridges = sorted((u for u in users if u.role is Role.BRIDGE), key=lambda u: u.name)
    by_id: dict[str, list[str]] = {}
    for user in bridges:
        by_id.setdefault(user.bridge_client_id, []).append(user.name)
    lines = [
        "# Generated by `openspc users` from roles.json (docs/broker.md). Do not edit.",
        "# reserve ID USER...: ID and every id starting with 'ID-' are for these users only",
        "# queue USER...: only these users' sessions are queued for while they are offline",
    ]
    if DEFAULT_BRIDGE_CLIENT_ID not in by_id:
        lines.append(f"reserve {DEFAULT_BRIDGE_CLIENT_ID} {_NOBODY}")
    lines += [f"reserve {cid} {' '.join(names)}" for cid, names in sorted(by_id.items())]
    if bridges:
        lines.append("queue " + " ".join(u.name for u in bridges))
    return "\n".join(lines) + "\n"


_NOBODY = "/"  # no user can be named "/" (validate_name): a reservation for nobody


@dataclass(frozen=True)
class BrokerLayout:
    """Where a rendered broker listens and keeps its files.

    ``bind`` None listens on every interface (a plant); ``"127.0.0.1"`` on IPv4 loopback
    only (the demo and tests), which for the WebSocket listener also needs
    ``socket_domain ipv4``.
    """

    mqtt_port: int = 1883
    ws_port: int = 9001
    bind: str | None = None
    data_dir: Path = Path("mosquitto/data")
    password_file: Path = Path("mosquitto/passwd")
    acl_file: Path = Path("mosquitto/acl")
    http_dir: Path = Path("mosquitto/hmi")
    plugin: Path = Path("mosquitto/plugin") / GUARD_LIBRARY
    guard_rules: Path = Path("mosquitto/guard.rules")

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "mosquitto.pid"


def _listener_line(port: int, bind: str | None) -> list[str]:
    if bind is None:
        return [f"listener {port}"]
    return [f"listener {port} {bind}", "socket_domain ipv4"]


def render_config(layout: BrokerLayout, template: str | None = None) -> str:
    """``mosquitto/mosquitto.conf`` with the ports and paths of ``layout`` put in.

    The first ``listener`` of the template is the MQTT one, the second the WebSocket one.
    """
    text = DEFAULT_TEMPLATE.read_text() if template is None else template
    replacements = {
        "persistence_location": f"{layout.data_dir}/",
        "pid_file": str(layout.pid_file),
        "password_file": str(layout.password_file),
        "acl_file": str(layout.acl_file),
        "http_dir": str(layout.http_dir),
        "plugin": str(layout.plugin),
        "plugin_opt_rules_file": str(layout.guard_rules),
    }
    ports = [layout.mqtt_port, layout.ws_port]
    listeners = 0
    out: list[str] = []
    for line in text.splitlines():
        key = line.split(" ", 1)[0]
        if key == "listener":
            if listeners >= len(ports):
                raise ValueError("the broker template has more than two listeners")
            out += _listener_line(ports[listeners], layout.bind)
            listeners += 1
        elif key == "socket_domain":
            continue  # set by _listener_line from the layout
        elif key in replacements:
            out.append(f"{key} {replacements[key]}")
        else:
            out.append(line)
    if listeners != len(ports):
        raise ValueError("the broker template must have an MQTT and a WebSocket listener")
    return "\n".join(out) + "\n"


def _guard_digest() -> str:
    return hashlib.sha256(GUARD_SOURCE.read_bytes()).hexdigest()[:16]


def build_guard_plugin(target: Path) -> Path:
    """Compile the guard plugin's source into ``target`` (with ``cc``), stamped with the
    source's hash in ``<target>.sha256``. Raises :class:`GuardPluginUnavailable`."""
    if not GUARD_SOURCE.exists():
        raise GuardPluginUnavailable(GUARD_SOURCE, "the source file is missing")
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise GuardPluginUnavailable(GUARD_SOURCE, "no C compiler (cc) is installed")
    if (
        not Path("/usr/include/mosquitto_broker.h").exists()
        and not Path("/usr/local/include/mosquitto_broker.h").exists()
    ):
        raise GuardPluginUnavailable(GUARD_SOURCE, "Mosquitto's headers are not installed")
    digest = _guard_digest()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-o", tmp, str(GUARD_SOURCE)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            first = next((ln for ln in result.stderr.splitlines() if "error" in ln), "")
            raise GuardPluginUnavailable(GUARD_SOURCE, f"cc failed: {first.strip() or 'no output'}")
        Path(tmp).chmod(0o644)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    Path(f"{target}.sha256").write_text(digest + "\n")
    return target


def guard_plugin(cache_dir: Path | None = None) -> Path:
    """The guard plugin built from the shipped source (docs/broker.md).

    The one scripts/setup built beside the source, when its stamp matches the source; else
    ``openspc_guard-<hash>.so`` in ``cache_dir`` (the broker's state directory), compiled
    there with ``cc`` the first time; without ``cache_dir``, built beside the source.
    Raises :class:`GuardPluginUnavailable` (one line) when it cannot be built.
    """
    if not GUARD_SOURCE.exists():
        raise GuardPluginUnavailable(GUARD_SOURCE, "the source file is missing")
    digest = _guard_digest()
    shipped = GUARD_SOURCE.parent / GUARD_LIBRARY
    stamp = Path(f"{shipped}.sha256")
    if shipped.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return shipped
    if cache_dir is None:
        return build_guard_plugin(shipped)
    cached = cache_dir / f"openspc_guard-{digest}.so"
    if cached.exists():
        return cached
    return build_guard_plugin(cached)


def _broker_gid() -> int | None:
    """The group Mosquitto runs as after dropping root, when we are root; else None."""
    if os.geteuid() != 0:
        return None
    try:
        return grp.getgrnam(_BROKER_USER).gr_gid
    except KeyError:
        return None


def _share_with_broker(path: Path, *, secret: bool) -> None:
    """Let the broker read ``path``: as root, group ``mosquitto``; otherwise our own user."""
    gid = _broker_gid()
    if gid is not None:
        os.chown(path, 0, gid)
        path.chmod(0o640 if secret else 0o644)
    else:
        path.chmod(0o600 if secret else 0o644)


def prepare_data_dir(data_dir: Path) -> Path:
    """Create the persistence directory, writable by the user Mosquitto drops to."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError, LookupError):
            shutil.chown(data_dir, user=_BROKER_USER, group=_BROKER_USER)
    return data_dir


def _write_atomically(path: Path, text: str, *, secret: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _share_with_broker(path, secret=secret)


def _mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd")
    if found is None:
        raise PasswordToolFailed(
            "mosquitto_passwd", "not installed: run scripts/setup (apt-get install mosquitto)"
        )
    return found


@dataclass
class UserStore:
    """The broker's users: password file (``mosquitto_passwd``), ``roles.json``, ``acl``
    and ``guard.rules`` (the guard plugin's reserved client ids and offline queues).

    ``roles.json``, ``acl`` and ``guard.rules`` sit beside the password file unless given.
    Every change rewrites the ACL and the rules from the roles; Mosquitto (and the plugin)
    read them again on SIGHUP.
    """

    password_file: Path
    acl_file: Path | None = None
    roles_file: Path | None = None
    guard_file: Path | None = None
    _prefix: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.acl_file is None:
            self.acl_file = self.password_file.parent / "acl"
        if self.roles_file is None:
            self.roles_file = self.password_file.parent / "roles.json"
        if self.guard_file is None:
            self.guard_file = self.password_file.parent / "guard.rules"

    @property
    def _roles(self) -> Path:
        assert self.roles_file is not None
        return self.roles_file

    @property
    def _acl(self) -> Path:
        assert self.acl_file is not None
        return self.acl_file

    def _load(self) -> tuple[str, list[BrokerUser]]:
        if not self._roles.exists():
            return DEFAULT_PREFIX, []
        data = json.loads(self._roles.read_text())
        users = [BrokerUser.from_json(entry) for entry in data.get("users", [])]
        return str(data.get("topic_prefix", DEFAULT_PREFIX)), users

    def _save(self, prefix: str, users: Sequence[BrokerUser]) -> None:
        data = {
            "topic_prefix": prefix,
            "users": [u.to_json() for u in sorted(users, key=lambda u: u.name)],
        }
        assert self.guard_file is not None
        _write_atomically(self._roles, json.dumps(data, indent=2) + "\n")
        _write_atomically(self._acl, render_acl(users, prefix))
        _write_atomically(self.guard_file, render_guard_rules(users))

    @property
    def topic_prefix(self) -> str:
        return self._load()[0]

    def users(self) -> list[BrokerUser]:
        return sorted(self._load()[1], key=lambda u: u.name)

    def password_names(self) -> list[str]:
        """The names that have a password in the password file."""
        if not self.password_file.exists():
            return []
        return [
            line.split(":", 1)[0]
            for line in self.password_file.read_text().splitlines()
            if ":" in line and not line.startswith("#")
        ]

    def get(self, name: str) -> BrokerUser:
        for user in self._load()[1]:
            if user.name == name:
                return user
        raise UnknownUser(name, self._roles)

    def add(
        self,
        name: str,
        role: Role,
        password: str,
        topics: Sequence[str] = (),
        *,
        characteristics: Sequence[int] = (),
        sparkplug: tuple[str, str] | None = None,
        client_id: str | None = None,
        topic_prefix: str | None = None,
    ) -> BrokerUser:
        """Add ``name`` (or change its role, scope and password) and rewrite the ACL.

        ``characteristics`` and ``topics`` scope a gauge, ``sparkplug`` (group, edge node)
        an edge user, ``client_id`` a bridge user's reserved client id (docs/broker.md)."""
        group, edge = sparkplug if sparkplug is not None else (None, None)
        user = BrokerUser(
            name,
            role,
            tuple(topics),
            tuple(sorted(set(characteristics))),
            group,
            edge,
            client_id,
        )
        check_password(name, password)
        prefix, users = self._load()
        if topic_prefix is not None:
            prefix = validate_prefix(topic_prefix)
        self._set_password(name, password)
        others = [u for u in users if u.name != name]
        self._save(prefix, [*others, user])
        return user

    def remove(self, name: str) -> None:
        """Remove ``name`` from the roles, the ACL and the password file."""
        prefix, users = self._load()
        known = any(u.name == name for u in users)
        if not known and name not in self.password_names():
            raise UnknownUser(name, self._roles)
        if name in self.password_names():
            self._run_passwd(["-D", str(self.password_file), name], None)
            _share_with_broker(self.password_file, secret=True)
        self._save(prefix, [u for u in users if u.name != name])

    def write_acl(self) -> Path:
        """Regenerate the ACL (and an empty roles file) from the roles as they are."""
        prefix, users = self._load()
        self._save(prefix, users)
        return self._acl

    def _set_password(self, name: str, password: str) -> None:
        self.password_file.parent.mkdir(parents=True, exist_ok=True)
        create = [] if self.password_file.exists() else ["-c"]
        # The password goes through stdin (prompt mode), never onto a command line.
        self._run_passwd([*create, str(self.password_file), name], f"{password}\n{password}\n")
        _share_with_broker(self.password_file, secret=True)

    def _run_passwd(self, argv: list[str], stdin: str | None) -> None:
        command = [_mosquitto_passwd(), *argv]
        result = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if result.returncode != 0:
            raise PasswordToolFailed(" ".join(command[:1] + argv[:1]), result.stderr)


def reload_broker(pid_file: Path) -> int:
    """Send SIGHUP to the Mosquitto whose pid is in ``pid_file``; returns the pid."""
    try:
        pid = int(pid_file.read_text().strip())
    except FileNotFoundError:
        raise BrokerNotRunning(pid_file, "no such file (is Mosquitto running?)") from None
    except ValueError:
        raise BrokerNotRunning(pid_file, "it does not hold a process id") from None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise BrokerNotRunning(pid_file, f"no process {pid}") from None
    except PermissionError:
        raise BrokerNotRunning(pid_file, f"not allowed to signal process {pid}") from None
    return pid
