"""Simulated gauges for ``openspc demo`` and ``openspc bench``.

Two parts:

- :class:`Gauge` is pure and deterministic for a seed: a normal process (``mean``,
  ``sigma``) that, after a calm warm-up (by default the baseline's worth of readings), now and
  then suffers a *step shift*, a *drift* or a single *outlier*, so that SPC alarms appear soon
  after the control limits exist.
- :class:`CountGauge` is its counterpart for the attribute charts (p, np, c, u): an
  inspection station that reports defectives of those inspected (or defects, or defects per
  units), mostly in control, with now and then a short spell of many more.
- :class:`GaugePublisher` publishes gauges' readings with paho-mqtt (QoS 1) from a thread, at
  a given rate, as ``{"value": x, "ts": <epoch ms>}`` on each characteristic's reading topic
  (or the vendor shape its ``value_path`` names), with the part, lot, shift and operator of
  a :class:`Shopfloor` when given one, and pauses a :class:`LineSchedule`'s gauges while its
  line stands still (announced on the line's running topic).
- :func:`alarm_rate` runs gauges through the engine offline, for hours of simulated time in
  seconds: the alarms an hour each characteristic would raise (docs/hmi.md "The demo").
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import engine
from bridge.config import CharacteristicSettings, Settings
from bridge.errors import BrokerUnavailable
from bridge.readings import compile_value_path

__all__ = [
    "CountGauge",
    "Disturbance",
    "Disturbances",
    "Gauge",
    "GaugeProfile",
    "GaugePublisher",
    "LineSchedule",
    "Shopfloor",
    "SimulatedReading",
    "alarm_rate",
    "gauges_from_settings",
    "profile_for",
    "reading_payload",
]


class Disturbance(StrEnum):
    """What the process is doing at a reading."""

    NONE = "none"
    SHIFT = "shift"  # the mean has stepped away by shift_sigmas
    DRIFT = "drift"  # the mean walks away a little more at every reading
    OUTLIER = "outlier"  # one wild reading


@dataclass(frozen=True, slots=True)
class Disturbances:
    """How often and how hard the process misbehaves. Counts are in readings.

    The defaults make a chart alarm within a few dozen readings after the warm-up: a shift of
    2 sigma fails "nine on one side" and usually "two of three beyond 2 sigma"; a drift of
    0.25 sigma a reading crosses 3 sigma within a dozen readings; an outlier of 4.5 sigma is
    beyond the limits at once (of an individuals chart; it moves an X-bar and an R).
    """

    warmup: int | None = None  # calm readings first; None: 25 subgroups' worth (the baseline)
    gap: tuple[int, int] = (15, 35)  # calm readings between episodes, drawn uniformly
    length: tuple[int, int] = (12, 20)  # readings an episode lasts
    shift_sigmas: float = 2.0
    drift_sigmas_per_reading: float = 0.25
    outlier_sigmas: float = 4.5
    outlier_chance: float = 0.02  # per calm reading after the warm-up
    # calm readings between the warm-up and the first episode (None: half a gap), so that a
    # demo shows its first alarm soon and then stays calm
    first_gap: tuple[int, int] | None = None
    first_shift: bool = False  # the first episode a step shift (seen at once), not a drift

    def in_readings(self, subgroup_size: int) -> Disturbances:
        """These counts taken as points (subgroups) of a chart of ``subgroup_size``, in
        readings: every chart then misbehaves as often per point whatever its n."""
        n = subgroup_size

        def times(pair: tuple[int, int] | None) -> tuple[int, int] | None:
            return None if pair is None else (pair[0] * n, pair[1] * n)

        gap, length = times(self.gap), times(self.length)
        assert gap is not None
        assert length is not None
        return Disturbances(
            warmup=None if self.warmup is None else self.warmup * n,
            gap=gap,
            length=length,
            shift_sigmas=self.shift_sigmas,
            drift_sigmas_per_reading=self.drift_sigmas_per_reading / n,
            outlier_sigmas=self.outlier_sigmas,
            outlier_chance=self.outlier_chance / n,
            first_gap=times(self.first_gap),
            first_shift=self.first_shift,
        )

    @classmethod
    def none(cls) -> Disturbances:
        """A process in control for ever."""
        return cls(gap=(10**12, 10**12), outlier_chance=0.0)


@dataclass(frozen=True, slots=True)
class GaugeProfile:
    """What a simulated gauge measures and where it publishes."""

    characteristic_id: int
    topic: str
    mean: float
    sigma: float
    subgroup_size: int = 1
    value_path: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"a gauge needs a finite mean and sigma > 0, got {self}")


@dataclass(frozen=True, slots=True)
class SimulatedReading:
    characteristic_id: int
    value: float
    disturbance: Disturbance


class Gauge:
    """A deterministic stream of readings for one characteristic (same seed, same stream)."""

    def __init__(
        self,
        profile: GaugeProfile,
        *,
        seed: int = 0,
        disturbances: Disturbances | None = None,
        baseline: int = 25,
    ) -> None:
        self.profile = profile
        self.disturbances = disturbances or Disturbances()
        d = self.disturbances
        self._random = random.Random(f"{seed}/{profile.characteristic_id}")
        self._count = 0
        self._warmup = baseline * profile.subgroup_size if d.warmup is None else d.warmup
        first = d.first_gap
        self._calm_until = self._warmup + (
            self._random.randint(*d.gap) // 2 if first is None else self._random.randint(*first)
        )
        self._episode: Disturbance = Disturbance.NONE
        self._episode_until = 0
        self._offset = 0.0  # in sigmas
        self._direction = 1.0
        self._had_episode = False

    @property
    def count(self) -> int:
        """Readings produced so far."""
        return self._count

    def next(self) -> SimulatedReading:
        d = self.disturbances
        rnd = self._random
        i = self._count
        self._count += 1
        kind = Disturbance.NONE
        if self._episode is not Disturbance.NONE:
            if i >= self._episode_until:
                self._episode = Disturbance.NONE
                self._offset = 0.0
                self._calm_until = i + rnd.randint(*d.gap)
            else:
                kind = self._episode
                if kind is Disturbance.DRIFT:
                    self._offset += self._direction * d.drift_sigmas_per_reading
        elif i >= self._calm_until:
            self._episode = rnd.choice((Disturbance.SHIFT, Disturbance.DRIFT))
            if d.first_shift and not self._had_episode:
                self._episode = Disturbance.SHIFT
            self._had_episode = True
            self._episode_until = i + rnd.randint(*d.length)
            self._direction = rnd.choice((-1.0, 1.0))
            self._offset = (
                self._direction * d.shift_sigmas
                if self._episode is Disturbance.SHIFT
                else self._direction * d.drift_sigmas_per_reading
            )
            kind = self._episode
        noise = rnd.gauss(0.0, 1.0)
        if kind is Disturbance.NONE and i >= self._warmup and rnd.random() < d.outlier_chance:
            kind = Disturbance.OUTLIER
            noise = rnd.choice((-1.0, 1.0)) * d.outlier_sigmas
        value = self.profile.mean + (self._offset + noise) * self.profile.sigma
        return SimulatedReading(self.profile.characteristic_id, value, kind)

    def take(self, count: int) -> list[SimulatedReading]:
        return [self.next() for _ in range(count)]

    def __iter__(self) -> Iterator[SimulatedReading]:
        while True:
            yield self.next()


ATTRIBUTE_CHARTS = ("p", "np", "c", "u")


class CountGauge:
    """A deterministic stream of attribute readings (same seed, same stream): a vision
    station's ``{"defectives": d, "inspected": n}`` (p, np), a tester's ``{"defects": c}``
    (c) or ``{"defects": c, "units": u}`` (u), one reading a sample (docs/topics.md).

    ``profile.mean`` is the process's rate: the fraction defective (p, np) or the defects per
    unit (c, u). After ``baseline`` calm samples, spells of ``length`` samples now and then
    (``gap`` samples apart) run at that rate plus ``shift_sigmas`` of its standard error, so
    rule 1 sees them; in between the process is in control. The spells are rarer and
    shorter than a variables gauge's episodes: an attribute chart judges rule 1 alone, which
    re-arms at every point back within the limits.
    """

    def __init__(
        self,
        profile: GaugeProfile,
        chart: str,
        *,
        inspected: int | None = None,
        seed: int = 0,
        baseline: int = 25,
        gap: tuple[int, int] = (150, 300),
        length: tuple[int, int] = (4, 8),
        shift_sigmas: float = 4.0,
    ) -> None:
        if chart not in ATTRIBUTE_CHARTS:
            raise ValueError(f"a count gauge is for a p, np, c or u chart, not {chart!r}")
        self.profile = profile
        self.chart = chart
        self.inspected = inspected or 50
        self.gap, self.length, self.shift_sigmas = gap, length, shift_sigmas
        self._random = random.Random(f"{seed}/{profile.characteristic_id}/counts")
        self._count = 0
        self._calm_until = baseline + self._random.randint(*gap) // 2
        self._spell_until = 0

    @property
    def count(self) -> int:
        """Samples produced so far."""
        return self._count

    def next(self) -> dict[str, int | float]:
        """The next sample's fields (without ``ts``)."""
        rnd = self._random
        i = self._count
        self._count += 1
        if i >= self._calm_until and i >= self._spell_until:
            self._spell_until = i + rnd.randint(*self.length)
            self._calm_until = self._spell_until + rnd.randint(*self.gap)
        spell = i < self._spell_until
        rate = self.profile.mean
        if self.chart in ("p", "np"):
            n = self.inspected if self.chart == "np" else rnd.randint(45, 55)
            if spell:
                rate = min(1.0, rate + self.shift_sigmas * math.sqrt(rate * (1 - rate) / n))
            defectives = sum(1 for _ in range(n) if rnd.random() < rate)
            return {"defectives": defectives, "inspected": n}
        units = 1.0 if self.chart == "c" else rnd.choice((2.0, 2.5, 3.0, 4.0))
        mean = rate * units
        if spell:
            mean += self.shift_sigmas * math.sqrt(mean)
        fields: dict[str, int | float] = {"defects": _poisson(rnd, mean)}
        if self.chart == "u":
            fields["units"] = units
        return fields

    def payload(self, ts_ms: int, extra: dict[str, Any] | None = None) -> bytes:
        return json.dumps(
            {**self.next(), "ts": ts_ms, **(extra or {})}, separators=(",", ":")
        ).encode()


