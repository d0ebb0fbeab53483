"""The bridge SIGKILLed mid-stream and started again: no reading lost, none stored twice.

The bridge runs as ``openspc run`` behind a :class:`TcpProxy`; a gauge publishes QoS 1
readings with unique ``ts`` straight to the broker. Two crashes:

1. SIGKILL at an arbitrary moment of a steady stream;
2. SIGKILL after the broker has been kept from seeing the bridge's PUBACKs for a while (the
   proxy swallows them): every reading stored in that time is redelivered after the restart,
   the worst case of "committed, not yet acknowledged".

Then every reading the broker acknowledged to the gauge must be in exactly one stored sample,
and what the bridge published (live samples, the retained history) must agree with the
database. A second gauge feeds a characteristic with subgroups of 5: its samples must be
exactly its readings, five by five in the order sent (partly filled subgroups survive the
crashes). On SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.testing import PostgresCluster
from tests.integration.reliability import (
    BridgeProcess,
    Gauge,
    Recorder,
    StoredSample,
    TcpProxy,
    config_text,
    metric_total,
    pg_database,
    pg_samples,
    report,
    sqlite_samples,
    stack,
    tally,
    wait_until,
)

pytestmark = [pytest.mark.reliability, pytest.mark.mosquitto]

READINGS = 3000
SUBGROUPED = 1000  # readings of the characteristic with subgroups of 5
RATE = 1500.0  # readings per second


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Callable[[int], list[StoredSample]]]]:
    """(URL for the bridge, reader of its samples): SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        db = tmp_path / "bridge.db"
        yield f"sqlite+aiosqlite:///{db}", lambda cid: sqlite_samples(db, cid)
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    with pg_database(cluster.port) as (url, dsn):
        yield url, lambda cid: pg_samples(dsn, cid)


def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(
    fresh_mosquitto: MosquittoProcess,
    tmp_path: Path,
    topic_prefix: str,
    database: tuple[str, Callable[[int], list[StoredSample]]],
) -> None:
    broker = fresh_mosquitto
    db_url, samples_of = database
    config = tmp_path / "openspc.toml"
    with stack() as s:
        proxy = s.enter_context(TcpProxy(broker.port))
        config.write_text(
            config_text(
                port=proxy.port,
                prefix=topic_prefix,
                client_id="reliability-crash",
                db_url=db_url,
                characteristics=[
                    {"id": 1, "name": "Shaft OD", "subgroup_size": 1},
                    {"id": 2, "name": "Bore", "subgroup_size": 5},
                ],
                history_size=READINGS + 100,
                batch_max=100,
            )
        )
        rec = s.enter_context(Recorder(broker.port, f"{topic_prefix}/#"))
        bridge = s.enter_context(BridgeProcess(config))
        bridge.start().wait_started()
        rec.wait(lambda: rec.status(topic_prefix)[-1:] == [True], 10, "status online")

        gauge = s.enter_context(
            Gauge(broker.port, f"{topic_prefix}/char/1/reading", READINGS, RATE)
        ).start()
        bores = s.enter_context(
            Gauge(broker.port, f"{topic_prefix}/char/2/reading", SUBGROUPED, RATE / 3)
        ).start()

        def stored() -> int:
            return len(samples_of(1))

        # crash 1: an arbitrary moment of the stream
        wait_until(lambda: stored() >= READINGS // 4, 20, "a quarter of the readings stored")
        bridge.kill()
        rec.wait(lambda: rec.status(topic_prefix)[-1:] == [False], 10, "the Will: offline")
        bridge.start().wait_started()
        rec.wait(lambda: rec.status(topic_prefix)[-1:] == [True], 10, "status online again")

        # crash 2: readings stored but their acks never reach the broker
        wait_until(lambda: stored() >= READINGS // 2, 20, "half of the readings stored")
        proxy.swallow_upstream.set()
        before = stored()
        wait_until(lambda: stored() >= before + 200, 20, "more readings stored, unacked")
        bridge.kill()
        unacked_stored = stored() - before
        proxy.cut()
        proxy.swallow_upstream.clear()
        rec.wait(lambda: rec.status(topic_prefix)[-1:] == [False], 10, "the Will: offline")
        bridge.start().wait_started()

        gauge.wait_done(30)
        bores.wait_done(30)
        acked = dict(gauge.acked)
        wait_until(
            lambda: {x.ts_ms for x in samples_of(1)} >= acked.keys(),
            30,
            "every acknowledged reading stored",
        )
        wait_until(lambda: len(samples_of(2)) >= SUBGROUPED // 5, 30, "every subgroup of 5 stored")
        assert bridge.terminate() == 0  # a clean stop drains whatever is left
        # its last words (history, metrics, then offline) have reached the recorder
        rec.wait(lambda: rec.status(topic_prefix)[-1:] == [False], 10, "status offline")

    # subgroups: exactly the readings, five by five, in the order sent
    sent = [bores.acked[ts] for ts in sorted(bores.acked)]
    subgroups = [x.values for x in samples_of(2)]
    assert len(bores.acked) == SUBGROUPED
    assert subgroups == [tuple(sent[i : i + 5]) for i in range(0, SUBGROUPED, 5)]
    samples = samples_of(1)
    figures = tally(acked, samples)
    recognised = metric_total(rec, topic_prefix, "readings_duplicate")
    report(
        figures.line(f"crash, 2 x SIGKILL, {db_url.split('+')[0]}")
        + f"; stored but not acked at the 2nd kill {unacked_stored},"
        f" redeliveries recognised {recognised}; subgroups of 5: {SUBGROUPED} readings,"
        f" {len(subgroups)} samples, each exactly 5 consecutive readings"
    )
    assert recognised >= unacked_stored
    assert figures.lost == []
    assert figures.duplicated == []
    assert figures.unexpected == []
    assert figures.stored == len(acked) == READINGS

    # what was published agrees with the database: same id, same ts, same values
    by_id = {x.id: x for x in samples}
    live = [m.json()["payload"] for m in rec.on(f"{topic_prefix}/char/1/sample")]
    history = [m.json()["payload"]["samples"] for m in rec.on(f"{topic_prefix}/char/1/history")]
    published = {p["sample_id"]: p for p in live + [p for h in history for p in h]}
    for sample_id, p in published.items():
        assert sample_id in by_id, f"published sample {sample_id} is not stored"
        assert tuple(p["values"]) == by_id[sample_id].values
    assert published.keys() == by_id.keys()  # the last history covers what was swallowed
    assert "Traceback" not in bridge.log_text()
