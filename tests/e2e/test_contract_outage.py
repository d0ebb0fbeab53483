"""Readings (docs/topics.md) under a database outage, from outside.

"The sample's timestamp is ... otherwise the time of arrival; it is never the time of the
database write", and a fault "never stops the bridge": readings without ``ts`` arrive while
the bridge's own PostgreSQL is down; when it is back, their samples carry the arrival times.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.testing import PostgresCluster, find_pg_bin

from .conftest import BridgeProcess, Client, now_utc, parse_iso_z, unique_prefix, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.mosquitto, pytest.mark.postgres]


def test_samples_keep_their_arrival_time_across_a_database_outage(
    mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed")
    prefix = unique_prefix()
    with PostgresCluster() as pg:
        config = write_config(
            tmp_path / "openspc.toml",
            {
                "broker": {"port": mosquitto.port, "client_id": f"e2e-{uuid.uuid4().hex[:8]}"},
                "database": {"url": f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"},
                "bridge": {"topic_prefix": prefix},
            },
            [{"id": 1, "name": "Outage", "subgroup_size": 2, "baseline": 2}],
        )
        with Client(mosquitto.port) as hmi, Client(mosquitto.port, v5=False) as gauge:
            hmi.subscribe(f"{prefix}/#")
            proc = BridgeProcess(config).start()
            try:
                hmi.wait_for(f"{prefix}/bridge/status", lambda d: d["online"] is True)
                gauge.publish(f"{prefix}/char/1/reading", '{"values": [1.0, 1.2]}')
                hmi.wait_for(f"{prefix}/char/1/sample")

                pg.stop()
                before = now_utc()
                gauge.publish(f"{prefix}/char/1/reading", "1.1")
                gauge.publish(f"{prefix}/char/1/reading", "1.3")
                arrived = now_utc()
                # the bridge notices and says so, then goes on
                [err] = hmi.wait_for(
                    f"{prefix}/bridge/errors", lambda d: "database" in d["reason"].lower()
                )
                assert parse_iso_z(err["timestamp"]) >= before - timedelta(milliseconds=2)
                hmi.marker(prefix)
                assert len(hmi.matching(f"{prefix}/char/1/sample")) == 1  # nothing stored yet
                pg.start()
                restored = now_utc()
                [_, sample] = hmi.wait_for(f"{prefix}/char/1/sample", count=2, within=60)
                assert sample["payload"]["values"] == [1.1, 1.3]
                t = parse_iso_z(sample["payload"]["timestamp"])
                assert before - timedelta(milliseconds=2) <= t <= arrived + timedelta(seconds=1)
                assert t < restored
                assert proc.process is not None
                assert proc.process.poll() is None  # still running
            finally:
                code = proc.stop()
            assert code == 0, proc.log()
            assert "Traceback" not in proc.log()
