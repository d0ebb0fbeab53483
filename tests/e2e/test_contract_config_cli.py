"""From outside: the TOML file, OPENSPC_ variables, faults, the CLI (docs/configuration.md).

Also the default topic prefix `openspc` (on a broker of the test's own, so that no other
test can hear it), the default database beside the config file, the default history of
100 samples, and PostgreSQL chosen through the environment.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.testing import PostgresCluster

from . import reference as ref
from .conftest import OPENSPC, BridgeProcess, Client, parse_iso_z, unique_prefix, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.mosquitto]


def openspc(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    import os

    return subprocess.run(
        [OPENSPC, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


# --- faults: one clear line each, exit 2, never a traceback --------------------------------

FAULTY: list[tuple[str, list[tuple[str, str]]]] = [
    (
        '[broker]\nport = 70000\nhots = "x"\n[bridge]\ntopic_prefix = "a/+/b"\n'
        "history_size = 0\n"
        '[[characteristic]]\nid = 1\nname = "x"\nsubgroup_size = 30\n'
        '[[characteristic]]\nid = 2\nname = "y"\nrules = [1, 9]\n',
        [
            ("broker.port", "70000"),
            ("broker.hots", '"x"'),
            ("bridge.topic_prefix", "a/+/b"),
            ("bridge.history_size", "0"),
            ("subgroup_size", "30"),
            ("rules", "9"),
        ],
    ),
    (
        '[[characteristic]]\nid = 1\nname = "x"\n[[characteristic]]\nid = 1\nname = "y"\n',
        [("id", "1")],
    ),
    (
        '[[characteristic]]\nid = 3\nname = "x"\nusl = 1.0\nlsl = 2.0\n',
        [("lsl", "2")],
    ),
    (
        '[database]\nurl = "mysql://x"\n[[characteristic]]\nid = 0\nname = "x"\n'
        'subgroup_size = "5"\nusl = nan\n',
        [("database.url", "mysql"), ("id", "0"), ("subgroup_size", '"5"'), ("usl", "")],
    ),
    ("[broker\nport = 1\n", [("", "")]),
]


@pytest.mark.parametrize(
    ("text", "faults"), FAULTY, ids=["many", "duplicate-id", "lsl-above-usl", "types", "toml"]
)
def test_a_wrong_file_stops_with_one_line_per_fault(
    tmp_path: Path, text: str, faults: list[tuple[str, str]]
) -> None:
    config = tmp_path / "openspc.toml"
    config.write_text(text)
    out = openspc("run", "--config", str(config))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr
    assert len(lines) == len(faults), lines
    for line, (key, value) in zip(lines, faults, strict=True):
        assert key in line, (line, key)
        assert value in line, (line, value)
        assert len(line) < 200


def test_a_missing_file_and_bad_variables_are_one_line_each(tmp_path: Path) -> None:
    out = openspc("run", "--config", str(tmp_path / "nowhere.toml"))
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "nowhere.toml" in out.stderr

    empty = tmp_path / "empty.toml"
    empty.write_text("")
    env = {
        "OPENSPC_BROKER__PORT": "abc",
        "OPENSPC_BRIDGE__HISTORY_SIZE": "-1",
        "OPENSPC_CHARACTERISTIC": '[{"id": 1, "name": "x", "subgroup_size": 99}]',
    }
    out = openspc("run", "--config", str(empty), env=env)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    for var in env:
        assert sum(var in line for line in lines) == 1, (var, lines)


# --- the command line --------------------------------------------------------------------


def test_the_one_entry_point_offers_run_demo_analyze_bench() -> None:
    out = openspc("--help")
    assert out.returncode == 0
    for sub in ("run", "demo", "analyze", "bench"):
        assert sub in out.stdout
    demo = openspc("demo", "--help")
    assert demo.returncode == 0
    assert "1883" in demo.stdout
    assert "9001" in demo.stdout
    bench = openspc("bench", "--help")
    assert bench.returncode == 0
    assert "usage: openspc bench" in bench.stdout
    run = openspc("run", "--help")
    assert run.returncode == 0
    assert "--config" in run.stdout


def write_csv(path: Path, values: list[float], ts: bool = True) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ts", "value"] if ts else ["value"])
        for i, x in enumerate(values):
            row = [1_780_000_000_000 + 60_000 * i, repr(x)] if ts else [repr(x)]
            writer.writerow(row)
    return path


def test_analyze_western_electric_json_and_table(tmp_path: Path) -> None:
    rng = random.Random(77)
    n, baseline = 3, 10
    subgroups = [[rng.gauss(50.0, 0.4) for _ in range(n)] for _ in range(baseline)]
    for k in range(30):
        shift = 0.9 if 8 <= k < 20 else 0.0
        subgroups.append([rng.gauss(50.0 + shift, 0.4) for _ in range(n)])
    subgroups[-3][1] += 5.0
    values = [x for g in subgroups for x in g] + [50.0]  # a trailing partial subgroup
    path = write_csv(tmp_path / "we.csv", values)
    out = openspc(
        "analyze", str(path), "--subgroup-size", "3", "--baseline", "10",
        "--rules", "western_electric", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    lim = result["limits"]
    want = ref.compute_limits(subgroups[:baseline], n)
    assert lim["method"] == "r_bar_d2"
    assert lim["sample_count"] == baseline
    assert ref.rel_close(lim["center_line"], want.center_line)
    assert ref.rel_close(lim["range"]["center_line"], want.r_center)
    assert abs(lim["sigma"] - want.sigma) <= 6e-4 * want.sigma
    assert lim["capability"] is None
    own = ref.limits_from_payload(lim, n)
    points = ref.make_points(subgroups)
    for i in range(len(points)):
        ref.judge(points, i, own, ref.WESTERN_ELECTRIC)
    assert len(result["points"]) == len(subgroups)
    for got, p in zip(result["points"], points, strict=True):
        assert got["index"] == p.index
        assert ref.rel_close(got["value"], p.value)
        assert ref.rel_close(got["range"], p.range)
        assert (got["zone"], got["failed_rules"], got["range_failed_rules"]) == (
            p.zone,
            p.failed_rules,
            p.range_failed_rules,
        ), p.index
    assert {r for p in points for r in p.failed_rules} >= {1, 2}
    assert any(p.range_failed_rules for p in points)

    table = openspc("analyze", str(path), "--subgroup-size", "3", "--baseline", "10")
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) >= len(subgroups)
    assert "{" not in table.stdout


def test_analyze_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    nope = tmp_path / "nope.csv"
    no_value = tmp_path / "novalue.csv"
    no_value.write_text("ts,reading\n1,2\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("value\n1.0\n2.0\nabc\n")
    short = write_csv(tmp_path / "short.csv", [1.0, 2.0, 3.0, 4.0], ts=False)
    cases = [
        (nope, ["--subgroup-size", "1"], "nope.csv"),
        (no_value, ["--subgroup-size", "1"], "value"),
        (bad, ["--subgroup-size", "1", "--baseline", "2"], "4"),
        (short, ["--subgroup-size", "2", "--baseline", "25"], ""),
        (short, ["--subgroup-size", "1", "--rules", "bogus"], "bogus"),
    ]
    for path, args, hint in cases:
        out = openspc("analyze", str(path), *args, "--json")
        assert out.returncode == 2, (path, args, out.stdout)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "Traceback" not in out.stderr
        assert hint in out.stderr


# --- defaults: prefix `openspc`, config/openspc.toml, database beside it, history 100 ------


@pytest.fixture
def own_broker() -> Iterator[MosquittoProcess]:
    with MosquittoProcess() as broker:
        yield broker


def test_defaults_prefix_openspc_config_path_database_and_history(
    own_broker: MosquittoProcess, tmp_path: Path
) -> None:
    (tmp_path / "config").mkdir()
    config = write_config(
        tmp_path / "config" / "openspc.toml",
        {"broker": {"port": own_broker.port}},
        [{"id": 1, "name": "Default", "usl": 10.5}],
    )
    values = [round(10 + 0.01 * ((7 * i) % 11 - 5), 4) for i in range(105)]
    with Client(own_broker.port) as hmi, Client(own_broker.port, v5=False) as gauge:
        hmi.subscribe("openspc/#")
        proc = BridgeProcess(config, cwd=tmp_path, args=[]).start()
        try:
            [status] = hmi.wait_for("openspc/bridge/status", lambda d: d["online"] is True)
            parse_iso_z(status["timestamp"])
            [meta] = hmi.wait_for("openspc/char/1/meta")
            assert meta["payload"]["name"] == "Default"
            for x in values:
                gauge.publish("openspc/char/1/reading", repr(x), wait=False)
            samples = hmi.wait_for("openspc/char/1/sample", count=len(values))
            assert [s["payload"]["value"] for s in samples] == values
            [limits] = hmi.wait_for("openspc/char/1/limits")
            assert limits["payload"]["sample_count"] == 25  # the default baseline
            last = samples[-1]["payload"]["sample_id"]
            [history] = hmi.wait_for(
                "openspc/char/1/history",
                lambda d: (
                    bool(d["payload"]["samples"])
                    and d["payload"]["samples"][-1]["sample_id"] == last
                ),
            )
            assert [s["payload"] for s in samples[-100:]] == history["payload"]["samples"]
            [metrics] = hmi.wait_msgs("openspc/bridge/metrics")
            assert metrics.qos == 0
        finally:
            code = proc.stop()
        assert code == 0, proc.log()
        assert "Traceback" not in proc.log()
    assert (tmp_path / "config" / "openspc.db").exists()


# --- environment overrides, PostgreSQL ---------------------------------------------------


async def _create_database(cluster: PostgresCluster, name: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.mark.postgres
def test_environment_overrides_the_file_and_postgresql_works(
    mosquitto: MosquittoProcess, postgres: PostgresCluster, tmp_path: Path
) -> None:
    file_prefix = unique_prefix()
    env_prefix = unique_prefix()
    config = write_config(
        tmp_path / "openspc.toml",
        {
            "broker": {"host": "127.0.0.1", "port": 1, "client_id": f"e2e-{uuid.uuid4().hex[:6]}"},
            "database": {"url": "sqlite+aiosqlite:///never.db"},
            "bridge": {"topic_prefix": file_prefix},
        },
        [{"id": 1, "name": "From the file"}],
    )
    db = f"e2e_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_database(postgres, db))
    env = {
        "OPENSPC_BROKER__PORT": str(mosquitto.port),
        "OPENSPC_BRIDGE__TOPIC_PREFIX": env_prefix,
        "OPENSPC_DATABASE__URL": f"postgresql://postgres@127.0.0.1:{postgres.port}/{db}",
        "OPENSPC_BRIDGE__REASON_CODES": '["Gremlins", "Other"]',
        "OPENSPC_CHARACTERISTIC": json.dumps(
            [
                {
                    "id": 7,
                    "name": "From the environment",
                    "subgroup_size": 2,
                    "center_line": 10.0,
                    "ucl": 11.0,
                    "lcl": 9.0,
                    "rules": [1],
                }
            ]
        ),
    }
    with Client(mosquitto.port) as hmi:
        hmi.subscribe(f"{env_prefix}/#", f"{file_prefix}/#")
        proc = BridgeProcess(config, env=env).start()
        try:
            hmi.wait_for(f"{env_prefix}/bridge/status", lambda d: d["online"] is True)
            [meta] = hmi.wait_for(f"{env_prefix}/char/+/meta")
            assert meta["payload"]["name"] == "From the environment"
            hmi.publish(f"{env_prefix}/char/7/reading", '{"values": [12.0, 12.5]}')
            [v] = hmi.wait_for(f"{env_prefix}/char/7/violation")
            reply = f"{env_prefix}/reply/dora/cli"
            vid = v["payload"]["violation_id"]
            hmi.request(
                f"{env_prefix}/cmd/ack/dora", {"violation_id": vid, "reason": "Tool Change"},
                reply, b"1",
            )  # fmt: skip
            hmi.request(
                f"{env_prefix}/cmd/ack/dora", {"violation_id": vid, "reason": "Gremlins"},
                reply, b"2",
            )  # fmt: skip
            first, second = hmi.wait_msgs(reply, count=2)
            assert first.properties.CorrelationData == b"1"
            assert first.json()["ok"] is False  # not a configured reason here
            assert second.properties.CorrelationData == b"2"
            assert second.json() == {"ok": True}
            hmi.marker(env_prefix)
            assert hmi.matching(f"{file_prefix}/#") == []
        finally:
            code = proc.stop()
        assert code == 0, proc.log()
    assert not (tmp_path / "never.db").exists()

    async def count_samples() -> int:
        import asyncpg

        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{postgres.port}/{db}")
        try:
            return int(await conn.fetchval("SELECT count(*) FROM samples"))
        finally:
            await conn.close()

    assert asyncio.run(count_samples()) == 1  # stored in PostgreSQL, not in never.db


def test_username_and_password_file_against_a_broker_that_refuses_anonymous(
    tmp_path: Path,
) -> None:
    import os
    import shutil
    import tempfile

    from bridge._mosquitto import free_port

    # Mosquitto drops to its own user: its files live in a directory it can reach
    workdir = Path(tempfile.mkdtemp(prefix="e2e-auth-"))
    workdir.chmod(0o1777)
    passwd = workdir / "mosquitto.passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwd), "spc-bridge", "s3cret pass"],
        check=True,
        capture_output=True,
    )
    os.chmod(passwd, 0o644)
    port = free_port()
    conf = (
        "per_listener_settings false\nallow_anonymous false\n"
        f"password_file {passwd}\npersistence true\npersistence_location {workdir}/data/\n"
        f"log_dest stderr\nlistener {port} 127.0.0.1\n"
    )
    (tmp_path / "bridge.pw").write_text("s3cret pass\n")
    prefix = unique_prefix()
    config = write_config(
        tmp_path / "openspc.toml",
        {
            "broker": {"port": port, "username": "spc-bridge", "password_file": "bridge.pw"},
            "bridge": {"topic_prefix": prefix},
        },
        [{"id": 1, "name": "Secured", "subgroup_size": 2}],
    )
    try:
        with MosquittoProcess(port=port, config=conf, workdir=workdir) as broker:
            codes: list[Any] = []
            anonymous = Client(broker.port)
            anonymous.client.on_connect = lambda _c, _u, _f, code, _p: codes.append(code)
            anonymous.client.connect("127.0.0.1", broker.port)
            anonymous.client.loop(timeout=5.0)
            hmi = Client(broker.port)
            hmi.client.username_pw_set("spc-bridge", "s3cret pass")
            with hmi:
                hmi.subscribe(f"{prefix}/#")
                proc = BridgeProcess(config).start()
                try:
                    hmi.wait_for(f"{prefix}/bridge/status", lambda d: d["online"] is True)
                    hmi.publish(f"{prefix}/char/1/reading", '{"values": [1.0, 1.5]}')
                    [sample] = hmi.wait_for(f"{prefix}/char/1/sample")
                    assert sample["payload"]["values"] == [1.0, 1.5]
                finally:
                    code = proc.stop()
                assert code == 0, proc.log()
                assert "s3cret" not in proc.log()
            assert len(codes) == 1  # the broker does refuse anonymous clients
            assert codes[0].is_failure
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.postgres
def test_two_bridges_share_one_postgresql_database_without_colliding_ids(
    mosquitto: MosquittoProcess, postgres: PostgresCluster, tmp_path: Path
) -> None:
    db = f"e2e_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_database(postgres, db))
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{postgres.port}/{db}"
    plants = []
    for k in (1, 2):
        (tmp_path / f"b{k}").mkdir()
        prefix = unique_prefix()
        config = write_config(
            tmp_path / f"b{k}" / "openspc.toml",
            {
                "broker": {
                    "port": mosquitto.port,
                    "client_id": f"e2e-pg{k}-{uuid.uuid4().hex[:6]}",
                },
                "database": {"url": url},
                "bridge": {"topic_prefix": prefix},
            },
            [{"id": 10 + k, "name": f"Line {k}", "baseline": 3}],
        )
        plants.append((prefix, 10 + k, BridgeProcess(config)))
    with Client(mosquitto.port) as hmi, Client(mosquitto.port, v5=False) as gauge:
        hmi.subscribe(*(f"{p}/#" for p, _, _ in plants))
        for prefix, _, proc in plants:
            proc.start()
            hmi.wait_for(f"{prefix}/bridge/status", lambda d: d["online"] is True)
        try:
            for i in range(12):  # interleaved, so both bridges write at the same time
                for prefix, cid, _ in plants:
                    x = 5.0 + (0.3 if i == 8 else 0.01 * ((i * 7) % 5))
                    gauge.publish(f"{prefix}/char/{cid}/reading", repr(x), wait=False)
            ids: list[set[int]] = []
            vids: list[set[int]] = []
            for prefix, cid, _ in plants:
                samples = hmi.wait_for(f"{prefix}/char/{cid}/sample", count=12)
                ids.append({s["payload"]["sample_id"] for s in samples})
                violations = hmi.wait_for(f"{prefix}/char/{cid}/violation")
                vids.append({v["payload"]["violation_id"] for v in violations})
            assert len(ids[0]) == len(ids[1]) == 12
            assert not ids[0] & ids[1]
            assert not vids[0] & vids[1]
        finally:
            codes = [proc.stop() for _, _, proc in plants]
        assert codes == [0, 0], [proc.log() for _, _, proc in plants]
