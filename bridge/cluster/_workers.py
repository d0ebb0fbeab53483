"""``openspc run --workers N``: N cluster nodes on this machine, one process each.

Each worker is ``openspc run`` again, with ``[cluster] enabled`` and its own node name
(``<node>-w<i>``) given through the environment; the parent forwards SIGTERM/SIGINT and
waits for all of them (a clean stop hands every partition over). A worker that dies is
started again after a second; its partitions are taken over meanwhile (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from bridge.config import Settings

__all__ = ["run_workers"]

RESTART_DELAY_S = 1.0


def _worker(args: argparse.Namespace, settings: Settings, i: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["OPENSPC_CLUSTER__ENABLED"] = "true"
    env["OPENSPC_CLUSTER__NODE"] = f"{settings.cluster.node}-w{i}"
    argv = [sys.executable, "-m", "bridge", "run", "--config", str(args.config)]
    argv += ["--log-level", args.log_level]
    return subprocess.Popen(argv, env=env)


def _refused(n: int, settings: Settings) -> str | None:
    if n < 1:
        return f"--workers {n}: must be at least 1"
    if settings.database.url.startswith("sqlite"):
        return "--workers needs PostgreSQL (database.url is SQLite; docs/scale-out.md)"
    return None


class _Workers:
    """The children, started again when one dies, all stopped on a signal."""

    def __init__(self, args: argparse.Namespace, settings: Settings, n: int) -> None:
        self.args, self.settings = args, settings
        self.stopping = False
        self.worst = 0
        self.procs = [_worker(args, settings, i) for i in range(n)]

    def stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        self.stopping = True
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def watch_once(self) -> None:
        for i, proc in enumerate(self.procs):
            code = proc.poll()
            if code is None or self.stopping:
                continue
            if code in (2, 3):  # a config or broker refusal: starting again will not mend it
                self.worst = max(self.worst, code)
                self.stop()
                return
            print(f"openspc run: worker {i} exited ({code}); starting it again", file=sys.stderr)
            time.sleep(RESTART_DELAY_S)
            if not self.stopping:
                self.procs[i] = _worker(self.args, self.settings, i)

    def wait(self) -> int:
        self.stop()  # each told once more: one may have started as the signal came
        for proc in self.procs:
            self.worst = max(self.worst, proc.wait())
        return self.worst


def run_workers(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``args.workers`` nodes until SIGTERM or SIGINT; the exit status is the workers'
    worst. With SQLite it is one line and exit 2."""
    refusal = _refused(int(args.workers), settings)
    if refusal is not None:
        print(f"openspc run: {refusal}", file=sys.stderr)
        return 2
    workers = _Workers(args, settings, int(args.workers))
    signal.signal(signal.SIGTERM, workers.stop)
    signal.signal(signal.SIGINT, workers.stop)
    while not workers.stopping:
        time.sleep(0.2)
        workers.watch_once()
    return workers.wait()
