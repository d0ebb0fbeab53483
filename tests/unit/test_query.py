"""The query command's pure parts (bridge/_query.py): the request and the bounded page."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge._mqtt import Inbound
from bridge._query import (
    MAX_REPLY_BYTES,
    QueryService,
    SampleQuery,
    parse_query,
    result_message,
)
from bridge.errors import InvalidCommand
from bridge.store import SampleRow

TOPIC = "openspc/cmd/query/kim"


def test_a_request_with_only_the_characteristic_asks_for_the_newest_500() -> None:
    assert parse_query(TOPIC, "kim", b'{"characteristic_id": 3}') == SampleQuery("kim", 3, 500)


def test_a_request_with_every_field() -> None:
    body = {
        "characteristic_id": 3,
        "before_sample_id": 1234,
        "limit": 1000,
        "from": "2026-12-07T10:00:00Z",
        "to": "2026-12-07T12:00:00+01:00",
    }
    found = parse_query(TOPIC, "kim", json.dumps(body).encode())
    assert found == SampleQuery(
        "kim",
        3,
        1000,
        1234,
        datetime(2026, 12, 7, 10, tzinfo=UTC),
        datetime(2026, 12, 7, 11, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "payload",
    [b"", b"[]", b"{", b'{"characteristic_id": true}', b'{"characteristic_id": 1, "limit": 2.5}'],
)
def test_a_malformed_request_is_invalid(payload: bytes) -> None:
    with pytest.raises(InvalidCommand):
        parse_query(TOPIC, "kim", payload)


def _sample(i: int, context_chars: int = 0) -> dict[str, object]:
    return {"sample_id": i, "value": 1.0, "context": {"note": "x" * context_chars}}


def test_a_page_lists_its_samples_and_where_the_older_ones_begin() -> None:
    message = json.loads(result_message(3, [_sample(7), _sample(8)], more=True))
    assert message == {
        "type": "query_result",
        "payload": {
            "characteristic_id": 3,
            "samples": [_sample(7), _sample(8)],
            "next_before_sample_id": 7,
        },
    }
    last = json.loads(result_message(3, [_sample(7)], more=False))
    assert last["payload"]["next_before_sample_id"] is None


def test_a_page_too_big_for_the_broker_keeps_its_newest_samples_and_says_so() -> None:
    samples = [_sample(i, 150_000) for i in range(1, 11)]  # about 1.5 MB
    raw = result_message(3, samples, more=False)
    assert len(raw) <= MAX_REPLY_BYTES
    payload = json.loads(raw)["payload"]
    ids = [s["sample_id"] for s in payload["samples"]]
    assert ids == list(range(11 - len(ids), 11))  # the newest, contiguous
    assert 0 < len(ids) < 10
    assert payload["next_before_sample_id"] == ids[0]  # the rest comes in the next page


def test_one_sample_bigger_than_a_page_still_goes_alone() -> None:
    payload = json.loads(result_message(3, [_sample(1), _sample(2, 600_000)], more=False))[
        "payload"
    ]
    assert [s["sample_id"] for s in payload["samples"]] == [2]
    assert payload["next_before_sample_id"] == 2


# --- the service, with fakes ------------------------------------------------------------------


class _Counts:
    commands = 0
    commands_rejected = 0


class _Replies:
    def __init__(self) -> None:
        self.sent: list[tuple[str | None, bytes]] = []

    def reply(self, message: Inbound, payload: bytes) -> None:
        self.sent.append((message.response_topic, payload))


class _Store:
    async def sample_page(self, *args: object, **kw: object) -> tuple[list[SampleRow], bool]:
        ts = datetime(2026, 12, 7, 10, tzinfo=UTC)
        none = (None,) * 7  # the chart family's columns: a Shewhart chart's are NULL
        row = SampleRow(
            5,
            3,
            ts,
            1.0,
            [1.0],
            None,
            None,
            None,
            [],
            [],
            *none,
            {"lot": "L4"},
            True,
            2,
            None,
            None,
        )
        return [row], False


def _service(**kw: Any) -> tuple[QueryService, _Replies, list[str], _Counts]:
    replies, reasons, counts = _Replies(), [], _Counts()
    service = QueryService(
        prefix="openspc",
        store=_Store(),
        mqtt=replies,
        characteristics=[3],
        report=lambda topic, payload, reason: reasons.append(reason),
        metrics=counts,
        **kw,
    )
    return service, replies, reasons, counts


def _ask(payload: bytes, reply: str | None = "openspc/reply/kim/q") -> Inbound:
    return Inbound(TOPIC, payload, 1, 1, 1, datetime.now(UTC), 0.0, reply, b"c")


async def test_a_query_beyond_the_waiting_bound_is_refused_as_busy_at_once() -> None:
    service, replies, reasons, counts = _service(max_waiting=1)
    assert service.offer(_ask(b'{"characteristic_id": 3}')) is True
    assert service.offer(_ask(b'{"characteristic_id": 3}')) is True
    assert reasons == ["busy: too many queries waiting; ask again in a moment"]
    assert json.loads(replies.sent[0][1]) == {"ok": False, "error": reasons[0]}
    assert (counts.commands, counts.commands_rejected) == (2, 1)


async def test_a_long_request_is_refused_before_it_waits() -> None:
    service, replies, reasons, _ = _service()
    service.offer(_ask(b" " * 5000))
    assert reasons == ["query too long: 5000 bytes, limit is 4096"]
    assert len(replies.sent) == 1


async def test_a_refusal_goes_only_to_the_senders_own_tree() -> None:
    service, replies, reasons, _ = _service(max_waiting=1)
    service.offer(_ask(b"{}"))  # waits
    service.offer(_ask(b"{}", reply="openspc/reply/ana/q"))  # busy, and not kim's tree
    assert replies.sent == []
    assert len(reasons) == 1


async def test_the_answer_goes_to_the_response_topic() -> None:
    service, replies, _, _ = _service()
    await service.answer(_ask(b'{"characteristic_id": 3}'))
    [(topic, raw)] = replies.sent
    assert topic == "openspc/reply/kim/q"
    [sample] = json.loads(raw)["payload"]["samples"]
    assert (sample["sample_id"], sample["context"], sample["excluded"]) == (5, {"lot": "L4"}, True)


def test_other_topics_are_not_taken() -> None:
    service, _, _, counts = _service()
    other = Inbound("openspc/cmd/ack/kim", b"{}", 1, 1, 1, datetime.now(UTC), 0.0)
    assert service.offer(other) is False
    assert counts.commands == 0
