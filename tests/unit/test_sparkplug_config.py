"""``[bridge.sparkplug]``: the Primary Host's id, checked like every key (one line a fault)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import ConfigInvalid, format_faults, load_settings


def faults(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "openspc.toml"
    path.write_text(text)
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path)
    return format_faults(info.value).splitlines()


def test_host_id_is_off_by_default_and_read_when_given(tmp_path: Path) -> None:
    path = tmp_path / "openspc.toml"
    path.write_text("")
    assert load_settings(path).bridge.sparkplug.host_id is None
    path.write_text('[bridge.sparkplug]\nhost_id = "scada1"\n')
    assert load_settings(path).bridge.sparkplug.host_id == "scada1"


def test_bad_host_ids_and_unknown_keys_are_one_line_each(tmp_path: Path) -> None:
    lines = faults(tmp_path, '[bridge.sparkplug]\nhost_id = 7\nhostid = "x"\n')
    name = tmp_path / "openspc.toml"
    assert lines == [
        f"{name}: bridge.sparkplug.host_id = 7: must be a string (in quotes)",
        f'{name}: bridge.sparkplug.hostid = "x": unknown key (did you mean host_id?)',
    ]
    for bad in ('"a/b"', '"+"', '"#"', '"  "'):
        [line] = faults(tmp_path, f"[bridge.sparkplug]\nhost_id = {bad}\n")
        assert line.startswith(f"{name}: bridge.sparkplug.host_id = ")


def test_the_environment_can_name_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "openspc.toml"
    path.write_text("")
    monkeypatch.setenv("OPENSPC_BRIDGE__SPARKPLUG__HOST_ID", "plant-host")
    assert load_settings(path).bridge.sparkplug.host_id == "plant-host"
