"""The quality engineer's acknowledgement workflow, from outside (CONTRACT section 8: causes
and actions, the Pareto of causes, limit versions): ``openspc run`` as a subprocess on SQLite
and on PostgreSQL, driven by plain paho clients over MQTT 5.

Expected values come from the contract's wording and plain arithmetic, never from the
bridge's own code.
"""

from __future__ import annotations

from pathlib import Path
from statistics import fmean
from typing import Any

import pytest

from bridge._mosquitto import MosquittoProcess
from tests.e2e.conftest import Client, Plant, unique_prefix

pytestmark = pytest.mark.mosquitto

FIXED = {"center_line": 10.0, "ucl": 13.0, "lcl": 7.0, "rules": [1]}


class Operator:
    """An HMI user: commands with an MQTT 5 response topic in its own reply tree."""

    def __init__(self, client: Client, prefix: str, user: str) -> None:
        self.client = client
        self.prefix = prefix
        self.user = user
        self.count = 0
        client.subscribe(f"{prefix}/reply/{user}/#")

    def _ask(self, topic: str, body: dict[str, Any]) -> Any:
        self.count += 1
        reply = f"{self.prefix}/reply/{self.user}/{self.count}"
        self.client.request(topic, body, reply, str(self.count).encode())
        [answer] = self.client.wait_for(reply)
        return answer

    def ack(self, body: dict[str, Any]) -> Any:
        return self._ask(f"{self.prefix}/cmd/ack/{self.user}", body)

    def recalculate(self, cid: int, body: dict[str, Any]) -> Any:
        return self._ask(f"{self.prefix}/cmd/char/{cid}/recalculate", body)


def alarms(gauge: Client, listener: Client, prefix: str, cid: int, count: int) -> list[Any]:
    """``count`` rule-1 alarms (a point just beyond UCL 13, one just inside, each time)."""
    topic = f"{prefix}/char/{cid}/violation"
    already = len(listener.matching(topic))
    gauge.publish(f"{prefix}/char/{cid}/reading", "12.9")
    for _ in range(count):
        gauge.publish(f"{prefix}/char/{cid}/reading", "13.5")
        gauge.publish(f"{prefix}/char/{cid}/reading", "12.9")
    found = listener.wait_for(topic, count=already + count)
    return [v["payload"] for v in found[already:]]


def open_alarms(listener: Client, prefix: str, cid: int, ids: list[int]) -> None:
    listener.wait_for(
        f"{prefix}/char/{cid}/alarms",
        lambda m: [v["violation_id"] for v in m["payload"]["violations"]] == ids,
    )


