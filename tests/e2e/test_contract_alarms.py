"""Alarm kinds from outside (docs/topics.md "violation", docs/spc.md "Alarm workflow"):
``spec`` episodes and ``sample.out_of_spec``, ``valid_min``/``valid_max`` refusals,
``overdue`` alarms raised once, across a restart of the bridge, and held back while the
line's running topic says stopped; on SQLite and on PostgreSQL.

The overdue tests prove an absence ("raised once", "not while stopped") by waiting for a
later event of another characteristic with a longer interval: by then the alarm that must
not come would have come.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge._mosquitto import MosquittoProcess

from .conftest import Client, Plant, now_utc, parse_iso_z, unique_prefix

pytestmark = [pytest.mark.e2e, pytest.mark.mosquitto]


@pytest.fixture
def plant_parts(
    mosquitto: MosquittoProcess, tmp_path: Path
) -> Iterator[tuple[MosquittoProcess, str, Client, Client]]:
    prefix = unique_prefix()
    with Client(mosquitto.port) as listener, Client(mosquitto.port, v5=False) as gauge:
        listener.subscribe(f"{prefix}/#")
        yield mosquitto, prefix, listener, gauge


def violations(listener: Client, prefix: str, cid: int, kind: str) -> list[dict[str, Any]]:
    return [
        m.json()["payload"]
        for m in listener.matching(f"{prefix}/char/{cid}/violation")
        if m.json()["payload"]["kind"] == kind
    ]


# --- spec episodes and valid ranges ---------------------------------------------------------


SPEC_CHARS: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "Shaft OD",
        "usl": 10.5,
        "lsl": 9.5,
        "valid_min": 0.0,
        "valid_max": 50.0,
        # fixed limits wide of the readings: no run rule fails, only the spec judges
        "center_line": 10.0,
        "ucl": 13.0,
        "lcl": 7.0,
        "rules": [1],
    },
    {
        "id": 2,
        "name": "Bore",
        "subgroup_size": 3,
        "valid_max": 50.0,
        "center_line": 10.0,
        "ucl": 13.0,
        "lcl": 7.0,
        "rules": [1],
    },
]


def test_spec_episodes_raise_one_alarm_each_and_impossible_readings_are_refused(
    plant_parts: tuple[MosquittoProcess, str, Client, Client], tmp_path: Path, database_url: str
) -> None:
    broker, prefix, listener, gauge = plant_parts
    plant = Plant(broker, prefix, tmp_path, SPEC_CHARS, url=database_url)
    plant.start(listener)
    try:
        readings = ["10.0", "10.5", "10.7", "10.8", "9.5", "9.4", "9.3"]
        #          within  on usl  beyond  same ep  on lsl  beyond  same episode
        for text in readings:
            gauge.publish(f"{prefix}/char/1/reading", text)
        samples = [
            m["payload"] for m in listener.wait_for(f"{prefix}/char/1/sample", count=len(readings))
        ]
        assert [s["out_of_spec"] for s in samples] == [False, False, True, True, False, True, True]
        assert all(s["due_at"] is None for s in samples)  # no sample_interval
        spec = listener.wait_for(
            f"{prefix}/char/1/violation", lambda m: m["payload"]["kind"] == "spec", count=2
        )
        assert [v["payload"]["sample_id"] for v in spec] == [
            samples[2]["sample_id"],
            samples[5]["sample_id"],
        ]
        first = spec[0]["payload"]
        assert (first["rule_id"], first["chart"], first["rule_name"], first["severity"]) == (
            None,
            None,
            "Beyond specification",
            "CRITICAL",
        )
        assert first["timestamp"] == samples[2]["timestamp"]
        # readings beyond valid_min/valid_max: refused, named, never charted
        gauge.publish(f"{prefix}/char/1/reading", "60")
        gauge.publish(f"{prefix}/char/2/reading", '{"values": [10.0, 10.1, 99.0]}')
        gauge.publish(f"{prefix}/char/2/reading", '{"values": [10.0, 10.1, 10.2]}')
        gauge.publish(f"{prefix}/char/1/reading", "10.1")
        errors = listener.wait_for(f"{prefix}/bridge/errors", count=2)
        reasons = {e["topic"]: e["reason"] for e in errors}
        assert reasons == {
            f"{prefix}/char/1/reading": "value 60 is above valid_max 50 (a gauge fault or a unit"
            " mix-up?); not charted",
            f"{prefix}/char/2/reading": "values[2] = 99 is above valid_max 50 (a gauge fault or a"
            " unit mix-up?); the whole subgroup of 3 is refused",
        }
        (bore,) = listener.wait_for(f"{prefix}/char/2/sample")
        assert bore["payload"]["values"] == [10.0, 10.1, 10.2]
        assert bore["payload"]["out_of_spec"] is None  # no spec limits
        eighth = listener.wait_for(f"{prefix}/char/1/sample", count=len(readings) + 1)[-1]
        assert eighth["payload"]["values"] == [10.1]
        assert len(violations(listener, prefix, 1, "spec")) == 2
        assert violations(listener, prefix, 1, "rule") == []
    finally:
        plant.stop()
    # the database kept them: after a restart the open alarms are the same two spec alarms
    listener.messages.clear()
    plant.start(listener)
    try:
        (alarms,) = listener.wait_for(f"{prefix}/char/1/alarms")
        restored = alarms["payload"]["violations"]
        assert [(v["kind"], v["rule_id"], v["chart"], v["sample_id"]) for v in restored] == [
            ("spec", None, None, samples[2]["sample_id"]),
            ("spec", None, None, samples[5]["sample_id"]),
        ]
        # the episode that was running at the stop goes on: no new alarm for it
        gauge.publish(f"{prefix}/char/1/reading", "9.0")
        listener.wait_for(f"{prefix}/char/1/sample", lambda m: m["payload"]["values"] == [9.0])
        gauge.publish(f"{prefix}/char/1/reading", "11.0")
        (third,) = listener.wait_for(
            f"{prefix}/char/1/violation", lambda m: m["payload"]["kind"] == "spec"
        )
        assert third["payload"]["sample_id"] > samples[-1]["sample_id"]
    finally:
        plant.stop()


# --- overdue --------------------------------------------------------------------------------


def test_overdue_is_raised_once_per_episode_and_a_sample_re_arms_it(
    plant_parts: tuple[MosquittoProcess, str, Client, Client], tmp_path: Path, database_url: str
) -> None:
    broker, prefix, listener, gauge = plant_parts
    chars = [
        {"id": 1, "name": "Fast", "sample_interval": 1.0, "overdue_grace": 0.5},
        {"id": 2, "name": "Slower", "sample_interval": 4.0, "overdue_grace": 0.0},
    ]
    plant = Plant(broker, prefix, tmp_path, chars, url=database_url)
    started = now_utc()
    plant.start(listener)
    try:
        (meta,) = listener.wait_for(f"{prefix}/char/1/meta")
        assert (meta["payload"]["sample_interval"], meta["payload"]["overdue_grace"]) == (1.0, 0.5)
        (meta2,) = listener.wait_for(f"{prefix}/char/2/meta")
        assert meta2["payload"]["overdue_grace"] == 0.0
        (late,) = listener.wait_for(
            f"{prefix}/char/1/violation", lambda m: m["payload"]["kind"] == "overdue"
        )
        body = late["payload"]
        assert (body["sample_id"], body["rule_id"], body["chart"]) == (None, None, None)
        assert (body["rule_name"], body["severity"]) == ("Sample overdue", "WARNING")
        raised_at = parse_iso_z(body["timestamp"])
        assert started + timedelta(seconds=1.4) <= raised_at <= now_utc()
        # characteristic 2 falls due 2.5 s later, after characteristic 1's next deadline
        # (1.5 s on) had the episode not held it: characteristic 1 has not alarmed again
        listener.wait_for(f"{prefix}/char/2/violation", lambda m: m["payload"]["kind"] == "overdue")
        assert len(violations(listener, prefix, 1, "overdue")) == 1
        # a sample ends the episode; it says when the next is due; then the next episode
        sent = now_utc()
        gauge.publish(f"{prefix}/char/1/reading", "5.0")
        (sample,) = listener.wait_for(f"{prefix}/char/1/sample")
        due = parse_iso_z(sample["payload"]["due_at"])
        assert sent + timedelta(seconds=0.9) <= due <= now_utc() + timedelta(seconds=1.1)
        second = listener.wait_for(
            f"{prefix}/char/1/violation", lambda m: m["payload"]["kind"] == "overdue", count=2
        )[1]["payload"]
        assert parse_iso_z(second["timestamp"]) >= due + timedelta(seconds=0.45)
        (alarms,) = listener.wait_for(
            f"{prefix}/char/1/alarms", lambda m: m["payload"]["open_count"] == 2
        )
        assert {v["kind"] for v in alarms["payload"]["violations"]} == {"overdue"}
    finally:
        plant.stop()


def test_overdue_across_restarts_neither_lost_nor_doubled(
    plant_parts: tuple[MosquittoProcess, str, Client, Client], tmp_path: Path, database_url: str
) -> None:
    broker, prefix, listener, gauge = plant_parts
    chars = [
        {"id": 1, "name": "Hourly-ish", "sample_interval": 3.0, "overdue_grace": 0.0},
        {"id": 2, "name": "Witness", "sample_interval": 2.0, "overdue_grace": 0.0},
    ]
    plant = Plant(broker, prefix, tmp_path, chars, url=database_url)
    plant.start(listener)
    try:
        gauge.publish(f"{prefix}/char/1/reading", "5.0")
        (sample,) = listener.wait_for(f"{prefix}/char/1/sample")
        due = parse_iso_z(sample["payload"]["due_at"])
    finally:
        plant.stop()  # stopped with characteristic 1's alarm pending
    # down while it falls due (nothing to await: the bridge is down)
    time.sleep(max(0.0, (due - now_utc()).total_seconds()) + 0.5)
    restarted = now_utc()
    plant.start(listener)
    try:
        (late,) = listener.wait_for(
            f"{prefix}/char/1/violation", lambda m: m["payload"]["kind"] == "overdue"
        )
        # raised once, on start, at the time it fell due (from the stored sample, not the start)
        assert parse_iso_z(late["payload"]["timestamp"]) == due
        assert due < restarted
    finally:
        plant.stop()
    plant.start(listener)
    try:
        # the witness (fresh clocks count from the first start, so it is overdue at once, or
        # 2 s on): by its alarm of this run, characteristic 1 would have alarmed again
        witness_before = len(violations(listener, prefix, 2, "overdue"))
        gauge.publish(f"{prefix}/char/2/reading", "1.0")
        listener.wait_for(
            f"{prefix}/char/2/violation",
            lambda m: m["payload"]["kind"] == "overdue",
            count=witness_before + 1,
        )
        assert len(violations(listener, prefix, 1, "overdue")) == 1
    finally:
        plant.stop()


def test_no_overdue_while_the_line_is_stopped(
    plant_parts: tuple[MosquittoProcess, str, Client, Client], tmp_path: Path, database_url: str
) -> None:
    broker, prefix, listener, gauge = plant_parts
    line = f"{unique_prefix()}/line3/running"
    chars = [
        {
            "id": 1,
            "name": "On line 3",
            "sample_interval": 1.0,
            "overdue_grace": 0.2,
            "running_topic": line,
            "running_values": ["RUN", "true"],
        },
        {"id": 2, "name": "Witness", "sample_interval": 2.5, "overdue_grace": 0.0},
    ]
    gauge.publish(line, " Stopped ", qos=1)
    with Client(broker.port) as retainer:
        retainer.client.publish(line, "stopped", qos=1, retain=True).wait_for_publish(5)
    plant = Plant(broker, prefix, tmp_path, chars, url=database_url)
    plant.start(listener)
    try:
        listener.wait_for(f"{prefix}/char/2/violation", lambda m: m["payload"]["kind"] == "overdue")
        assert violations(listener, prefix, 1, "overdue") == []  # stopped: 2.5 s, no alarm
        ran = now_utc()
        gauge.publish(line, "  run\n")  # trimmed, any case
        (late,) = listener.wait_for(
            f"{prefix}/char/1/violation", lambda m: m["payload"]["kind"] == "overdue"
        )
        assert parse_iso_z(late["payload"]["timestamp"]) >= ran + timedelta(seconds=1.15)
    finally:
        plant.stop()
        with Client(broker.port) as retainer:
            retainer.client.publish(line, b"", qos=1, retain=True).wait_for_publish(5)
