"""The plant's Mosquitto: its configuration, its users and their access rights.

- :func:`render_config` turns the shipped ``mosquitto/mosquitto.conf`` into the text for a
  given :class:`BrokerLayout` (ports, bind address, directories). The shipped file is the
  one source of truth: rendered with the default layout it comes back unchanged.
- :func:`render_acl` turns a set of :class:`BrokerUser` (name, :class:`Role`, extra topics)
  into a Mosquitto ACL file. Mosquitto ACLs are per user, so the roles live in a small JSON
  file beside the password file and the ACL is regenerated from it on every change.
- :class:`UserStore` keeps the three files (password file made by ``mosquitto_passwd``,
  ``roles.json``, ``acl``) in step; :func:`reload_broker` asks a running Mosquitto to
  re-read them (SIGHUP).
- :class:`PlantBroker` runs the rendered config with its users in a directory of its own:
  ``openspc demo`` and the tests (security, HMI) use it.

docs/broker.md explains each role and every choice made in the configuration.
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from bridge._mosquitto import (
    MosquittoFailedToStart,
    MosquittoNotFound,
    find_mosquitto,
    wait_for_port,
)
from bridge._package_data import broker_template, hmi_dir

__all__ = [
    "DEFAULT_TEMPLATE",
    "BrokerLayout",
    "BrokerNotRunning",
    "BrokerUser",
    "InvalidPassword",
    "InvalidTopic",
    "InvalidUserName",
    "PasswordToolFailed",
    "PlantBroker",
    "Role",
    "UnknownUser",
    "UserStore",
    "prepare_data_dir",
    "reload_broker",
    "render_acl",
    "render_config",
]

DEFAULT_TEMPLATE = broker_template()  # package data (docs/packaging.md)
_BROKER_USER = "mosquitto"  # the user Mosquitto drops to when started as root
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_PREFIX = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


class Role(StrEnum):
    """What a named broker user is for; each role maps to a fixed set of ACL lines."""

    HMI = "hmi"  # an operator's HMI: reads results, acknowledges as itself
    ENGINEER = "engineer"  # an HMI user who may also ask for control limits to be recalculated
    GAUGE = "gauge"  # a gauge or PLC: writes readings (and its own topics given by --topic)
    EDGE = "edge"  # a Sparkplug B edge node: writes its births/data/deaths, reads commands
    BRIDGE = "bridge"  # the OpenSPC bridge: reads everything, the only writer of results


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


@dataclass(frozen=True)
class BrokerUser:
    """A named broker user: its role, and for gauges and edge nodes extra topics to write."""

    name: str
    role: Role
    topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_name(self.name)
        for topic in self.topics:
            validate_topic(topic)


def _role_lines(user: BrokerUser, prefix: str) -> list[str]:
    read_results = f"topic read {prefix}/#"
    match user.role:
        case Role.HMI:
            return [read_results, f"topic write {prefix}/cmd/ack/{user.name}"]
        case Role.ENGINEER:
            return [
                read_results,
                f"topic write {prefix}/cmd/ack/{user.name}",
                f"topic write {prefix}/cmd/char/+/recalculate",
            ]
        case Role.GAUGE:
            return [
                read_results,
                f"topic write {prefix}/char/+/reading",
                *(f"topic write {topic}" for topic in user.topics),
            ]
        case Role.EDGE:
            return [
                read_results,
                *(
                    f"topic write spBv1.0/+/{kind}/#"
                    for kind in ("NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH")
                ),
                "topic read spBv1.0/+/NCMD/#",
                "topic read spBv1.0/+/DCMD/#",
                "topic read spBv1.0/STATE/#",
                *(f"topic write {topic}" for topic in user.topics),
            ]
        case Role.BRIDGE:
            return [
                f"topic readwrite {prefix}/#",
                "topic readwrite spBv1.0/#",
                "topic read #",
            ]


def render_acl(users: Iterable[BrokerUser], prefix: str = "openspc") -> str:
    """The Mosquitto ACL text for ``users``; anonymous clients may only read ``prefix/#``."""
    validate_prefix(prefix)
    lines = [
        "# Generated by `openspc users` from roles.json beside the password file.",
        "# Do not edit: the next `openspc users add/remove` rewrites it (docs/broker.md).",
        "",
        "# Anonymous clients (browsers showing the HMI): read the results, write nothing.",
        f"topic read {prefix}/#",
    ]
    for user in sorted(users, key=lambda u: u.name):
        lines += ["", f"# {user.name}: {user.role.value}", f"user {user.name}"]
        lines += _role_lines(user, prefix)
    return "\n".join(lines) + "\n"


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
    """The broker's users: password file (``mosquitto_passwd``), ``roles.json`` and ``acl``.

    ``roles.json`` and ``acl`` sit beside the password file unless given. Every change
    rewrites the ACL from the roles; Mosquitto reads both files again on SIGHUP.
    """

    password_file: Path
    acl_file: Path | None = None
    roles_file: Path | None = None
    _prefix: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.acl_file is None:
            self.acl_file = self.password_file.parent / "acl"
        if self.roles_file is None:
            self.roles_file = self.password_file.parent / "roles.json"

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
            return "openspc", []
        data = json.loads(self._roles.read_text())
        users = [
            BrokerUser(entry["name"], Role(entry["role"]), tuple(entry.get("topics", ())))
            for entry in data.get("users", [])
        ]
        return str(data.get("topic_prefix", "openspc")), users

    def _save(self, prefix: str, users: Sequence[BrokerUser]) -> None:
        data = {
            "topic_prefix": prefix,
            "users": [
                {"name": u.name, "role": u.role.value, "topics": list(u.topics)}
                for u in sorted(users, key=lambda u: u.name)
            ],
        }
        _write_atomically(self._roles, json.dumps(data, indent=2) + "\n")
        _write_atomically(self._acl, render_acl(users, prefix))

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
        topic_prefix: str | None = None,
    ) -> BrokerUser:
        """Add ``name`` (or change its role, topics and password) and rewrite the ACL."""
        user = BrokerUser(name, role, tuple(topics))
        if not password or "\n" in password:
            raise InvalidPassword("must be one non-empty line")
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


