"""The acknowledgement workflow's glue without I/O (bridge/_ack_workflow.py): limit versions,
the Pareto's order, the causes message, excluded samples marked in the retained history."""

from __future__ import annotations

import random
from datetime import timedelta

from bridge._ack_workflow import (
    CausesCounted,
    LimitVersions,
    SamplesExcluded,
    WorkflowPublisher,
    checked_request,
    number_limits,
    ranked_causes,
)
from bridge.bus import MessageBus
from bridge.domain import AcknowledgeViolation
from bridge.handlers import LiveState
from engine import Method
from engine.alarms import AckPolicy, AllOpen, CauseCount, ViolationIds, cause_pareto
from tests.unit.test_bus_subscribers import Clock, RecordingPublisher, T, sample


def test_limits_versions_count_up_per_characteristic() -> None:
    versions = LimitVersions({1: 4})
    assert (versions.current(1), versions.current(2)) == (4, None)
    assert versions.announced(2, Method.MOVING_RANGE) == 1  # a baseline completes
    assert versions.announced(1, Method.R_BAR_D2) == 5
    assert versions.new(1) == 6  # a recalculation: taken at once
    assert versions.current(1) == 6


def test_the_config_s_fixed_limits_keep_the_version_start_up_gave_them() -> None:
    versions = LimitVersions({3: 2})
    assert versions.announced(3, Method.FIXED) == 2
    assert versions.announced(3, Method.FIXED) == 2
    assert versions.announced(4, Method.FIXED) == 1  # none stored: the first


def test_a_sample_carries_the_version_that_judged_it_or_none() -> None:
    versions = LimitVersions({1: 2})
    assert versions.judged(1, True) == 2
    assert versions.judged(1, False) == 2
    assert versions.judged(1, None) is None  # a baseline sample: not judged
    assert versions.judged(9, True) is None


def test_number_limits_gives_each_new_row_the_next_version() -> None:
    versions = LimitVersions({1: 3})
    rows = [
        {"characteristic_id": 1, "payload": {"ucl": 1.0}},
        {"characteristic_id": 2, "payload": {"ucl": 2.0}},
    ]
    number_limits(rows, versions)
    assert [(r["version"], r["payload"]["version"]) for r in rows] == [(4, 4), (1, 1)]
    assert (versions.current(1), versions.current(2)) == (4, 1)


def test_grouped_counts_rank_as_the_core_ranks_records() -> None:
    rng = random.Random(13)
    causes = ["Tool Change", "Other", "Operator Error", "False Alarm", "Setup Adjustment"]
    for _ in range(200):
        records = [(T - timedelta(hours=rng.randrange(24)), rng.choice(causes)) for _ in range(30)]
        grouped: dict[str, int] = {}
        for _at, cause in records:
            grouped[cause] = grouped.get(cause, 0) + 1
        shuffled = list(grouped.items())
        rng.shuffle(shuffled)
        assert ranked_causes(shuffled) == cause_pareto(records, T, 30)


def test_the_causes_message_is_retained_and_most_frequent_first() -> None:
    out = RecordingPublisher()
    live = LiveState(out, "p", history_size=5, characteristic_ids=[3], monotonic=Clock())
    workflow = WorkflowPublisher(out, "p", live)
    counts = ranked_causes([("Other", 2), ("Tool Change", 7), ("False Alarm", 2)])
    workflow.on_causes(CausesCounted(3, 30, counts))
    assert out.sent == [
        (
            "p/char/3/causes",
            {
                "type": "causes",
                "payload": {
                    "characteristic_id": 3,
                    "days": 30,
                    "counts": [
                        {"cause": "Tool Change", "count": 7},
                        {"cause": "False Alarm", "count": 2},
                        {"cause": "Other", "count": 2},
                    ],
                },
            },
            True,
        )
    ]
    assert counts[0] == CauseCount("Tool Change", 7)


async def test_excluded_samples_are_marked_in_the_next_history() -> None:
    out = RecordingPublisher()
    clock = Clock()
    live = LiveState(out, "p", history_size=5, characteristic_ids=[1], monotonic=clock)
    bus = MessageBus()
    workflow = WorkflowPublisher(out, "p", live)
    bus.subscribe(SamplesExcluded, workflow.on_excluded)
    for seq in (1, 2, 3):
        live.on_sample(sample(seq, 10.0 + seq))
    live.pump()
    [first] = out.on("history")
    assert [s["excluded"] for s in first["payload"]["samples"]] == [False, False, False]
    clock.now += 1.0
    await bus.publish([SamplesExcluded(1, frozenset({102, 999}))])  # 999: not in history
    live.pump()
    second = out.on("history")[-1]
    assert [(s["sample_id"], s["excluded"]) for s in second["payload"]["samples"]] == [
        (101, False),
        (102, True),
        (103, False),
    ]
    sent = len(out.on("history"))
    clock.now += 1.0
    await bus.publish([SamplesExcluded(1, frozenset({102}))])  # already marked: no change
    live.pump()
    assert len(out.on("history")) == sent


def test_the_request_is_checked_against_the_configured_codes() -> None:
    policy = AckPolicy(("Worn Tool",), ("Replaced Tool",), require_action=False)
    body = {"violation_ids": [3, 4, 3], "reason": "Worn Tool", "comment": ""}
    checked = checked_request(AcknowledgeViolation("kim", body), policy)
    assert (checked.target, checked.cause, checked.action, checked.comment) == (
        ViolationIds((3, 4)),
        "Worn Tool",
        None,
        None,
    )
    body = {"characteristic_id": 2, "all_open": True, "cause": "Worn Tool"}
    assert checked_request(AcknowledgeViolation("kim", body), policy).target == AllOpen(2)
