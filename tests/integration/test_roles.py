"""The role messages (docs/topics.md, "Role"): a real bridge reads the users file that
`openspc users` keeps and publishes each user's role, retained, in the user's reply tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bridge.mosquitto_admin import Role, UserStore
from tests.integration.conftest import BridgeFactory, Probe, char, open_probe

pytestmark = pytest.mark.mosquitto


def users(tmp_path: Path) -> UserStore:
    if shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto_passwd is not installed (scripts/setup installs it)")
    store = UserStore(tmp_path / "broker" / "passwd")
    (tmp_path / "broker").mkdir()
    store.add("kim", Role.ENGINEER, "kim-secret-1")
    store.add("ana", Role.HMI, "ana-secret-1")
    store.add("gauge7", Role.GAUGE, "gauge-secret", characteristics=[1])
    return store


async def test_every_user_gets_its_role_and_what_it_may_do_retained(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str, tmp_path: Path
) -> None:
    store = users(tmp_path)
    roles_file = tmp_path / "broker" / "roles.json"
    app = await bridge_factory.start([char(1)], users_file=str(roles_file))
    expected = {
        "kim": {"user": "kim", "role": "engineer", "may": ["acknowledge", "recalculate", "query"]},
        "ana": {"user": "ana", "role": "hmi", "may": ["acknowledge", "query"]},
        "gauge7": {"user": "gauge7", "role": "gauge", "may": []},
    }
    for user, payload in expected.items():
        [message] = await probe.wait_for(f"{topic_prefix}/reply/{user}/role")
        assert message == {"type": "role", "payload": payload}
    # retained: an HMI that connects later gets its own at once
    async with open_probe(bridge_factory.broker, f"{topic_prefix}/reply/ana/role") as late:
        [message] = await late.wait_for(f"{topic_prefix}/reply/ana/role")
        assert message["payload"]["role"] == "hmi"
        assert late.messages[0].retain is True

    # while the bridge runs: ana becomes an engineer, kim is removed
    app_roles = app.roles
    assert app_roles is not None
    app_roles.every = 0.1
    store.remove("ana")
    store.add("ana", Role.ENGINEER, "ana-secret-2")
    store.remove("kim")
    await probe.wait_for(
        f"{topic_prefix}/reply/ana/role", lambda m: m != b"" and m["payload"]["role"] == "engineer"
    )
    await probe.wait_for(f"{topic_prefix}/reply/kim/role", lambda m: m == b"")  # cleared
    async with open_probe(bridge_factory.broker, f"{topic_prefix}/reply/+/role") as late:
        await late.wait_for(f"{topic_prefix}/reply/gauge7/role")
        await late.wait_for(f"{topic_prefix}/reply/ana/role")
        assert late.matching(f"{topic_prefix}/reply/kim/role") == []


async def test_without_a_users_file_no_role_is_published(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    app = await bridge_factory.start([char(1)])
    assert app.roles is None
    await probe.wait_for(f"{topic_prefix}/char/1/meta")
    assert probe.matching(f"{topic_prefix}/reply/#") == []


async def test_an_unreadable_users_file_is_logged_and_the_bridge_runs(
    bridge_factory: BridgeFactory,
    probe: Probe,
    topic_prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = tmp_path / "roles.json"
    bad.write_text("{not json")
    await bridge_factory.start([char(1)], users_file=str(bad))
    assert "users file" in caplog.text
    assert "no role messages" in caplog.text
    await probe.publish(f"{topic_prefix}/char/1/reading", "1.5")
    await probe.wait_for(f"{topic_prefix}/char/1/sample")