def _die_with_parent() -> None:
    """In the child before exec: its own session (a terminal's Ctrl-C reaches only us, and we
    stop the broker after the bridge has said goodbye), and SIGTERM when we die (Linux)."""
    os.setsid()
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _load_libc() -> ctypes.CDLL | None:
    # loaded in the parent: dlopen in a forked child of a threaded process could deadlock
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl  # noqa: B018  # only Linux has prctl: fail here, not in the child
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


@dataclass
class PlantBroker:
    """The project's Mosquitto, configured from ``mosquitto/mosquitto.conf``, in ``workdir``.

    ``workdir`` holds the rendered ``mosquitto.conf``, ``passwd``, ``roles.json``, ``acl``,
    ``data/`` (persistence, pid file) and ``mosquitto.log``; users added to :attr:`users`
    before :meth:`start` (or followed by :meth:`reload`) can log in. ``bind`` defaults to
    IPv4 loopback, as the demo and the tests want. Used by ``openspc demo`` and by tests
    (including the HMI's browser tests) that need the real, secured front door.

    The broker runs in its own session, so a Ctrl-C meant for ``openspc demo`` does not stop
    it before the bridge has published its offline status; it gets SIGTERM if we die.
    Call :meth:`start` from the main thread (the parent-death signal follows the thread).
    """

    workdir: Path
    mqtt_port: int
    ws_port: int
    http_dir: Path = field(default_factory=hmi_dir)
    bind: str | None = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def layout(self) -> BrokerLayout:
        return BrokerLayout(
            mqtt_port=self.mqtt_port,
            ws_port=self.ws_port,
            bind=self.bind,
            data_dir=self.workdir / "data",
            password_file=self.workdir / "passwd",
            acl_file=self.workdir / "acl",
            http_dir=self.http_dir,
        )

    @property
    def users(self) -> UserStore:
        layout = self.layout
        return UserStore(layout.password_file, acl_file=layout.acl_file)

    @property
    def log_file(self) -> Path:
        return self.workdir / "mosquitto.log"

    def start(self, timeout: float = 10.0) -> PlantBroker:
        binary = find_mosquitto()
        if binary is None:
            raise MosquittoNotFound()
        layout = self.layout
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        prepare_data_dir(layout.data_dir)
        self.users.write_acl()
        if not layout.password_file.exists():
            _write_atomically(layout.password_file, "", secret=True)
        conf = self.workdir / "mosquitto.conf"
        _write_atomically(conf, render_config(layout))
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=_die_with_parent,  # setsid + prctl only, before exec
            )
        deadline = time.monotonic() + timeout
        listening = False
        while time.monotonic() < deadline and self.process.poll() is None:
            listening = listening or wait_for_port(self.mqtt_port, timeout=0.05)
            # Mosquitto listens before it installs its signal handlers, and a SIGHUP (reload)
            # in between kills it: it is ready once it logs "running".
            if listening and self._logged_running(log_offset):
                return self
            if listening:
                time.sleep(0.005)
        self.stop()
        raise MosquittoFailedToStart(self.mqtt_port, self.log_text())

    def _logged_running(self, offset: int) -> bool:
        with self.log_file.open("rb") as log:
            log.seek(offset)
            return b" running" in log.read()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reload(self) -> None:
        """Make the running broker read its password file and ACL again (SIGHUP)."""
        if self.process is None or self.process.poll() is not None:
            raise BrokerNotRunning(self.layout.pid_file, "the broker is not running")
        self.process.send_signal(signal.SIGHUP)

    def log_text(self) -> str:
        path = self.log_file
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker with SIGTERM, so it saves its persistence file first."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> PlantBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
