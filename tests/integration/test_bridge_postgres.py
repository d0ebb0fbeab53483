"""Several bridges on one PostgreSQL: ids never collide, each keeps its own state."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.testing import PostgresCluster, unique_topic
from tests.integration.conftest import BridgeFactory, char, fresh_pg_database, open_probe

pytestmark = [pytest.mark.mosquitto, pytest.mark.postgres]


async def test_two_bridges_on_one_database_allocate_disjoint_ids(
    mosquitto: MosquittoProcess, postgres: PostgresCluster, tmp_path: Path
) -> None:
    async with fresh_pg_database(postgres) as url:
        line1 = BridgeFactory(mosquitto, unique_topic("line1"), tmp_path, db_url=url)
        line2 = BridgeFactory(mosquitto, unique_topic("line2"), tmp_path, db_url=url)
        fixed = {"center_line": 0.0, "ucl": 3.0, "lcl": -3.0, "rules": [1]}
        a = await line1.start([char(1, **fixed)])
        b = await line2.start([char(2, **fixed)])
        try:
            async with (
                open_probe(mosquitto, f"{line1.prefix}/#") as p1,
                open_probe(mosquitto, f"{line2.prefix}/#") as p2,
            ):
                for value in ("1", "9", "1", "9"):
                    await p1.publish(f"{line1.prefix}/char/1/reading", value)
                    await p2.publish(f"{line2.prefix}/char/2/reading", value)
                s1 = await p1.wait_for(f"{line1.prefix}/char/1/sample", count=4)
                s2 = await p2.wait_for(f"{line2.prefix}/char/2/sample", count=4)
                v1 = await p1.wait_for(f"{line1.prefix}/char/1/violation", count=2)
                v2 = await p2.wait_for(f"{line2.prefix}/char/2/violation", count=2)
                assert not p1.matching(f"{line1.prefix}/bridge/errors")
        finally:
            await line1.stop(a)
            await line2.stop(b)
    ids1 = {s["payload"]["sample_id"] for s in s1}
    ids2 = {s["payload"]["sample_id"] for s in s2}
    assert len(ids1) == len(ids2) == 4
    assert not ids1 & ids2
    vids1 = {v["payload"]["violation_id"] for v in v1}
    vids2 = {v["payload"]["violation_id"] for v in v2}
    assert not vids1 & vids2


async def test_bridges_starting_together_on_a_fresh_database_share_its_schema_and_ids(
    postgres: PostgresCluster,
) -> None:
    import asyncio

    from bridge.store import Store

    async with fresh_pg_database(postgres) as url:
        stores = await asyncio.gather(*(Store.open(url) for _ in range(3)))
        try:
            firsts = await asyncio.gather(*(s.allocate("sample", 1000) for s in stores * 2))
            ordered = sorted(firsts)  # six blocks of 1,000 ids, none overlapping
            assert all(b - a >= 1000 for a, b in itertools.pairwise(ordered))
            assert await stores[0].count("id_counters") == 2
        finally:
            for store in stores:
                await store.close()
