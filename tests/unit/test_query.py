"""The query command's pure parts (bridge/_query.py): the request and the bounded page."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bridge._query import MAX_REPLY_BYTES, SampleQuery, parse_query, result_message
from bridge.errors import InvalidCommand

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