def test_causes_actions_comments_several_at_once_all_or_nothing_and_the_pareto(
    broker: MosquittoProcess, tmp_path: Path, database_url: str
) -> None:
    prefix = unique_prefix()
    plant = Plant(broker, prefix, tmp_path, [{"id": 2, "name": "OD", **FIXED}])
    plant.url = database_url
    with Client(broker.port) as listener, Client(broker.port, v5=False) as gauge:
        listener.subscribe(f"{prefix}/#")
        plant.start(listener)
        try:
            kim = Operator(listener, prefix, "kim")
            v1, v2, v3, v4 = [v["violation_id"] for v in alarms(gauge, listener, prefix, 2, 4)]
            open_alarms(listener, prefix, 2, [v1, v2, v3, v4])

            # one unknown id refuses the whole command; nothing changes
            refused = kim.ack({"violation_ids": [v1, 987654321], "cause": "Tool Change"})
            assert refused == {
                "ok": False,
                "error": "violation 987654321 does not exist; nothing acknowledged",
            }
            [error] = listener.wait_for(f"{prefix}/bridge/errors")
            assert error["reason"] == refused["error"]
            too_long = kim.ack({"violation_id": v1, "cause": "Other", "comment": "x" * 501})
            assert too_long == {
                "ok": False,
                "error": "comment is too long: 501 characters, limit is 500",
            }
            assert listener.matching(f"{prefix}/char/2/ack") == []

            body = {
                "violation_ids": [v1, v2],
                "cause": "Tool Change",
                "action": "Replaced Tool",
                "comment": "x" * 500,
            }
            assert kim.ack(body) == {"ok": True}
            updates = listener.wait_for(f"{prefix}/char/2/ack", count=2)
            assert [u["payload"]["violation_id"] for u in updates] == [v1, v2]
            for u in updates:
                p = u["payload"]
                assert (p["cause"], p["reason"], p["action"]) == ("Tool Change",) * 2 + (
                    "Replaced Tool",
                )
                assert (p["comment"], p["user"], p["acknowledged"]) == ("x" * 500, "kim", True)
            open_alarms(listener, prefix, 2, [v3, v4])

            # an acknowledged id among open ones: refused whole
            again = kim.ack({"violation_ids": [v3, v1], "cause": "Other"})
            assert again == {
                "ok": False,
                "error": f"violation {v1} is already acknowledged; nothing acknowledged",
            }
            assert len(listener.matching(f"{prefix}/char/2/ack")) == 2

            # the old form, then all the rest at once
            assert kim.ack({"violation_id": v3, "reason": "Other"}) == {"ok": True}
            all_open = {"characteristic_id": 2, "all_open": True, "cause": "Tool Change"}
            assert kim.ack(all_open) == {"ok": True}
            open_alarms(listener, prefix, 2, [])
            listener.wait_for(f"{prefix}/char/2/ack", count=4)
            assert kim.ack(all_open) == {
                "ok": False,
                "error": "characteristic 2 has no open violations",
            }
            [causes] = listener.wait_for(
                f"{prefix}/char/2/causes",
                lambda m: sum(c["count"] for c in m["payload"]["counts"]) == 4,
            )
            assert causes == {
                "type": "causes",
                "payload": {
                    "characteristic_id": 2,
                    "days": 30,
                    "counts": [
                        {"cause": "Tool Change", "count": 3},
                        {"cause": "Other", "count": 1},
                    ],
                },
            }
        finally:
            plant.stop()
        # retained: a client that comes later reads the Pareto at once, after a restart too
        plant.start(listener)
        try:
            with Client(broker.port) as late:
                late.subscribe(f"{prefix}/char/2/causes")
                [retained] = late.wait_msgs(f"{prefix}/char/2/causes")
                assert retained.retain
                assert retained.json() == causes
        finally:
            plant.stop()


def test_require_action_refuses_an_acknowledgement_without_one(
    broker: MosquittoProcess, tmp_path: Path, database_url: str
) -> None:
    prefix = unique_prefix()
    plant = Plant(
        broker,
        prefix,
        tmp_path,
        [{"id": 2, "name": "OD", **FIXED}],
        bridge_section={"require_action": True, "action_codes": ["Stopped Line", "Other"]},
    )
    plant.url = database_url
    with Client(broker.port) as listener, Client(broker.port, v5=False) as gauge:
        listener.subscribe(f"{prefix}/#")
        plant.start(listener)
        try:
            kim = Operator(listener, prefix, "kim")
            [meta] = listener.wait_for(f"{prefix}/char/2/meta")
            assert meta["payload"]["action_codes"] == ["Stopped Line", "Other"]
            assert meta["payload"]["require_action"] is True
            [v] = [v["violation_id"] for v in alarms(gauge, listener, prefix, 2, 1)]
            bare = kim.ack({"violation_id": v, "cause": "Tool Change"})
            assert bare == {
                "ok": False,
                "error": "'action' is required (require_action is on): one of the action_codes",
            }
            default_action = kim.ack(
                {"violation_id": v, "cause": "Tool Change", "action": "Replaced Tool"}
            )
            assert default_action == {
                "ok": False,
                "error": "action 'Replaced Tool' is not one of the configured action_codes",
            }
            ok = kim.ack({"violation_ids": [v], "cause": "Tool Change", "action": "Stopped Line"})
            assert ok == {"ok": True}
            [update] = listener.wait_for(f"{prefix}/char/2/ack")
            assert update["payload"]["action"] == "Stopped Line"
        finally:
            plant.stop()


