"""The acknowledgement workflow against a real Mosquitto, on SQLite and on PostgreSQL
(docs/topics.md, "Alarm workflow"): acknowledgements with cause, action and comment, several
at once and all or nothing; the retained Pareto of causes; limit versions; recalculation over
a sample-id range; excluded samples marked in ``history``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from statistics import fmean
from typing import Any

import pytest
from sqlalchemy import update

from bridge.app import Bridge
from bridge.store._tables import violations
from tests.integration.conftest import BridgeFactory, Probe, char, open_probe

pytestmark = pytest.mark.mosquitto

FIXED = {"center_line": 10.0, "ucl": 13.0, "lcl": 7.0, "rules": [1]}
_corr = iter(range(1, 1_000_000))


async def command(probe: Probe, topic: str, body: dict[str, Any], user: str = "kim") -> Any:
    """Send a command with an MQTT 5 response topic in ``user``'s reply tree; its reply."""
    prefix = topic.split("/cmd/", 1)[0]
    corr = str(next(_corr))
    reply_topic = f"{prefix}/reply/{user}/{corr}"
    await probe.request(topic, body, reply_topic, corr.encode())
    [reply] = await probe.wait_for(reply_topic)
    return reply


async def ack(probe: Probe, prefix: str, body: dict[str, Any], user: str = "kim") -> Any:
    return await command(probe, f"{prefix}/cmd/ack/{user}", body, user)


async def recalculate(probe: Probe, prefix: str, cid: int, body: dict[str, Any]) -> Any:
    return await command(probe, f"{prefix}/cmd/char/{cid}/recalculate", body, "eng")


async def raise_alarms(probe: Probe, prefix: str, cid: int, count: int) -> list[dict[str, Any]]:
    """``count`` rule-1 violations of a characteristic with FIXED limits (one per episode:
    a point just beyond the UCL, then one just inside; moving ranges small enough not to
    alarm); their payloads, in order. Publishes ``1 + 2 * count`` readings."""
    already = len(probe.matching(f"{prefix}/char/{cid}/violation"))
    await probe.publish(f"{prefix}/char/{cid}/reading", "12.9")
    for _ in range(count):
        await probe.publish(f"{prefix}/char/{cid}/reading", "13.5")
        await probe.publish(f"{prefix}/char/{cid}/reading", "12.9")
    found = await probe.wait_for(f"{prefix}/char/{cid}/violation", count=already + count)
    return [v["payload"] for v in found[already:]]


async def open_ids(probe: Probe, prefix: str, cid: int, expected: list[int]) -> None:
    """Wait until the retained ``alarms`` of ``cid`` lists exactly ``expected``."""
    await probe.wait_for(
        f"{prefix}/char/{cid}/alarms",
        lambda m: [v["violation_id"] for v in m["payload"]["violations"]] == expected,
    )


def last_json(probe: Probe, topic: str) -> Any:
    found = probe.matching(topic)
    assert found, f"nothing on {topic}"
    return found[-1].json()


async def ack_rows(app: Bridge, cid: int) -> list[tuple[Any, ...]]:
    return [
        (r.id, r.acknowledged, r.ack_user, r.ack_reason, r.ack_action, r.ack_comment)
        for r in await app.store.rows("violations", cid)
    ]


# --- several at once, all or nothing -------------------------------------------------------


