"""`openspc analyze` end to end: through `bridge.cli.main`, and once as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from engine import analyze, figure, limits_payload

ROOT = Path(__file__).resolve().parents[2]
SHAFT = ROOT / "config" / "examples" / "shaft-od.csv"


def shaft_values() -> list[float]:
    lines = SHAFT.read_text().splitlines()[1:]
    return [float(line.split(",")[1]) for line in lines]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["analyze", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_json_of_the_shaft_example(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run([str(SHAFT), "--subgroup-size", "5", "--json"], capsys)
    assert (status, err) == (0, "")
    doc: dict[str, Any] = json.loads(out)
    expected = analyze(shaft_values(), 5)
    # the limits' time is that of the reading that completed the 25-subgroup baseline
    assert doc["limits"] == limits_payload(expected.limits, None, "2026-11-02T06:24:48.000Z")
    assert doc["limits"]["method"] == "r_bar_d2"
    assert doc["limits"]["sample_count"] == 25
    assert doc["limits"]["capability"] is None
    points = doc["points"]
    assert len(points) == 40
    assert list(points[0]) == [
        "index", "value", "range", "zone", "failed_rules", "range_failed_rules",
    ]  # fmt: skip
    assert [p["index"] for p in points] == list(range(40))
    # the wild reading at subgroup 28 breaks both charts; the shift from 31 on is caught
    assert points[28]["failed_rules"] == [1]
    assert points[28]["range_failed_rules"] == [1]
    assert points[34]["failed_rules"] == [1, 2, 5, 6]  # nine on one side since subgroup 26
    assert all(p["failed_rules"] for p in points[32:])
    assert sum(1 for p in points[:25] if p["failed_rules"] or p["range_failed_rules"]) == 1
    for p, q in zip(points, expected.points, strict=True):
        # computed figures to 10 significant digits, as the bridge spells them: no binary noise
        assert (p["value"], p["range"], p["zone"]) == (
            figure(q.value),
            figure(q.range),
            q.zone.value,
        )
        assert len(repr(p["value"])) <= 12


def test_spec_limits_preset_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(SHAFT), "-n", "5", "--usl", "10.05", "--lsl", "9.95", "--rules"]
    status, out, _ = run([*args, "western_electric", "--json"], capsys)
    doc = json.loads(out)
    assert status == 0
    values = shaft_values()
    groups = [values[i : i + 5] for i in range(0, 125, 5)]
    grand_mean = sum(sum(g) / 5 for g in groups) / 25
    sigma = sum(max(g) - min(g) for g in groups) / 25 / 2.326  # R-bar / d2(5) as printed
    cp, cpk = 0.1 / (6 * sigma), min(10.05 - grand_mean, grand_mean - 9.95) / (3 * sigma)
    # payload figures carry 10 significant digits (docs/topics.md): exactly these
    assert doc["limits"]["sigma"] == float(f"{sigma:.10g}")
    assert doc["limits"]["capability"]["cp"] == float(f"{cp:.10g}")
    assert doc["limits"]["capability"]["cpk"] == float(f"{cpk:.10g}")
    assert {r for p in doc["points"] for r in p["failed_rules"]} <= {1, 2, 5, 6}
    status, out, _ = run([*args, "1,2"], capsys)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{SHAFT}: 40 subgroups of 5, limits from the first 25")
    assert f"capability: Cp {cp:.6g}  Cpk {cpk:.6g}" in out
    header = next(line for line in lines if line.startswith("index"))
    assert header.split() == ["index", "ts", "value", "R", "zone", "failed"]
    row_28 = next(line for line in lines if line.split()[:1] == ["28"])
    assert row_28.split()[1:] == [
        "2026-11-02T06:28:48Z", "10.0144", "0.076", "beyond_ucl", "1,R1", "*",
    ]  # fmt: skip
    assert lines[-1] == "9 of 40 points out of control"  # 28 and 32..39 (rule 6 not asked)


def test_individuals_and_trailing_readings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "od.csv"
    csv.write_text("value\n" + "".join(f"{v}\n" for v in [1, 3, 2, 4, 3, 9.5, 2]))
    status, out, _ = run([str(csv), "-n", "2", "--baseline", "2", "--json"], capsys)
    assert status == 0
    assert len(json.loads(out)["points"]) == 3  # the seventh reading fills no subgroup
    status, out, _ = run([str(csv), "-n", "1", "--baseline", "5", "--json"], capsys)
    doc = json.loads(out)
    assert doc["limits"]["method"] == "moving_range"
    assert doc["limits"]["center_line"] == pytest.approx(2.6)
    assert doc["points"][0]["range"] is None
    assert doc["points"][5]["failed_rules"] == [1]
    assert doc["points"][5]["range_failed_rules"] == [1]


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "missing.csv: no such file"),
        ("ts,reading\n1,2\n", [], "no 'value' column (columns found: ts, reading)"),
        ("value\n1\n2\nabc\n", [], "line 4: 'abc' is not a number"),
        ("value\n1\nnan\n", [], "line 3: 'nan' is not a finite number"),
        ("value\n1\n2\n3\n", [], "too few subgroups for the baseline: 25 subgroups of 5 "),
        ("value\n" + "5\n" * 10, ["--baseline", "2"], "no variation"),
        ("value\n1\n2\n", ["--rules", "nelsen"], "--rules: unknown rules preset 'nelsen'"),
        ("value\n", [], "no readings"),
    ],
)
def test_input_mistakes_are_one_line_and_status_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    args: list[str],
    message: str,
) -> None:
    path = tmp_path / "missing.csv"
    if content is not None:
        path.write_text(content)
    status, out, err = run([str(path), "-n", "5", "--json", *args], capsys)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("openspc analyze: ")
    assert message in err


def test_as_a_real_process(capsys: pytest.CaptureFixture[str]) -> None:
    openspc = Path(sys.executable).parent / "openspc"
    done = subprocess.run(
        [str(openspc), "analyze", str(SHAFT), "--subgroup-size", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    _, out, _ = run([str(SHAFT), "--subgroup-size", "5", "--json"], capsys)
    assert json.loads(done.stdout) == json.loads(out)
    bad = subprocess.run(
        [str(openspc), "analyze", "/nonexistent.csv", "-n", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr == "openspc analyze: /nonexistent.csv: no such file\n"


# --- chart families (docs/spc.md, "Chart families") --------------------------------------

ORANGE_JUICE = [12, 15, 8, 10, 4, 7, 16, 9, 14, 10, 5, 6, 17, 12, 22, 8, 10, 5, 13, 11]
ORANGE_JUICE += [20, 18, 24, 15, 9, 12, 7, 13, 9, 6]


def test_p_chart_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine import analyze_counts

    path = tmp_path / "cans.csv"
    rows = [f"2026-11-02T06:{i:02d}:00Z,{d},50" for i, d in enumerate(ORANGE_JUICE)]
    path.write_text("ts,defectives,inspected\n" + "\n".join(rows) + "\n")
    status, out, err = run([str(path), "--chart", "p", "--baseline", "30", "--json"], capsys)
    assert (status, err) == (0, "")
    doc = json.loads(out)
    expected = analyze_counts(ORANGE_JUICE, [50] * 30, "p", baseline=30)
    assert doc["limits"] == limits_payload(expected.limits, None, "2026-11-02T06:29:00.000Z")
    assert doc["limits"]["chart"] == "p"
    assert doc["limits"]["parameters"] == {"inspected": 50}
    points = doc["points"]
    assert list(points[0]) == [
        "index", "value", "range", "zone", "failed_rules", "range_failed_rules",
        "statistic", "ucl", "lcl",
    ]  # fmt: skip
    assert points[14]["value"] == 22
    assert isinstance(points[14]["value"], int)
    assert points[14]["statistic"] == 0.44
    assert [p["index"] for p in points if p["failed_rules"]] == [14, 22]  # rule 1 only
    status, table, _ = run([str(path), "--chart", "p", "--baseline", "30"], capsys)
    assert status == 0
    assert "2 of 30 points out of control" in table
    assert "p chart, 30 samples" in table


def test_cusum_and_ewma_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "table91.csv"
    values = [9.45, 7.99, 9.29, 11.66, 12.16, 10.18, 8.04, 11.46, 9.20, 10.34, 9.03, 11.47]
    values += [10.51, 9.40, 10.08, 9.37, 10.62, 10.31, 8.52, 10.84, 10.90, 9.33, 12.29]
    values += [11.50, 10.60, 11.08, 10.38, 11.62, 11.31, 10.52]
    path.write_text("value\n" + "\n".join(str(v) for v in values) + "\n")
    args = [str(path), "--chart", "cusum", "--baseline", "20", "--cusum-h", "4", "--json"]
    status, out, err = run(args, capsys)
    assert (status, err) == (0, "")
    doc = json.loads(out)
    assert (doc["limits"]["chart"], doc["limits"]["parameters"]) == ("cusum", {"k": 0.5, "h": 4})
    assert doc["limits"]["lcl"] == 0.0
    points = doc["points"]
    assert all(p["statistic"] is None and p["zone"] is None for p in points[:20])
    assert all(p["cusum_upper"] is not None for p in points[20:])
    assert all(p["ucl"] == doc["limits"]["ucl"] for p in points[20:])
    args = [str(path), "--chart", "ewma", "--baseline", "20", "--ewma-lambda", "0.1", "--json"]
    status, out, _ = run(args, capsys)
    ewma = json.loads(out)["points"]
    assert ewma[20]["ucl"] < ewma[29]["ucl"]  # the limits widen towards the asymptote
    assert "cusum_upper" not in ewma[20]


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("value\n1\n2\n", ["--chart", "ewma", "--ewma-lambda", "0"], "--ewma-lambda: must lie"),
        ("value\n1\n2\n", ["--chart", "cusum", "--cusum-h", "-1"], "--cusum-h: must be positive"),
        ("defectives\n1\n", ["--chart", "np"], "--inspected: an np chart needs it"),
        ("defectives\n1\n", ["--chart", "p"], "no 'inspected' column"),
        (
            "defectives,inspected\n1,5\n-1,5\n",
            ["--chart", "p"],
            "line 3: defectives -1: must not be negative",
        ),
        ("defectives,inspected\n6,5\n", ["--chart", "p"], "more than the 5 inspected"),
        ("defects,units\n1,0\n", ["--chart", "u"], "units 0.0: must be positive"),
        ("defects\n1.5\n", ["--chart", "c"], "must be a whole number"),
        ("defects\n1\n", ["--chart", "c", "-n", "5"], "--subgroup-size: a c chart takes"),
        ("defects\n1\n2\n", ["--chart", "c", "--rules", "nelsen"], "--rules: unknown"),
        ("defects\n1\n2\n", ["--chart", "c"], "too few samples for the baseline: 25"),
        ("defects\n0\n0\n", ["--chart", "c", "--baseline", "2"], "need some defects"),
        ("value\n1\n2\n", ["--chart", "bar"], "--chart: expected one of imr"),
        ("value\n1\n2\n", ["--chart", "ewma", "--rules", "nelson"], "--rules: a ewma chart"),
        ("value\n1\n2\n", [], "--subgroup-size is required"),
    ],
)
def test_chart_mistakes_are_one_line_and_status_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    args: list[str],
    message: str,
) -> None:
    path = tmp_path / "in.csv"
    path.write_text(content)
    status, out, err = run([str(path), "--json", *args], capsys)
    assert (status, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("openspc analyze: ")
    assert message in err


def test_attribute_charts_judge_rule_1_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.csv"
    counts = [5, 7, 6, 5, 4, 6, 5, 7, 6, 5] + [8] * 10  # ten above CL: rule 2 on request
    path.write_text("defects\n" + "\n".join(str(c) for c in counts) + "\n")
    base = [str(path), "--chart", "c", "--baseline", "10", "--json"]
    _, out, _ = run(base, capsys)
    assert not any(p["failed_rules"] for p in json.loads(out)["points"])
    _, out, _ = run([*base, "--rules", "1,2"], capsys)
    assert [p["failed_rules"] for p in json.loads(out)["points"]][-1] == [2]
