"""`openspc demo`: our Mosquitto with the HMI, the bridge on SQLite, simulated gauges."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "start a whole local plant: broker + HMI, the bridge on SQLite, simulated gauges"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {value}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1000: {value:g}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mqtt-port", type=_port, default=1883, metavar="PORT", help="MQTT port (default 1883)"
    )
    parser.add_argument(
        "--ws-port",
        type=_port,
        default=9001,
        metavar="PORT",
        help="WebSocket port that also serves the HMI page (default 9001)",
    )
    parser.add_argument(
        "--gateway-port",
        type=_port,
        default=8000,
        metavar="PORT",
        help="port of OpenSPC's WebSocket API, ws://127.0.0.1:PORT/api/v1/ws (default 8000)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the demo keeps its broker files, users and database (default "
        "$XDG_STATE_HOME/openspc/demo, i.e. ~/.local/state/openspc/demo; as root "
        "/var/lib/openspc/demo)",
    )
    parser.add_argument(
        "--reset", action="store_true", help="delete the state directory first: start afresh"
    )
    parser.add_argument(
        "--rate",
        type=_rate,
        default=0.25,
        metavar="R",
        help="readings per second from each simulated n = 5 gauge; n = 1 gauges send a "
        "fifth of that, so every chart gains a point at the same pace (default 0.25: a point "
        "every 20 s, a few alarms an hour per chart)",
    )


def _fail(message: str, status: int) -> int:
    print(f"openspc demo: {message}", file=sys.stderr)
    return status


def main(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from bridge import demo
    from bridge._mosquitto import MosquittoFailedToStart, MosquittoNotFound
    from bridge.config import ConfigInvalid
    from bridge.errors import BrokerUnavailable

    options = demo.DemoOptions(
        mqtt_port=args.mqtt_port,
        ws_port=args.ws_port,
        gateway_port=args.gateway_port,
        state_dir=args.state_dir or demo.default_state_dir(),
        reset=args.reset,
        rate=args.rate,
    )
    try:
        demo.check_ports(options)
    except demo.PortTaken as exc:
        return _fail(str(exc), 2)

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await demo.run_demo(options, stop, sys.stdout)

    try:
        asyncio.run(run())
    except (demo.StateDirUnusable, demo.PortTaken) as exc:
        return _fail(str(exc), 2)
    except MosquittoFailedToStart as exc:
        errors = [line for line in exc.log.splitlines() if "Error" in line]
        reason = errors[-1].split("Error: ", 1)[-1] if errors else "no error in its log"
        log_file = options.state_dir / "broker" / "mosquitto.log"
        return _fail(f"the broker did not start: {reason} (log: {log_file})", 1)
    except ConfigInvalid as exc:
        return _fail(f"the demo's configuration is invalid: {exc}", 1)
    except (MosquittoNotFound, BrokerUnavailable, RuntimeError) as exc:
        return _fail(str(exc), 1)
    print("openspc demo: stopped")
    return 0
