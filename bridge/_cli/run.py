"""`openspc run --config FILE`: run the bridge until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "run the bridge: MQTT readings in, SPC, database, results out"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("config/openspc.toml"),
        metavar="FILE",
        help="the TOML configuration (default: config/openspc.toml)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="what to log to stderr (default: INFO, one line per notable event)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="run N bridges on this machine as one cluster (PostgreSQL only; docs/scale-out.md)",
    )


def main(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from bridge._startup import freeze_startup_heap, install_fast_paths
    from bridge.app import run_bridge
    from bridge.cluster import run_node, run_workers
    from bridge.config import ConfigInvalid, format_faults, load_settings
    from bridge.errors import BrokerRefused, ClientIdInUse, StoreUnavailable
    from bridge.store import SchemaTooNew, SchemaUnrecognized

    _log_to_stderr(args.log_level)
    try:
        settings = load_settings(args.config)
    except ConfigInvalid as exc:
        print(format_faults(exc), file=sys.stderr)
        return 2
    if getattr(args, "workers", None) is not None:  # callers may build the Namespace
        return run_workers(args, settings)

    # process-wide, so here and nowhere else: `openspc run` owns its process (the benchmark
    # runs the bridge as `openspc run` too); tests and the demo keep paho as it is
    install_fast_paths()
    # handed over, not kept: once built, the characteristics' models go (docs/performance.md)
    handed = [settings]
    del settings

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        # with [cluster] enabled, one node of a cluster (docs/scale-out.md)
        run = run_node if handed[0].cluster.enabled else run_bridge
        await run(handed.pop(), stop, started=freeze_startup_heap)

    try:
        asyncio.run(serve())
    except (SchemaTooNew, SchemaUnrecognized) as exc:
        # waiting would not mend it: a newer release's database, or not ours (docs/bridge.md)
        print(f"openspc run: {exc}", file=sys.stderr)
        return 2
    except (BrokerRefused, ClientIdInUse) as exc:
        # the broker refuses this bridge: starting it again will not mend that (exit 3, so a
        # service manager can be told not to restart it: docs/bridge.md)
        print(f"openspc run: {exc}", file=sys.stderr)
        return 3
    except StoreUnavailable as exc:
        print(f"openspc run: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"openspc run: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # one line for the operator; the traceback only when asked for (--log-level DEBUG)
        logging.getLogger("openspc").debug("the bridge stopped on an error", exc_info=True)
        print(f"openspc run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _log_to_stderr(level: str) -> None:
    import faulthandler
    import logging

    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # a fatal signal says so on stderr ("Fatal Python error: Bus error" and where) instead of
    # the process vanishing without a word: SQLite maps its -shm file, and a -shm truncated
    # under a running bridge ends it with SIGBUS (docs/bridge.md, "SQLite's -shm file")
    faulthandler.enable()
