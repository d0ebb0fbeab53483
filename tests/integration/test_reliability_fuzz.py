"""Bad input against the running bridge (``openspc run``): a hypothesis-driven fuzz.

Each example publishes one bad message (random bytes, huge payloads, deep JSON, NaN and
infinities, wrong types, wrong subgroup sizes, unknown characteristics, malformed commands)
and then one good reading with a unique ``ts``. The bridge must answer the bad one on
``<prefix>/bridge/errors`` (exactly one answer, naming its topic) and store and publish the
good one; at the end the database holds exactly the good readings, the process is alive and
its log has no traceback. Bounded: a fixed number of examples and a deadline per example.
"""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bridge._mosquitto import MosquittoProcess
from bridge.readings import InvalidReading, parse_reading
from tests.integration.reliability import (
    EPOCH_MS_2026,
    BridgeProcess,
    Recorder,
    config_text,
    report,
    sqlite_samples,
    stack,
)

pytestmark = [pytest.mark.reliability, pytest.mark.mosquitto]

EXAMPLES = 200
MAX_PAYLOAD = 65_536
CHARS = [
    {"id": 1, "name": "Good", "subgroup_size": 1},
    {"id": 2, "name": "Subgroups of 3", "subgroup_size": 3},
    {"id": 3, "name": "Vendor", "subgroup_size": 1, "topic": "", "value_path": "data.od"},
]


def is_reading(payload: bytes, subgroup_size: int, value_path: str | None = None) -> bool:
    try:
        parse_reading(
            payload,
            subgroup_size=subgroup_size,
            value_path=value_path,
            max_bytes=MAX_PAYLOAD,
            received_at=datetime.now(UTC),
        )
    except InvalidReading:
        return False
    return True


json_scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=20), st.integers(), st.floats(allow_nan=False)
)
not_numbers = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=20),
    st.lists(json_scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), json_scalars, max_size=3),
)
non_finite = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])


@st.composite
def bad_reading(draw: st.DrawFn) -> tuple[str, bytes]:
    """(topic suffix, payload) for a reading that must be refused."""
    kind = draw(
        st.sampled_from(
            ["bytes", "huge", "deep", "nonfinite", "type", "size", "unknown", "vendor", "ts"]
        )
    )
    if kind == "bytes":
        cid = draw(st.sampled_from([1, 2]))
        payload = draw(st.binary(max_size=200))
        assume(not is_reading(payload, 1 if cid == 1 else 3))
        return f"char/{cid}/reading", payload
    if kind == "huge":
        size = draw(st.integers(MAX_PAYLOAD + 1, 400_000))
        filler = draw(st.sampled_from([b" ", b"1", b"["]))
        return "char/1/reading", b"1" + filler * size
    if kind == "deep":
        depth = draw(st.integers(50, 60_000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"value":', b"}")]))
        return "char/1/reading", opener * depth + b"1" + closer * depth
    if kind == "nonfinite":
        bad = draw(non_finite)
        form = draw(st.sampled_from(["bare", "value", "values"]))
        if form == "bare":
            return "char/1/reading", bad.encode()
        if form == "value":
            return "char/1/reading", f'{{"value": {bad}}}'.encode()
        return "char/2/reading", f'{{"values": [1.0, {bad}, 2.0]}}'.encode()
    if kind == "type":
        value = draw(not_numbers)
        key = draw(st.sampled_from(["value", "values"]))
        payload = json.dumps({key: value}).encode()
        assume(not is_reading(payload, 1))
        return "char/1/reading", payload
    if kind == "size":
        n = draw(st.integers(0, 30).filter(lambda k: k != 3))
        values = draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n))
        return "char/2/reading", json.dumps({"values": values}).encode()
    if kind == "unknown":
        key = draw(
            st.one_of(
                st.integers(4, 10**12).map(str),
                st.text("abcxyz-_.", min_size=1, max_size=12),
            )
        )
        return f"char/{key}/reading", b"10.0"
    if kind == "vendor":
        data = draw(st.one_of(not_numbers, st.dictionaries(st.just("od"), not_numbers)))
        payload = json.dumps({"data": data}).encode()
        assume(not is_reading(payload, 1, "data.od"))
        return "VENDOR", payload
    # ts of the wrong kind
    ts = draw(st.one_of(st.text(max_size=20), st.booleans(), st.lists(st.integers(), max_size=2)))
    payload = json.dumps({"value": 1.0, "ts": ts}).encode()
    assume(not is_reading(payload, 1))
    return "char/1/reading", payload


