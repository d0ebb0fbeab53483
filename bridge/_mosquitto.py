"""Run Mosquitto as a child process: the one runner, two configurations.

- :class:`MosquittoProcess`: an open broker (:func:`minimal_config`, or any config text) in a
  throw-away directory, for the tests and `openspc bench`.
- :class:`PlantBroker`: the project's own broker, ``mosquitto/mosquitto.conf`` rendered with
  its users, ACL and guard plugin (:mod:`bridge.mosquitto_admin`), for `openspc demo` and the
  tests of the secured front door (security, HMI).

Both start, wait for and stop the process the same way (:func:`_launch`, :func:`_wait_ready`,
:func:`_terminate`): Mosquitto runs in the foreground (``-c FILE``, no ``-d``) so that stopping
it is immediate (SIGTERM, so it writes its persistence file), and readiness is awaited by
polling its MQTT port (about 30 ms here). Started as root it drops to user ``mosquitto``, so
its directories are made readable (and its data directory writable) for that user.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from bridge._package_data import hmi_dir
from bridge.mosquitto_admin import (
    GUARD_LIBRARY,
    BrokerLayout,
    BrokerNotRunning,
    UserStore,
    _write_atomically,
    guard_plugin,
    prepare_data_dir,
    render_config,
)

__all__ = [
    "MosquittoFailedToStart",
    "MosquittoNotFound",
    "MosquittoProcess",
    "PlantBroker",
    "find_mosquitto",
    "free_port",
    "minimal_config",
    "port_is_free",
    "wait_for_port",
]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class MosquittoNotFound(RuntimeError):
    """The mosquitto binary is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "mosquitto is not installed: run scripts/setup (apt-get install mosquitto)"
        )


class MosquittoFailedToStart(RuntimeError):
    """Mosquitto exited or did not listen in time; carries its log."""

    def __init__(self, port: int, log: str) -> None:
        self.port = port
        self.log = log
        super().__init__(f"mosquitto did not start listening on port {port}:\n{log}")


def find_mosquitto() -> str | None:
    """The path of the mosquitto binary, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.01)
    return False


def _launch(
    conf: Path, workdir: Path, log_file: Path, *, own_session: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``mosquitto -c conf`` in ``workdir``, its output appended to ``log_file``.

    ``own_session``: in a session of its own (a terminal's Ctrl-C reaches only us) and sent
    SIGTERM when we die (Linux); call it from the main thread then (the parent-death signal
    follows the thread)."""
    binary = find_mosquitto()
    if binary is None:
        raise MosquittoNotFound()
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [binary, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            preexec_fn=_die_with_parent if own_session else None,  # setsid + prctl, before exec
        )


def _wait_ready(
    process: subprocess.Popen[bytes],
    port: int,
    timeout: float,
    running_logged: Callable[[], bool] | None = None,
) -> bool:
    """Until ``timeout``: True once ``port`` takes connections (and, when given,
    ``running_logged()`` says so); False when the process exits or time is up."""
    deadline = time.monotonic() + timeout
    listening = False
    while time.monotonic() < deadline and process.poll() is None:
        listening = listening or wait_for_port(port, timeout=0.05)
        if listening and (running_logged is None or running_logged()):
            return True
        if listening:
            time.sleep(0.005)
    return False


