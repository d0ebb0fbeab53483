"""The `[gateway]` table: defaults, strict types, its own credentials (docs/configuration.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.config import ConfigInvalid, format_faults, load_settings


@pytest.fixture(autouse=True)
def _no_openspc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("OPENSPC_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "openspc.toml"
    path.write_text(text)
    return path


def faults(path: Path) -> list[str]:
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path)
    return [line.removeprefix(f"{path}: ") for line in format_faults(info.value).splitlines()]


def test_defaults_listen_on_loopback_8000_and_read_anonymously(tmp_path: Path) -> None:
    gateway = load_settings(write(tmp_path, "")).gateway
    assert (gateway.host, gateway.port, gateway.idle_timeout) == ("127.0.0.1", 8000, 90.0)
    assert (gateway.username, gateway.password, gateway.password_file) == (None, None, None)
    assert (gateway.client_queue_bytes, gateway.replay_max) == (1_048_576, 100)
    assert gateway.max_clients == 10_000


def test_the_bridges_credentials_are_not_the_gateways(tmp_path: Path) -> None:
    text = '[broker]\nusername = "bridge"\npassword = "secret"\n'
    gateway = load_settings(write(tmp_path, text)).gateway
    assert (gateway.username, gateway.password) == (None, None)


def test_types_are_strict_one_line_per_fault(tmp_path: Path) -> None:
    text = (
        "[gateway]\n"
        'port = "8000"\n'
        "idle_timeout = true\n"
        "host = 1\n"
        "replay_max = 2.5\n"
        "client_queue_bytes = 10\n"
        "bogus = 1\n"
    )
    assert faults(write(tmp_path, text)) == [
        "gateway.host = 1: must be a string (in quotes)",
        'gateway.port = "8000": must be a whole number',
        "gateway.idle_timeout = true: must be a number",
        "gateway.client_queue_bytes = 10: must be at least 4096",
        "gateway.replay_max = 2.5: must be a whole number",
        "gateway.bogus = 1: unknown key",
    ]


def test_ranges(tmp_path: Path) -> None:
    text = "[gateway]\nport = 70000\nidle_timeout = 0\n"
    assert faults(write(tmp_path, text)) == [
        "gateway.port = 70000: must be between 1 and 65535",
        "gateway.idle_timeout = 0: must be between 1 and 86400",
    ]


def test_credentials_from_a_password_file_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "gateway.pw").write_text("s3cret\n")
    text = '[gateway]\nusername = "gw"\npassword_file = "gateway.pw"\n'
    gateway = load_settings(write(tmp_path, text)).gateway
    assert (gateway.username, gateway.password) == ("gw", "s3cret")


def test_credential_mistakes(tmp_path: Path) -> None:
    assert faults(write(tmp_path, '[gateway]\npassword = "x"\n')) == [
        "gateway.username: required with a password (or leave both out)"
    ]
    text = '[gateway]\nusername = "gw"\npassword = "x"\npassword_file = "gw.pw"\n'
    assert faults(write(tmp_path, text)) == [
        'gateway.password_file = "gw.pw": give password or password_file'
    ]
    text = '[gateway]\nusername = "gw"\npassword_file = "missing.pw"\n'
    assert faults(write(tmp_path, text)) == [
        'gateway.password_file = "missing.pw": cannot read: No such file or directory'
    ]


def test_environment_numbers_are_read_as_numbers_and_wrong_ones_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[gateway]\nport = 8001\n")
    monkeypatch.setenv("OPENSPC_GATEWAY__PORT", "8002")
    monkeypatch.setenv("OPENSPC_GATEWAY__IDLE_TIMEOUT", "30.5")
    monkeypatch.setenv("OPENSPC_GATEWAY__USERNAME", "1234")
    gateway = load_settings(path).gateway
    assert (gateway.port, gateway.idle_timeout, gateway.username) == (8002, 30.5, "1234")
    monkeypatch.setenv("OPENSPC_GATEWAY__PORT", "eighty")
    assert faults(path) == [
        'environment OPENSPC_GATEWAY__PORT: gateway.port = "eighty": must be a whole number'
    ]
