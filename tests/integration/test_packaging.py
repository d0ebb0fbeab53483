"""A wheel of the checkout, installed into a fresh venv, works from any directory and writes
nothing into the installation or the checkout (docs/packaging.md).

The wheel is built (``pip wheel --no-deps``) from a clean copy of the checkout as
scripts/setup leaves it (the HMI bundled and vendored), so a stale ``build/`` cannot leak into
it. The fresh venv borrows its dependencies from the test run's own venv (a plain path line
in a ``.pth``: that venv's ``.pth`` files, the editable install of the checkout among them, are
not processed), so what is tested is what the wheel ships, not pip's resolver (scripts/setup
installs the same dependencies from the index on every run). About fifteen seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from bridge._mosquitto import find_mosquitto, free_port

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# not part of a build, and written by the test session itself or by other tools
_NOT_SOURCE = {
    ".git",
    ".venv",
    "node_modules",
    "build",
    "dist",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "test-artifacts",
    ".openspc-demo",
}


def _snapshot(root: Path, skip: set[str]) -> dict[str, tuple[int, int]]:
    """Every file below ``root`` (but not below a folder named in ``skip``): size, mtime."""
    files: dict[str, tuple[int, int]] = {}
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
        for name in names:
            path = Path(directory, name)
            with_stat = path.lstat()
            files[str(path.relative_to(root))] = (with_stat.st_size, with_stat.st_mtime_ns)
    return files


def _changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    added = [f"+ {p}" for p in sorted(after.keys() - before.keys())]
    removed = [f"- {p}" for p in sorted(before.keys() - after.keys())]
    changed = [f"~ {p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]]
    return added + removed + changed


@dataclass
class Installed:
    venv: Path
    site_packages: Path
    elsewhere: Path  # a directory that is neither the checkout nor the venv: commands run here

    @property
    def openspc(self) -> str:
        return str(self.venv / "bin" / "openspc")

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.openspc, *args],
            cwd=self.elsewhere,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_clean_env(),
        )


def _clean_env() -> dict[str, str]:
    """The environment without this test run's venv or settings leaking into the fresh one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENSPC_", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))
    )
    return env