def test_limit_versions_recalculation_over_a_range_and_excluded_samples_in_history(
    broker: MosquittoProcess, tmp_path: Path, database_url: str
) -> None:
    prefix = unique_prefix()
    chars = [{"id": 1, "name": "Bore", "baseline": 5, "rules": [1]}]
    plant = Plant(broker, prefix, tmp_path, chars)
    plant.url = database_url
    values = [10, 12, 8, 11, 9, 10.2, 30, 10.4, 9.6, 10.8, 9.9]
    sample_topic = f"{prefix}/char/1/sample"
    with Client(broker.port) as listener, Client(broker.port, v5=False) as gauge:
        listener.subscribe(f"{prefix}/#")
        plant.start(listener)
        try:
            eng = Operator(listener, prefix, "eng")
            for value in values:
                gauge.publish(f"{prefix}/char/1/reading", str(value))
            samples = [m["payload"] for m in listener.wait_for(sample_topic, count=len(values))]
            [first_limits] = listener.wait_for(f"{prefix}/char/1/limits")
            assert first_limits["payload"]["version"] == 1
            # the baseline's own samples: judged by no limits
            assert [s["limits_version"] for s in samples] == [None] * 5 + [1] * 6
            assert {s["excluded"] for s in samples} == {False}

            [violation] = listener.wait_for(f"{prefix}/char/1/violation")
            outlier = violation["payload"]["sample_id"]
            assert outlier == samples[6]["sample_id"]
            exclude = {
                "violation_id": violation["payload"]["violation_id"],
                "cause": "Measurement Error",
                "exclude_sample": True,
            }
            assert eng.ack(exclude) == {"ok": True}
            listener.wait_for(
                f"{prefix}/char/1/history",
                lambda m: (
                    [s["sample_id"] for s in m["payload"]["samples"] if s["excluded"]] == [outlier]
                ),
            )

            first, last = samples[5]["sample_id"], samples[9]["sample_id"]
            ranged = {"from_sample_id": first, "to_sample_id": last}
            assert eng.recalculate(1, ranged) == {"ok": True}
            [limits] = listener.wait_for(
                f"{prefix}/char/1/limits", lambda m: m["payload"]["version"] == 2
            )
            kept = [10.2, 10.4, 9.6, 10.8]  # samples 6 to 10, the excluded outlier left out
            assert limits["payload"]["sample_count"] == len(kept)
            assert limits["payload"]["center_line"] == pytest.approx(fmean(kept))
            gauge.publish(f"{prefix}/char/1/reading", "10.1")
            [newest] = listener.wait_for(sample_topic, lambda m: m["payload"]["values"] == [10.1])
            assert newest["payload"]["limits_version"] == 2
            assert (
                eng.recalculate(1, {"from_sample_id": last, "to_sample_id": first})["ok"] is False
            )
        finally:
            plant.stop()
        # stored: a restart publishes the same history, versions and marks included
        plant.start(listener)
        try:
            with Client(broker.port) as late:
                late.subscribe(f"{prefix}/char/1/history", f"{prefix}/char/1/limits")
                [history] = late.wait_for(f"{prefix}/char/1/history")
                [retained_limits] = late.wait_for(f"{prefix}/char/1/limits")
        finally:
            plant.stop()
    restored = history["payload"]["samples"]
    assert [s["limits_version"] for s in restored] == [None] * 5 + [1] * 6 + [2]
    assert [s["sample_id"] for s in restored if s["excluded"]] == [outlier]
    assert retained_limits["payload"]["version"] == 2
