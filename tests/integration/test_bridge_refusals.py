"""A broker that refuses the bridge: a wrong password, an ACL that refuses its publishes.

A real Mosquitto with a password file (``mosquitto_passwd -b``) and an ACL file of the
test's own; ``openspc run`` as a process. Refused at start-up: one clear line naming the
topic and the user, exit status 3, no traceback. Refused after it has run: logged, counted
in metrics, reported on ``bridge/errors``, and published once the ACL lets it (back-off).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge._mosquitto import MosquittoProcess, find_mosquitto, free_port
from tests.integration.reliability import BridgeProcess, Recorder, config_text

pytestmark = [pytest.mark.reliability, pytest.mark.mosquitto]

USER, PASSWORD = "bridge", "s3cret-bridge"
FIXED = {"center_line": 10.0, "ucl": 13.0, "lcl": 7.0, "rules": [1]}


class AuthBroker:
    """Mosquitto with a password file and an ACL; anonymous clients (the test's recorder and
    gauge) may do anything, the user ``bridge`` what ``bridge_acl`` says."""

    def __init__(self, workdir: Path, bridge_acl: list[str]) -> None:
        if find_mosquitto() is None or shutil.which("mosquitto_passwd") is None:
            pytest.skip("mosquitto and mosquitto_passwd are needed (scripts/setup)")
        workdir.mkdir(parents=True, exist_ok=True)
        workdir.chmod(0o1777)
        self.passwd = workdir / "passwd"
        self.passwd.touch()
        subprocess.run(
            ["mosquitto_passwd", "-b", str(self.passwd), USER, PASSWORD],
            check=True,
            capture_output=True,
        )
        self.passwd.chmod(0o644)
        self.acl = workdir / "acl"
        self.write_acl(bridge_acl)
        port = free_port()
        data = workdir / "data"
        data.mkdir(exist_ok=True)
        data.chmod(0o1777)
        config = "\n".join(
            [
                "per_listener_settings false",
                "allow_anonymous true",
                f"password_file {self.passwd}",
                f"acl_file {self.acl}",
                f"persistence true\npersistence_location {data}/",
                "max_queued_messages 100000",
                "log_dest stderr",
                "log_type error\nlog_type warning\nlog_type notice",
                f"listener {port} 127.0.0.1",
            ]
        )
        self.process = MosquittoProcess(port=port, config=config + "\n", workdir=workdir / "run")

    def write_acl(self, bridge_acl: list[str]) -> None:
        lines = ["topic readwrite #", "", f"user {USER}", *bridge_acl]
        self.acl.write_text("\n".join(lines) + "\n")
        self.acl.chmod(0o644)

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its ACL file again."""
        assert self.process.process is not None
        self.process.process.send_signal(signal.SIGHUP)

    @property
    def port(self) -> int:
        return self.process.port


@pytest.fixture
def auth_broker_factory() -> Iterator[list[AuthBroker]]:
    started: list[AuthBroker] = []
    yield started
    for broker in started:
        broker.process.stop()
        shutil.rmtree(broker.passwd.parent, ignore_errors=True)


def start_broker(started: list[AuthBroker], tmp: Path, bridge_acl: list[str]) -> AuthBroker:
    # not under pytest's tmp_path: Mosquitto drops to user mosquitto, who cannot enter it
    broker = AuthBroker(Path(tempfile.mkdtemp(prefix="openspc-auth-")), bridge_acl)
    broker.process.start()
    started.append(broker)
    return broker


def write_config(path: Path, port: int, prefix: str, password: str = PASSWORD) -> Path:
    text = config_text(
        port=port,
        prefix=prefix,
        client_id=f"refusals-{path.stem}",
        db_url=f"sqlite+aiosqlite:///{path.with_suffix('.db')}",
        characteristics=[{"id": 1, "name": "Shaft OD", **FIXED}],
    )
    credentials = f'username = "{USER}"\npassword = {json.dumps(password)}\n'
    path.write_text(text.replace("[broker]\n", "[broker]\n" + credentials, 1))
    return path


