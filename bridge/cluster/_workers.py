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


def run_workers(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``args.workers`` nodes until SIGTERM or SIGINT; the exit status is the workers'
    worst. With SQLite it is one line and exit 2."""
    n = int(args.workers)
    if n < 1:
        print(f"openspc run: --workers {n}: must be at least 1", file=sys.stderr)
        return 2
    if settings.database.url.startswith("sqlite"):
        print(
            "openspc run: --workers needs PostgreSQL (database.url is SQLite;"
            " docs/scale-out.md)",
            file=sys.stderr,
        )
        return 2
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    procs = [_worker(args, settings, i) for i in range(n)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worst = 0
    while not stopping:
        time.sleep(0.2)
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code is None or stopping:
                continue
            if code in (2, 3):  # a config or broker refusal: starting again will not mend it
                stop(signal.SIGTERM, None)
                worst = max(worst, code)
                break
            print(f"openspc run: worker {i} exited ({code}); starting it again", file=sys.stderr)
            time.sleep(RESTART_DELAY_S)
            procs[i] = _worker(args, settings, i)
    for proc in procs:
        worst = max(worst, proc.wait())
    return worst