def _terminate(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, so Mosquitto saves its persistence file first; SIGKILL after ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def minimal_config(
    port: int, data_dir: Path, *, ws_port: int | None = None, autosave_s: int = 1
) -> str:
    """An open broker on 127.0.0.1 for tests and benchmarks: anonymous, persistent, deep queues.

    ``autosave_s``: the in-memory database written to disk every so many seconds (1 for
    tests that restart the broker; mosquitto/mosquitto.conf has 60)."""
    lines = [
        "per_listener_settings false",
        "allow_anonymous true",
        f"persistence true\npersistence_location {data_dir}/",
        f"autosave_interval {autosave_s}",
        "max_queued_messages 1000000",
        "max_inflight_messages 0",
        "max_packet_size 1048576",
        "log_dest stderr",
        "log_type error\nlog_type warning\nlog_type notice",
        f"listener {port} 127.0.0.1",
    ]
    if ws_port is not None:
        lines += [f"listener {ws_port} 127.0.0.1", "protocol websockets", "socket_domain ipv4"]
    return "\n".join(lines) + "\n"


@dataclass
class MosquittoProcess:
    """A Mosquitto child process listening on ``port``.

    ``config`` is the whole configuration text; when None, :func:`minimal_config` is used
    with a fresh persistence directory. Use as a context manager, or call start()/stop().
    ``restart()`` keeps the same directory, so persisted sessions and retained messages
    survive it, as with a real broker restart.
    """

    port: int = field(default_factory=free_port)
    config: str | None = None
    workdir: Path | None = None
    ws_port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _own_dir: bool = field(default=False, init=False)

    def start(self, timeout: float = 10.0) -> MosquittoProcess:
        if find_mosquitto() is None:
            raise MosquittoNotFound()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="openspc-mosquitto-"))
            self._own_dir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o1777)
        data_dir = self.workdir / "data"
        data_dir.mkdir(exist_ok=True)
        data_dir.chmod(0o1777)
        text = self.config or minimal_config(self.port, data_dir, ws_port=self.ws_port)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(text)
        conf.chmod(0o644)
        self.process = _launch(conf, self.workdir, self.workdir / "mosquitto.log")
        if _wait_ready(self.process, self.port, timeout):
            return self
        self.stop()
        raise MosquittoFailedToStart(self.port, self.log_text())

    def log_text(self) -> str:
        if self.workdir is None:
            return ""
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, *, remove: bool = False) -> None:
        """Stop the broker (SIGTERM, so it writes its persistence file)."""
        process, self.process = self.process, None
        _terminate(process)
        if remove and self._own_dir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """Stop the broker abruptly (SIGKILL)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(remove=True)


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
    ``guard.rules``, a copy of the guard plugin (compiled there when no current build is beside
    its source), ``data/`` (persistence, pid file) and ``mosquitto.log``; users added to
    :attr:`users` before :meth:`start` (or followed by :meth:`reload`) can log in. ``bind``
    defaults to IPv4 loopback, as the demo and the tests want. Used by ``openspc demo`` and by
    tests (including the HMI's browser tests) that need the real, secured front door.

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
            plugin=self.workdir / GUARD_LIBRARY,
            guard_rules=self.workdir / "guard.rules",
        )

    @property
    def users(self) -> UserStore:
        layout = self.layout
        return UserStore(
            layout.password_file, acl_file=layout.acl_file, guard_file=layout.guard_rules
        )

    @property
    def log_file(self) -> Path:
        return self.workdir / "mosquitto.log"

    def start(self, timeout: float = 10.0) -> PlantBroker:
        if find_mosquitto() is None:
            raise MosquittoNotFound()
        layout = self.layout
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        prepare_data_dir(layout.data_dir)
        # a copy in the workdir: user mosquitto (after dropping root) can always load it
        plugin = guard_plugin(cache_dir=self.workdir)
        if plugin != layout.plugin:
            shutil.copyfile(plugin, layout.plugin)
            layout.plugin.chmod(0o644)
        self.users.write_acl()
        if not layout.password_file.exists():
            _write_atomically(layout.password_file, "", secret=True)
        conf = self.workdir / "mosquitto.conf"
        _write_atomically(conf, render_config(layout))
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self.process = _launch(conf, self.workdir, self.log_file, own_session=True)
        # Mosquitto listens before it installs its signal handlers, and a SIGHUP (reload)
        # in between kills it: it is ready once it logs "running".
        if _wait_ready(
            self.process, self.mqtt_port, timeout, lambda: self._logged_running(log_offset)
        ):
            return self
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
        _terminate(process, timeout)

    def __enter__(self) -> PlantBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
