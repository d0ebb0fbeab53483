"""The gateway's benchmark (docs/performance.md): its CPU while it feeds many clients.

Everything runs on this machine, in processes of its own: Mosquitto; ``openspc run`` with
``--characteristics`` characteristics (n = 1, fixed limits); ``openspc gateway``; one process
of ``--clients`` websockets clients, each subscribed to ``--per-client`` characteristics
(client i to ids 10 i + 1 ... 10 i + 10, wrapping), offering permessage-deflate like a
browser; and a paho publisher that sends ``--rate`` readings a second, spread evenly over the
characteristics. After ``--warmup`` seconds the gateway's CPU time (user + system, from
/proc) is measured over ``--seconds``, with the messages the clients received meanwhile.

    scripts/bench-gateway [--clients 1000] [--per-client 10] [--characteristics 1000]
                          [--rate 1000] [--seconds 20] [--no-compression] [--synthetic]
                          [--json]

``--synthetic`` leaves the bridge out: the publisher sends what the bridge would (a retained
``meta`` per characteristic, then ``sample`` messages encoded by ``bridge.wire.payloads``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["main"]

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    clients: int
    per_client: int
    characteristics: int
    rate: float
    seconds: float
    compression: bool
    synthetic: bool
    gateway_cpu: float  # cores (1.0 = one core busy)
    bridge_cpu: float
    clients_cpu: float
    broker_cpu: float
    gateway_rss_mb: float
    published_per_s: float  # readings the publisher sent per second
    samples_per_s: float  # samples the bridge published per second
    delivered_per_s: float  # messages the clients received per second
    expected_per_s: float  # sample messages a second the clients should get
    closed: int  # clients that lost their connection during the run
    us_per_message: float  # the gateway's CPU per message delivered, microseconds
    projected_cpu: float  # us_per_message at the full expected rate, in cores


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _config(path: Path, broker_port: int, characteristics: int) -> Path:
    lines = [
        "[broker]",
        f"port = {broker_port}",
        'client_id = "bench-gateway-bridge"',
        "[database]",
        'url = "sqlite+aiosqlite:///bench.db"',
        "",
    ]
    for cid in range(1, characteristics + 1):
        lines += [
            "[[characteristic]]",
            f"id = {cid}",
            f'name = "C{cid}"',
            "center_line = 10.0",
            "ucl = 13.0",
            "lcl = 7.0",
            "",
        ]
    path.write_text("\n".join(lines))
    return path


# --- the clients' process ------------------------------------------------------------------


def _clients_main(
    url: str, clients: int, per_client: int, characteristics: int, compression: bool, conn: Any
) -> None:
    asyncio.run(_clients(url, clients, per_client, characteristics, compression, conn))


async def _clients(  # noqa: C901  one benchmark client's whole life, kept in one view
    url: str,
    clients: int,
    per_client: int,
    characteristics: int,
    compression: bool,
    conn: Any,
) -> None:
    from websockets.asyncio.client import connect

    counts = [0] * clients
    errors: dict[str, int] = {}
    closed = [0]
    subscribed = asyncio.Event()
    ready = [0]

    async def one(i: int) -> None:
        ids = [(per_client * i + k) % characteristics + 1 for k in range(per_client)]
        try:
            async with connect(
                url,
                compression="deflate" if compression else None,
                open_timeout=60,
                ping_interval=None,
            ) as ws:
                await ws.send(json.dumps({"type": "subscribe", "characteristic_ids": ids}))
                answer = json.loads(await ws.recv())
                if sorted(answer["payload"]["characteristic_ids"]) != sorted(ids):
                    raise RuntimeError(f"not subscribed to all of {ids}: {answer}")
                ready[0] += 1
                if ready[0] == clients:
                    subscribed.set()

                async def keepalive() -> None:  # as OpenSPC clients do: within idle_timeout
                    while True:
                        await asyncio.sleep(30)
                        await ws.send('{"type": "ping"}')

                pinger = asyncio.create_task(keepalive())
                try:
                    async for frame in ws:
                        if frame != '{"type":"pong"}':
                            counts[i] += 1
                finally:
                    pinger.cancel()
        except Exception as exc:
            closed[0] += 1
            errors[type(exc).__name__ + ": " + str(exc)[:80]] = 1 + errors.get(
                type(exc).__name__ + ": " + str(exc)[:80], 0
            )
            ready[0] += 1
            if ready[0] == clients:
                subscribed.set()

    tasks = []
    for i in range(clients):
        tasks.append(asyncio.create_task(one(i)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # connect in waves, not 1,000 handshakes at once
    await asyncio.wait_for(subscribed.wait(), 120)
    conn.send("subscribed")
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "count":
            conn.send((sum(counts), closed[0]))
        else:
            break
    if errors:
        print(f"... client errors: {errors}", file=sys.stderr, flush=True)
    for task in tasks:
        task.cancel()


# --- the publisher -------------------------------------------------------------------------


class _SampleCounter:
    """Counts the bridge's ``sample`` messages (what the gateway is fed)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.count = 0
        self.metas: set[str] = set()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-gateway-count")
        self.client.on_message = self._on_message
        from bridge.wire.topics import META, SAMPLE, Topics

        self.client.connect("127.0.0.1", port)
        topics = Topics()
        self.client.subscribe([(topics.char_filter(SAMPLE), 0), (topics.char_filter(META), 0)])
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        if message.topic.endswith("/meta"):
            self.metas.add(message.topic)
        else:
            self.count += 1

    def wait_metas(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.metas) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bridge announced {len(self.metas)} of {count}")
            time.sleep(0.1)  # paho's thread counts; nothing to await here

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class _Publisher(threading.Thread):
    """``rate`` readings a second, one characteristic after the other (QoS 1)."""

    def __init__(
        self, port: int, characteristics: int, rate: float, *, synthetic: bool = False
    ) -> None:
        super().__init__(daemon=True, name="bench-publisher")
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-gateway-pub")
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.characteristics = characteristics
        self.rate = rate
        self.stop = threading.Event()
        self.sent = 0
        self.synthetic = synthetic

    def announce(self) -> None:
        """As the bridge would: a retained meta per characteristic (``--synthetic``)."""
        from bridge.wire import Topics
        from bridge.wire.payloads import encode_meta

        topics = Topics()
        for cid in range(1, self.characteristics + 1):
            meta = encode_meta({"characteristic_id": cid, "name": f"C{cid}"})
            self.client.publish(topics.meta(cid), meta, qos=1, retain=True)

    def _sample(self, cid: int, value: float) -> tuple[str, bytes]:
        """What the bridge publishes for one n = 1 reading, encoded as the bridge does."""
        from datetime import UTC, datetime

        from bridge.wire import Topics
        from bridge.wire.payloads import encode, sample_payload
        from engine import SampleProcessed, Zone

        zone = Zone.ZONE_C_UPPER if value >= 10 else Zone.ZONE_C_LOWER
        point = SampleProcessed(
            cid, self.sent + 1, datetime.now(UTC), value, (value,), 0.42, zone, True, (), ()
        )
        return Topics().sample(cid), encode("sample", sample_payload(self.sent + 1, point))

    def run(self) -> None:
        import random

        from bridge.wire.topics import DEFAULT_PREFIX, reading_topic

        gauge = random.Random(7)  # in control: sigma 1 around the centre line
        started = time.monotonic()
        cid = 0
        while not self.stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while self.sent < due:
                cid = cid % self.characteristics + 1
                value = round(gauge.gauss(10.0, 1.0), 2)
                if self.synthetic:
                    topic, sample = self._sample(cid, value)
                    self.client.publish(topic, sample, qos=1, retain=True)
                else:
                    self.client.publish(reading_topic(DEFAULT_PREFIX, cid), f"{value:.2f}", qos=1)
                self.sent += 1
            time.sleep(0.005)
        self.client.loop_stop()
        self.client.disconnect()


