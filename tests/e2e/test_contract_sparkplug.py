"""Topics and configuration (docs/sparkplug.md): a Sparkplug B edge node as a source of readings.

The edge node here is a plain paho client that writes the protobuf bytes itself (the
Sparkplug B schema's field numbers, encoded by hand below), so nothing of the bridge's own
codec is involved. Births carry no values (``is_null``); data go by alias without datatype,
as the specification allows.
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge._mosquitto import MosquittoProcess

from .conftest import Client, Plant, parse_iso_z, unique_prefix

pytestmark = [pytest.mark.e2e, pytest.mark.mosquitto, pytest.mark.sparkplug]

UINT64, DOUBLE = 8, 10


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(no: int, value: int) -> bytes:
    return varint(no << 3) + varint(value)


def field_bytes(no: int, data: bytes) -> bytes:
    return varint(no << 3 | 2) + varint(len(data)) + data


def field_double(no: int, value: float) -> bytes:
    return varint(no << 3 | 1) + struct.pack("<d", value)


def metric(
    *,
    name: str | None = None,
    alias: int | None = None,
    ts: int | None = None,
    datatype: int | None = None,
    double: float | None = None,
    long: int | None = None,
    null: bool = False,
) -> bytes:
    out = b""
    if name is not None:
        out += field_bytes(1, name.encode())
    if alias is not None:
        out += field_varint(2, alias)
    if ts is not None:
        out += field_varint(3, ts)
    if datatype is not None:
        out += field_varint(4, datatype)
    if null:
        out += field_varint(7, 1)
    if long is not None:
        out += field_varint(11, long)
    if double is not None:
        out += field_double(13, double)
    return out


def payload(seq: int | None, *metrics: bytes, ts: int | None = None) -> bytes:
    out = field_varint(1, ts if ts is not None else int(time.time() * 1000))
    for m in metrics:
        out += field_bytes(2, m)
    if seq is not None:
        out += field_varint(3, seq)
    return out


@dataclass
class Edge:
    plant: Plant
    hmi: Client
    node: Client
    group: str
    seq: int = 0

    def send(self, kind: str, *metrics: bytes, device: str | None = None) -> None:
        topic = f"spBv1.0/{self.group}/{kind}/Line3" + (f"/{device}" if device else "")
        seq = None if kind == "NDEATH" else self.seq % 256
        if kind != "NDEATH":
            self.seq += 1
        self.node.publish(topic, payload(seq, *metrics), qos=0)

    def samples(self, cid: int) -> list[dict[str, Any]]:
        return [
            m.json()["payload"] for m in self.hmi.matching(f"{self.plant.prefix}/char/{cid}/sample")
        ]


@pytest.fixture(scope="module")
def edge(mosquitto: MosquittoProcess, module_tmp: Path) -> Iterator[Edge]:
    group = f"Plant{uuid.uuid4().hex[:8]}"
    chars: list[dict[str, Any]] = [
        {
            "id": 1,
            "name": "OD",
            "subgroup_size": 2,
            "baseline": 3,
            "sparkplug": {"group": group, "edge": "Line3", "device": "Gauge7", "metric": "OD"},
        },
        {
            "id": 2,
            "name": "Temp",
            "baseline": 2,
            "sparkplug": {"group": group, "edge": "Line3", "metric": "Temp"},
        },
    ]
    plant = Plant(mosquitto, unique_prefix(), module_tmp, chars)
    with Client(mosquitto.port) as hmi, Client(mosquitto.port, v5=False) as node:
        hmi.subscribe(f"{plant.prefix}/#")
        plant.start(hmi)
        try:
            yield Edge(plant, hmi, node, group)
        finally:
            plant.stop()


def test_device_and_node_metrics_become_readings(edge: Edge) -> None:
    prefix = edge.plant.prefix
    t0 = 1_780_000_000_000
    edge.send(
        "NBIRTH",
        metric(name="bdSeq", datatype=UINT64, long=0),
        metric(name="Temp", alias=1, datatype=DOUBLE, null=True),
    )
    edge.send("DBIRTH", metric(name="OD", alias=2, datatype=DOUBLE, null=True), device="Gauge7")
    od = [10.01, 10.03, 9.98, 10.0, 10.02, 9.99, 10.04, 10.0]
    for i, x in enumerate(od):
        edge.send("DDATA", metric(alias=2, ts=t0 + 1000 * i, double=x), device="Gauge7")
    temps = [20.5, 20.7, 20.4, 20.6]
    for i, x in enumerate(temps):
        edge.send("NDATA", metric(name="Temp", ts=t0 + 500 * i, datatype=DOUBLE, double=x))

    samples = edge.hmi.wait_for(f"{prefix}/char/1/sample", count=len(od) // 2)
    assert [s["payload"]["values"] for s in samples] == [od[i : i + 2] for i in range(0, 8, 2)]
    for k, s in enumerate(samples):  # the ts of the subgroup's last reading
        t = parse_iso_z(s["payload"]["timestamp"])
        assert int(t.timestamp() * 1000) == t0 + 1000 * (2 * k + 1)
    [limits] = edge.hmi.wait_for(f"{prefix}/char/1/limits")
    assert limits["payload"]["sample_count"] == 3
    temp_samples = edge.hmi.wait_for(f"{prefix}/char/2/sample", count=len(temps))
    assert [s["payload"]["value"] for s in temp_samples] == temps


def test_a_device_death_marks_its_characteristic_offline(edge: Edge) -> None:
    prefix = edge.plant.prefix
    edge.send("DDEATH", device="Gauge7")
    [meta] = edge.hmi.wait_for(
        f"{prefix}/char/1/meta", lambda d: d["payload"].get("online") is False
    )
    assert meta["type"] == "meta"
    edge.send("DBIRTH", metric(name="OD", alias=2, datatype=DOUBLE, null=True), device="Gauge7")
    edge.hmi.wait_for(
        f"{prefix}/char/1/meta", lambda d: d["payload"].get("online") is True, count=2
    )


def test_the_primary_host_says_state_and_asks_for_births_after_a_restart(
    mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    """The Primary Host (docs/sparkplug.md): STATE birth and death with one timestamp, and a
    Rebirth NCMD at start-up, so that an edge node's first data after a restart of the bridge
    is read."""
    group, host_id = f"Plant{uuid.uuid4().hex[:8]}", f"scada{uuid.uuid4().hex[:6]}"
    state = f"spBv1.0/STATE/{host_id}"
    chars: list[dict[str, Any]] = [
        {"id": 1, "name": "Temp", "sparkplug": {"group": group, "edge": "Line3", "metric": "Temp"}}
    ]
    plant = Plant(
        mosquitto,
        unique_prefix(),
        tmp_path,
        chars,
        bridge_section={"sparkplug": {"host_id": host_id}},
    )
    with Client(mosquitto.port) as hmi, Client(mosquitto.port, v5=False) as node:
        hmi.subscribe(f"{plant.prefix}/#", state)
        node.subscribe(f"spBv1.0/{group}/NCMD/Line3")
        edge = Edge(plant, hmi, node, group)
        plant.start(hmi)
        [online] = hmi.wait_for(state, lambda d: d["online"] is True)
        assert set(online) == {"online", "timestamp"}
        assert isinstance(online["timestamp"], int)
        edge.send(
            "NBIRTH",
            metric(name="bdSeq", datatype=UINT64, long=0),
            metric(name="Temp", alias=1, datatype=DOUBLE, null=True),
        )
        edge.send("NDATA", metric(alias=1, double=20.5))
        edge.hmi.wait_for(f"{plant.prefix}/char/1/sample")
        plant.stop()
        [offline] = hmi.wait_for(state, lambda d: d["online"] is False)
        assert offline == {"online": False, "timestamp": online["timestamp"]}

        asked = len(node.matching(f"spBv1.0/{group}/NCMD/Line3"))
        plant.start(hmi)  # knows no alias of Line3: asks for a birth at once
        node.wait_msgs(f"spBv1.0/{group}/NCMD/Line3", count=asked + 1)
        [ncmd] = node.matching(f"spBv1.0/{group}/NCMD/Line3")[asked:]
        assert b"Node Control/Rebirth" in ncmd.payload
        edge.seq = 0
        edge.send(
            "NBIRTH",
            metric(name="bdSeq", datatype=UINT64, long=1),
            metric(name="Temp", alias=1, datatype=DOUBLE, null=True),
        )
        edge.send("NDATA", metric(alias=1, double=21.5))  # the first data after the restart
        [after] = edge.hmi.wait_for(  # not lost: the bridge knew the birth by then
            f"{plant.prefix}/char/1/sample", lambda d: d["payload"]["values"] != [20.5]
        )
        [reborn] = hmi.wait_for(state, lambda d: d["online"] is True and d != online)
        plant.stop()
    assert after["payload"]["values"] == [21.5]
    assert reborn["timestamp"] > online["timestamp"]
    errors = [m.json()["reason"] for m in hmi.matching(f"{plant.prefix}/bridge/errors")]
    assert not [r for r in errors if "before NBIRTH" in r]