def exit_line(bridge: BridgeProcess, timeout: float = 20.0) -> tuple[int, str]:
    assert bridge.process is not None
    code = bridge.process.wait(timeout)
    lines = [line for line in bridge.log_text().splitlines() if line.startswith("openspc run:")]
    assert len(lines) == 1, bridge.log_text()
    return code, lines[0]


def test_a_wrong_password_stops_start_up_with_one_line(
    auth_broker_factory: list[AuthBroker], tmp_path: Path, topic_prefix: str
) -> None:
    broker = start_broker(auth_broker_factory, tmp_path, [f"topic readwrite {topic_prefix}/#"])
    config = write_config(tmp_path / "wrong.toml", broker.port, topic_prefix, password="nope")
    with BridgeProcess(config) as bridge:
        bridge.start()
        code, line = exit_line(bridge)
    assert code == 3
    assert f"127.0.0.1:{broker.port} refused the connection of user 'bridge'" in line
    assert "Not authorized" in line
    assert "nope" not in bridge.log_text()  # the password is never shown
    assert "Traceback" not in bridge.log_text()


def test_an_acl_refusing_a_start_up_publish_stops_start_up_naming_topic_and_user(
    auth_broker_factory: list[AuthBroker], tmp_path: Path, topic_prefix: str
) -> None:
    broker = start_broker(
        auth_broker_factory,
        tmp_path,
        [f"topic readwrite {topic_prefix}/#", f"topic deny {topic_prefix}/char/+/meta"],
    )
    config = write_config(tmp_path / "acl.toml", broker.port, topic_prefix)
    with BridgeProcess(config) as bridge:
        bridge.start()
        code, line = exit_line(bridge)
    assert code == 3
    assert f"refused to let user 'bridge' publish to {topic_prefix}/char/1/meta" in line
    assert "Not authorized" in line
    log = bridge.log_text()
    assert "bridge started" not in log
    assert "Traceback" not in log


def test_a_refusal_after_start_is_logged_counted_reported_and_retried(
    auth_broker_factory: list[AuthBroker], tmp_path: Path, topic_prefix: str
) -> None:
    violation = f"{topic_prefix}/char/1/violation"
    allowed = f"topic readwrite {topic_prefix}/#"
    broker = start_broker(auth_broker_factory, tmp_path, [allowed, f"topic deny {violation}"])
    config = write_config(tmp_path / "later.toml", broker.port, topic_prefix)
    with Recorder(broker.port, f"{topic_prefix}/#") as rec, BridgeProcess(config) as bridge:
        bridge.start().wait_started()
        rec.wait(lambda: rec.status(topic_prefix)[-1:] == [True], 10, "status online")
        rec.client.publish(f"{topic_prefix}/char/1/reading", "20", qos=1)  # beyond the UCL
        rec.wait(lambda: bool(rec.on(f"{topic_prefix}/char/1/sample")), 10, "the sample")

        def reported() -> list[dict[str, object]]:
            errors = [m.json() for m in rec.on(f"{topic_prefix}/bridge/errors")]
            return [e for e in errors if e["topic"] == violation]

        rec.wait(lambda: bool(reported()), 10, "the refusal reported on errors")
        assert "Not authorized" in str(reported()[0]["reason"])
        assert "'bridge'" in str(reported()[0]["reason"])

        def denied() -> int:
            metrics = [m.json() for m in rec.on(f"{topic_prefix}/bridge/metrics")]
            return max((int(m.get("publishes_denied", 0)) for m in metrics), default=0)

        rec.wait(lambda: denied() >= 2, 15, "the refusal counted, and tried again")
        assert not rec.on(violation)
        assert f"the broker refused a publish to {violation}" in bridge.log_text()
        assert bridge.alive()

        broker.write_acl([allowed])  # the operator mends the ACL
        broker.reload()
        rec.wait(lambda: bool(rec.on(violation)), 70, "the violation, published again")
        [published] = [m.json() for m in rec.on(violation)]
        assert published["type"] == "violation"
        assert published["payload"]["rule_id"] == 1
        assert bridge.terminate() == 0
    assert len(reported()) == 1  # once per episode, not once per retry
    assert "Traceback" not in bridge.log_text()
