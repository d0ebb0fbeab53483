"""The bridge rides out a broker restart and a database outage without losing a reading."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.messages import iso_z
from bridge.testing import PostgresCluster, find_pg_bin, unique_topic
from tests.integration.conftest import BridgeFactory, char, open_probe

pytestmark = pytest.mark.mosquitto


async def test_broker_restart_reconnects_resubscribes_and_says_online_again(
    fresh_mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    factory = BridgeFactory(fresh_mosquitto, unique_topic("openspc"), tmp_path)
    prefix = factory.prefix
    app = await factory.start([char(1)])
    try:
        async with open_probe(fresh_mosquitto, f"{prefix}/#") as probe:
            await probe.publish(f"{prefix}/char/1/reading", "1")
            await probe.wait_for(f"{prefix}/char/1/sample")
        restarted_at = iso_z(datetime.now(UTC))
        fresh_mosquitto.restart()
        async with open_probe(fresh_mosquitto, f"{prefix}/#") as probe:
            await probe.wait_for(
                f"{prefix}/bridge/status",
                lambda m: m["online"] is True and m["timestamp"] > restarted_at,
            )
            await app.mqtt.subscribed.wait()
            await probe.publish(f"{prefix}/char/1/reading", "2")
            samples = await probe.wait_for(
                f"{prefix}/char/1/sample", lambda m: m["payload"]["value"] == 2.0
            )
            assert samples[0]["payload"]["range"] == 1.0
            # the Will of the new connection carries the time of that connection
            await factory.crash(app)
            # (the broker's restart may have published the first connection's Will)
            await probe.wait_for(
                f"{prefix}/bridge/status",
                lambda m: m["online"] is False and m["timestamp"] >= restarted_at,
            )
    finally:
        await factory.stop(app)


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A cluster of the test's own, to stop and start."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.mark.postgres
async def test_database_outage_holds_readings_and_catches_up(
    mosquitto: MosquittoProcess, own_postgres: PostgresCluster, tmp_path: Path
) -> None:
    factory = BridgeFactory(
        mosquitto, unique_topic("openspc"), tmp_path, db_url=own_postgres.async_url
    )
    prefix = factory.prefix
    app = await factory.start([char(1)])
    try:
        async with open_probe(mosquitto, f"{prefix}/#") as probe:
            await probe.publish(f"{prefix}/char/1/reading", "1")
            await probe.wait_for(f"{prefix}/char/1/sample")
            own_postgres.stop()
            for value in ("2", "3", "4"):
                await probe.publish(f"{prefix}/char/1/reading", value)
            [error] = await probe.wait_for(f"{prefix}/bridge/errors")
            assert "database unavailable" in error["reason"]
            assert len(probe.matching(f"{prefix}/char/1/sample")) == 1
            own_postgres.start()
            samples = await probe.wait_for(f"{prefix}/char/1/sample", count=4, within=20)
            assert [s["payload"]["value"] for s in samples] == [1.0, 2.0, 3.0, 4.0]
            assert app.metrics.db_retries >= 1
        assert await app.store.count("samples", 1) == 4
    finally:
        await factory.stop(app)


async def test_a_bridge_started_before_its_broker_connects_when_it_comes(
    tmp_path: Path,
) -> None:
    import asyncio

    from bridge.app import run_bridge

    broker = MosquittoProcess(workdir=tmp_path / "broker")
    factory = BridgeFactory(broker, unique_topic("openspc"), tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(run_bridge(factory.settings([char(1)]), stop))
    try:
        # start-up waits for the broker's first answer, as long as it takes
        done, _ = await asyncio.wait({task}, timeout=1.5)
        assert not done
        with broker:
            async with open_probe(broker, f"{factory.prefix}/#") as probe:
                await probe.wait_for(
                    f"{factory.prefix}/bridge/status", lambda m: m["online"] is True
                )
                await probe.publish(f"{factory.prefix}/char/1/reading", "3")
                [sample] = await probe.wait_for(f"{factory.prefix}/char/1/sample")
                assert sample["payload"]["value"] == 3.0
            stop.set()
            await asyncio.wait_for(task, 10)
    finally:
        stop.set()
        if not task.done():
            task.cancel()


async def test_a_stop_while_waiting_for_the_broker_at_start_up_ends_cleanly(
    tmp_path: Path,
) -> None:
    import asyncio

    from bridge.app import run_bridge

    broker = MosquittoProcess(workdir=tmp_path / "broker")  # never started
    factory = BridgeFactory(broker, unique_topic("openspc"), tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(run_bridge(factory.settings([char(1)]), stop))
    done, _ = await asyncio.wait({task}, timeout=1.5)
    assert not done
    stop.set()
    await asyncio.wait_for(task, 10)  # returns, no exception


async def test_a_message_too_large_for_the_broker_is_refused_not_the_connection(
    tmp_path: Path,
) -> None:
    from bridge._mosquitto import free_port, minimal_config

    port = free_port()
    data = tmp_path / "broker" / "data"
    config = minimal_config(port, data).replace("max_packet_size 1048576", "max_packet_size 2000")
    with MosquittoProcess(port=port, config=config, workdir=tmp_path / "broker") as broker:
        factory = BridgeFactory(broker, unique_topic("openspc"), tmp_path)
        prefix = factory.prefix
        app = await factory.start([char(1)], history_size=100)
        try:
            async with open_probe(broker, f"{prefix}/#") as probe:
                for value in range(30):  # the history outgrows 2,000 bytes
                    await probe.publish(f"{prefix}/char/1/reading", str(value))
                await probe.wait_for(f"{prefix}/char/1/sample", count=30)
                await probe.wait_for(
                    f"{prefix}/bridge/metrics", lambda m: m["publishes_refused"] > 0
                )
                await probe.publish(f"{prefix}/char/1/reading", "99")
                await probe.wait_for(
                    f"{prefix}/char/1/sample", lambda m: m["payload"]["value"] == 99.0
                )
            assert app.mqtt.generation == 1  # never disconnected
        finally:
            await factory.stop(app)
