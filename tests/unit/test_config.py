"""The configuration file: defaults, overrides, and one clear line per mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.config import (
    DEFAULT_REASON_CODES,
    ConfigInvalid,
    Settings,
    format_faults,
    load_settings,
)
from engine import Severity

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_openspc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("OPENSPC_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "openspc.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def faults(path: Path) -> list[str]:
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path)
    lines = format_faults(info.value).splitlines()
    assert lines == [str(fault) for fault in info.value.faults]
    return [line.removeprefix(f"{path}: ") for line in lines]


CHAR = '[[characteristic]]\nid = 1\nname = "OD"\n'


def test_an_empty_file_gives_every_default(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    assert settings.broker.model_dump() == {
        "host": "127.0.0.1",
        "port": 1883,
        "username": None,
        "password": None,
        "password_file": None,
        "client_id": "openspc-bridge",
        "tls": False,
        "keepalive": 30,
    }
    assert settings.database.url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/openspc.db"
    bridge = settings.bridge
    assert bridge.topic_prefix == "openspc"
    assert tuple(bridge.reason_codes) == DEFAULT_REASON_CODES
    assert len(bridge.reason_codes) == 11
    assert (bridge.history_size, bridge.max_payload_bytes, bridge.metrics_interval) == (
        100,
        65536,
        5.0,
    )
    assert (bridge.batch_max, bridge.batch_ms, bridge.buffer_max) == (1000, 0.0, 10000)
    assert bridge.sparkplug_edge.model_dump() == {
        "enabled": False,
        "group": "OpenSPC",
        "edge": "Bridge",
    }
    assert bridge.rebirth_on_gap is True
    assert settings.characteristic == []


def test_the_shipped_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    settings = load_settings(None)
    assert [c.id for c in settings.characteristic] == [1, 2, 3]
    od = settings.characteristic[0]
    assert (od.topic, od.value_path, od.subgroup_size) == (
        "plant1/line3/gauge4/bore",
        "data.bore",
        1,
    )
    assert settings.characteristic[1].subgroup_size == 5
    fixed = settings.characteristic[2].to_spec()
    assert fixed.has_fixed_limits
    assert [r.rule_id for r in fixed.rules] == [1, 2, 5, 6]
    assert settings.database.url == f"sqlite+aiosqlite:///{REPO}/config/openspc.db"


def test_a_characteristic_becomes_an_engine_spec(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        CHAR + "subgroup_size = 5\nusl = 10.05\nlsl = 9.95\ntarget = 10\nbaseline = 20\n"
        'rules = [1, {id = 2, length = 7, severity = "CRITICAL"}]\n',
    )
    spec = load_settings(path).characteristic[0].to_spec()
    assert (spec.id, spec.subgroup_size, spec.usl, spec.lsl, spec.target, spec.baseline) == (
        1,
        5,
        10.05,
        9.95,
        10.0,
        20,
    )
    assert not spec.has_fixed_limits
    assert [(r.rule_id, r.length, r.severity) for r in spec.rules] == [
        (1, 1, Severity.CRITICAL),
        (2, 7, Severity.CRITICAL),
    ]


def test_characteristics_written_alike_share_one_fields_set(tmp_path: Path) -> None:
    """10,000 characteristics with the same keys keep one ``model_fields_set`` (about 7 MB;
    docs/performance.md, "Memory at start-up"); what each says it set stays its own."""
    text = "".join(
        f'[[characteristic]]\nid = {cid}\nname = "c{cid}"\nusl = 10.5\nlsl = 9.5\n'
        for cid in (1, 2, 3)
    )
    text += '[[characteristic]]\nid = 4\nname = "c4"\nunit = "mm"\n'
    chars = load_settings(write(tmp_path, text)).characteristic
    assert chars[0].model_fields_set is chars[1].model_fields_set is chars[2].model_fields_set
    assert chars[0].model_fields_set == {"id", "name", "usl", "lsl"}
    assert chars[3].model_fields_set == {"id", "name", "unit"}
    assert chars[1].model_dump(exclude_unset=True) == {
        "id": 2,
        "name": "c2",
        "usl": 10.5,
        "lsl": 9.5,
    }
    # a copy gets a set of its own: the shared one is never added to
    copy = chars[0].model_copy(update={"unit": "mm"})
    assert copy.model_fields_set == {"id", "name", "usl", "lsl", "unit"}
    assert chars[2].model_fields_set == {"id", "name", "usl", "lsl"}


def test_default_rules_are_all_eight_of_nelson(tmp_path: Path) -> None:
    spec = load_settings(write(tmp_path, CHAR)).characteristic[0].to_spec()
    assert [r.rule_id for r in spec.rules] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_fixed_limits_without_a_center_line_get_the_midpoint(tmp_path: Path) -> None:
    spec = load_settings(write(tmp_path, CHAR + "ucl = 12\nlcl = 8\n")).characteristic[0].to_spec()
    assert (spec.center_line, spec.ucl, spec.lcl) == (10.0, 12.0, 8.0)


def test_reading_topic_is_the_own_topic_or_the_standard_one(tmp_path: Path) -> None:
    text = CHAR + '[[characteristic]]\nid = 2\nname = "B"\ntopic = "plant/g2"\n'
    settings = load_settings(write(tmp_path, text))
    assert [c.reading_topic("p") for c in settings.characteristic] == [
        "p/char/1/reading",
        "plant/g2",
    ]


# --- file-level mistakes ----------------------------------------------------------------------


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert faults(path) == ["no such file (give --config FILE, or copy config/openspc.toml)"]


def test_a_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[broker]\nhost = "a"\nport = \n')
    assert faults(path) == ["invalid TOML: line 3, column 8: invalid value"]


def test_a_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[broker]\r\nport = 1884\r\n")
    assert load_settings(path).broker.port == 1884


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'name = "\xff"\n')
    assert faults(path) == ["not UTF-8 (bad byte at offset 8)"]


# --- key-level mistakes -------------------------------------------------------------------------


def test_the_fault_line_format(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        CHAR * 0 + CHAR + '[[characteristic]]\nid = 2\nname = "B"\n'
        '[[characteristic]]\nid = 3\nname = "C"\nsubgroup_size = 30\n',
    )
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path)
    assert str(info.value.faults[0]) == (
        f"{path}: characteristic[2].subgroup_size = 30: must be between 1 and 25"
    )
    fault = info.value.faults[0]
    assert (fault.key, fault.value, fault.why) == (
        "characteristic[2].subgroup_size",
        30,
        "must be between 1 and 25",
    )


def test_every_fault_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        '[broker]\nport = 70000\nhots = "x"\n[bridge]\ntopic_prefix = "a/#"\n'
        '[[characteristic]]\nid = 0\nname = ""\nsubgroupsize = 3\n'
    )
    assert faults(write(tmp_path, text)) == [
        "broker.port = 70000: must be between 1 and 65535",
        'broker.hots = "x": unknown key (did you mean host?)',
        "bridge.topic_prefix = \"a/#\": must not contain the wildcards '+' or '#'",
        "characteristic[0].id = 0: must be at least 1",
        'characteristic[0].name = "": must not be empty',
        "characteristic[0].subgroupsize = 3: unknown key (did you mean subgroup_size?)",
    ]


def test_unknown_key_hints_ignore_case(tmp_path: Path) -> None:
    assert faults(write(tmp_path, CHAR + "USL = 1.0\n")) == [
        "characteristic[0].USL = 1.0: unknown key (did you mean usl?)"
    ]


def test_a_fault_is_one_line_even_for_odd_keys(tmp_path: Path) -> None:
    assert faults(write(tmp_path, '[broker]\n"ho\\nst" = "x\\ny"\n')) == [
        'broker.ho\\nst = "x\\ny": unknown key (did you mean host?)'
    ]


def test_unknown_sections_are_errors(tmp_path: Path) -> None:
    assert faults(write(tmp_path, "[brokr]\nhost = 1\n")) == [
        'brokr = {"host": 1}: unknown key (did you mean broker?)'
    ]


def test_a_single_bracket_characteristic_table(tmp_path: Path) -> None:
    assert faults(write(tmp_path, '[characteristic]\nid = 1\nname = "OD"\n')) == [
        'characteristic = {"id": 1, "name": "OD"}:'
        " must be a list: write each one as [[characteristic]] (double brackets)"
    ]


def test_required_keys(tmp_path: Path) -> None:
    assert faults(write(tmp_path, '[[characteristic]]\nunit = "mm"\n')) == [
        "characteristic[0].id: required",
        "characteristic[0].name: required",
    ]


def test_wrong_types(tmp_path: Path) -> None:
    text = CHAR + 'subgroup_size = "5"\nusl = "high"\n' + '[broker]\ntls = "maybe"\n'
    assert faults(write(tmp_path, text)) == [
        'broker.tls = "maybe": must be true or false',
        'characteristic[0].subgroup_size = "5": must be a whole number',
        'characteristic[0].usl = "high": must be a number',
    ]


def test_spec_and_control_limits_must_be_consistent(tmp_path: Path) -> None:
    text = CHAR + "usl = 1\nlsl = 2\nucl = 5\n"
    assert faults(write(tmp_path, text)) == [
        "characteristic[0].lsl = 2.0: must be below usl (1)",
        "characteristic[0].lcl: fixed limits need both ucl and lcl (ucl given)",
    ]
    text = CHAR + "usl = 12\nlsl = 8\ntarget = 13\ncenter_line = 9\nucl = 11\nlcl = 9.5\n"
    assert faults(write(tmp_path, text)) == [
        "characteristic[0].target = 13.0: must not be above usl (12)",
        "characteristic[0].center_line = 9.0: must lie between lcl (9.5) and ucl (11)",
    ]
    assert faults(write(tmp_path, CHAR + "ucl = 1\nlcl = 1\n")) == [
        "characteristic[0].lcl = 1.0: must be below ucl (1)"
    ]


def test_non_finite_limits(tmp_path: Path) -> None:
    assert faults(write(tmp_path, CHAR + "usl = inf\n")) == [
        "characteristic[0].usl = Infinity: must be a finite number"
    ]


def test_bridge_numbers_must_be_finite(tmp_path: Path) -> None:
    assert faults(write(tmp_path, "[bridge]\nbatch_ms = nan\nmetrics_interval = inf\n")) == [
        "bridge.metrics_interval = Infinity: must be a finite number",
        "bridge.batch_ms = NaN: must be a finite number",
    ]


def test_baseline_minimums(tmp_path: Path) -> None:
    assert faults(write(tmp_path, CHAR + "baseline = 1\n")) == [
        "characteristic[0].baseline = 1: must be at least 2 for individuals (a moving range)"
    ]
    assert faults(write(tmp_path, CHAR + "baseline = 0\n")) == [
        "characteristic[0].baseline = 0: must be between 1 and 100000"
    ]
    ok = load_settings(write(tmp_path, CHAR + "subgroup_size = 5\nbaseline = 1\n"))
    assert ok.characteristic[0].baseline == 1


def test_bad_rules(tmp_path: Path) -> None:
    assert faults(write(tmp_path, CHAR + 'rules = "nelsen"\n')) == [
        "characteristic[0].rules = \"nelsen\": unknown rules preset 'nelsen'"
        " (expected nelson or western_electric, or a list of rule ids)"
    ]
    assert faults(write(tmp_path, CHAR + "rules = [1, 9]\n")) == [
        "characteristic[0].rules[1] = 9: rule id must be an integer 1..8, got 9"
    ]
    assert faults(write(tmp_path, CHAR + "rules = [1, {id = 2, lenght = 3}]\n")) == [
        'characteristic[0].rules[1] = {"id": 2, "lenght": 3}:'
        " unknown key(s) lenght (expected id, length, severity)"
    ]


def test_duplicate_ids(tmp_path: Path) -> None:
    assert faults(write(tmp_path, CHAR + CHAR)) == [
        "characteristic[1].id = 1: duplicate id (also characteristic[0])"
    ]


def test_topics_must_be_concrete_and_not_the_bridges_own(tmp_path: Path) -> None:
    text = CHAR + 'topic = "plant/+/od"\n'
    assert faults(write(tmp_path, text)) == [
        "characteristic[0].topic = \"plant/+/od\": must not contain the wildcards '+' or '#'"
    ]
    text = CHAR + 'topic = "openspc/char/1/sample"\n'
    assert faults(write(tmp_path, text)) == [
        'characteristic[0].topic = "openspc/char/1/sample":'
        " must not lie under the bridge's own openspc/ topics"
    ]


def test_a_shared_topic_needs_distinct_value_paths(tmp_path: Path) -> None:
    two = (
        '[[characteristic]]\nid = 1\nname = "OD"\ntopic = "g/7"\nvalue_path = "{a}"\n'
        '[[characteristic]]\nid = 2\nname = "ID"\ntopic = "g/7"\nvalue_path = "{b}"\n'
    )
    ok = load_settings(write(tmp_path, two.format(a="data.od", b="data.id")))
    assert [c.value_path for c in ok.characteristic] == ["data.od", "data.id"]
    assert faults(write(tmp_path, two.format(a="data.od", b="data.od"))) == [
        'characteristic[1].topic = "g/7": shared with characteristic[0]:'
        " characteristics may share a topic only with a different value_path each"
    ]


def test_value_path_needs_an_own_topic(tmp_path: Path) -> None:
    assert faults(write(tmp_path, CHAR + 'value_path = "data.od"\n')) == [
        'characteristic[0].value_path = "data.od": needs a topic (it applies to the own topic only)'
    ]
    assert faults(write(tmp_path, CHAR + 'topic = "g/1"\nvalue_path = "data..od"\n')) == [
        'characteristic[0].value_path = "data..od":'
        " not a value path: 'data..od' (dotted keys, like data.od)"
    ]


def test_sparkplug_source(tmp_path: Path) -> None:
    text = CHAR + 'sparkplug = {group = "Plant1", edge = "Line3", metric = "OD"}\n'
    source = load_settings(write(tmp_path, text)).characteristic[0].sparkplug
    assert source is not None
    assert (source.group, source.edge, source.device, source.metric) == (
        "Plant1",
        "Line3",
        None,
        "OD",
    )
    text = CHAR + 'topic = "a/b"\nsparkplug = {group = "P/1", edge = "L", metric = "OD"}\n'
    assert faults(write(tmp_path, text)) == [
        "characteristic[0].sparkplug.group = \"P/1\": must not contain '/', '+' or '#'"
    ]


def test_two_characteristics_on_one_sparkplug_metric(tmp_path: Path) -> None:
    spb = 'sparkplug = {group = "P", edge = "L", device = "G", metric = "OD"}\n'
    text = CHAR + spb + '[[characteristic]]\nid = 2\nname = "B"\n' + spb
    assert faults(write(tmp_path, text)) == [
        'characteristic[1].sparkplug = {"group": "P", "edge": "L", "device": "G", "metric": "OD"}:'
        " the same metric as characteristic[0]"
    ]


def test_a_source_that_is_the_bridges_own_edge_node(tmp_path: Path) -> None:
    text = (
        "[bridge.sparkplug_edge]\nenabled = true\n"
        + CHAR
        + 'sparkplug = {group = "OpenSPC", edge = "Bridge", metric = "x"}\n'
    )
    [line] = faults(write(tmp_path, text))
    assert line.endswith(
        "is the bridge's own edge node (bridge.sparkplug_edge): it would read its own results"
    )


def test_database_urls(tmp_path: Path) -> None:
    def url(value: str) -> str:
        return load_settings(write(tmp_path, f'[database]\nurl = "{value}"\n')).database.url

    assert url("sqlite:///data/spc.db") == f"sqlite+aiosqlite:///{tmp_path.resolve()}/data/spc.db"
    assert url("sqlite+aiosqlite:////var/lib/spc.db") == "sqlite+aiosqlite:////var/lib/spc.db"
    assert url("postgresql://spc:pw@db/spc") == "postgresql+asyncpg://spc:pw@db/spc"
    settings = load_settings(tmp_path / "openspc.toml")
    assert settings.database.display_url == "postgresql+asyncpg://spc:***@db/spc"
    assert "pw@" not in repr(settings)
    assert faults(write(tmp_path, '[database]\nurl = "mysql://x/y"\n')) == [
        'database.url = "mysql://x/y": only SQLite and PostgreSQL are supported'
    ]


def test_password_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "bridge.pw").write_text("s3cret\n")
    settings = load_settings(write(tmp_path, '[broker]\npassword_file = "bridge.pw"\n'))
    assert settings.broker.password == "s3cret"
    assert "s3cret" not in repr(settings)


def test_password_file_faults(tmp_path: Path) -> None:
    assert faults(write(tmp_path, '[broker]\npassword_file = "gone.pw"\n')) == [
        'broker.password_file = "gone.pw": cannot read: No such file or directory'
    ]
    text = '[broker]\npassword = "x"\npassword_file = "gone.pw"\n'
    assert faults(write(tmp_path, text)) == [
        'broker.password_file = "gone.pw": give password or password_file'
    ]


def test_passwords_never_appear_in_fault_lines(tmp_path: Path) -> None:
    assert faults(write(tmp_path, "[broker]\npassword = 1234\n")) == [
        'broker.password = "***": must be a string (in quotes)'
    ]


# --- environment overrides --------------------------------------------------------------------


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[broker]\nhost = "file-host"\nport = 1883\n' + CHAR)
    monkeypatch.setenv("OPENSPC_BROKER__HOST", "env-host")
    monkeypatch.setenv("OPENSPC_BROKER__PORT", "1884")
    monkeypatch.setenv("OPENSPC_DATABASE__URL", "postgresql+asyncpg://u@db/spc")
    monkeypatch.setenv("OPENSPC_BRIDGE__TOPIC_PREFIX", "plant1/spc")
    monkeypatch.setenv("OPENSPC_BRIDGE__SPARKPLUG_EDGE__ENABLED", "true")
    monkeypatch.setenv("OPENSPC_BRIDGE__REASON_CODES", '["Tool Change", "Other"]')
    settings = load_settings(path)
    assert (settings.broker.host, settings.broker.port) == ("env-host", 1884)
    assert settings.database.url == "postgresql+asyncpg://u@db/spc"
    assert settings.bridge.topic_prefix == "plant1/spc"
    assert settings.bridge.sparkplug_edge.enabled is True
    assert settings.bridge.reason_codes == ["Tool Change", "Other"]
    assert [c.name for c in settings.characteristic] == ["OD"]


def test_the_characteristic_list_is_replaced_as_a_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "OPENSPC_CHARACTERISTIC",
        '[{"id": 7, "name": "Env", "subgroup_size": 3}, {"id": 8, "name": "E2"}]',
    )
    settings = load_settings(write(tmp_path, CHAR))
    assert [(c.id, c.subgroup_size) for c in settings.characteristic] == [(7, 3), (8, 1)]


def test_an_env_password_replaces_a_password_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSPC_BROKER__PASSWORD", "from-env")
    settings = load_settings(write(tmp_path, '[broker]\npassword_file = "gone.pw"\n'))
    assert (settings.broker.password, settings.broker.password_file) == ("from-env", None)


def test_faults_from_the_environment_name_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "")
    monkeypatch.setenv("OPENSPC_BROKER__PORT", "abc")
    monkeypatch.setenv("OPENSPC_CHARACTERISTIC", '[{"id": 1, "name": "x", "subgroup_size": 0}]')
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path)
    assert format_faults(info.value).splitlines() == [
        'environment OPENSPC_BROKER__PORT: broker.port = "abc": must be a whole number',
        "environment OPENSPC_CHARACTERISTIC: characteristic[0].subgroup_size = 0:"
        " must be between 1 and 25",
    ]


def test_a_characteristic_object_instead_of_a_list_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSPC_CHARACTERISTIC", '{"id": 1, "name": "x"}')
    with pytest.raises(ConfigInvalid) as info:
        load_settings(write(tmp_path, ""))
    assert format_faults(info.value) == (
        'environment OPENSPC_CHARACTERISTIC: characteristic = {"id": 1, "name": "x"}:'
        " must be a JSON list [{...}, ...]"
    )


def test_bad_json_in_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSPC_CHARACTERISTIC", "[{")
    with pytest.raises(ConfigInvalid) as info:
        load_settings(write(tmp_path, ""))
    assert format_faults(info.value) == (
        "environment OPENSPC_CHARACTERISTIC: not valid JSON:"
        " Expecting property name enclosed in double quotes at column 3"
    )


def test_settings_built_directly_read_the_environment_arguments_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENSPC_BROKER__PORT", "1999")
    monkeypatch.setenv("OPENSPC_BROKER__HOST", "env-host")
    assert Settings().broker.port == 1999
    built = Settings(broker={"port": 1884})
    assert (built.broker.host, built.broker.port) == ("env-host", 1884)


# --- strict types (docs/configuration.md, "Types") --------------------------------------------


def test_text_where_a_number_or_true_false_belongs_is_one_fault_each(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[broker]\nport = "1883"\ntls = "false"\nkeepalive = 30.0\n'
        '[bridge]\nhistory_size = "100"\nbatch_ms = "5"\nrebirth_on_gap = 1\n'
        '[bridge.sparkplug_edge]\nenabled = "true"\n'
        '[gateway]\nport = "8000"\n' + CHAR + 'subgroup_size = "5"\n',
    )
    assert faults(path) == [
        'broker.port = "1883": must be a whole number',
        'broker.tls = "false": must be true or false',
        "broker.keepalive = 30.0: must be a whole number",
        'bridge.history_size = "100": must be a whole number',
        'bridge.batch_ms = "5": must be a number',
        'bridge.sparkplug_edge.enabled = "true": must be true or false',
        "bridge.rebirth_on_gap = 1: must be true or false",
        'gateway.port = "8000": must be a whole number',
        'characteristic[0].subgroup_size = "5": must be a whole number',
    ]


def test_a_number_where_text_belongs_is_a_fault(tmp_path: Path) -> None:
    path = write(tmp_path, "[broker]\nusername = 1234\nclient_id = 7\n")
    assert faults(path) == [
        "broker.username = 1234: must be a string (in quotes)",
        "broker.client_id = 7: must be a string (in quotes)",
    ]


def test_a_whole_number_is_a_number_where_a_fraction_may_be(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[bridge]\nbatch_ms = 2\nmetrics_interval = 1\n"))
    assert (settings.bridge.batch_ms, settings.bridge.metrics_interval) == (2, 1)


def test_environment_text_is_read_as_the_strict_types_want_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSPC_BROKER__PORT", "1884")
    monkeypatch.setenv("OPENSPC_BROKER__TLS", "false")
    monkeypatch.setenv("OPENSPC_BROKER__KEEPALIVE", "45")
    monkeypatch.setenv("OPENSPC_BROKER__USERNAME", "1234")  # text stays text
    monkeypatch.setenv("OPENSPC_BROKER__PASSWORD", "true")
    monkeypatch.setenv("OPENSPC_BROKER__PASSWORD_FILE", "")  # cleared below by password
    monkeypatch.delenv("OPENSPC_BROKER__PASSWORD_FILE")
    monkeypatch.setenv("OPENSPC_BRIDGE__BATCH_MS", "2.5")
    monkeypatch.setenv("OPENSPC_BRIDGE__METRICS_INTERVAL", "3")
    monkeypatch.setenv("OPENSPC_BRIDGE__HISTORY_SIZE", "250")
    monkeypatch.setenv("OPENSPC_BRIDGE__REBIRTH_ON_GAP", "false")
    monkeypatch.setenv("OPENSPC_BRIDGE__TOPIC_PREFIX", "42")
    monkeypatch.setenv("OPENSPC_GATEWAY__PORT", "8001")
    settings = load_settings(write(tmp_path, CHAR))
    broker, bridge = settings.broker, settings.bridge
    assert (broker.port, broker.tls, broker.keepalive) == (1884, False, 45)
    assert (broker.username, broker.password) == ("1234", "true")
    assert (bridge.batch_ms, bridge.metrics_interval, bridge.history_size) == (2.5, 3, 250)
    assert (bridge.rebirth_on_gap, bridge.topic_prefix) == (False, "42")
    assert settings.gateway.port == 8001
    assert Settings().broker.port == 1884  # built directly: the same reading


def test_environment_text_of_the_wrong_kind_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSPC_BROKER__PORT", "1883.5")
    monkeypatch.setenv("OPENSPC_BROKER__TLS", "1")
    monkeypatch.setenv("OPENSPC_BRIDGE__HISTORY_SIZE", "yes")
    assert faults(write(tmp_path, "")) == [
        'environment OPENSPC_BROKER__PORT: broker.port = "1883.5": must be a whole number',
        'environment OPENSPC_BROKER__TLS: broker.tls = "1": must be true or false',
        'environment OPENSPC_BRIDGE__HISTORY_SIZE: bridge.history_size = "yes":'
        " must be a whole number",
    ]


def test_users_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")).bridge.users_file is None
    settings = load_settings(write(tmp_path, '[bridge]\nusers_file = "mosquitto/roles.json"\n'))
    assert settings.bridge.users_file == tmp_path.absolute() / "mosquitto" / "roles.json"
    assert faults(write(tmp_path, "[bridge]\nusers_file = 5\n")) == [
        "bridge.users_file = 5: must be a file path (a string)"
    ]