async def test_several_violations_acknowledged_at_once_each_with_its_own_update(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    app = await bridge_factory.start([char(2, **FIXED)])
    v1, v2, v3 = [v["violation_id"] for v in await raise_alarms(probe, p, 2, 3)]
    await open_ids(probe, p, 2, [v1, v2, v3])

    body = {
        "violation_ids": [v2, v1],
        "cause": "Tool Change",
        "action": "Replaced Tool",
        "comment": "insert chipped, replaced at 10:40",
    }
    assert await ack(probe, p, body) == {"ok": True}
    updates = await probe.wait_for(f"{p}/char/2/ack", count=2)
    assert [u["type"] for u in updates] == ["ack_update", "ack_update"]
    assert [u["payload"]["violation_id"] for u in updates] == [v2, v1]  # in the order given
    for u in updates:
        assert u["payload"] == {
            "violation_id": u["payload"]["violation_id"],
            "characteristic_id": 2,
            "acknowledged": True,
            "user": "kim",
            "reason": "Tool Change",
            "cause": "Tool Change",
            "action": "Replaced Tool",
            "comment": "insert chipped, replaced at 10:40",
            "timestamp": updates[0]["payload"]["timestamp"],  # one moment, one transaction
        }
    await open_ids(probe, p, 2, [v3])
    assert await ack_rows(app, 2) == [
        (v1, True, "kim", "Tool Change", "Replaced Tool", "insert chipped, replaced at 10:40"),
        (v2, True, "kim", "Tool Change", "Replaced Tool", "insert chipped, replaced at 10:40"),
        (v3, False, None, None, None, None),
    ]
    [causes] = await probe.wait_for(f"{p}/char/2/causes", lambda m: m["payload"]["counts"])
    assert causes == {
        "type": "causes",
        "payload": {
            "characteristic_id": 2,
            "days": 30,
            "counts": [{"cause": "Tool Change", "count": 2}],
        },
    }
    # the old form still works, with reason as the cause's old name
    assert await ack(probe, p, {"violation_id": v3, "reason": "Other"}) == {"ok": True}
    [third] = await probe.wait_for(f"{p}/char/2/ack", lambda m: m["payload"]["violation_id"] == v3)
    assert (third["payload"]["cause"], third["payload"]["reason"]) == ("Other", "Other")
    assert (third["payload"]["action"], third["payload"]["comment"]) == (None, None)
    await probe.wait_for(
        f"{p}/char/2/causes",
        lambda m: (
            m["payload"]["counts"]
            == [{"cause": "Tool Change", "count": 2}, {"cause": "Other", "count": 1}]
        ),
    )


async def test_all_open_acknowledges_every_open_violation_of_that_characteristic_only(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    app = await bridge_factory.start([char(2, **FIXED), char(3, **FIXED)])
    ids_2 = [v["violation_id"] for v in await raise_alarms(probe, p, 2, 3)]
    ids_3 = [v["violation_id"] for v in await raise_alarms(probe, p, 3, 1)]
    assert await ack(probe, p, {"violation_id": ids_2[0], "cause": "Other"}) == {"ok": True}
    await open_ids(probe, p, 2, ids_2[1:])

    body = {"characteristic_id": 2, "all_open": True, "cause": "Raw Material Change"}
    assert await ack(probe, p, body, user="lee") == {"ok": True}
    updates = await probe.wait_for(
        f"{p}/char/2/ack", lambda m: m["payload"]["user"] == "lee", count=2
    )
    assert sorted(u["payload"]["violation_id"] for u in updates) == ids_2[1:]
    await open_ids(probe, p, 2, [])
    assert [r[1] for r in await ack_rows(app, 3)] == [False]  # the other characteristic's
    assert probe.matching(f"{p}/char/3/ack") == []
    await open_ids(probe, p, 3, ids_3)
    # most frequent first
    await probe.wait_for(
        f"{p}/char/2/causes",
        lambda m: (
            m["payload"]["counts"]
            == [{"cause": "Raw Material Change", "count": 2}, {"cause": "Other", "count": 1}]
        ),
    )
    # nothing open: refused, said plainly
    again = await ack(probe, p, body)
    assert again == {"ok": False, "error": "characteristic 2 has no open violations"}
    unknown = await ack(probe, p, {"characteristic_id": 99, "all_open": True, "cause": "Other"})
    assert unknown == {"ok": False, "error": "unknown characteristic 99"}


async def test_one_unknown_or_acknowledged_id_refuses_the_whole_command_and_changes_nothing(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    app = await bridge_factory.start([char(2, **FIXED)])
    alarms = await raise_alarms(probe, p, 2, 3)
    v1, v2, v3 = [v["violation_id"] for v in alarms]
    assert await ack(probe, p, {"violation_id": v1, "cause": "Other"}) == {"ok": True}
    await probe.wait_for(f"{p}/char/2/ack")
    rows_before = await ack_rows(app, 2)
    samples_before = [(r.id, r.excluded) for r in await app.store.rows("samples", 2)]

    unknown = await ack(
        probe,
        p,
        {"violation_ids": [v2, v3 + 1000], "cause": "Tool Change", "exclude_sample": True},
    )
    assert unknown == {
        "ok": False,
        "error": f"violation {v3 + 1000} does not exist; nothing acknowledged",
    }
    done = await ack(
        probe, p, {"violation_ids": [v2, v3, v1], "cause": "Tool Change", "exclude_sample": True}
    )
    assert done == {
        "ok": False,
        "error": f"violation {v1} is already acknowledged; nothing acknowledged",
    }
    # nothing changed: rows, samples, the open alarms, no ack_update beyond the first
    assert await ack_rows(app, 2) == rows_before
    assert [(r.id, r.excluded) for r in await app.store.rows("samples", 2)] == samples_before
    assert len(probe.matching(f"{p}/char/2/ack")) == 1
    errors = await probe.wait_for(f"{p}/bridge/errors", count=2)
    assert [e["reason"] for e in errors] == [unknown["error"], done["error"]]
    assert {e["topic"] for e in errors} == {f"{p}/cmd/ack/kim"}
    # and the same violations can still be acknowledged, all of them
    assert await ack(probe, p, {"violation_ids": [v2, v3], "cause": "Other"}) == {"ok": True}
    await open_ids(probe, p, 2, [])


async def test_require_action_and_the_configured_codes(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    await bridge_factory.start(
        [char(2, **FIXED)],
        reason_codes=["Worn Tool", "Other"],  # the old name of cause_codes
        action_codes=["Replaced Tool", "Stopped Line"],
        require_action=True,
    )
    [meta] = await probe.wait_for(f"{p}/char/2/meta")
    assert meta["payload"]["cause_codes"] == ["Worn Tool", "Other"]
    assert meta["payload"]["reason_codes"] == ["Worn Tool", "Other"]
    assert meta["payload"]["action_codes"] == ["Replaced Tool", "Stopped Line"]
    assert meta["payload"]["require_action"] is True
    [v] = [v["violation_id"] for v in await raise_alarms(probe, p, 2, 1)]

    refusals = {
        "no action": {"violation_id": v, "cause": "Worn Tool"},
        "no action, all open": {"characteristic_id": 2, "all_open": True, "cause": "Worn Tool"},
        "a default cause": {"violation_id": v, "cause": "Tool Change", "action": "Replaced Tool"},
        "unknown action": {"violation_id": v, "cause": "Worn Tool", "action": "Prayed"},
    }
    replies = {name: await ack(probe, p, body) for name, body in refusals.items()}
    required = "'action' is required (require_action is on): one of the action_codes"
    assert replies == {
        "no action": {"ok": False, "error": required},
        "no action, all open": {"ok": False, "error": required},
        "a default cause": {
            "ok": False,
            "error": "cause 'Tool Change' is not one of the configured cause_codes",
        },
        "unknown action": {
            "ok": False,
            "error": "action 'Prayed' is not one of the configured action_codes",
        },
    }
    await open_ids(probe, p, 2, [v])
    body = {"violation_ids": [v], "cause": "Worn Tool", "action": "Stopped Line"}
    assert await ack(probe, p, body) == {"ok": True}
    [update] = await probe.wait_for(f"{p}/char/2/ack")
    assert (update["payload"]["cause"], update["payload"]["action"]) == (
        "Worn Tool",
        "Stopped Line",
    )


async def test_a_comment_of_500_characters_is_kept_and_501_refused(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    app = await bridge_factory.start([char(2, **FIXED)])
    v1, v2 = [v["violation_id"] for v in await raise_alarms(probe, p, 2, 2)]
    long = "é" * 501  # characters, not bytes
    refused = await ack(probe, p, {"violation_id": v1, "cause": "Other", "comment": long})
    assert refused == {"ok": False, "error": "comment is too long: 501 characters, limit is 500"}
    [error] = await probe.wait_for(f"{p}/bridge/errors")
    assert error["reason"] == refused["error"]
    assert [r[1] for r in await ack_rows(app, 2)] == [False, False]

    body = {"violation_ids": [v1, v2], "cause": "Other", "comment": long[:500]}
    assert await ack(probe, p, body) == {"ok": True}
    updates = await probe.wait_for(f"{p}/char/2/ack", count=2)
    assert {u["payload"]["comment"] for u in updates} == {long[:500]}
    assert {r[5] for r in await ack_rows(app, 2)} == {long[:500]}


async def test_the_causes_are_published_at_start_over_the_last_pareto_days(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    chars = [char(2, **FIXED), char(3, **FIXED)]
    app = await bridge_factory.start(chars, pareto_days=7)
    v1, v2, v3 = [v["violation_id"] for v in await raise_alarms(probe, p, 2, 3)]
    assert await ack(probe, p, {"violation_id": v1, "cause": "Other"}) == {"ok": True}
    assert await ack(probe, p, {"violation_ids": [v2, v3], "cause": "Setup Adjustment"}) == {
        "ok": True
    }
    await probe.wait_for(f"{p}/char/2/causes", lambda m: m["payload"]["days"] == 7, count=2)
    await bridge_factory.stop(app)
    # the acknowledgement of v2 was 8 days ago: outside the window
    async with app.store.engine.begin() as conn:
        await conn.execute(
            update(violations)
            .where(violations.c.id == v2)
            .values(ack_at=datetime.now(UTC) - timedelta(days=8))
        )
    # forget what the broker retained, so what follows is the new start's own
    for cid in (2, 3):
        await probe.publish(f"{p}/char/{cid}/causes", b"", retain=True)
    await bridge_factory.start(chars, pareto_days=7)
    async with open_probe(bridge_factory.broker, f"{p}/char/+/causes") as late:
        two = await late.wait_for(f"{p}/char/2/causes", lambda m: m != b"")
        three = await late.wait_for(f"{p}/char/3/causes", lambda m: m != b"")
    assert two[0]["payload"] == {
        "characteristic_id": 2,
        "days": 7,
        "counts": [{"cause": "Other", "count": 1}, {"cause": "Setup Adjustment", "count": 1}],
    }
    assert three[0]["payload"] == {"characteristic_id": 3, "days": 7, "counts": []}


# --- limit versions, recalculation over a range, excluded samples -------------------------


async def samples_of(probe: Probe, prefix: str, cid: int, count: int) -> list[dict[str, Any]]:
    """The first ``count`` samples of ``cid``, each once (a start republishes the last)."""
    topic = f"{prefix}/char/{cid}/sample"

    def distinct() -> dict[int, dict[str, Any]]:
        return {
            m.json()["payload"]["sample_id"]: m.json()["payload"] for m in probe.matching(topic)
        }

    await probe.wait_until(lambda: len(distinct()) >= count)
    return list(distinct().values())[:count]


async def test_limits_versions_count_up_and_each_sample_names_the_one_that_judged_it(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    chars = [char(1, baseline=5, rules=[1])]
    app = await bridge_factory.start(chars)
    for value in (10, 12, 8, 11, 9, 10.5):
        await probe.publish(f"{p}/char/1/reading", str(value))
    samples = await samples_of(probe, p, 1, 6)
    [limits] = await probe.wait_for(f"{p}/char/1/limits")
    assert limits["payload"]["version"] == 1
    assert [s["limits_version"] for s in samples] == [None] * 5 + [1]  # baseline: null

    assert await recalculate(probe, p, 1, {"last": 5}) == {"ok": True}
    second = await probe.wait_for(f"{p}/char/1/limits", count=2)
    assert second[1]["payload"]["version"] == 2
    await probe.publish(f"{p}/char/1/reading", "9.5")
    assert (await samples_of(probe, p, 1, 7))[6]["limits_version"] == 2
    # stored: limits and samples
    rows = await app.store.rows("control_limits", 1)
    assert [(r.version, r.payload["version"]) for r in rows] == [(1, 1), (2, 2)]
    stored = [r.limits_version for r in await app.store.rows("samples", 1)]
    assert stored == [None] * 5 + [1, 2]

    # a restart publishes the version in force and goes on counting from it
    await bridge_factory.stop(app)
    app = await bridge_factory.start(chars)
    assert await app.store.count("control_limits", 1) == 2  # nothing new at start
    async with open_probe(bridge_factory.broker, f"{p}/char/1/#") as late:
        [retained] = await late.wait_for(f"{p}/char/1/limits")
        [history] = await late.wait_for(f"{p}/char/1/history")
    assert retained["payload"]["version"] == 2
    restored = [s["limits_version"] for s in history["payload"]["samples"]]
    assert restored == [None] * 5 + [1, 2]
    assert await recalculate(probe, p, 1, {}) == {"ok": True}
    await probe.wait_for(f"{p}/char/1/limits", lambda m: m["payload"]["version"] == 3)


async def test_fixed_limits_changed_in_the_config_make_a_new_version(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    app = await bridge_factory.start([char(2, **FIXED)])
    await probe.publish(f"{p}/char/2/reading", "10")
    [sample] = await samples_of(probe, p, 2, 1)
    assert sample["limits_version"] == 1
    await bridge_factory.stop(app)

    app = await bridge_factory.start([char(2, **FIXED)])  # the same limits: the same version
    await probe.publish(f"{p}/char/2/reading", "10")
    assert (await samples_of(probe, p, 2, 2))[1]["limits_version"] == 1
    await bridge_factory.stop(app)

    app = await bridge_factory.start([char(2, **{**FIXED, "ucl": 14.0, "lcl": 6.0})])
    await probe.wait_for(f"{p}/char/2/limits", lambda m: m["payload"]["version"] == 2)
    await probe.publish(f"{p}/char/2/reading", "10")
    assert (await samples_of(probe, p, 2, 3))[2]["limits_version"] == 2
    versions = {r.version for r in await app.store.rows("control_limits", 2)}
    assert versions == {1, 2}
    limits = [m.json()["payload"] for m in probe.matching(f"{p}/char/2/limits")]
    assert {(lim["ucl"], lim["version"]) for lim in limits} == {(13.0, 1), (14.0, 2)}


async def test_recalculate_over_a_sample_id_range_leaves_out_excluded_samples(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    app = await bridge_factory.start([char(1, baseline=5, rules=[1])])
    values = [10, 12, 8, 11, 9, 10.2, 30, 10.4, 9.6, 10.8, 9.9]
    for value in values:
        await probe.publish(f"{p}/char/1/reading", str(value))
    samples = await samples_of(probe, p, 1, len(values))
    [violation] = await probe.wait_for(f"{p}/char/1/violation")
    outlier = violation["payload"]["sample_id"]
    assert outlier == samples[6]["sample_id"]
    body = {"violation_id": violation["payload"]["violation_id"], "cause": "Measurement Error"}
    assert await ack(probe, p, {**body, "exclude_sample": True}) == {"ok": True}

    first, last = samples[5]["sample_id"], samples[9]["sample_id"]
    reply = await recalculate(probe, p, 1, {"from_sample_id": first, "to_sample_id": last})
    assert reply == {"ok": True}
    [limits] = await probe.wait_for(f"{p}/char/1/limits", lambda m: m["payload"]["version"] == 2)
    kept = [10.2, 10.4, 9.6, 10.8]  # samples 6..10 without the excluded outlier
    assert limits["payload"]["sample_count"] == len(kept)
    assert limits["payload"]["center_line"] == pytest.approx(fmean(kept))
    assert limits["payload"]["method"] == "moving_range"

    # refusals: a backwards range, a range with too few samples; nothing stored
    backwards = await recalculate(probe, p, 1, {"from_sample_id": last, "to_sample_id": first})
    assert backwards["ok"] is False
    assert "is after 'to_sample_id'" in backwards["error"]
    lonely = await recalculate(probe, p, 1, {"from_sample_id": outlier, "to_sample_id": outlier})
    assert lonely == {
        "ok": False,
        "error": "characteristic 1 has 0 usable subgroup(s); at least 2 are needed",
    }
    assert await app.store.count("control_limits", 1) == 2


async def test_excluded_samples_are_marked_in_history_live_and_after_a_restart(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    chars = [char(2, **FIXED)]
    app = await bridge_factory.start(chars)
    alarms = await raise_alarms(probe, p, 2, 2)
    excluded_id = alarms[0]["sample_id"]
    await probe.wait_for(
        f"{p}/char/2/history", lambda m: len(m["payload"]["samples"]) == 5, within=10
    )
    body = {"violation_ids": [alarms[0]["violation_id"]], "cause": "Measurement Error"}
    assert await ack(probe, p, {**body, "exclude_sample": True}) == {"ok": True}
    assert await ack(probe, p, {"violation_id": alarms[1]["violation_id"], "cause": "Other"}) == {
        "ok": True
    }

    def marked(message: Any) -> bool:
        return {s["sample_id"] for s in message["payload"]["samples"] if s["excluded"]} == {
            excluded_id
        }

    [history] = await probe.wait_for(f"{p}/char/2/history", marked)
    assert len(history["payload"]["samples"]) == 5
    assert [r.id for r in await app.store.rows("samples", 2) if r.excluded] == [excluded_id]
    await bridge_factory.stop(app)
    await bridge_factory.start(chars)
    async with open_probe(bridge_factory.broker, f"{p}/char/2/history") as late:
        [restored] = await late.wait_for(f"{p}/char/2/history")
    assert marked(restored)
    assert json.dumps(restored).count('"excluded": true') == 1
