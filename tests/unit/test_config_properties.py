"""Whatever a file holds, loading it gives Settings or ConfigInvalid, never a traceback."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bridge.config import (
    BridgeSettings,
    BrokerSettings,
    CharacteristicSettings,
    ConfigInvalid,
    DatabaseSettings,
    Settings,
    load_settings,
)


@pytest.fixture(autouse=True)
def _no_openspc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("OPENSPC_"):
            monkeypatch.delenv(name)


def toml_value(value: object) -> str:
    """A TOML literal (inline form) for a JSON-like value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def table(
    model: type[BaseModel], plausible: dict[str, st.SearchStrategy[object]]
) -> st.SearchStrategy[dict[str, object]]:
    fields = [*model.model_fields, "typo"]
    keys = st.sampled_from(fields)
    value = st.one_of(values, *plausible.values()) if plausible else values
    return st.dictionaries(keys, value, max_size=6)


small_ints = st.integers(min_value=-2, max_value=30)
numbers = st.floats(min_value=-100, max_value=100, allow_nan=False)
char_tables = st.dictionaries(
    st.sampled_from([*CharacteristicSettings.model_fields, "typo"]),
    st.one_of(small_ints, numbers, st.sampled_from(["nelson", "OD", "a/b", "data.od"]), values),
    max_size=10,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "broker": table(BrokerSettings, {"port": small_ints}),
        "database": table(DatabaseSettings, {"url": st.sampled_from(["sqlite:///x.db", "x://"])}),
        "bridge": table(BridgeSettings, {"history_size": small_ints}),
        "characteristic": st.lists(char_tables, max_size=3),
        "typo": values,
    },
)


def render(doc: dict[str, object]) -> str:
    lines: list[str] = []
    chars: list[dict[str, object]] = []
    for key, value in doc.items():
        if key == "characteristic" and isinstance(value, list):
            chars = value
        else:
            lines.append(f"{json.dumps(key)} = {toml_value(value)}")
    for item in chars:
        lines.append("[[characteristic]]")
        lines.extend(f"{json.dumps(k)} = {toml_value(v)}" for k, v in item.items())
    return "\n".join(lines) + "\n"


def outcome(path: Path) -> Settings | ConfigInvalid:
    try:
        return load_settings(path)
    except ConfigInvalid as exc:
        return exc


@settings(
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,  # a first config load takes ~0.4 s on a loaded machine: speed is not the point
)
@given(documents)
def test_any_document_loads_or_is_refused_line_by_line(
    tmp_path: Path, doc: dict[str, object]
) -> None:
    path = tmp_path / "openspc.toml"
    path.write_text(render(doc))
    result = outcome(path)
    if isinstance(result, ConfigInvalid):
        assert result.faults
        for fault in result.faults:
            assert str(fault).startswith(f"{path}: ")
            assert "\n" not in str(fault)
            assert fault.why
        return
    for char in result.characteristic:
        spec = char.to_spec()
        assert 1 <= spec.subgroup_size <= 25


@given(st.binary(max_size=300))
@settings(
    max_examples=200,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,  # a first config load takes ~0.4 s on a loaded machine: speed is not the point
)
def test_any_bytes_load_or_are_refused(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "openspc.toml"
    path.write_bytes(raw)
    result = outcome(path)
    if isinstance(result, ConfigInvalid):
        assert all("\n" not in str(fault) for fault in result.faults)
