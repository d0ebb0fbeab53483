"""`openspc bench`: the bridge measured against the broker's own limit (docs/performance.md)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

HELP = (
    "measure relay, bridge throughput and latency, engine speed and memory on this machine"
    " (and, when asked, a plant of thousands of characteristics)"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--readings",
        type=int,
        default=None,
        metavar="N",
        help="QoS 1 readings for the relay and the bridge (default 100000; --quick 4000)",
    )
    parser.add_argument("--quick", action="store_true", help="a small run (a few seconds)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help=(
            "py-spy record the bridge during the throughput run "
            "(FILE.svg: a flame graph, else collapsed stacks; needs py-spy)"
        ),
    )
    parser.add_argument(
        "--only",
        default=None,
        metavar="PHASES",
        help=(
            "comma-separated subset of relay,bridge,latency,engine,memory,plant,workers"
            " (default: all but plant and workers)"
        ),
    )
    parser.add_argument(
        "--characteristics",
        type=int,
        default=None,
        metavar="N",
        help="plant phase: N characteristics, n = 1, fixed limits (default 10000; adds plant)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="R",
        help="plant phase: R readings a second, all together (default 8000; N for 1 Hz each)",
    )
    parser.add_argument(
        "--plant-readings",
        type=int,
        default=None,
        metavar="K",
        help="plant phase: K readings per characteristic (default 100)",
    )
    parser.add_argument(
        "--plant-wait",
        type=float,
        default=None,
        metavar="S",
        help="plant phase: count samples back until S s after the readings were due (300)",
    )
    parser.add_argument(
        "--plant-clients",
        choices=("lean", "paho"),
        default="lean",
        help=(
            "plant phase: the load generator and listener: sockets and the bridge's codec"
            " (lean, default) or paho (about 0.9 of a core more at 8,000 readings/s)"
        ),
    )
    parser.add_argument(
        "--bridge-source",
        type=Path,
        default=None,
        metavar="DIR",
        help="run the bridge of another checkout (DIR first on its PYTHONPATH), same clients",
    )
    parser.add_argument(
        "--tcp-nodelay",
        action="store_true",
        help="start Mosquitto with set_tcp_nodelay true (off by default, as in Mosquitto)",
    )
    parser.add_argument(
        "--workers",
        default=None,
        metavar="N[,M...]",
        help=(
            "also run openspc run --workers N on a throw-away PostgreSQL, for each N"
            " (e.g. 1,2; adds workers; needs PostgreSQL's initdb and pg_ctl)"
        ),
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=None,
        metavar="S",
        help="workers phase: the cluster's lease_seconds (default the bridge's, 6)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (configs, logs, databases)"
    )


def main(args: argparse.Namespace) -> int:  # noqa: C901  one branch per option of a flat CLI; the plant phase's options joined it (split with the bench's next change)
    from bridge._bench import BenchOptions, format_report, run_bench
    from bridge._mosquitto import MosquittoNotFound

    options = BenchOptions.quick() if args.quick else BenchOptions()
    if args.readings is not None:
        if args.readings < 1000:
            print("openspc bench: --readings must be at least 1000", file=sys.stderr)
            return 2
        options.readings = args.readings
    options.keep_dir = args.keep
    options.tcp_nodelay = args.tcp_nodelay
    if args.only:
        from bridge._bench._run import PHASES

        chosen = frozenset(p.strip() for p in args.only.split(",") if p.strip())
        if not chosen or not chosen <= PHASES:
            print(f"openspc bench: --only takes {','.join(sorted(PHASES))}", file=sys.stderr)
            return 2
        options.phases = chosen
    if args.characteristics is not None or args.rate is not None:
        options.phases = options.phases | {"plant"}
    if args.workers is not None:
        from bridge._bench._workers import parse_workers

        try:
            options.workers = parse_workers(args.workers)
        except ValueError as exc:
            print(f"openspc bench: {exc}", file=sys.stderr)
            return 2
        options.phases = options.phases | {"workers"}
    if args.lease_seconds is not None and not 2 <= args.lease_seconds <= 3600:
        print("openspc bench: --lease-seconds must be 2..3600", file=sys.stderr)
        return 2
    options.lease_seconds = args.lease_seconds
    if args.characteristics is not None:
        if args.characteristics < 1:
            print("openspc bench: --characteristics must be at least 1", file=sys.stderr)
            return 2
        options.plant_characteristics = args.characteristics
    if args.rate is not None:
        if args.rate <= 0:
            print("openspc bench: --rate must be positive", file=sys.stderr)
            return 2
        options.plant_rate = args.rate
    if args.plant_readings is not None:
        if args.plant_readings < 1:
            print("openspc bench: --plant-readings must be at least 1", file=sys.stderr)
            return 2
        options.plant_readings = args.plant_readings
    if args.plant_wait is not None:
        options.plant_wait_s = max(0.0, args.plant_wait)
    options.plant_clients = args.plant_clients
    if args.bridge_source is not None:
        options.bridge_source = args.bridge_source.resolve()
    options.profile = args.profile
    if not args.json:
        options.log = lambda text: print(f"... {text}", file=sys.stderr, flush=True)

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # so the broker and the bridge are stopped on the way out

    signal.signal(signal.SIGTERM, interrupted)
    try:
        report = run_bench(options)
    except MosquittoNotFound as exc:
        print(f"openspc bench: {exc}", file=sys.stderr)
        return 1
    except (RuntimeError, TimeoutError) as exc:
        print(f"openspc bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.ok else 1
