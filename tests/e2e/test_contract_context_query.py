"""From outside, against `openspc run`: reading context, the query command, the role
message and strict config types (CONTRACT section 8 "Context"; docs/topics.md "Context",
"Query", "Role"; docs/configuration.md "Types"). The tests run in file order."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.mosquitto_admin import Role, UserStore

from .conftest import BridgeProcess, Client, Plant, unique_prefix, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.mosquitto]

COUNT = 14


class Line:
    def __init__(self, plant: Plant, hmi: Client) -> None:
        self.plant, self.hmi = plant, hmi

    def t(self, leaf: str) -> str:
        return f"{self.plant.prefix}/{leaf}"

    def ask(self, body: dict[str, Any], user: str = "kim") -> dict[str, Any]:
        reply = self.t(f"reply/{user}/q")
        before = len(self.hmi.matching(reply))
        correlation = uuid.uuid4().bytes
        self.hmi.request(self.t(f"cmd/query/{user}"), body, reply, correlation)
        answer = self.hmi.wait_msgs(reply, count=before + 1)[before]
        assert answer.properties.CorrelationData == correlation
        data: dict[str, Any] = answer.json()
        return data


@pytest.fixture(scope="module")
def line(mosquitto: MosquittoProcess, module_tmp: Path) -> Iterator[Line]:
    if shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto_passwd is not installed (scripts/setup installs it)")
    users = UserStore(module_tmp / "mosquitto" / "passwd")
    (module_tmp / "mosquitto").mkdir()
    users.add("kim", Role.ENGINEER, "kim-secret-1")
    users.add("ana", Role.HMI, "ana-secret-1")
    chars = [
        {"id": 1, "name": "Bore", "center_line": 10.0, "ucl": 10.3, "lcl": 9.7},
        {"id": 2, "name": "Wall", "subgroup_size": 3, "ucl": 10.3, "lcl": 9.7},
    ]
    plant = Plant(
        mosquitto, unique_prefix(), module_tmp, chars, {"users_file": "mosquitto/roles.json"}
    )
    with Client(mosquitto.port) as hmi:
        hmi.subscribe(f"{plant.prefix}/#")
        plant.start(hmi)
        try:
            yield Line(plant, hmi)
        finally:
            proc = plant.proc.process if plant.proc else None
            if proc is not None and proc.poll() is None:
                plant.stop()


def test_each_user_has_its_role_retained(line: Line) -> None:
    [kim] = line.hmi.wait_for(line.t("reply/kim/role"))
    [ana] = line.hmi.wait_for(line.t("reply/ana/role"))
    assert kim == {
        "type": "role",
        "payload": {
            "user": "kim",
            "role": "engineer",
            "may": ["acknowledge", "recalculate", "query"],
        },
    }
    assert ana["payload"] == {"user": "ana", "role": "hmi", "may": ["acknowledge", "query"]}


def test_a_sample_carries_its_readings_context_merged(line: Line) -> None:
    gauge = line.t("char/2/reading")
    line.hmi.publish(gauge, json.dumps({"value": 10.0, "context": {"part": "A-113", "lot": "L41"}}))
    line.hmi.publish(gauge, json.dumps({"value": 10.1, "operator": "kim", "batch": "B7"}))
    line.hmi.publish(gauge, json.dumps({"value": 9.9, "context": {"lot": "L42", "shift": "B"}}))
    [sample] = line.hmi.wait_for(line.t("char/2/sample"))
    assert sample["payload"]["values"] == [10.0, 10.1, 9.9]
    assert sample["payload"]["context"] == {
        "part": "A-113",
        "lot": "L42",
        "operator": "kim",
        "batch": "B7",
        "shift": "B",
    }


def test_bad_context_is_refused_on_errors(line: Line) -> None:
    bad = json.dumps({"value": 10.0, "context": {"lot": 42}})
    line.hmi.publish(line.t("char/1/reading"), bad)
    [error] = line.hmi.wait_for(
        line.t("bridge/errors"), lambda d: d["topic"] == line.t("char/1/reading")
    )
    assert error["reason"] == "context['lot'] must be a string, got 42"
    assert error["payload"] == bad


def test_a_chart_pages_back_through_its_whole_history(line: Line) -> None:
    for i in range(COUNT):
        body = {"value": 10 + i / 100, "context": {"seq": str(i)}}
        line.hmi.publish(line.t("char/1/reading"), json.dumps(body))
    published = [m["payload"] for m in line.hmi.wait_for(line.t("char/1/sample"), count=COUNT)]
    got: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        body: dict[str, Any] = {"characteristic_id": 1, "limit": 5}
        if before is not None:
            body["before_sample_id"] = before
        answer = line.ask(body)
        assert answer["type"] == "query_result"
        got = answer["payload"]["samples"] + got
        before = answer["payload"]["next_before_sample_id"]
        if before is None:
            break
    assert got == published  # a live sample carries excluded: false too
    assert [s["context"]["seq"] for s in got] == [str(i) for i in range(COUNT)]


def test_a_bad_query_gets_a_refusal_and_a_line_on_errors(line: Line) -> None:
    answer = line.ask({"characteristic_id": 1, "limit": 5000})
    assert answer == {"ok": False, "error": "'limit' must be an integer from 1 to 1000, got 5000"}
    line.hmi.wait_for(
        line.t("bridge/errors"),
        lambda d: d["topic"] == line.t("cmd/query/kim") and "'limit'" in d["reason"],
    )


def test_a_port_in_quotes_stops_start_up_with_one_line(module_tmp: Path) -> None:
    folder = module_tmp / "strict"
    folder.mkdir()
    config = write_config(
        folder / "openspc.toml",
        {"broker": {"host": "127.0.0.1", "port": "1883"}, "bridge": {"history_size": "10"}},
        [{"id": 1, "name": "Bore"}],
    )
    bridge = BridgeProcess(config).start()
    assert bridge.process is not None
    assert bridge.process.wait(30) == 2
    lines = [line for line in bridge.log().splitlines() if line.strip()]
    assert f'{config}: broker.port = "1883": must be a whole number' in lines
    assert f'{config}: bridge.history_size = "10": must be a whole number' in lines
    assert "Traceback" not in bridge.log()