# --- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace, log: Any = print) -> Result:
    tmp = tempfile.mkdtemp(prefix="openspc-bench-gateway-")
    try:
        return _run(args, log, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(args: argparse.Namespace, log: Any, tmp: str) -> Result:
    from bridge._mosquitto import MosquittoProcess

    openspc = str(Path(sys.executable).with_name("openspc"))
    with (
        MosquittoProcess() as broker,
    ):
        assert broker.process is not None
        config = _config(Path(tmp) / "openspc.toml", broker.port, args.characteristics)
        log(f"bridge with {args.characteristics} characteristics (in {tmp})")
        counter = _SampleCounter(broker.port)
        publisher = _Publisher(
            broker.port, args.characteristics, args.rate, synthetic=args.synthetic
        )
        bridge = subprocess.Popen(
            ["sleep", "infinity"]  # nothing to run: the publisher stands in for the bridge
            if args.synthetic
            else [openspc, "run", "--config", str(config), "--log-level", "WARNING"],
            cwd=tmp,
            stderr=open(Path(tmp) / "bridge.log", "wb"),  # noqa: SIM115 (closed with the dir)
        )
        if args.synthetic:
            publisher.announce()
        counter.wait_metas(args.characteristics, 120)  # the gateway starts knowing them all
        gateway = subprocess.Popen(
            [openspc, "gateway", "--config", str(config), "--port", "0", "--log-level", "WARNING"],
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=open(Path(tmp) / "gateway.log", "wb"),  # noqa: SIM115
            text=True,
        )
        clients_proc = None
        try:
            assert gateway.stdout is not None
            line = gateway.stdout.readline()
            if "serving " not in line:
                raise RuntimeError(f"the gateway did not start: {line!r}")
            url = line.split("serving ", 1)[1].split(" ", 1)[0]
            log(f"{args.clients} clients x {args.per_client} characteristics at {url}")
            parent, child = multiprocessing.Pipe()
            clients_proc = multiprocessing.Process(
                target=_clients_main,
                args=(
                    url,
                    args.clients,
                    args.per_client,
                    args.characteristics,
                    not args.no_compression,
                    child,
                ),
                name="bench-clients",
            )
            clients_proc.start()
            if not parent.poll(180):
                raise RuntimeError("the clients did not all subscribe within 180 s")
            parent.recv()
            log(f"publishing {args.rate:g} readings/s; warming up {args.warmup:g} s")
            publisher.start()
            time.sleep(args.warmup)
            pids = {
                "gateway": gateway.pid,
                "bridge": bridge.pid,
                "clients": clients_proc.pid or 0,
                "broker": broker.process.pid,
            }
            before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
            parent.send("count")
            count0, _ = parent.recv()
            samples0, sent0 = counter.count, publisher.sent
            t0 = time.monotonic()
            log(f"measuring {args.seconds:g} s")
            time.sleep(args.seconds)
            parent.send("count")
            count1, closed = parent.recv()
            samples1, sent1 = counter.count, publisher.sent
            elapsed = time.monotonic() - t0
            counter.close()
            after = {name: _cpu_seconds(pid) for name, pid in pids.items()}
            cpu = {name: (after[name] - before[name]) / elapsed for name in pids}
            rss = _rss_mb(gateway.pid)
            parent.send("stop")
        finally:
            publisher.stop.set()
            if publisher.is_alive():
                publisher.join(5)
            if clients_proc is not None:
                clients_proc.join(10)
                if clients_proc.is_alive():
                    clients_proc.kill()
            for proc in (gateway, bridge):
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    delivered = (count1 - count0) / elapsed
    full = args.clients * args.per_client * args.rate / args.characteristics
    return Result(
        clients=args.clients,
        per_client=args.per_client,
        characteristics=args.characteristics,
        rate=args.rate,
        seconds=round(elapsed, 1),
        compression=not args.no_compression,
        synthetic=args.synthetic,
        gateway_cpu=round(cpu["gateway"], 3),
        bridge_cpu=round(cpu["bridge"], 3),
        clients_cpu=round(cpu["clients"], 3),
        broker_cpu=round(cpu["broker"], 3),
        gateway_rss_mb=round(rss, 1),
        published_per_s=round((sent1 - sent0) / elapsed, 1),
        samples_per_s=round((samples1 - samples0) / elapsed, 1),
        delivered_per_s=round((count1 - count0) / elapsed, 1),
        expected_per_s=round(
            args.clients * args.per_client * (samples1 - samples0) / elapsed / args.characteristics,
            1,
        ),
        closed=closed,
        us_per_message=round(cpu["gateway"] / max(1.0, delivered) * 1e6, 1),
        projected_cpu=round(cpu["gateway"] / max(1.0, delivered) * full, 3),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench-gateway", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument("--characteristics", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0, help="readings (samples) a second")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="publish the bridge's sample messages directly instead of running the bridge"
        " (the gateway sees the same messages; for a machine too busy to run the bridge too)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    result = run(args, log=lambda text: print(f"... {text}", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(asdict(result), indent=2))
        return
    print(
        f"gateway: {result.gateway_cpu * 100:.0f} % of one core, {result.gateway_rss_mb:.0f} MB"
        f" RSS, feeding {result.clients} clients x {result.per_client} characteristics"
        f" ({'with' if result.compression else 'without'} permessage-deflate)\n"
        f"readings sent {result.published_per_s:.0f}/s, samples published by the bridge"
        f" {result.samples_per_s:.0f}/s over {result.characteristics} characteristics\n"
        f"delivered {result.delivered_per_s:.0f} messages/s (expected about"
        f" {result.expected_per_s:.0f}), {result.closed} client(s) lost\n"
        f"{result.us_per_message:.0f} us of gateway CPU per message delivered: at the full"
        f" {args.clients * args.per_client * args.rate / args.characteristics:.0f} messages/s"
        f" that is {result.projected_cpu * 100:.0f} % of one core\n"
        f"beside it: {'none (--synthetic)' if result.synthetic else 'bridge'}"
        f" {result.bridge_cpu * 100:.0f} %, clients"
        f" {result.clients_cpu * 100:.0f} %, Mosquitto {result.broker_cpu * 100:.0f} %"
        f" (measured over {result.seconds:g} s)"
    )
