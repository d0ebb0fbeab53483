"""Test doubles and throw-away services shipped with the code (bytewax-style).

- :class:`PostgresCluster`: a throw-away PostgreSQL cluster on a free port (never 5432).
- :func:`unique_topic`: a topic prefix no other test uses, so tests never hear each other.
- :class:`ManualClock`: a controllable clock for subgroup and timeout logic.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from bridge._mosquitto import free_port


def unique_topic(stem: str = "t") -> str:
    """A topic prefix unique to the caller, e.g. ``test/3f2a9c1d/t``."""
    return f"test/{uuid.uuid4().hex[:10]}/{stem}"


@dataclass
class ManualClock:
    """A clock that moves only when told: ``clock.now()``, ``clock.advance(seconds)``."""

    current: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current


class PostgresNotFound(RuntimeError):
    def __init__(self) -> None:
        super().__init__("PostgreSQL server binaries (initdb, pg_ctl) are not installed")


def find_pg_bin() -> Path | None:
    """The directory of initdb/pg_ctl (Debian keeps them out of PATH), or None."""
    which = shutil.which("pg_ctl")
    if which:
        return Path(which).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


@dataclass
class PostgresCluster:
    """A throw-away cluster: ``initdb`` into a temp dir, ``pg_ctl start`` on a free port.

    As root the server runs as user ``postgres`` (PostgreSQL refuses to run as root).
    ``stop()`` and ``start()`` may be called again to simulate an outage.
    """

    port: int = field(default_factory=free_port)
    datadir: Path | None = None
    _bin: Path | None = field(default=None, init=False)

    @property
    def async_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        assert self._bin is not None
        cmd = [str(self._bin / argv[0]), *argv[1:]]
        preexec = None
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")

            def preexec() -> None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        subprocess.run(
            cmd,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=preexec,  # drops root before exec'ing the server
            cwd=tempfile.gettempdir(),
        )

    def init(self) -> PostgresCluster:
        self._bin = find_pg_bin()
        if self._bin is None:
            raise PostgresNotFound()
        self.datadir = Path(tempfile.mkdtemp(prefix="openspc-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.datadir, user.pw_uid, user.pw_gid)
        self._run("initdb", "-A", "trust", "-U", "postgres", "--no-sync", "-D", str(self.datadir))
        return self

    def start(self) -> PostgresCluster:
        if self.datadir is None:
            self.init()
        assert self.datadir is not None
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c unix_socket_directories={self.datadir} -c max_connections=50"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-o",
            opts,
            "-w",
            "-l",
            str(self.datadir / "server.log"),
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.datadir is not None and (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        self.stop("immediate")
        if self.datadir is not None:
            shutil.rmtree(self.datadir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