def _poisson(rnd: random.Random, mean: float) -> int:
    """Knuth's method (fine for the small means of a demo)."""
    k, p, limit = 0, rnd.random(), math.exp(-mean)
    while p > limit:
        k += 1
        p *= rnd.random()
    return k


def _decimals(sigma: float) -> int:
    """Digits a real gauge would show: about a hundredth of sigma."""
    return max(0, min(12, 2 - math.floor(math.log10(sigma))))


def reading_payload(
    value: float | Sequence[float],
    ts_ms: int,
    *,
    value_path: str | None = None,
    decimals: int = 6,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The JSON a gauge sends: ``{"value": x, "ts": ms}``, or ``{"values": [...], "ts": ms}``
    for a whole subgroup, or the number (list) nested at ``value_path`` (``data.od`` ->
    ``{"data": {"od": x}, "ts": ms}``; a numeric step makes a list with the number at that
    index). ``extra`` (e.g. ``batch`` and ``operator``, or ``context``) joins at the top."""
    number: float | list[float] = (
        round(value, decimals)
        if isinstance(value, float | int)
        else [round(v, decimals) for v in value]
    )
    if value_path is None:
        key = "value" if isinstance(number, float | int) else "values"
        doc: dict[str, Any] = {key: number, "ts": ts_ms}
    else:
        first, *rest = compile_value_path(value_path)
        node: Any = number
        for step in reversed(rest):
            node = [0] * int(step) + [node] if step.isascii() and step.isdigit() else {step: node}
        doc = {first: node}
        doc.setdefault("ts", ts_ms)
    for key, item in (extra or {}).items():
        doc.setdefault(key, item)
    return json.dumps(doc, separators=(",", ":")).encode()


_SHIFTS = (("A", 6), ("B", 14), ("C", 22))  # a three-shift plant: A from 06:00, B, C


@dataclass
class Shopfloor:
    """Who and what a reading is about: part numbers counting up, a lot that changes every
    ``lot_size`` parts, the shift from the clock (A 06-14, B 14-22, C 22-06, UTC) and its
    operator. ``style``: ``"context"`` sends ``{"context": {"part", "lot", "shift",
    "operator"}}`` (docs/topics.md "Context"); ``"legacy"`` the older ``batch`` (the lot) and
    ``operator`` keys, which every bridge release takes; ``"none"`` nothing."""

    style: str = "legacy"
    lot_size: int = 400
    operators: dict[str, str] = field(default_factory=lambda: {"A": "kim", "B": "lee", "C": "sam"})
    _parts: dict[int, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.style not in ("context", "legacy", "none"):
            raise ValueError(f"style must be context, legacy or none, got {self.style!r}")

    def fields(self, characteristic_id: int, ts_ms: int) -> dict[str, Any]:
        """The extra JSON keys of the next reading of ``characteristic_id`` at ``ts_ms``."""
        if self.style == "none":
            return {}
        part = self._parts.get(characteristic_id, 0) + 1
        self._parts[characteristic_id] = part
        hour = time.gmtime(ts_ms / 1000).tm_hour
        shift = next((name for name, start in reversed(_SHIFTS) if hour >= start), "C")
        operator = self.operators.get(shift, "")
        lot = f"L{characteristic_id}{1 + (part - 1) // self.lot_size:03d}"
        if self.style == "legacy":
            return {"batch": lot, "operator": operator}
        return {
            "context": {
                "part": f"P{characteristic_id}-{part:06d}",
                "lot": lot,
                "shift": shift,
                "operator": operator,
            }
        }


@dataclass(frozen=True)
class LineSchedule:
    """A line that stops and starts: it runs ``run`` seconds, then stands ``stop`` seconds,
    for ever (deterministic: no clock of its own; ``running(elapsed)`` is asked with the
    seconds since the line started). ``characteristics``: the gauges on that line, which
    send nothing while it stands; ``topic``: where the line says so ("true" / "false",
    retained: a characteristic's ``running_topic``, docs/configuration.md)."""

    topic: str
    characteristics: frozenset[int]
    run: float = 1500.0
    stop: float = 240.0

    def __post_init__(self) -> None:
        if not (self.run > 0 and self.stop > 0):
            raise ValueError(f"run and stop must be positive seconds, got {self.run}, {self.stop}")

    def running(self, elapsed: float) -> bool:
        return elapsed % (self.run + self.stop) < self.run


def profile_for(characteristic: CharacteristicSettings, topic_prefix: str) -> GaugeProfile:
    """A gauge that suits a configured characteristic: centred on its target (or centre
    line, or the middle of its limits) with a spread that fits: the fixed control limits,
    or Cp about 1.33 within the spec limits (Cpk 1.33 under a one-sided limit)."""
    c = characteristic
    n = c.subgroup_size
    if c.chart_name in ATTRIBUTE_CHARTS:  # the rate of a CountGauge
        rate = 0.04 if c.chart_name in ("p", "np") else 4.0 if c.chart_name == "c" else 1.5
        return GaugeProfile(
            c.id,
            c.reading_topic(topic_prefix),
            rate,
            1.0,
            value_path=c.value_path if c.topic is not None else None,
        )
    if c.ucl is not None and c.lcl is not None:
        mean = c.center_line if c.center_line is not None else (c.ucl + c.lcl) / 2
        sigma = (c.ucl - c.lcl) / 6 * math.sqrt(n)
    elif c.usl is not None and c.lsl is not None:
        mean = c.target if c.target is not None else (c.usl + c.lsl) / 2
        sigma = (c.usl - c.lsl) / 8
    elif c.usl is not None or c.lsl is not None:
        # One-sided: 4 sigma inside the limit (Cpk 1.33), about 5 % of it away from it.
        limit = c.usl if c.usl is not None else c.lsl
        assert limit is not None
        inward = -1.0 if c.usl is not None else 1.0
        nominal = c.target if c.target is not None else c.center_line
        if nominal is not None and (nominal - limit) * inward > 0:
            mean, sigma = nominal, abs(limit - nominal) / 4
        else:
            sigma = abs(limit) * 0.05 or 0.1
            mean = limit + inward * 4 * sigma
    else:
        mean = next((x for x in (c.target, c.center_line) if x is not None), 10.0)
        sigma = abs(mean) * 0.01 or 0.1
    return GaugeProfile(
        characteristic_id=c.id,
        topic=c.reading_topic(topic_prefix),
        mean=mean,
        sigma=sigma,
        subgroup_size=n,
        value_path=c.value_path if c.topic is not None else None,
    )


def gauges_from_settings(
    settings: Settings,
    *,
    seed: int = 0,
    disturbances: Disturbances | None = None,
    small_shift: Disturbances | None = None,
    per_point: bool = False,
    count_gap: tuple[int, int] = (150, 300),
    fixed_warmup: int = 5,
) -> list[Gauge | CountGauge]:
    """One gauge per configured characteristic that reads MQTT (Sparkplug B ones skipped):
    a :class:`CountGauge` for an attribute chart (``count_gap`` samples between its spells),
    a :class:`Gauge` for the others, with ``small_shift`` (default ``disturbances``) for the
    EWMA and CUSUM charts, which see every episode sooner and longer. ``per_point``: the
    disturbances count points, whatever the subgroup size (:meth:`Disturbances.in_readings`).
    ``fixed_warmup``: the calm points first against fixed limits (no baseline to wait for)."""
    prefix = settings.bridge.topic_prefix
    gauges: list[Gauge | CountGauge] = []
    for c in settings.characteristic:
        if c.sparkplug is not None:
            continue
        if c.chart_name in ATTRIBUTE_CHARTS:
            gauges.append(
                CountGauge(
                    profile_for(c, prefix),
                    c.chart_name,
                    inspected=c.inspected,
                    seed=seed,
                    baseline=c.baseline,
                    gap=count_gap,
                )
            )
            continue
        chosen = (
            small_shift
            if small_shift is not None and c.chart_name in ("ewma", "cusum")
            else disturbances
        )
        if per_point and chosen is not None:
            chosen = chosen.in_readings(c.subgroup_size)
        gauges.append(
            Gauge(
                profile_for(c, prefix),
                seed=seed,
                disturbances=chosen,
                # against fixed limits there is no baseline to wait for: a short calm start
                baseline=fixed_warmup if c.ucl is not None else c.baseline,
            )
        )
    return gauges


@dataclass
class GaugePublisher:
    """Publishes readings of ``gauges`` to a broker from a thread, QoS 1.

    ``rate`` is messages per second per gauge (0: as fast as the broker acknowledges, for
    benchmarks); ``count`` stops each gauge after that many messages (None: until
    :meth:`stop`). A message is one reading, or with ``subgroups`` a whole subgroup
    (``{"values": [...]}``, ``subgroup_size`` readings).

    At most ``window`` publishes are unacknowledged at once (paho fails past 65,535), of
    which ``inflight`` are on the wire: paho walks its in-flight list on every
    acknowledgement, so a long one is slow (10,000 in flight: about 2.5k acks/s here; 20 to
    100: about 10-16k/s).
    """

    host: str
    port: int
    gauges: Sequence[Gauge | CountGauge]
    rate: float = 1.0
    count: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = ""
    qos: int = 1
    window: int = 10_000
    inflight: int = 100
    subgroups: bool = False
    clock: Callable[[], float] = time.time
    shopfloor: Shopfloor | None = None  # part, lot, shift, operator with every reading
    line: LineSchedule | None = None  # its gauges pause while the line stands
    announce_line: bool = False  # this publisher says the line's state on its topic
    # ticks sent at once first, time-stamped `1 / rate` apart up to now: the history of a
    # line that was running before the demo was opened (needs rate > 0)
    backfill: int = 0
    published: int = field(default=0, init=False)
    acknowledged: int = field(default=0, init=False)
    error: BaseException | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _connected: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _slots: threading.Semaphore = field(init=False, repr=False)
    _acked: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _client: mqtt.Client | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.rate < 0 or not math.isfinite(self.rate):
            raise ValueError(f"rate must be >= 0 readings per second, got {self.rate}")
        self._slots = threading.Semaphore(self.window)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> GaugePublisher:
        """Connect (raising :class:`BrokerUnavailable` on failure) and start publishing."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        client.max_inflight_messages_set(self.inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise BrokerUnavailable(self.host, self.port, str(exc)) from None
        client.loop_start()
        if not self._connected.wait(timeout):
            client.loop_stop()
            client.disconnect()
            raise BrokerUnavailable(self.host, self.port, "no CONNACK (refused?)")
        self._client = client
        self._thread = threading.Thread(target=self._run, name="openspc-gauges", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop publishing, give outstanding acknowledgements ``timeout`` seconds, and
        disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.wait_acknowledged(timeout)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def wait_done(self, timeout: float) -> bool:
        """Wait until every gauge sent ``count`` readings and the broker acknowledged them."""
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        return self.wait_acknowledged(max(0.0, deadline - time.monotonic()))

    def wait_acknowledged(self, timeout: float) -> bool:
        """Wait until the broker acknowledged every reading published so far."""
        with self._acked:
            return self._acked.wait_for(lambda: self.acknowledged >= self.published, timeout)

    def __enter__(self) -> GaugePublisher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._publish_all()
        except BaseException as exc:  # reported via .error: the thread must end
            self.error = exc

    def _publish_all(self) -> None:
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        backfill = self.backfill if interval else 0
        started = time.monotonic()
        tick = 0
        decimals = [_decimals(g.profile.sigma) for g in self.gauges]
        was_running: bool | None = None
        while not self._stop.is_set():
            if self.count is not None and tick >= self.count:
                return
            paced = tick - backfill  # < 0 while the history is sent
            if interval and paced > 0:
                delay = started + paced * interval - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            running = self.line is None or self.line.running(time.monotonic() - started)
            if self.announce_line and running != was_running:
                self._announce(running)
            was_running = running
            ts_ms = int((self.clock() + min(paced, 0) * interval) * 1000)
            for gauge, digits in zip(self.gauges, decimals, strict=True):
                line = self.line
                if (
                    not running
                    and line is not None
                    and gauge.profile.characteristic_id in line.characteristics
                ):
                    continue  # the line stands: its gauges measure nothing
                if not self._publish_one(gauge, self._payload(gauge, digits, ts_ms)):
                    return
            tick += 1

    def _payload(self, gauge: Gauge | CountGauge, digits: int, ts_ms: int) -> bytes:
        extra = (
            self.shopfloor.fields(gauge.profile.characteristic_id, ts_ms)
            if self.shopfloor is not None
            else None
        )
        if isinstance(gauge, CountGauge):
            return gauge.payload(ts_ms, extra)
        value: float | list[float]
        if self.subgroups:
            value = [r.value for r in gauge.take(gauge.profile.subgroup_size)]
        else:
            value = gauge.next().value
        return reading_payload(
            value, ts_ms, value_path=gauge.profile.value_path, decimals=digits, extra=extra
        )

    def _publish_one(self, gauge: Gauge | CountGauge, payload: bytes) -> bool:
        """Publish one reading within the window; False when stopped meanwhile."""
        assert self._client is not None
        while not self._slots.acquire(timeout=0.1):
            if self._stop.is_set():
                return False
        info = self._client.publish(gauge.profile.topic, payload, qos=self.qos)
        with self._acked:
            self.published += 1
        if self.qos == 0:
            self._release()
        elif info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._release()
            raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")
        return True

    def _announce(self, running: bool) -> None:
        """The line's state, retained, on its running topic (not counted as a reading)."""
        assert self._client is not None
        assert self.line is not None
        self._client.publish(self.line.topic, "true" if running else "false", qos=1, retain=True)

    def _release(self) -> None:
        with self._acked:
            self.acknowledged += 1
            self._acked.notify_all()
        self._slots.release()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: Any,
        properties: object,
    ) -> None:
        if not reason_code.is_failure:
            self._connected.set()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: object,
        properties: object,
    ) -> None:
        if self.qos > 0:
            self._release()


