"""`openspc demo`: a whole local plant in one command.

Our Mosquitto (``mosquitto/mosquitto.conf`` rendered for the demo's ports, bound to
127.0.0.1, with demo users), the bridge on SQLite (:func:`bridge.app.run_bridge`) and
simulated gauges (:mod:`bridge.simulator`) that drift, shift and throw outliers. Everything
it keeps lives in the state directory (``--state-dir``; default :func:`default_state_dir`),
never in the installation, whose files (the broker's config, the HMI) it only reads:

    broker/          rendered mosquitto.conf, passwd, roles.json, acl, data/, mosquitto.log
    openspc.toml     the demo's bridge configuration (rewritten on every start)
    openspc.db       the bridge's SQLite database (kept: a second run carries on)
    credentials.json the demo users' passwords (kept, mode 0600)

:func:`check_ports` runs before anything starts; :func:`run_demo` runs until ``stop`` is
set, then stops the gauges, lets the bridge publish its offline status, and stops the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bridge._mosquitto import MosquittoFailedToStart, PlantBroker, port_is_free
from bridge._package_data import hmi_dir
from bridge.mosquitto_admin import Role
from bridge.simulator import (
    CountGauge,
    Disturbances,
    Gauge,
    GaugePublisher,
    LineSchedule,
    Shopfloor,
    gauges_from_settings,
)
from bridge.wire.topics import Topics

if TYPE_CHECKING:
    from bridge.config import Settings

__all__ = [
    "DemoOptions",
    "DemoUser",
    "PortTaken",
    "StateDirUnusable",
    "check_ports",
    "default_state_dir",
    "demo_config",
    "run_demo",
]

log = logging.getLogger("openspc.demo")

_MARKER = ".openspc-demo"  # a file in the state dir: --reset deletes only a dir that has it
_HOST = "127.0.0.1"
_POINT_SIZE = 5  # --rate is the readings per second of an n = 5 gauge
_GATEWAY = "OpenSPC WebSocket API"


def default_state_dir() -> Path:
    """Where the demo keeps its state unless told (docs/broker.md "openspc demo").

    ``$XDG_STATE_HOME/openspc/demo`` (``~/.local/state/openspc/demo``) for a user; as root,
    ``/var/lib/openspc/demo``: Mosquitto drops root to user ``mosquitto``, who cannot enter
    root's home (mode 0700) but can enter /var/lib.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/openspc/demo")
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # unset, or relative (which the XDG spec says to ignore)
        base = str(Path.home() / ".local" / "state")
    return Path(base) / "openspc" / "demo"


class PortTaken(Exception):
    """A port the demo needs is in use (or invalid); ``flag`` chooses another."""

    def __init__(self, port: int, what: str, flag: str, reason: str = "is in use") -> None:
        self.port = port
        self.what = what
        self.flag = flag
        super().__init__(f"port {port} ({what}) {reason}: choose another with {flag} PORT")


class StateDirUnusable(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"state directory {path} {reason}: choose another with --state-dir DIR")


@dataclass(frozen=True)
class DemoOptions:
    mqtt_port: int = 1883
    ws_port: int = 9001
    gateway_port: int = 8000  # OpenSPC's WebSocket API (docs/gateway.md)
    state_dir: Path = field(default_factory=default_state_dir)
    reset: bool = False
    rate: float = 0.25  # readings per second of an n = 5 gauge: a point every 20 s
    # how readings carry their part, lot, shift and operator (bridge.simulator.Shopfloor):
    # "context": each reading's part, lot, shift and operator as its `context` object
    # (docs/topics.md "Context"); "legacy": the older top-level batch and operator keys
    context: str = "context"
    http_dir: Path = field(default_factory=hmi_dir)


@dataclass(frozen=True)
class DemoUser:
    name: str
    role: Role
    password: str
    note: str


