"""Run a Mosquitto broker as a child process: for tests, `openspc demo` and `openspc bench`.

Mosquitto runs in the foreground (``-c FILE``, no ``-d``) so that stopping it is immediate,
and readiness is awaited by polling its MQTT port (about 30 ms here). Started as root it
drops to user ``mosquitto``, so its working directory is made world-writable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


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


def minimal_config(port: int, data_dir: Path, *, ws_port: int | None = None) -> str:
    """An open broker on 127.0.0.1 for tests and benchmarks: anonymous, persistent, deep queues."""
    lines = [
        "per_listener_settings false",
        "allow_anonymous true",
        f"persistence true\npersistence_location {data_dir}/",
        "autosave_interval 1",
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
        binary = find_mosquitto()
        if binary is None:
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
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if wait_for_port(self.port, timeout=0.05):
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
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
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
