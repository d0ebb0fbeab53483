"""Retained history within a budget, compact histories (bridge._retained), with a recording
publisher and a controllable clock (docs/bridge.md, "history")."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from bridge._retained import CHUNK, LiveState
from bridge.domain import SampleRecorded
from bridge.messages import dumps, envelope, history_payload, sample_payload
from engine import SampleProcessed

T = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


@dataclass
class Recorder:
    sent: list[tuple[str, bytes, bool, bool]] = field(default_factory=list)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        coalesce: bool = False,
    ) -> None:
        self.sent.append((topic, payload, retain, coalesce))

    def histories(self) -> list[tuple[int, list[float]]]:
        """(characteristic, values) of each history sent, in order."""
        out = []
        for topic, payload, _, _ in self.sent:
            if topic.endswith("/history"):
                data = json.loads(payload)["payload"]
                out.append((data["characteristic_id"], [s["value"] for s in data["samples"]]))
        return out


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def sample(seq: int, value: float, cid: int = 1) -> SampleRecorded:
    s = SampleProcessed(cid, seq, T, value, (value,), None, None, None, (), ())
    payload = sample_payload(1000 * cid + seq, s)
    return SampleRecorded(1000 * cid + seq, s, None, payload, dumps(payload))


def make(
    ids: list[int], *, size: int = 3, budget: float = 1e9, backlog: int | None = None
) -> tuple[LiveState, Recorder, Clock]:
    out, clock = Recorder(), Clock()
    live = LiveState(
        out,
        "p",
        history_size=size,
        characteristic_ids=ids,
        monotonic=clock,
        budget=budget,
        backlog=None if backlog is None else (lambda: backlog),
    )
    return live, out, clock


def test_a_history_goes_out_after_its_batch_then_at_most_once_a_second() -> None:
    live, out, clock = make([1], size=2)
    for seq, value in enumerate((1.0, 2.0, 3.0), start=1):
        live.on_sample(sample(seq, value))
    live.pump()  # after the batch: the latest, once
    live.pump()
    assert out.histories() == [(1, [2.0, 3.0])]
    live.on_sample(sample(4, 4.0))
    clock.now += 0.9
    live.pump()
    assert out.histories() == [(1, [2.0, 3.0])]  # not within the second
    clock.now += 0.1
    live.pump()
    assert out.histories() == [(1, [2.0, 3.0]), (1, [3.0, 4.0])]
    clock.now += 5
    live.pump()  # nothing new: nothing sent
    assert len(out.histories()) == 2
    assert all(retain and coalesce for t, _, retain, coalesce in out.sent)


def test_the_budget_spreads_histories_over_time_longest_waiting_first() -> None:
    ids = list(range(11, 21))  # two digits each: every history message has the same size
    live, out, clock = make(ids, size=1)
    for cid in ids:
        live.on_sample(sample(1, 1.0, cid))
    one = len(live.history_message(11))
    live.budget = live._tokens = 2.5 * one  # two and a half histories a second
    live.pump()
    assert [cid for cid, _ in out.histories()] == [11, 12, 13]  # 2.5 - 3 = -0.5 left
    live.on_sample(sample(2, 0.5, 11))  # 11 changes again: it waits behind 14..20
    clock.now += 1.0
    live.pump()
    assert [cid for cid, _ in out.histories()][3:] == [14, 15]  # -0.5 + 2.5 = 2
    clock.now += 10.0  # the bucket holds one second at most: no burst after a pause
    live.pump()
    assert [cid for cid, _ in out.histories()][5:] == [16, 17, 18]
    clock.now += 1.0
    live.pump()
    clock.now += 1.0
    live.pump()
    assert [cid for cid, _ in out.histories()][8:] == [19, 20, 11]
    assert out.histories()[-1] == (11, [0.5])


def test_bytes_a_second_stay_within_the_budget_over_a_long_run() -> None:
    ids = list(range(1, 201))
    budget = 20_000.0
    live, out, clock = make(ids, size=50, budget=budget)
    sent_at: list[tuple[float, int]] = []
    for tick in range(600):  # 60 s: every characteristic gets a sample each 0.1 s
        for cid in ids[tick % 10 :: 10]:
            live.on_sample(sample(tick, 10.0, cid))
        before = len(out.sent)
        live.pump()
        sent_at += [(clock.now, len(p)) for _, p, _, _ in out.sent[before:]]
        clock.now += 0.1
    total = sum(n for _, n in sent_at)
    seconds = clock.now - 100.0
    # one second's burst plus the rate, overshooting by at most one message
    assert total <= budget * (seconds + 1) + max(n for _, n in sent_at)
    assert total >= budget * (seconds - 1)  # and the budget is used
    assert all(topic.endswith("/history") for topic, _, _, _ in out.sent)
    times: dict[int, list[float]] = {}
    for (at, _), (cid, _) in zip(sent_at, out.histories(), strict=True):
        times.setdefault(cid, []).append(at)
    for stamps in times.values():  # each characteristic at most once a second
        assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(stamps))
    assert len(times) == len(ids)  # nobody starves


def test_no_history_while_the_broker_has_a_seconds_budget_unconfirmed() -> None:
    live, out, _ = make([1], budget=10_000, backlog=20_000)
    live.on_sample(sample(1, 1.0))
    live.pump()
    assert out.histories() == []
    live.backlog = lambda: 5_000
    live.pump()
    assert out.histories() == [(1, [1.0])]


def test_a_history_message_is_the_samples_json_joined_whatever_the_chunking() -> None:
    size = 2 * CHUNK + 5
    live, _out, _ = make([7], size=size)
    events = [sample(seq, 10.0 + seq / 1000, 7) for seq in range(1, 3 * CHUNK + 4)]
    payloads = []
    for count, event in enumerate(events, start=1):
        live.on_sample(event)
        payloads.append(event.payload)
        want = dumps(envelope("history", history_payload(7, payloads[-size:])))
        assert live.history_message(7) == want, count
        assert len(live.history[7]) == min(count, size)
        assert live.history[7][-1] == event.payload
    ring = live._rings[7]
    assert ring.count < size + CHUNK  # whole old chunks are dropped
    assert sum(map(len, ring.packed)) < sum(map(len, ring.samples(size))) / 2  # compact


def test_restore_then_a_stop_flushes_the_changed_histories() -> None:
    live, out, _clock = make([1, 2], size=3)
    stored = [sample_payload(s, sample(s, float(s)).sample) for s in (1, 2, 3, 4)]
    live.restore({1: stored}, [])
    assert [s["sample_id"] for s in live.history[1]] == [2, 3, 4]
    assert list(live.history[2]) == []
    assert sorted(live.history) == [1, 2]
    live.on_sample(sample(5, 5.0, 1))
    live.pump()
    live.on_sample(sample(6, 6.0, 1))
    live.flush(force=True)  # a clean stop: regardless of the second
    assert out.histories() == [(1, [3.0, 4.0, 5.0]), (1, [4.0, 5.0, 6.0])]


def test_alarms_are_published_as_coalescible_state() -> None:
    live, out, _ = make([1])
    live.publish_alarms(1)
    [(topic, payload, retain, coalesce)] = out.sent
    assert (topic, retain, coalesce) == ("p/char/1/alarms", True, True)
    assert json.loads(payload)["payload"]["violations"] == []


def test_no_history_once_the_outbound_is_at_its_bound() -> None:
    live, out, _ = make([1, 2, 3])
    for cid in (1, 2, 3):
        live.on_sample(sample(1, 1.0, cid))
    live.full = lambda: len(out.sent) >= 2  # the adapter's outbound_max, as it fills
    live.pump()
    assert [cid for cid, _ in out.histories()] == [1, 2]
    live.full = lambda: False
    live.pump()
    assert [cid for cid, _ in out.histories()] == [1, 2, 3]


@given(size=st.integers(1, 3 * CHUNK), count=st.integers(0, 5 * CHUNK))
def test_any_size_and_count_give_the_last_samples_exactly(size: int, count: int) -> None:
    live, _, _ = make([3], size=size)
    events = [sample(seq, seq / 8, 3) for seq in range(1, count + 1)]
    for event in events:
        live.on_sample(event)
    want = [e.payload for e in events][-size:] if events else []
    assert live.history_message(3) == dumps(envelope("history", history_payload(3, want)))
    assert list(live.history[3]) == want


def test_a_history_sample_can_be_rewritten_in_place() -> None:
    live, out, _ = make([1], size=CHUNK + 3)
    for seq in range(1, CHUNK + 6):  # some compressed, some open
        live.on_sample(sample(seq, float(seq)))
    target = 1000 + 3 + 2  # sample_id of seq 5, inside a compressed chunk

    def exclude(p: dict[str, object]) -> dict[str, object] | None:
        return {**p, "excluded": True} if p["sample_id"] == target else None

    assert live.update_samples(1, exclude) == 1
    live.pump()
    [history] = [json.loads(p)["payload"] for t, p, _, _ in out.sent if t.endswith("history")]
    flags = {s["sample_id"]: s.get("excluded") for s in history["samples"]}
    assert flags[target] is True
    assert sum(1 for v in flags.values() if v) == 1
    assert len(history["samples"]) == CHUNK + 3
