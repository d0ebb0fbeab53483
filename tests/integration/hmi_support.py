"""Helpers and fixtures for the HMI's browser tests (loaded by ``pytest_plugins``).

- ``plant``: the project's own broker (``bridge._mosquitto.PlantBroker``: mosquitto/mosquitto.conf
  and the generated ACL) for the test's prefix, whose websockets listener serves
  ``mosquitto/hmi`` (``http_dir``), so the browser loads the page from the broker itself.
  Named HMI users (``alice``/``bob``) may write only ``<prefix>/cmd/ack/<own name>``.
- ``browser``: one headless Chromium (selenium) for the session; tests open windows in it.
- ``Feed``: a paho MQTT 5 client to publish retained envelopes and to await messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge._mosquitto import PlantBroker, find_mosquitto, free_port
from bridge.app import run_bridge
from bridge.config import Settings
from bridge.mosquitto_admin import Role

ROOT = Path(__file__).resolve().parents[2]
HMI_DIR = ROOT / "mosquitto" / "hmi"
ARTIFACTS = ROOT / "test-artifacts"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

PASSWORDS = {
    "bridge": "bridge-secret",
    "alice": "alice-secret",
    "bob": "bob-secret",
    "gauge1": "gauge-secret",
    "erin": "erin-secret",
}
ROLES = {
    "bridge": Role.BRIDGE,
    "alice": Role.HMI,
    "bob": Role.HMI,
    "gauge1": Role.GAUGE,
    "erin": Role.ENGINEER,
}

T = TypeVar("T")


def missing(what: str) -> None:
    message = f"{what} is not installed (scripts/setup installs it)"
    if IN_CI:
        pytest.fail(message + "; under CI=true this is a failure, not a skip")
    pytest.skip(message)


def bundle_problem() -> str | None:
    """Why mosquitto/hmi/app.js is not the build of hmi/src/ (missing or older), or None."""
    bundle = HMI_DIR / "app.js"
    if not bundle.exists():
        return "mosquitto/hmi/app.js is missing: run scripts/build-hmi (scripts/setup does)"
    sources = [*(ROOT / "hmi" / "src").glob("*.js"), ROOT / "hmi" / "build.mjs"]
    newer = [p.name for p in sources if p.stat().st_mtime > bundle.stat().st_mtime]
    if newer:
        names = ", ".join(sorted(newer))
        return f"mosquitto/hmi/app.js is older than {names}: run scripts/build-hmi"
    return None


# ---- broker ---------------------------------------------------------------------------------


@dataclass
class HmiPlant:
    """The project's secured broker (bridge/broker.py) serving mosquitto/hmi, for one prefix."""

    broker: PlantBroker
    prefix: str

    @property
    def port(self) -> int:
        return self.broker.mqtt_port

    @property
    def ws_port(self) -> int:
        return self.broker.ws_port

    def page_url(self, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"prefix": self.prefix, **params}.items())
        return f"http://127.0.0.1:{self.ws_port}/index.html?{query}"


@pytest.fixture
def plant(topic_prefix: str) -> Iterator[HmiPlant]:
    """The real mosquitto.conf and ACL (rendered with free ports) for this test's prefix.

    Users: ``bridge`` (role bridge: the only writer of results), ``alice`` and ``bob``
    (role hmi: may acknowledge as themselves), ``gauge1`` (role gauge: may not acknowledge),
    ``erin`` (role engineer: may also recalculate limits). Mosquitto starts in about 30 ms.
    """
    if find_mosquitto() is None or shutil.which("mosquitto_passwd") is None:
        missing("mosquitto")
    if not (HMI_DIR / "vendor" / "mqtt.min.js").exists():
        pytest.fail("mosquitto/hmi/vendor/ is empty: run scripts/build-hmi (scripts/setup does)")
    stale = bundle_problem()
    if stale is not None:
        pytest.fail(stale)
    workdir = Path(tempfile.mkdtemp(prefix="openspc-hmi-"))
    broker = PlantBroker(workdir, mqtt_port=free_port(), ws_port=free_port(), http_dir=HMI_DIR)
    store = broker.users
    for name, password in PASSWORDS.items():
        store.add(name, ROLES[name], password, topic_prefix=topic_prefix)
    try:
        with broker:
            yield HmiPlant(broker, topic_prefix)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---- browser ----------------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
    "--force-device-scale-factor=1",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session (closed, with chromedriver, at the end)."""
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        missing("chromium / chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    set_viewport(driver)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: Any, plant: HmiPlant) -> Iterator[Any]:
    """The shared browser, for one test: extra windows closed and the page left before the
    test's broker stops (so no reconnect errors leak into the next test's console)."""
    console_errors(browser)
    first = browser.current_window_handle
    yield browser
    for handle in browser.window_handles:
        if handle != first:
            browser.switch_to.window(handle)
            browser.close()
    browser.switch_to.window(first)
    browser.get("about:blank")
    console_errors(browser)


def open_window(driver: Any, url: str) -> str:
    """Open ``url`` in a new browser window (its own page and MQTT connection); its handle."""
    driver.switch_to.new_window("window")
    set_viewport(driver)
    driver.get(url)
    handle: str = driver.current_window_handle
    return handle


def set_viewport(driver: Any, width: int = 1280, height: int = 800) -> None:
    """Make the page's viewport exactly ``width`` x ``height`` (a 1280x800 panel PC)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def console_errors(driver: Any) -> list[str]:
    """The page's console errors since the last call (the log is drained by reading it)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def record_figure(name: str, value: float) -> None:
    """Keep a measured figure in test-artifacts/hmi-figures.json (for the report)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "hmi-figures.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[name] = value
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_until(driver: Any, condition: Callable[[Any], T], timeout: float = 10.0) -> T:
    from selenium.webdriver.support.ui import WebDriverWait

    result: T = WebDriverWait(driver, timeout, poll_frequency=0.02).until(condition)
    return result