def check_ports(options: DemoOptions) -> None:
    """Raise :class:`PortTaken` unless the ports are valid, distinct and free on 127.0.0.1."""
    ports = (
        (options.mqtt_port, "MQTT", "--mqtt-port"),
        (options.ws_port, "WebSocket/HMI", "--ws-port"),
        (options.gateway_port, _GATEWAY, "--gateway-port"),
    )
    for port, what, flag in ports:
        if not 1 <= port <= 65535:
            raise PortTaken(port, what, flag, "is not a port number (1-65535)")
    if options.mqtt_port == options.ws_port:
        raise PortTaken(options.ws_port, "WebSocket/HMI", "--ws-port", "is also the MQTT port")
    for port, what in ((options.mqtt_port, "MQTT"), (options.ws_port, "WebSocket/HMI")):
        if options.gateway_port == port:
            raise PortTaken(port, _GATEWAY, "--gateway-port", f"is also the {what} port")
    for port, what, flag in ports:
        if not port_is_free(port, _HOST):
            raise PortTaken(port, what, flag)


def _broker_can_reach(path: Path) -> str | None:
    """Why Mosquitto (dropping root to user ``mosquitto``) could not reach ``path``, or None."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return None  # no such user: Mosquitto stays root
    gids = {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
    for directory in [path, *path.parents]:
        if not directory.exists():
            continue
        st = directory.stat()
        if st.st_uid == user.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in gids:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return f"is inside {directory}, which user 'mosquitto' cannot enter"
    return None


def prepare_state_dir(options: DemoOptions) -> Path:
    state = options.state_dir.absolute()
    if options.reset and state.exists():
        if not (state / _MARKER).exists() and any(state.iterdir()):
            raise StateDirUnusable(state, "is not an empty or earlier demo directory (not reset)")
        shutil.rmtree(state)
    if state.exists() and not state.is_dir():
        raise StateDirUnusable(state, "is not a directory")
    if state.exists() and any(state.iterdir()) and not (state / _MARKER).exists():
        raise StateDirUnusable(state, "is not empty and holds no earlier demo")
    why = _broker_can_reach(state)
    if why is not None:
        raise StateDirUnusable(state, why)
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    (state / _MARKER).write_text(
        "openspc demo state: openspc demo --reset deletes this directory\n"
    )
    return state


@contextlib.contextmanager
def _without_overrides() -> Iterator[list[str]]:
    """Hide ``OPENSPC_...`` variables: they are for the plant's bridge, and the demo must not
    write simulated data to the plant's database or look for another broker."""
    hidden = {k: v for k, v in os.environ.items() if k.upper().startswith("OPENSPC_")}
    for key in hidden:
        del os.environ[key]
    try:
        yield sorted(hidden)
    finally:
        os.environ.update(hidden)


