"""Two ``openspc run`` on one config (one client id, one database): named, and not fought.

Mosquitto 2.0.11 closes the older connection when a client connects with its id, and paho
only says "Unspecified error". The second bridge finds the first one's "online" on the
status topic, waits before taking any reading, sees the first take its session back, and
stops with one clear line (exit 3); the first goes on and stores every reading once.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge._mosquitto import MosquittoProcess
from bridge.app import bootstrap
from bridge.errors import ClientIdInUse
from tests.integration.conftest import TIMEOUT, BridgeFactory, char
from tests.integration.reliability import (
    BridgeProcess,
    Gauge,
    Recorder,
    config_text,
    report,
    sqlite_samples,
    stack,
    tally,
    wait_until,
)

pytestmark = [pytest.mark.reliability, pytest.mark.mosquitto]

READINGS = 3000
RATE = 500.0


def test_a_second_bridge_with_the_same_client_id_is_named_and_stops(
    fresh_mosquitto: MosquittoProcess, tmp_path: Path, topic_prefix: str
) -> None:
    broker = fresh_mosquitto
    db = tmp_path / "bridge.db"
    text = config_text(
        port=broker.port,
        prefix=topic_prefix,
        client_id="the-one-bridge",
        db_url=f"sqlite+aiosqlite:///{db}",
        characteristics=[{"id": 1, "name": "Shaft OD", "subgroup_size": 1}],
        batch_max=100,
    )
    (tmp_path / "first.toml").write_text(text)
    (tmp_path / "second.toml").write_text(text)  # the same config: its own log file only
    with stack() as s:
        rec = s.enter_context(Recorder(broker.port, f"{topic_prefix}/#"))
        first = s.enter_context(BridgeProcess(tmp_path / "first.toml"))
        first.start().wait_started()
        rec.wait(lambda: rec.status(topic_prefix)[-1:] == [True], 10, "status online")
        gauge = s.enter_context(
            Gauge(broker.port, f"{topic_prefix}/char/1/reading", READINGS, RATE)
        ).start()
        wait_until(lambda: len(sqlite_samples(db, 1)) >= READINGS // 4, 20, "readings stored")

        second = s.enter_context(BridgeProcess(tmp_path / "second.toml")).start()
        assert second.process is not None
        code = second.process.wait(30)
        assert first.alive()

        gauge.wait_done(30)
        acked = dict(gauge.acked)
        wait_until(
            lambda: {x.ts_ms for x in sqlite_samples(db, 1)} >= acked.keys(),
            30,
            "every acknowledged reading stored",
        )
        rec.wait(lambda: rec.status(topic_prefix)[-1:] == [True], 5, "status online")
        assert first.terminate() == 0

    figures = tally(acked, sqlite_samples(db, 1))
    first_log, second_log = first.log_text(), second.log_text()
    reconnects = first_log.count("connected to 127.0.0.1") - 1
    lines = [line for line in second_log.splitlines() if line.startswith("openspc run:")]
    report(
        figures.line("a second bridge with the same client id")
        + f"; the first reconnected {reconnects} time(s); the second exited {code}"
    )
    assert code == 3
    assert len(lines) == 1, second_log
    assert "another client uses this bridge's MQTT client id 'the-one-bridge'" in lines[0]
    assert "Traceback" not in second_log + first_log
    assert "bridge started" not in second_log  # it never took a reading
    assert "this bridge took it back" in first_log  # the first one says what happened
    assert reconnects <= 2
    assert second_log.count("connected to 127.0.0.1") == 1
    assert figures.lost == []
    assert figures.duplicated == []
    assert figures.unexpected == []
    assert figures.stored == READINGS


async def test_a_running_bridge_that_keeps_being_taken_over_stops_instead_of_fighting(
    mosquitto: MosquittoProcess, tmp_path: Path, topic_prefix: str
) -> None:
    """Another client (one that fights back: it reconnects at once, as an older bridge did)
    takes the running bridge's session and says online. The bridge takes it back once; taken
    over again within seconds of that, it stops with ClientIdInUse: a bounded number of
    reconnects, not a loop."""
    factory = BridgeFactory(mosquitto, topic_prefix, tmp_path)
    app = await bootstrap(factory.settings([char(1)]))
    await app.start(connect_timeout=TIMEOUT)
    run = asyncio.create_task(app.run(asyncio.Event()))
    status = f"{topic_prefix}/bridge/status"
    other = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=factory.client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    other.reconnect_delay_set(1, 1)
    said = json.dumps({"online": True, "timestamp": "2026-01-01T00:00:00.000Z"})
    other.on_connect = lambda c, *a: c.publish(status, said, qos=1, retain=True)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 60
    other.connect("127.0.0.1", mosquitto.port, clean_start=False, properties=props)
    other.loop_start()
    try:
        async with asyncio.timeout(20):
            with pytest.raises(ClientIdInUse) as stopped:
                await run
    finally:
        other.loop_stop()
        other.disconnect()
        if not run.done():
            run.cancel()
    assert stopped.value.client_id == factory.client_id
    assert app.mqtt.connections == 2  # its own, and the one it took back: then it stopped
