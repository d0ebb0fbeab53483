"""Locating the shipped files, and where the demo keeps its state (docs/packaging.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import _package_data, demo
from bridge._package_data import PackageDataMissing, broker_template, hmi_dir, plugin_dir


def test_the_shipped_files_are_found_through_the_package() -> None:
    import mosquitto

    root = Path(mosquitto.__file__).parent
    assert broker_template() == root / "mosquitto.conf"
    assert broker_template().read_text().startswith("# OpenSPC Bridge")
    assert hmi_dir() == root / "hmi"
    assert (hmi_dir() / "index.html").is_file()
    assert plugin_dir() == root / "plugin"


def test_an_unbuilt_hmi_is_named_with_the_command_that_builds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hmi" / "vendor").mkdir(parents=True)
    (tmp_path / "hmi" / "index.html").write_text("<!doctype html>")
    monkeypatch.setattr(_package_data, "_root", lambda: tmp_path)
    assert hmi_dir() == tmp_path / "hmi"  # only asked for the place: no check
    with pytest.raises(PackageDataMissing) as refused:
        hmi_dir(built=True)
    assert refused.value.path == tmp_path / "hmi" / "app.js"
    assert "scripts/build-hmi" in str(refused.value)
    (tmp_path / "hmi" / "app.js").write_text("(() => {})();")
    with pytest.raises(PackageDataMissing) as refused:
        hmi_dir(built=True)
    assert refused.value.path == tmp_path / "hmi" / "vendor" / "mqtt.min.js"


def test_the_demo_keeps_its_state_per_user_or_in_var_lib_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert demo.default_state_dir() == tmp_path / "home" / ".local" / "state" / "openspc" / "demo"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert demo.default_state_dir() == tmp_path / "state" / "openspc" / "demo"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # the XDG spec: ignore it
    assert demo.default_state_dir() == tmp_path / "home" / ".local" / "state" / "openspc" / "demo"
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert demo.default_state_dir() == Path("/var/lib/openspc/demo")
    assert demo.DemoOptions().state_dir == Path("/var/lib/openspc/demo")
    assert demo.DemoOptions().http_dir == hmi_dir()