def by_testid(driver: Any, testid: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def all_by_testid(driver: Any, testid: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    found: list[Any] = driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')
    return found


def attr_is(testid: str, name: str, value: str) -> Callable[[Any], bool]:
    def check(driver: Any) -> bool:
        from selenium.common.exceptions import StaleElementReferenceException

        try:
            return bool(by_testid(driver, testid).get_attribute(name) == value)
        except StaleElementReferenceException:
            return False

    return check


def text_is(testid: str, value: str) -> Callable[[Any], bool]:
    def check(driver: Any) -> bool:
        return bool(by_testid(driver, testid).text == value)

    return check


# ---- MQTT -------------------------------------------------------------------------------------


@dataclass
class Feed:
    """A paho MQTT 5 client on the broker's MQTT listener: publish, and await messages."""

    port: int
    user: str | None = "bridge"
    client: paho.Client = field(init=False)
    messages: queue.Queue[paho.MQTTMessage] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"hmi-test-{time.monotonic_ns()}",
            protocol=paho.MQTTv5,
        )
        if self.user is not None:
            self.client.username_pw_set(self.user, PASSWORDS[self.user])
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        connected = threading.Event()
        self.client.on_connect = lambda *_a: connected.set()
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert connected.wait(5), "test client could not connect"

    def publish(self, topic: str, payload: Any, *, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        info = self.client.publish(topic, data, qos=1, retain=retain)
        info.wait_for_publish(5)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_a: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(5)

    def expect(self, predicate: Callable[[paho.MQTTMessage], bool], timeout: float = 5) -> Any:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if predicate(msg):
                return msg
        raise AssertionError("no matching MQTT message within the timeout")

    def request(self, topic: str, payload: Any, reply_topic: str) -> Properties:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = reply_topic
        props.CorrelationData = b"test"
        self.client.publish(topic, json.dumps(payload), qos=1, properties=props)
        return props

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def feed(plant: HmiPlant) -> Iterator[Feed]:
    """A client logged in as ``bridge``: it may publish the results an HMI reads."""
    f = Feed(plant.port)
    yield f
    f.close()


# ---- the real bridge ---------------------------------------------------------------------------


@dataclass
class BridgeThread:
    """``bridge.app.run_bridge`` on its own event loop in a thread (selenium is synchronous)."""

    settings: Settings
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _started: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def start(self) -> BridgeThread:
        self._thread = threading.Thread(target=self._main, name="hmi-test-bridge", daemon=True)
        self._thread.start()
        assert self._started.wait(10), "the bridge thread did not start its loop"
        return self

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await run_bridge(self.settings, stop=self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by stop(), on the test's thread
            self.error = exc
            self._started.set()

    def stop(self, timeout: float = 15.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        self._thread = None
        assert not alive, "the bridge did not stop in time"
        if self.error is not None:
            raise AssertionError(f"the bridge failed: {self.error!r}") from self.error


def bridge_settings(
    plant: HmiPlant, db_dir: Path, characteristics: list[dict[str, Any]]
) -> Settings:
    """Settings for a bridge logged in as ``bridge`` on the plant, with the test's prefix."""
    return Settings(
        broker={
            "host": "127.0.0.1",
            "port": plant.port,
            "username": "bridge",
            "password": PASSWORDS["bridge"],
            "client_id": f"bridge-{uuid.uuid4().hex[:8]}",
        },
        database={"url": f"sqlite+aiosqlite:///{db_dir / 'hmi-bridge.db'}"},
        bridge={"topic_prefix": plant.prefix},
        characteristic=characteristics,
    )


@pytest.fixture
def run_bridge_on(plant: HmiPlant, tmp_path: Path) -> Iterator[Callable[..., BridgeThread]]:
    """Start the real bridge on the plant; stopped (cleanly) at the end of the test."""
    started: list[BridgeThread] = []

    def start(characteristics: list[dict[str, Any]]) -> BridgeThread:
        bridge = BridgeThread(bridge_settings(plant, tmp_path, characteristics)).start()
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        bridge.stop()


# ---- payloads (docs/topics.md) -------------------------------------------------------------


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "payload": payload}


def meta(char_id: int, name: str, *, unit: str = "mm", n: int = 1, **extra: Any) -> dict[str, Any]:
    return envelope(
        "meta",
        {
            "characteristic_id": char_id,
            "name": name,
            "unit": unit,
            "subgroup_size": n,
            "usl": extra.get("usl"),
            "lsl": extra.get("lsl"),
            "target": extra.get("target"),
            "baseline": 25,
            "chart": "imr" if n == 1 else "xbar_r" if n <= 10 else "xbar_s",
            "rules": [
                {"rule_id": 1, "name": "Beyond 3 sigma", "length": 1, "severity": "CRITICAL"}
            ],
            "reason_codes": extra.get(
                "reason_codes", ["Tool Change", "Measurement Error", "Other"]
            ),
            "source": {"topic": None, "value_path": None, "sparkplug": None},
            "online": extra.get("online", True),
            "timestamp": iso(datetime.now(UTC)),
        },
    )


def limits(char_id: int, cl: float, sigma: float, *, mr_bar: float | None = None) -> dict[str, Any]:
    mr = mr_bar if mr_bar is not None else sigma * 1.128
    return envelope(
        "control_limits",
        {
            "characteristic_id": char_id,
            "center_line": cl,
            "ucl": cl + 3 * sigma,
            "lcl": cl - 3 * sigma,
            "sigma": sigma,
            "method": "moving_range",
            "sample_count": 25,
            "range": {"center_line": mr, "ucl": 3.267 * mr, "lcl": 0.0},
            "capability": {"cp": 1.1, "cpk": 0.95, "pp": 1.0, "ppk": 0.9},
            "timestamp": iso(datetime.now(UTC)),
        },
    )


def samples(
    char_id: int,
    values: list[float],
    *,
    first_id: int = 1,
    failing: dict[int, list[int]] | None = None,
) -> list[dict[str, Any]]:
    """I-MR samples ``first_id..``, one second apart, ending now; ``failing``: index -> rules."""
    failing = failing or {}
    start = datetime.now(UTC) - timedelta(seconds=len(values))
    out = []
    for i, v in enumerate(values):
        rules = failing.get(i, [])
        out.append(
            {
                "sample_id": first_id + i,
                "characteristic_id": char_id,
                "timestamp": iso(start + timedelta(seconds=i)),
                "value": v,
                "values": [v],
                "range": None if i == 0 else round(abs(v - values[i - 1]), 6),
                "zone": "zone_c_upper",
                "in_control": not rules,
                "failed_rules": rules,
                "range_failed_rules": [],
            }
        )
    return out


RULE_NAMES = {
    1: "Beyond 3 sigma",
    2: "Nine on one side",
    3: "Six trending",
    4: "Fourteen alternating",
    5: "Two of three beyond 2 sigma",
    6: "Four of five beyond 1 sigma",
    7: "Fifteen within 1 sigma",
    8: "Eight beyond 1 sigma",
}


def violation(char_id: int, violation_id: int, sample_id: int, rule_id: int = 1) -> dict[str, Any]:
    return {
        "violation_id": violation_id,
        "sample_id": sample_id,
        "characteristic_id": char_id,
        "rule_id": rule_id,
        "rule_name": RULE_NAMES[rule_id],
        "severity": "CRITICAL" if rule_id == 1 else "WARNING",
        "chart": "x",
        "timestamp": iso(datetime.now(UTC)),
    }


# ---- the chart families (docs/spc.md): payloads as the bridge publishes them ----------------


def _sig(x: float) -> float:
    """A computed figure as the bridge rounds it (engine/_serialize.py ``figure``)."""
    return float(f"{x:.10g}")


def family_meta(char_id: int, name: str, chart: str, *, unit: str = "") -> dict[str, Any]:
    """A ``meta`` of a chart family: the chart named, rule 1 only, no spec limits."""
    m = meta(char_id, name, unit=unit)
    m["payload"]["chart"] = chart
    return m


def family_limits(
    char_id: int,
    chart: str,
    cl: float,
    ucl: float,
    lcl: float,
    sigma: float,
    parameters: dict[str, float],
    method: str,
) -> dict[str, Any]:
    """A ``control_limits`` of a chart family: ``chart``, ``parameters``, no ``range``."""
    return envelope(
        "control_limits",
        {
            "characteristic_id": char_id,
            "center_line": _sig(cl),
            "ucl": _sig(ucl),
            "lcl": _sig(lcl),
            "sigma": _sig(sigma),
            "method": method,
            "sample_count": 25,
            "range": None,
            "capability": None,
            "chart": chart,
            "parameters": parameters,
            "timestamp": iso(datetime.now(UTC)),
        },
    )


def _family_sample(char_id: int, sample_id: int, ts: datetime, value: float) -> dict[str, Any]:
    return {
        "sample_id": sample_id,
        "characteristic_id": char_id,
        "timestamp": iso(ts),
        "value": value,
        "values": [value],
        "range": None,
        "zone": None,
        "in_control": None,
        "failed_rules": [],
        "range_failed_rules": [],
    }


def p_chart(
    char_id: int,
    counts: list[tuple[int, int]],
    p_bar: float,
    *,
    first_id: int = 1,
    baseline: int = 0,
) -> list[dict[str, Any]]:
    """p samples of ``(defectives, inspected)``: ``value`` the count, ``inspected``,
    statistic d/n, each its own limits
    p-bar +/- 3 sqrt(p-bar (1 - p-bar) / n) floored at 0, capped at 1 (docs/spc.md); the first
    ``baseline`` with null limits (limits not yet known)."""
    start = datetime.now(UTC) - timedelta(seconds=len(counts))
    out = []
    for i, (d, n) in enumerate(counts):
        s = _family_sample(char_id, first_id + i, start + timedelta(seconds=i), float(d))
        s.update(value=d, values=[d], inspected=n, statistic=_sig(d / n))
        if i < baseline:
            s.update(ucl=None, lcl=None)
        else:
            se = (p_bar * (1 - p_bar) / n) ** 0.5
            ucl, lcl = min(1.0, p_bar + 3 * se), max(0.0, p_bar - 3 * se)
            out_of = not lcl <= d / n <= ucl
            s.update(ucl=_sig(ucl), lcl=_sig(lcl), in_control=not out_of)
            s["failed_rules"] = [1] if out_of else []
        out.append(s)
    return out


def ewma_chart(
    char_id: int,
    values: list[float],
    cl: float,
    sigma_xbar: float,
    *,
    lam: float = 0.2,
    big_l: float = 3.0,
    baseline: int = 0,
    first_id: int = 1,
) -> list[dict[str, Any]]:
    """EWMA samples: the first ``baseline`` with statistic null, then z_i = lambda x_i +
    (1 - lambda) z_{i-1} from z_0 = CL with limits CL +/- L sigma_xbar sqrt(lambda / (2 -
    lambda) (1 - (1 - lambda)^(2i))) (docs/spc.md)."""
    start = datetime.now(UTC) - timedelta(seconds=len(values))
    out = []
    z = cl
    for k, x in enumerate(values):
        s = _family_sample(char_id, first_id + k, start + timedelta(seconds=k), x)
        if k < baseline:
            s.update(statistic=None, ucl=None, lcl=None)
        else:
            i = k - baseline + 1
            z = lam * x + (1 - lam) * z
            w = big_l * sigma_xbar * (lam / (2 - lam) * (1 - (1 - lam) ** (2 * i))) ** 0.5
            out_of = not cl - w <= z <= cl + w
            s.update(statistic=_sig(z), ucl=_sig(cl + w), lcl=_sig(cl - w), in_control=not out_of)
            s["failed_rules"] = [1] if out_of else []
        out.append(s)
    return out


def cusum_chart(
    char_id: int,
    values: list[float],
    cl: float,
    sigma_xbar: float,
    *,
    k: float = 0.5,
    h: float = 5.0,
    baseline: int = 0,
    first_id: int = 1,
) -> list[dict[str, Any]]:
    """Tabular CUSUM samples: C+ and C- from 0 after the ``baseline`` (statistic null there),
    statistic the larger, ``ucl`` h sigma_xbar, ``lcl`` 0 (docs/spc.md)."""
    start = datetime.now(UTC) - timedelta(seconds=len(values))
    out = []
    up = down = 0.0
    big_h = h * sigma_xbar
    for i, x in enumerate(values):
        s = _family_sample(char_id, first_id + i, start + timedelta(seconds=i), x)
        if i < baseline:
            s.update(statistic=None, ucl=None, lcl=None, cusum_upper=None, cusum_lower=None)
        else:
            up = max(0.0, x - (cl + k * sigma_xbar) + up)
            down = max(0.0, (cl - k * sigma_xbar) - x + down)
            out_of = up > big_h or down > big_h
            s.update(
                statistic=_sig(max(up, down)),
                ucl=_sig(big_h),
                lcl=0.0,
                cusum_upper=_sig(up),
                cusum_lower=_sig(down),
                in_control=not out_of,
            )
            s["failed_rules"] = [1] if out_of else []
        out.append(s)
    return out
