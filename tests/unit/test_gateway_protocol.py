"""The gateway's pure parts: client frames in, its own replies out, the per-characteristic
state that replay and the seam with live messages rely on (docs/gateway.md)."""

from __future__ import annotations

import json

import pytest

from bridge.gateway._protocol import (
    MAX_IDS,
    BadRequest,
    Ping,
    Subscribe,
    Unsubscribe,
    parse,
    subscribed_message,
    unknown_ids_message,
)
from bridge.gateway._state import Characteristics
from bridge.gateway._topics import parse_topic


def test_requests() -> None:
    assert parse('{"type": "ping"}') == Ping()
    assert parse(b'{"type": "subscribe", "characteristic_ids": [3, 1, 3]}') == Subscribe((3, 1))
    assert parse(
        '{"type": "subscribe", "characteristic_ids": [1], "replay": 5,'
        ' "severities": ["CRITICAL"], "max_rate": 2}'
    ) == Subscribe((1,), 5, frozenset({"CRITICAL"}), 2.0)
    assert parse('{"type": "unsubscribe", "characteristic_ids": []}') == Unsubscribe(())


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "nul",
        "1",
        "{}",
        '{"type": null}',
        '{"type": "subscribe", "characteristic_ids": [false]}',
        '{"type": "subscribe", "characteristic_ids": [1e3]}',
        '{"type": "subscribe", "characteristic_ids": {"1": 1}}',
        '{"type": "subscribe", "characteristic_ids": [1], "replay": true}',
        '{"type": "subscribe", "characteristic_ids": [1], "replay": 1.0}',
        '{"type": "subscribe", "characteristic_ids": [1], "severities": "CRITICAL"}',
        '{"type": "subscribe", "characteristic_ids": [1], "max_rate": true}',
        '{"type": "subscribe", "characteristic_ids": [1], "max_rate": 1e9}',
        '{"type": "subscribe", "characteristic_ids": [1], "max_rate": NaN}',
        '{"type": "subscribe", "characteristic_ids": [1], "max_rate": -1}',
        "[" * 100_000,
    ],
)
def test_bad_frames_raise_bad_request_with_a_message(frame: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse(frame)
    assert info.value.message


def test_the_id_count_is_bounded() -> None:
    ok = json.dumps({"type": "subscribe", "characteristic_ids": list(range(MAX_IDS))})
    assert len(parse(ok).characteristic_ids) == MAX_IDS  # type: ignore[union-attr]
    too_many = json.dumps({"type": "subscribe", "characteristic_ids": list(range(MAX_IDS + 1))})
    with pytest.raises(BadRequest, match=f"at most {MAX_IDS} characteristic_ids"):
        parse(too_many)


def test_replies() -> None:
    assert json.loads(subscribed_message({3, 1})) == {
        "type": "subscribed",
        "payload": {"characteristic_ids": [1, 3]},
    }
    error = json.loads(unknown_ids_message(list(range(100, 130))))
    assert error["type"] == "error"
    assert error["payload"]["characteristic_ids"] == list(range(100, 120))
    assert error["payload"]["message"].endswith(" and 10 more: not subscribed")


def test_topics_parse_ascii_ids_only() -> None:
    assert parse_topic("openspc", "openspc/char/12/sample") == (12, "sample")
    assert parse_topic("a/b", "a/b/char/1/history") == (1, "history")
    for topic in (
        "openspc/char/٢/sample",
        "openspc/char/02/sample",
        "openspc/char/1/reading",
        "openspc/char/1/sample/x",
        "other/char/1/sample",
    ):
        assert parse_topic("openspc", topic) is None


def _sample(sid: int) -> dict[str, object]:
    return {"sample_id": sid, "characteristic_id": 1, "value": float(sid)}


def _msg(sid: int) -> bytes:
    return json.dumps({"type": "sample", "payload": _sample(sid)}, separators=(",", ":")).encode()


def test_live_samples_are_taken_once_in_id_order() -> None:
    chars = Characteristics(replay_max=3)
    assert chars.on_sample(1, 5, _msg(5))
    assert not chars.on_sample(1, 5, _msg(5))  # the latest republished by a restarted bridge
    assert not chars.on_sample(1, 5, _msg(5), retained=True)  # sent again at a reconnect
    assert not chars.on_sample(1, 4, _msg(4), retained=True)
    assert chars.on_sample(1, 6, _msg(6))
    assert chars.replay(1, 10) == [_msg(5), _msg(6)]


def test_a_live_sample_with_a_lower_id_starts_afresh() -> None:
    chars = Characteristics(replay_max=3)
    for sid in (100, 101):
        assert chars.on_sample(1, sid, _msg(sid))
    assert chars.on_sample(1, 1, _msg(1))  # the bridge's new database: ids from 1 again
    assert chars.on_sample(1, 2, _msg(2))
    assert chars.replay(1, 10) == [_msg(1), _msg(2)]


def test_history_fills_the_ring_and_returns_only_what_was_missed() -> None:
    chars = Characteristics(replay_max=4)
    # first sight: the history is the past, nothing is sent on
    assert chars.on_history(1, [_sample(i) for i in (1, 2, 3)]) == []
    assert chars.on_sample(1, 4, _msg(4))
    # after a reconnect: the history reaches further than the gateway saw live
    assert chars.on_history(1, [_sample(i) for i in (2, 3, 4, 5, 6)]) == [_msg(5), _msg(6)]
    assert chars.replay(1, 10) == [_msg(3), _msg(4), _msg(5), _msg(6)]  # bounded by replay_max
    assert not chars.on_sample(1, 6, _msg(6))


def test_a_live_sample_newer_than_a_late_history_is_kept() -> None:
    chars = Characteristics(replay_max=10)
    assert chars.on_sample(1, 9, _msg(9))
    assert chars.on_history(1, [_sample(i) for i in (7, 8)]) == []
    assert chars.replay(1, 10) == [_msg(7), _msg(8), _msg(9)]


def test_replay_puts_the_limits_first_and_the_same_limits_are_not_new() -> None:
    chars = Characteristics(replay_max=10)
    limits = b'{"type":"control_limits","payload":{"characteristic_id":1}}'
    assert chars.on_limits(1, limits)
    assert not chars.on_limits(1, limits)
    chars.on_sample(1, 1, _msg(1))
    chars.on_sample(1, 2, _msg(2))
    assert chars.replay(1, 1) == [limits, _msg(2)]
    assert chars.replay(1, 0) == [limits]
    assert chars.replay(2, 5) == []


def test_known_means_announced_by_a_retained_meta() -> None:
    chars = Characteristics(replay_max=1)
    assert not chars.known(1)
    chars.on_sample(1, 1, _msg(1))
    assert not chars.known(1)
    chars.on_meta(1, b'{"type":"meta","payload":{}}')
    assert chars.known(1)
    chars.on_meta(1, b"")  # the retained meta cleared
    assert not chars.known(1)
