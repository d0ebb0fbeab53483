"""`openspc run` as a user runs it: a real process, a real broker, SIGTERM to stop."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from bridge._mosquitto import MosquittoProcess
from tests.integration.conftest import Probe

pytestmark = pytest.mark.mosquitto


def write_config(path: Path, port: int, prefix: str, client_id: str) -> Path:
    path.write_text(
        f"""
[broker]
host = "127.0.0.1"
port = {port}
client_id = "{client_id}"

[database]
url = "sqlite+aiosqlite:///bridge.db"

[bridge]
topic_prefix = "{prefix}"

[[characteristic]]
id = 1
name = "Shaft OD"
unit = "mm"
subgroup_size = 2
"""
    )
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_run_serves_until_sigterm_then_says_offline_and_exits_0(
    mosquitto: MosquittoProcess,
    probe: Probe,
    topic_prefix: str,
    tmp_path: Path,
    signum: signal.Signals,
) -> None:
    config = write_config(tmp_path / "openspc.toml", mosquitto.port, topic_prefix, "cli-bridge")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "run",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await probe.wait_for(f"{topic_prefix}/bridge/status", lambda m: m["online"] is True)
        await probe.wait_for(f"{topic_prefix}/char/1/meta")
        await probe.publish(f"{topic_prefix}/char/1/reading", '{"values": [1.5, 2.5]}')
        [sample] = await probe.wait_for(f"{topic_prefix}/char/1/sample")
        assert sample["payload"]["values"] == [1.5, 2.5]
        process.send_signal(signum)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    [offline] = await probe.wait_for(f"{topic_prefix}/bridge/status", lambda m: not m["online"])
    assert set(offline) == {"online", "timestamp"}  # no client id to take
    assert (tmp_path / "bridge.db").exists()  # beside the config file
    assert process.stderr is not None
    log = (await process.stderr.read()).decode()
    assert "bridge started" in log
    assert "bridge stopped" in log
    assert "Traceback" not in log


COUNT_MODELS_ONCE_STARTED = """
import argparse, gc, os, signal, sys
from pathlib import Path
import bridge._startup
from bridge._cli import run
from bridge.config import CharacteristicSettings

freeze = bridge._startup.freeze_startup_heap

def started():
    freeze()
    print(sum(isinstance(o, CharacteristicSettings) for o in gc.get_objects()), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

bridge._startup.freeze_startup_heap = started
sys.exit(run.main(argparse.Namespace(config=Path(sys.argv[1]), log_level="WARNING")))
"""


async def test_run_keeps_no_characteristic_model_once_started(
    mosquitto: MosquittoProcess, topic_prefix: str, tmp_path: Path
) -> None:
    """``openspc run`` hands its settings over: once started, what the characteristics'
    configs say lives in the parts built from them, and the models are gone (at 10,000
    characteristics about 15 MB; docs/performance.md, "Memory at start-up")."""
    config = write_config(tmp_path / "openspc.toml", mosquitto.port, topic_prefix, "cli-models")
    config.write_text(
        config.read_text() + '\n[[characteristic]]\nid = 2\nname = "Bore"\nusl = 10.5\n'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        COUNT_MODELS_ONCE_STARTED,
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert out.decode().split() == ["0"]


async def test_a_bad_config_exits_2_with_one_line_per_fault(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[broker]\nport = 70000\n[[characteristic]]\nid = 1\nname = "x"\nsubgroup_size = 30\n'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "run",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 2
    assert any("broker.port = 70000" in line for line in lines)
    assert any("subgroup_size = 30" in line for line in lines)


@pytest.mark.postgres
async def test_a_database_down_at_start_is_waited_out(
    tmp_path: Path, mosquitto: MosquittoProcess, topic_prefix: str
) -> None:
    import json

    import aiomqtt

    from bridge._mosquitto import free_port
    from bridge.testing import PostgresCluster, find_pg_bin

    if find_pg_bin() is None:
        pytest.fail("PostgreSQL binaries are missing (scripts/setup installs them)")
    cluster = PostgresCluster(port=free_port())
    config = tmp_path / "openspc.toml"
    config.write_text(
        f'[broker]\nport = {mosquitto.port}\nclient_id = "{topic_prefix}-db"\n'
        f'[database]\nurl = "{cluster.async_url}"\n'
        f'[bridge]\ntopic_prefix = "{topic_prefix}"\n'
        '[[characteristic]]\nid = 1\nname = "x"\n'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "run", "--config", str(config),
        "--log-level", "WARNING", stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        assert "unavailable" in line
        assert "waiting for it" in line
        assert process.returncode is None
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.subscribe(f"{topic_prefix}/bridge/status", qos=1)
            await asyncio.to_thread(cluster.start)  # the database comes
            async with asyncio.timeout(30):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    if json.loads(message.payload)["online"]:
                        break
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await asyncio.to_thread(cluster.remove)


async def test_a_sqlite_file_that_cannot_be_opened_exits_1_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "openspc.toml"
    config.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/no/such/dir/x.db"\n'
        '[[characteristic]]\nid = 1\nname = "x"\n'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "run", "--config", str(config),
        "--log-level", "WARNING", stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("openspc run: database sqlite+aiosqlite://")
    assert "unable to open database file" in line