@st.composite
def bad_command(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["ack-bytes", "ack-json", "recalc", "recalc-unknown"]))
    if kind == "ack-bytes":
        return "cmd/ack/fuzzer", draw(st.binary(max_size=100))
    if kind == "ack-json":
        body = draw(
            st.one_of(
                not_numbers,
                st.fixed_dictionaries(
                    {"violation_id": st.one_of(not_numbers, st.integers(10**6, 10**9))},
                    optional={"reason": st.text(max_size=10), "exclude_sample": json_scalars},
                ),
            )
        )
        return "cmd/ack/fuzzer", json.dumps(body).encode()
    if kind == "recalc":
        last = draw(st.one_of(st.integers(max_value=0), st.text(max_size=5), st.booleans()))
        return "cmd/char/1/recalculate", json.dumps({"last": last}).encode()
    return "cmd/char/99/recalculate", b"{}"


def test_fuzzed_bad_input_never_crashes_never_stores_always_answers(
    fresh_mosquitto: MosquittoProcess, tmp_path: Path, topic_prefix: str
) -> None:
    broker = fresh_mosquitto
    db = tmp_path / "bridge.db"
    config = tmp_path / "fuzz.toml"
    chars = [dict(c) for c in CHARS]
    vendor = f"{topic_prefix.rsplit('/', 1)[0]}/plant/gauge7/od"
    chars[2]["topic"] = vendor
    config.write_text(
        config_text(
            port=broker.port,
            prefix=topic_prefix,
            client_id="reliability-fuzz",
            db_url=f"sqlite+aiosqlite:///{db}",
            characteristics=chars,
            max_payload_bytes=MAX_PAYLOAD,
        )
    )
    errors_topic = f"{topic_prefix}/bridge/errors"
    samples_topic = f"{topic_prefix}/char/1/sample"
    good: dict[int, float] = {}
    kinds: dict[str, int] = {}
    with stack() as s:
        rec = s.enter_context(Recorder(broker.port, f"{topic_prefix}/#"))
        bridge = s.enter_context(BridgeProcess(config))
        bridge.start().wait_started()
        rec.wait(lambda: rec.status(topic_prefix)[-1:] == [True], 10, "status online")
        sender = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id="fuzzer",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        sender.connect("127.0.0.1", broker.port)
        sender.loop_start()
        s.callback(sender.loop_stop)
        s.callback(sender.disconnect)
        lock = threading.Lock()

        def send(topic: str, payload: bytes) -> None:
            info = sender.publish(topic, payload, qos=1)
            info.wait_for_publish(10)
            assert info.is_published(), f"the broker did not take {topic}"

        def sampled(ts_ms: int) -> bool:
            iso = datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
            stamp = iso.replace("+00:00", "Z")
            return any(m.json()["payload"]["timestamp"] == stamp for m in rec.on(samples_topic))

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.one_of(bad_reading(), bad_command()))
        def example(bad: tuple[str, bytes]) -> None:
            suffix, payload = bad
            with lock:
                i = len(good)
                ts = EPOCH_MS_2026 + i
                value = round(10.0 + i * 0.001, 6)
                good[ts] = value
            topic = vendor if suffix == "VENDOR" else f"{topic_prefix}/{suffix}"
            before = len(rec.on(errors_topic))
            send(topic, payload)
            send(f"{topic_prefix}/char/1/reading", json.dumps({"value": value, "ts": ts}).encode())
            rec.wait(lambda: sampled(ts), 10, f"the good reading after a bad one on {topic}")
            # each bad input is reported: at once, or (the errors topic is rate-limited per
            # topic and reason, docs/topics.md) counted in a summary at the window's end
            answers = [a for a in rec.on(errors_topic)[before:] if not a.json()["summary"]]
            assert len(answers) <= 1, [a.json() for a in answers]
            assert all(a.json()["topic"] == topic for a in answers)
            assert bridge.alive()
            head = suffix.split("/")[0] if suffix.startswith("cmd") else "reading"
            kinds[head] = kinds.get(head, 0) + 1

        example()
        assert bridge.alive()

        def reported() -> int:
            return sum(m.json()["count"] for m in rec.on(errors_topic))

        rec.wait(lambda: reported() >= len(good), 15, "every bad input counted on errors")
        assert reported() == len(good)
        assert bridge.terminate() == 0
        rec.wait(lambda: rec.status(topic_prefix)[-1:] == [False], 10, "status offline")
        metrics = rec.on(f"{topic_prefix}/bridge/metrics")

    stored = sqlite_samples(db)
    assert {x.characteristic_id for x in stored} <= {1}  # nothing from the bad inputs
    assert sorted((x.ts_ms, x.values) for x in stored) == sorted(
        (ts, (v,)) for ts, v in good.items()
    )
    assert all(math.isfinite(v) for x in stored for v in x.values)
    log = bridge.log_text()
    assert "Traceback" not in log
    last: dict[str, Any] = metrics[-1].json() if metrics else {}
    report(
        f"fuzz: {len(good)} bad inputs ({kinds}), each counted once on errors; "
        f"{len(good)} good readings interleaved, {len(stored)} stored, lost "
        f"{len(good) - len(stored)}, bad stored 0; rejected per metrics "
        f"{last.get('readings_rejected')} readings + {last.get('commands_rejected')} commands"
    )