def alarm_rate(
    settings: Settings,
    gauges: Sequence[Gauge | CountGauge],
    *,
    hours: float,
    points_per_hour: float,
) -> dict[int, float]:
    """Alarms an hour of each characteristic when ``gauges`` feed the engine (offline: hours
    of plant time in seconds), a point every ``3600 / points_per_hour`` seconds: every rule's
    `violation` (one per episode, as the bridge raises them) and one `spec` alarm per episode
    of samples with a reading beyond a spec limit (docs/topics.md "Alarm kinds"). Overdue
    alarms are not counted: the gauges are never late."""
    by_id = {c.id: c for c in settings.characteristic}
    points = int(hours * points_per_hour)
    start = datetime(2026, 1, 5, 6, tzinfo=UTC)
    step = timedelta(seconds=3600 / points_per_hour)
    out: dict[int, float] = {}
    for gauge in gauges:
        c = by_id[gauge.profile.characteristic_id]
        eng = engine.CharacteristicEngine(c.to_spec())
        alarms = 0
        in_spec_episode = False
        for i in range(points):
            ts = start + i * step
            if isinstance(gauge, CountGauge):
                fields = gauge.next()
                count = fields.get("defectives", fields.get("defects", 0))
                size = fields.get("inspected", fields.get("units"))
                events = eng.add_count(count, size, ts)
                beyond = False
            else:
                values = [r.value for r in gauge.take(gauge.profile.subgroup_size)]
                events = eng.add_readings(values, ts)
                beyond = any(
                    (c.usl is not None and v > c.usl) or (c.lsl is not None and v < c.lsl)
                    for v in values
                )
            alarms += sum(isinstance(e, engine.ViolationRaised) for e in events)
            alarms += beyond and not in_spec_episode
            in_spec_episode = beyond
        out[c.id] = alarms / hours
    return out
