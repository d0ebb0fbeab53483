"""`chart` and its settings in `[[characteristic]]` (docs/configuration.md, "Chart families")."""

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


def char(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "openspc.toml"
    path.write_text(f'[[characteristic]]\nid = 1\nname = "X"\n{body}')
    return path


def faults(path: Path) -> list[str]:
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path)
    return [line.removeprefix(f"{path}: ") for line in format_faults(info.value).splitlines()]


def test_the_toml_keys_of_the_contract_reach_the_engine(tmp_path: Path) -> None:
    ewma = load_settings(char(tmp_path, 'chart = "ewma"\nlambda = 0.1\nL = 2.7\n'))
    spec = ewma.characteristic[0].to_spec()
    assert (spec.chart, spec.ewma_lambda, spec.ewma_l) == ("ewma", 0.1, 2.7)
    cusum = load_settings(char(tmp_path, 'chart = "cusum"\nsubgroup_size = 4\nk = 1\nh = 4.5\n'))
    spec = cusum.characteristic[0].to_spec()
    assert (spec.chart, spec.subgroup_size, spec.cusum_k, spec.cusum_h) == ("cusum", 4, 1.0, 4.5)
    np_chart = load_settings(char(tmp_path, 'chart = "np"\ninspected = 50\n'))
    assert np_chart.characteristic[0].to_spec().inspected == 50


def test_the_engines_names_are_accepted_too(tmp_path: Path) -> None:
    spec = (
        load_settings(char(tmp_path, 'chart = "ewma"\newma_lambda = 0.3\newma_l = 2.5\n'))
        .characteristic[0]
        .to_spec()
    )
    assert (spec.ewma_lambda, spec.ewma_l) == (0.3, 2.5)


@pytest.mark.parametrize(
    ("chart", "rules"),
    [("p", [1]), ("np", [1]), ("c", [1]), ("u", [1]), ("ewma", [1]), ("cusum", [1])],
)
def test_rules_default_to_the_familys(tmp_path: Path, chart: str, rules: list[int]) -> None:
    extra = "inspected = 40\n" if chart == "np" else ""
    spec = load_settings(char(tmp_path, f'chart = "{chart}"\n{extra}')).characteristic[0].to_spec()
    assert [r.rule_id for r in spec.rules] == rules


def test_no_chart_follows_the_subgroup_size(tmp_path: Path) -> None:
    for n, chart in ((1, "imr"), (5, "xbar_r"), (12, "xbar_s")):
        c = load_settings(char(tmp_path, f"subgroup_size = {n}\n")).characteristic[0]
        assert c.chart_name == chart
        assert [r.rule_id for r in c.to_spec().rules] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_each_fault_is_one_line_naming_the_toml_key(tmp_path: Path) -> None:
    path = char(tmp_path, 'chart = "ewma"\nlambda = 1.5\nL = 0\n')
    assert faults(path) == [
        "characteristic[0].lambda = 1.5: must lie in (0, 1]",
        "characteristic[0].L = 0.0: must be positive",
    ]
    assert faults(char(tmp_path, 'chart = "cusum"\nk = -1\nh = 0\n')) == [
        "characteristic[0].k = -1.0: must be positive",
        "characteristic[0].h = 0.0: must be positive",
    ]
    assert faults(char(tmp_path, 'chart = "np"\n')) == [
        "characteristic[0].inspected = null: an np chart needs it"
    ]
    assert faults(char(tmp_path, 'chart = "xbar"\n')) == [
        'characteristic[0].chart = "xbar": expected one of imr, xbar_r, xbar_s, p, np, c, u, '
        "ewma, cusum"
    ]


def test_attribute_charts_refuse_subgroups_fixed_limits_and_other_rules(tmp_path: Path) -> None:
    lines = faults(char(tmp_path, 'chart = "p"\nsubgroup_size = 5\nucl = 0.2\nlcl = 0.0\n'))
    assert lines == [
        "characteristic[0].subgroup_size = 5: an attribute chart takes one count a sample",
        "characteristic[0].ucl = 0.2: fixed limits are for the imr, xbar_r, xbar_s, ewma and "
        "cusum charts",
    ]
    assert faults(char(tmp_path, 'chart = "c"\ninspected = 50\n')) == [
        "characteristic[0].inspected = 50: only an np chart takes it (this is c)"
    ]
    assert len(faults(char(tmp_path, 'chart = "ewma"\nrules = [1, 2]\n'))) == 1


def test_types_are_strict(tmp_path: Path) -> None:
    assert faults(char(tmp_path, 'chart = "np"\ninspected = "50"\n'))[0].startswith(
        'characteristic[0].inspected = "50": '
    )
    assert faults(char(tmp_path, 'chart = "ewma"\nlambda = "0.2"\n'))[0].startswith(
        'characteristic[0].lambda = "0.2": '
    )
    assert faults(char(tmp_path, "chart = 3\n"))[0].startswith("characteristic[0].chart = 3: ")


def test_a_sparkplug_metric_cannot_feed_a_p_np_or_u_chart(tmp_path: Path) -> None:
    source = 'sparkplug = {group = "G", edge = "E", metric = "Caps"}\n'
    assert faults(char(tmp_path, 'chart = "p"\n' + source)) == [
        'characteristic[0].sparkplug = {"group": "G", "edge": "E", "metric": "Caps"}: a p chart '
        "needs two numbers a sample, a Sparkplug metric is one (feed it from a topic)"
    ]
    c = load_settings(char(tmp_path, 'chart = "c"\n' + source)).characteristic[0]
    assert c.chart_name == "c"