def _servable_hmi(http_dir: Path, state: Path) -> Path:
    """The HMI directory Mosquitto will serve: the installed one, or a copy in the state
    directory when user ``mosquitto`` cannot reach the installation (e.g. a venv in /root)."""
    if not (http_dir / "index.html").exists():
        log.warning("no HMI page in %s: the web page will be missing", http_dir)
    elif not (http_dir / "app.js").is_file() or not (http_dir / "vendor").is_dir():
        log.warning(
            "%s has no app.js or vendor/: run scripts/build-hmi (scripts/setup does) and "
            "install again; the page will not work",
            http_dir,
        )
    if _broker_can_reach(http_dir) is None:
        return http_dir
    copy = state / "hmi"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(http_dir, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    log.info("serving a copy of the HMI from %s (user mosquitto cannot reach %s)", copy, http_dir)
    return copy


def demo_users(state: Path) -> list[DemoUser]:
    """The demo's users; their passwords are made once and kept in credentials.json."""
    path = state / "credentials.json"
    saved: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    specs = [
        ("alice", Role.HMI, "HMI operator: log in on the page to acknowledge alarms"),
        ("bob", Role.HMI, "HMI operator"),
        ("gauges", Role.GAUGE, "the simulated gauges: write their own readings only"),
        ("bridge", Role.BRIDGE, "the bridge: the only writer of results"),
        ("gateway", Role.GATEWAY, "the OpenSPC WebSocket API (openspc gateway): reads results"),
    ]
    users = [
        DemoUser(name, role, saved.get(name) or secrets.token_urlsafe(8), note)
        for name, role, note in specs
    ]
    path.write_text(json.dumps({u.name: u.password for u in users}, indent=2) + "\n")
    path.chmod(0o600)
    return users


def demo_config(
    *,
    mqtt_port: int,
    bridge_password: str,
    gateway_port: int = 8000,
    gateway_password: str | None = None,
    point_seconds: float = 20.0,
) -> str:
    """The demo bridge's TOML: six characteristics, n = 1 and n = 5, a p chart and an EWMA
    chart, own and standard topics; the gateway's port, and its broker user when it has one.
    Every chart expects a point every ``point_seconds``: a sample is due three points after
    the last (overdue a quarter later), and line 3's charts wait while it stands."""
    gateway = f'[gateway]\nhost = "{_HOST}"\nport = {gateway_port}\n'
    if gateway_password is not None:
        gateway += f'username = "gateway"\npassword = "{gateway_password}"\n'
    return f"""# Written by `openspc demo` on every start; a real plant edits config/openspc.toml.

[broker]
host = "{_HOST}"
port = {mqtt_port}
username = "bridge"
password = "{bridge_password}"
client_id = "openspc-demo-bridge"

[database]
url = "sqlite+aiosqlite:///openspc.db"

[bridge]
topic_prefix = "openspc"
metrics_interval = 5.0
users_file = "broker/roles.json"  # each user's role message for the HMI (docs/topics.md)

# openspc gateway: OpenSPC's WebSocket API (docs/gateway.md)
{gateway}{_due_and_line(_CHARACTERISTICS, 3 * point_seconds)}"""


def _due_and_line(characteristics: str, interval: float) -> str:
    """Each characteristic of the TOML with its ``sample_interval``, and line 3's with its
    ``running_topic`` (docs/configuration.md "Alarms")."""
    out = []
    for block in characteristics.split("[[characteristic]]\n"):
        if block.startswith("id = "):
            keys = f"sample_interval = {interval:g}\n"
            if 'topic = "plant1/line3/' in block:
                keys += f'running_topic = "{LINE3_RUNNING_TOPIC}"\n'
            block = block.replace("\n", "\n" + keys, 1)
        out.append(block)
    return "[[characteristic]]\n".join(out)


# Line 3 (characteristics 1, 4 and 5, on plant1/line3/...) stops now and then: its gauges
# send nothing meanwhile and the line says so on this topic; its characteristics name it as
# their `running_topic` (docs/configuration.md), so no overdue alarm is raised while it stands.
LINE3_RUNNING_TOPIC = "plant1/line3/running"

_CHARACTERISTICS = """# n = 5 from a vendor gauge on its own topic:
# {"data": {"od": 10.01}, "ts": ...}; all eight Nelson rules (the most alarms of the demo's charts)
[[characteristic]]
id = 1
name = "Shaft OD"
unit = "mm"
topic = "plant1/line3/gauge7/od"
value_path = "data.od"
subgroup_size = 5
usl = 10.05
lsl = 9.95
target = 10.0
baseline = 25
rules = "nelson"

# n = 1 on the standard topic openspc/char/2/reading; a baseline of 50 individuals (20 would
# estimate sigma too low as often as not, and every chart after it would alarm)
[[characteristic]]
id = 2
name = "Bore depth"
unit = "mm"
usl = 25.2
lsl = 24.8
target = 25.0
baseline = 50
rules = "western_electric"

# n = 5 against fixed control limits: judged from the first subgroup (the demo's first alarm)
[[characteristic]]
id = 3
name = "Fill weight"
unit = "g"
subgroup_size = 5
usl = 508.0
lsl = 492.0
target = 500.0
center_line = 500.0
ucl = 503.0
lcl = 497.0
rules = "western_electric"

# n = 1 with an upper spec limit only: beyond 3 sigma, nine on one side
[[characteristic]]
id = 4
name = "Surface roughness Ra"
unit = "um"
topic = "plant1/line3/profilometer/ra"
usl = 1.6
baseline = 50
rules = [1, 2]

# a p chart: a vision station reports the defective caps of about 50 inspected,
# {"defectives": 2, "inspected": 51, "ts": ...}; rule 1 (the attribute charts' default)
[[characteristic]]
id = 5
name = "Cap defects (vision)"
unit = "fraction defective"
topic = "plant1/line3/vision/caps"
chart = "p"
baseline = 25

# an EWMA chart of individuals: sees a small shift long before a Shewhart chart would
[[characteristic]]
id = 6
name = "Coating thickness"
unit = "um"
usl = 62.0
lsl = 38.0
target = 50.0
baseline = 60
chart = "ewma"
lambda = 0.2
L = 3.0
"""

# How the demo's gauges misbehave, in points (subgroups) of each chart: calm for 200 to 400
# points between assignable causes (a step shift of 1.5 sigma, or a drift of 0.3 sigma a
# point), each over after 4 to 8 points (someone corrects it); the first one right after the
# warm-up, as a shift, so the first alarm comes within about a minute. The EWMA chart's
# causes are smaller (it sees small ones). At the default pace (a point every 20 s) that is
# about 5 alarms an hour per characteristic, most of them the rules' own false alarms
# (scripts/demo-alarm-rate; docs/hmi.md "The demo").
DISTURBANCES = Disturbances(
    gap=(200, 400),
    length=(4, 8),
    shift_sigmas=1.5,
    drift_sigmas_per_reading=0.3,
    outlier_chance=0.001,
    first_gap=(0, 1),
    first_shift=True,
)
SMALL_SHIFTS = Disturbances(
    gap=(200, 400),
    length=(6, 12),
    shift_sigmas=1.0,
    drift_sigmas_per_reading=0.15,
    outlier_chance=0.0005,
    first_gap=(0, 1),
    first_shift=True,
)
COUNT_GAP = (200, 400)  # samples between the vision station's bad spells
BACKFILL_POINTS = 70  # a new demo's history: more than the longest baseline (60)


def demo_gauges(settings: Settings, seed: int) -> list[Gauge | CountGauge]:
    """The demo's simulated gauges for its config (also what ``scripts/demo-alarm-rate``
    measures)."""
    return gauges_from_settings(
        settings,
        seed=seed,
        disturbances=DISTURBANCES,
        small_shift=SMALL_SHIFTS,
        per_point=True,
        count_gap=COUNT_GAP,
        fixed_warmup=1,
    )


def _start_broker(broker: PlantBroker, options: DemoOptions) -> None:
    """Start the broker; a port taken since :func:`check_ports` is still a :class:`PortTaken`."""
    try:
        broker.start()
    except MosquittoFailedToStart as exc:
        taken = re.findall(r"Unable to create \S+ listener on port (\d+)", exc.log)
        if not taken:
            raise
        port = int(taken[-1])
        if port == options.mqtt_port:
            raise PortTaken(port, "MQTT", "--mqtt-port") from None
        raise PortTaken(port, "WebSocket/HMI", "--ws-port") from None


async def _finish(bridge: asyncio.Task[None]) -> None:
    """Let the bridge (or the gateway) finish (offline status, flush); log, never raise,
    what went wrong."""
    try:
        await asyncio.wait_for(asyncio.shield(bridge), 20)
    except TimeoutError:
        bridge.cancel()
        log.warning("the %s did not stop within 20 s; cancelled", bridge.get_name())
    except Exception as exc:  # reported by the caller when it is why we stop
        log.debug("the %s ended with %r", bridge.get_name(), exc)


async def _start_gateway(settings: Settings, stop: asyncio.Event) -> asyncio.Task[None]:
    """Start ``openspc gateway`` in this process; return once it listens. A port taken since
    :func:`check_ports` is a :class:`PortTaken`."""
    from bridge.gateway import run_gateway

    listening = asyncio.Event()
    task = asyncio.create_task(
        run_gateway(settings, stop, on_ready=lambda _gateway: listening.set()), name="gateway"
    )
    waiting = asyncio.create_task(listening.wait(), name="await-gateway")
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if task.done():
        port = settings.gateway.port
        try:
            task.result()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(port, _GATEWAY, "--gateway-port") from None
            raise
        raise RuntimeError("the gateway stopped before it listened")
    return task


async def _await_bridge_online(
    mqtt_port: int,
    bridge: asyncio.Task[None],
    since: datetime,
    login: DemoUser,
    wait: float = 30.0,
) -> None:
    """Wait for this run's bridge to say it is online, so no early reading is lost.

    The MQTT listener takes named users only (docs/broker.md): ``login`` watches."""
    import aiomqtt

    async with aiomqtt.Client(
        _HOST, mqtt_port, username=login.name, password=login.password, timeout=10
    ) as watcher:
        await watcher.subscribe(Topics().status, qos=1)

        async def online() -> None:
            async for message in watcher.messages:
                if not isinstance(message.payload, bytes | bytearray):
                    continue
                with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                    status = json.loads(message.payload)
                    when = datetime.fromisoformat(status["timestamp"])
                    if status["online"] is True and when >= since:
                        return

        waiting = asyncio.create_task(online(), name="await-bridge-online")
        done, _ = await asyncio.wait(
            {waiting, bridge}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
        )
        waiting.cancel()
        if bridge in done:
            bridge.result()
            raise RuntimeError("the bridge stopped before it came online")
        if waiting not in done:
            raise RuntimeError(f"the bridge did not come online within {wait:g} s")


def _banner(options: DemoOptions, state: Path, users: list[DemoUser]) -> str:
    width = max(len(u.name) + len(u.password) for u in users) + 3
    lines = [
        "",
        "OpenSPC demo is running.",
        f"  HMI (open in a browser):  http://{_HOST}:{options.ws_port}/",
        f"  MQTT:                     mqtt://{_HOST}:{options.mqtt_port}"
        "  (named users only, e.g. mosquitto_sub -u alice -P PASSWORD -t 'openspc/char/#' -v)",
        f"  Live feed:                ws://{_HOST}:{options.ws_port}",
        f"  OpenSPC API (WebSocket):  ws://{_HOST}:{options.gateway_port}/api/v1/ws",
        "  Users (name / password):",
        *(f"    {u.name + ' / ' + u.password:<{width}}  {u.note}" for u in users),
        f"  State:                    {state}  (kept; --reset starts afresh)",
        f"  Gauges:                   a point every {_POINT_SIZE / options.rate:g} s on every "
        "chart; the first alarm within about a minute, then a few an hour per chart",
        f"  Line 3:                   stops now and then ({LINE3_RUNNING_TOPIC})",
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


@dataclass
class _Plant:
    """What the demo's parts share once the state directory and config are ready."""

    options: DemoOptions
    settings: Settings
    state: Path
    users: list[DemoUser]
    carries_on: bool  # the database of an earlier run is there

    def user(self, name: str) -> DemoUser:
        return next(u for u in self.users if u.name == name)


def _write_config(options: DemoOptions, state: Path, users: list[DemoUser]) -> Settings:
    """Write the demo's openspc.toml (mode 0600: it holds passwords) and load it."""
    from bridge.config import load_settings

    by_name = {u.name: u for u in users}
    config_path = state / "openspc.toml"
    config_path.write_text(
        demo_config(
            mqtt_port=options.mqtt_port,
            bridge_password=by_name["bridge"].password,
            gateway_port=options.gateway_port,
            gateway_password=by_name["gateway"].password,
            point_seconds=_POINT_SIZE / options.rate,
        )
    )
    config_path.chmod(0o600)
    with _without_overrides() as ignored:
        settings = load_settings(config_path)
    if ignored:
        log.warning("the demo ignores the environment's %s", ", ".join(ignored))
    return settings


def _demo_broker(plant: _Plant) -> PlantBroker:
    """The broker and its users: the simulated gauges write exactly the demo's
    characteristics (their own topics, or openspc/char/<id>/reading for those without one,
    docs/broker.md) and line 3's running topic."""
    options, settings = plant.options, plant.settings
    broker = PlantBroker(
        plant.state / "broker",
        mqtt_port=options.mqtt_port,
        ws_port=options.ws_port,
        http_dir=_servable_hmi(options.http_dir, plant.state),
    )
    gauge_topics = sorted({c.topic for c in settings.characteristic if c.topic is not None})
    gauge_topics.append(LINE3_RUNNING_TOPIC)
    gauge_ids = sorted(c.id for c in settings.characteristic if c.topic is None)
    for user in plant.users:
        is_gauge = user.role is Role.GAUGE
        broker.users.add(
            user.name,
            user.role,
            user.password,
            gauge_topics if is_gauge else [],
            characteristics=gauge_ids if is_gauge else [],
            client_id=settings.broker.client_id if user.role is Role.BRIDGE else None,
            topic_prefix="openspc",
        )
    return broker


def _publishers(plant: _Plant) -> list[GaugePublisher]:
    """One publisher per subgroup size: every chart gains a point at the same pace (an n = 5
    gauge sends `rate` readings a second, an n = 1 gauge a fifth of that). Line 3's gauges
    pause while it stands; the first publisher says so on its running topic."""
    options, gauges_user = plant.options, plant.user("gauges")
    by_size: dict[int, list[Gauge | CountGauge]] = {}
    for gauge in demo_gauges(plant.settings, secrets.randbits(32)):
        by_size.setdefault(gauge.profile.subgroup_size, []).append(gauge)
    line_ids = frozenset(
        c.id for c in plant.settings.characteristic if (c.topic or "").startswith("plant1/line3/")
    )
    # a 25-minute run and a 4-minute stop at the default pace (scaled with --rate)
    scale = DemoOptions.rate / options.rate
    line = LineSchedule(LINE3_RUNNING_TOPIC, line_ids, run=1500 * scale, stop=240 * scale)
    shopfloor = Shopfloor(style=options.context)
    # a new plant starts with the last 70 points of a line that was already running (time-
    # stamped 20 s apart up to now): every chart has its limits and history when the page
    # opens; a second run carries on from its database instead
    points = 0 if plant.carries_on else BACKFILL_POINTS
    return [
        GaugePublisher(
            _HOST,
            options.mqtt_port,
            group,
            rate=options.rate * size / _POINT_SIZE,
            username=gauges_user.name,
            password=gauges_user.password,
            client_id=f"openspc-demo-gauges-n{size}",
            shopfloor=shopfloor,
            line=line,
            announce_line=index == 0,
            backfill=points * size,
        )
        for index, (size, group) in enumerate(sorted(by_size.items()))
    ]


async def _until_stopped(
    bridge: asyncio.Task[None], gateway: asyncio.Task[None], stop: asyncio.Event
) -> None:
    """Wait for ``stop``; a bridge or gateway that ends by itself is an error, with its why."""
    stopper = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait({bridge, gateway, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if bridge.done():
        bridge.result()  # the bridge ended by itself: report why
        raise RuntimeError("the bridge stopped unexpectedly")
    if gateway.done():
        gateway.result()
        raise RuntimeError("the gateway stopped unexpectedly")


async def _run_plant(
    plant: _Plant,
    bridge: asyncio.Task[None],
    since: datetime,
    stop: asyncio.Event,
    out: TextIO,
    on_ready: Callable[[], None] | None,
) -> None:
    """With the bridge started: wait for it, start the gateway and the gauges, run until
    ``stop``, then stop the gauges and the gateway."""
    publishers = _publishers(plant)
    started: list[GaugePublisher] = []
    gateway_stop = asyncio.Event()
    gateway: asyncio.Task[None] | None = None
    try:
        await _await_bridge_online(plant.options.mqtt_port, bridge, since, plant.user("gauges"))
        gateway = await _start_gateway(plant.settings, gateway_stop)
        for publisher in publishers:
            await asyncio.to_thread(publisher.start)
            started.append(publisher)
        out.write(_banner(plant.options, plant.state, plant.users))
        out.flush()
        if on_ready is not None:
            on_ready()
        await _until_stopped(bridge, gateway, stop)
        out.write("Stopping: gauges, then the bridge (offline status), then the broker.\n")
        out.flush()
    finally:
        for publisher in started:
            await asyncio.to_thread(publisher.stop, 2.0)
        gateway_stop.set()
        if gateway is not None:
            await _finish(gateway)


async def run_demo(
    options: DemoOptions,
    stop: asyncio.Event,
    out: TextIO,
    *,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run the demo until ``stop`` is set. Call :func:`check_ports` first.

    Start :class:`PlantBroker` from the main thread: it stops with it.
    """
    from bridge.app import run_bridge

    state = prepare_state_dir(options)
    carries_on = (state / "openspc.db").exists()
    users = demo_users(state)
    settings = _write_config(options, state, users)
    plant = _Plant(options, settings, state, users, carries_on)
    broker = _demo_broker(plant)
    _start_broker(broker, options)
    since = datetime.now(UTC) - timedelta(seconds=1)
    try:
        bridge_stop = asyncio.Event()
        bridge = asyncio.create_task(run_bridge(settings, bridge_stop), name="bridge")
        try:
            await _run_plant(plant, bridge, since, stop, out, on_ready)
        finally:
            bridge_stop.set()
            await _finish(bridge)
    finally:
        broker.stop()
