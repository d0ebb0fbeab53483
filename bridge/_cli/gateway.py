"""`openspc gateway --config FILE [--host H] [--port P]`: OpenSPC's WebSocket API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "serve OpenSPC's WebSocket API (ws://HOST:PORT/api/v1/ws) from the bridge's results"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {value}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("config/openspc.toml"),
        metavar="FILE",
        help="the bridge's TOML configuration (default: config/openspc.toml)",
    )
    parser.add_argument(
        "--host", default=None, metavar="HOST", help="listen address (default: [gateway] host)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=None,
        metavar="PORT",
        help="listen port (default: [gateway] port, 8000; 0 picks a free one)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="what to log to stderr (default: INFO)",
    )


def main(args: argparse.Namespace) -> int:
    import asyncio
    import errno
    import logging
    import signal

    from bridge.config import ConfigInvalid, format_faults, load_settings
    from bridge.gateway import BrokerRefused, Gateway, run_gateway

    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.log_level == "DEBUG":
        logging.getLogger("openspc.gateway.ws").setLevel(logging.DEBUG)
    try:
        settings = load_settings(args.config)
    except ConfigInvalid as exc:
        print(format_faults(exc), file=sys.stderr)
        return 2
    update = {
        key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None
    }
    if update:
        gateway = settings.gateway.model_copy(update=update)
        settings = settings.model_copy(update={"gateway": gateway})

    def ready(gateway: Gateway) -> None:
        broker = settings.broker
        user = settings.gateway.username or "anonymous"
        print(
            f"openspc gateway: serving {gateway.url} (broker {broker.host}:{broker.port},"
            f" as {user})",
            flush=True,
        )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_gateway(settings, stop, on_ready=ready)

    port = settings.gateway.port
    try:
        asyncio.run(serve())
    except BrokerRefused as exc:
        print(f"openspc gateway: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"openspc gateway: port {port} is in use: choose another with --port PORT",
                file=sys.stderr,
            )
            return 2
        print(f"openspc gateway: {exc}", file=sys.stderr)
        return 1
    return 0
