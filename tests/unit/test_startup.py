"""Process-wide tuning happens at `openspc run`'s start-up only (bridge/_startup.py).

Each check runs in a fresh interpreter: ``tests/unit/test_paho_fast.py`` installs the fast
paths into the test process itself, so only a new process shows what building a client does.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_building_an_mqtt_client_leaves_pahos_decoders_as_they_are() -> None:
    out = _run(
        """
        import asyncio
        from paho.mqtt import _packet, client
        before = (_packet.decode_publish, _packet.decode_puback, client.MQTTMessageInfo)

        async def build() -> None:
            from bridge._mqtt import Inbox, MqttClient, MqttOptions
            MqttClient(MqttOptions(host="127.0.0.1", port=1, client_id="t"), Inbox(10))

        asyncio.run(build())
        from bridge import _paho_fast
        after = (_packet.decode_publish, _packet.decode_puback, client.MQTTMessageInfo)
        print(before == after, _paho_fast.installed())
        """
    )
    assert out == "True False"


def test_openspc_runs_entry_point_installs_the_fast_paths_and_freezes_after_start() -> None:
    # run_bridge replaced by a recorder: what matters is what main() set up around it
    out = _run(
        """
        import argparse, gc, pathlib, tempfile
        import bridge.app
        from bridge import _paho_fast
        from bridge._cli import run

        seen = []

        async def fake_run_bridge(settings, stop, *, started=None):
            seen.append(_paho_fast.installed())
            frozen = gc.get_freeze_count()
            started()
            seen.append(gc.get_freeze_count() > frozen)
            seen.append(gc.get_threshold() == (50_000, 20, 100))  # collects less often

        bridge.app.run_bridge = fake_run_bridge
        with tempfile.TemporaryDirectory() as tmp:
            config = pathlib.Path(tmp) / "openspc.toml"
            config.write_text('[database]\\nurl = "sqlite+aiosqlite:///' + tmp + '/db.sqlite"\\n')
            print(_paho_fast.installed(), end=" ")
            code = run.main(argparse.Namespace(config=config, log_level="WARNING"))
        print(code, *seen)
        """
    )
    assert out == "False 0 True True True"


def test_the_free_heap_goes_back_to_the_system_after_start_up() -> None:
    """A start-up peak (parsed configuration, retained messages on their way out) freed but
    held in glibc's heap counts in the bridge's RSS for good unless trimmed (docs/performance.md,
    "Memory at start-up"); ``freeze_startup_heap`` trims it."""
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    out = _run(
        """
        import os
        from bridge._startup import return_free_heap

        def rss_mb():
            for line in open(f"/proc/{os.getpid()}/status"):
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024

        peak = [bytes(1000) + bytes([i % 256]) for i in range(60_000)]  # 60 MB, malloc's
        kept = peak[-1]  # a live block above the freed ones: the heap's top cannot shrink
        del peak
        before = rss_mb()
        trimmed = return_free_heap()
        print(trimmed, round(before - rss_mb()), len(kept))
        """
    )
    trimmed, released, _ = out.split()
    assert trimmed == "True"
    assert int(released) >= 40, out