def _run(*argv: str, cwd: Path, timeout: float) -> None:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_clean_env()
    )
    assert result.returncode == 0, (
        f"{' '.join(argv)}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )


@pytest.fixture(scope="module")
def checkout_before() -> dict[str, tuple[int, int]]:
    return _snapshot(ROOT, _NOT_SOURCE)


@pytest.fixture(scope="module")
def installed(checkout_before: dict[str, tuple[int, int]]) -> Iterator[Installed]:
    """The checkout's wheel in a fresh venv (module scope: built and installed once)."""
    if find_mosquitto() is None or shutil.which("mosquitto_passwd") is None:
        message = "mosquitto is not installed (scripts/setup installs it)"
        if IN_CI:
            pytest.fail(message + "; under CI=true this is a failure, not a skip")
        pytest.skip(message)
    for built in ("mosquitto/hmi/app.js", "mosquitto/hmi/vendor/mqtt.min.js"):
        if not (ROOT / built).is_file():
            pytest.fail(f"{built} is missing: run scripts/setup (it builds the HMI) first")
    # Mosquitto drops root to user `mosquitto`, who must reach the venv and the state dir.
    tmp = Path(tempfile.mkdtemp(prefix="openspc-pkg-test-"))
    tmp.chmod(0o755)
    try:
        source = tmp / "src"
        shutil.copytree(
            ROOT,
            source,
            ignore=shutil.ignore_patterns(*_NOT_SOURCE, "*.egg-info", "*.db", "*.db-*"),
        )
        wheels = tmp / "wheels"
        python = sys.executable
        _run(
            python,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(source),
            cwd=tmp,
            timeout=180,
        )
        (wheel,) = wheels.glob("openspc_bridge-*.whl")
        venv = tmp / "venv"
        base = getattr(sys, "_base_executable", python)
        _run(base, "-m", "venv", str(venv), cwd=tmp, timeout=120)
        (site_packages,) = (venv / "lib").glob("python3*/site-packages")
        borrowed = sysconfig.get_paths()["purelib"]
        (site_packages / "_openspc_test_dependencies.pth").write_text(borrowed + "\n")
        _run(
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            str(wheel),
            cwd=tmp,
            timeout=300,
        )
        elsewhere = tmp / "elsewhere"
        elsewhere.mkdir(mode=0o755)
        yield Installed(venv, site_packages, elsewhere)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_wheel_ships_the_broker_config_and_the_built_hmi(installed: Installed) -> None:
    data = installed.site_packages / "mosquitto"
    for name in (
        "mosquitto.conf",
        "hmi/index.html",
        "hmi/style.css",
        "hmi/app.js",
        "hmi/vendor/mqtt.min.js",
        "hmi/vendor/uPlot.iife.min.js",
    ):
        assert (data / name).is_file(), name
    assert (data / "hmi" / "app.js").read_bytes() == (
        ROOT / "mosquitto" / "hmi" / "app.js"
    ).read_bytes()
    # the served folder holds the page and nothing of the npm project or a broker's state
    served = {str(p.relative_to(data / "hmi")) for p in (data / "hmi").rglob("*") if p.is_file()}
    assert not {
        s for s in served if "node_modules" in s or s.endswith((".mjs", ".json", "passwd", "acl"))
    }
    plugin = ROOT / "mosquitto" / "plugin"
    for source in plugin.rglob("*") if plugin.is_dir() else []:
        if source.is_file() and source.suffix not in {".so", ".o"}:
            assert (data / "plugin" / source.relative_to(plugin)).is_file(), source


def test_demo_and_users_work_from_elsewhere_and_write_only_where_told(
    installed: Installed, checkout_before: dict[str, tuple[int, int]]
) -> None:
    install_before = _snapshot(installed.venv, set())
    users_dir = installed.elsewhere / "users"
    passwd = str(users_dir / "passwd")
    add = [
        "users",
        "add",
        "carol",
        "--role",
        "hmi",
        "--password",
        "carol-secret",
        "--password-file",
    ]
    added = installed.run(*add, passwd)
    assert added.returncode == 0, added.stderr
    listed = installed.run("users", "list", "--password-file", passwd)
    assert listed.returncode == 0, listed.stderr
    assert "carol" in listed.stdout
    assert "carol" in (users_dir / "acl").read_text()
    # `openspc run` needs no package data: it starts, and a missing config is one clear line
    run = installed.run("run", "--config", "plant.toml")
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert "plant.toml: no such file" in line

    state = installed.elsewhere / "state"
    log = installed.venv.parent / "demo.log"  # beside the venv: neither in it nor elsewhere/
    demo, mqtt_port, ws_port = _start_demo(installed, state, log)
    try:
        alice = json.loads((state / "credentials.json").read_text())["alice"]
        sample = asyncio.run(_one_sample(mqtt_port, alice))
        assert sample["type"] == "sample"
        page = installed.site_packages / "mosquitto" / "hmi"
        assert _http_get(ws_port, "/") == (page / "index.html").read_bytes()
        assert _http_get(ws_port, "/app.js") == (page / "app.js").read_bytes()
        demo.send_signal(signal.SIGINT)
        out, _ = demo.communicate(timeout=30)
        assert demo.returncode == 0, log.read_text()[-3000:]
        assert "openspc demo: stopped" in out
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()

    for name in ("openspc.db", "openspc.toml", "credentials.json", "broker/passwd", "broker/acl"):
        assert (state / name).is_file(), name
    assert _changes(install_before, _snapshot(installed.venv, set())) == []
    assert _changes(checkout_before, _snapshot(ROOT, _NOT_SOURCE)) == []
    assert sorted(p.name for p in installed.elsewhere.iterdir()) == ["state", "users"]


async def _one_sample(mqtt_port: int, password: str) -> dict[str, object]:
    """The first `sample` message the demo's bridge publishes (a retained one counts), read
    as the demo's operator alice: anonymous MQTT is off on the demo's MQTT listener."""
    async with aiomqtt.Client(
        "127.0.0.1", mqtt_port, username="alice", password=password, timeout=10
    ) as client:
        await client.subscribe("openspc/char/+/sample", qos=1)
        async with asyncio.timeout(30):
            async for message in client.messages:
                assert isinstance(message.payload, bytes | bytearray)
                sample: dict[str, object] = json.loads(message.payload)
                return sample
    raise AssertionError("the subscription ended without a message")


def _start_demo(
    installed: Installed, state: Path, log: Path
) -> tuple[subprocess.Popen[str], int, int]:
    """`openspc demo` on free ports, once it says it runs (three tries: ports race).

    Its log (stderr) goes to ``log``: a pipe nobody reads could fill and stall it."""
    for _ in range(3):
        mqtt_port, ws_port, gateway_port = free_port(), free_port(), free_port()
        ports = f"--mqtt-port {mqtt_port} --ws-port {ws_port} --gateway-port {gateway_port}"
        ports += " --rate 20"
        argv = [installed.openspc, "demo", "--state-dir", str(state), *ports.split()]
        with log.open("w") as err:
            demo = subprocess.Popen(
                argv,
                cwd=installed.elsewhere,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=_clean_env(),
            )
        # the banner is printed once the bridge is online and the gauges run
        if _line_containing(demo, "OpenSPC demo is running."):
            return demo, mqtt_port, ws_port
        demo.wait(timeout=30)
        text = log.read_text()
        if demo.returncode == 2 and " is in use: choose another with " in text:
            continue
        raise AssertionError(f"the demo exited {demo.returncode}: {text[-3000:]}")
    raise AssertionError("three port races in a row")


def _line_containing(process: subprocess.Popen[str], text: str) -> bool:
    """Read the process's output until ``text`` (True) or its end (False)."""
    assert process.stdout is not None
    return any(text in line for line in process.stdout)


def _http_get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        assert response.status == 200
        return bytes(response.read())


def test_the_wheel_has_no_files_of_the_checkout_state(installed: Installed) -> None:
    (wheel_record,) = installed.site_packages.glob("openspc_bridge-*.dist-info/RECORD")
    names = [line.split(",", 1)[0] for line in wheel_record.read_text().splitlines()]
    assert not [
        n
        for n in names
        if n.startswith("mosquitto/") and n.endswith(("passwd", "acl", ".db", "mosquitto.pid"))
    ]
    assert not [n for n in names if n.startswith(("hmi/", "tests/", "scripts/"))]
