"""`openspc analyze`: a Phase I review of a CSV of readings, offline, with the bridge's engine."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine import Analysis

HELP = "analyse a CSV of readings offline: limits from the first subgroups, every point judged"


class _InputError(Exception):
    """A mistake in the command's input: reported as one line, exit status 2."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        type=Path,
        metavar="FILE.csv",
        help="a CSV with a 'value' column, or 'defectives,inspected' (p, np), 'defects' (c), "
        "'defects,units' (u)",
    )
    parser.add_argument(
        "-n",
        "--subgroup-size",
        type=int,
        default=None,
        metavar="N",
        help="readings per subgroup (1..25), taken in file order (variables, EWMA, CUSUM)",
    )
    parser.add_argument(
        "--chart",
        default=None,
        metavar="NAME",
        help="imr, xbar_r, xbar_s (default: by subgroup size), p, np, c, u, ewma, cusum",
    )
    parser.add_argument("--ewma-lambda", type=float, default=0.2, metavar="LAMBDA")
    parser.add_argument("--ewma-l", type=float, default=3.0, metavar="L")
    parser.add_argument("--cusum-k", type=float, default=0.5, metavar="K")
    parser.add_argument("--cusum-h", type=float, default=5.0, metavar="H")
    parser.add_argument(
        "--inspected", type=int, default=None, metavar="N", help="np: the number inspected"
    )
    parser.add_argument(
        "--baseline",
        type=int,
        default=25,
        metavar="K",
        help="limits come from the first K subgroups (default 25)",
    )
    parser.add_argument(
        "--rules",
        default=None,
        metavar="PRESET",
        help="'nelson', 'western_electric', or rule ids such as 1,2,5 (default: 'nelson' for "
        "the Shewhart variables charts, rule 1 for the others)",
    )
    parser.add_argument("--usl", type=float, default=None, help="upper specification limit")
    parser.add_argument("--lsl", type=float, default=None, help="lower specification limit")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


_FLAGS = {
    "ewma_lambda": "--ewma-lambda",
    "ewma_l": "--ewma-l",
    "cusum_k": "--cusum-k",
    "cusum_h": "--cusum-h",
    "inspected": "--inspected",
    "subgroup_size": "--subgroup-size",
    "chart": "--chart",
    "rules": "--rules",
}
# chart -> (count column, size column, whether the size column must be there)
_COLUMNS: dict[str, tuple[str, str | None, bool]] = {
    "p": ("defectives", "inspected", True),
    "np": ("defectives", "inspected", False),
    "c": ("defects", None, False),
    "u": ("defects", "units", True),
}


def _parse_rules(text: str | None) -> str | list[int] | None:
    if text is None:
        return None
    if all(part.strip().isdigit() for part in text.split(",")):
        return [int(part) for part in text.split(",")]
    return text


class _Table:
    """The columns of the file: the numbers of ``wanted`` (a missing optional column is all
    None), the ``ts`` column as written, and each row's line number."""

    def __init__(self) -> None:
        self.columns: dict[str, list[float | None]] = {}
        self.stamps: list[str] | None = None
        self.lines: list[int] = []


def _read_columns(path: Path, required: list[str], optional: list[str]) -> _Table:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise _InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise _InputError(f"{path}: cannot read it ({exc.strerror})") from None
    table = _Table()
    with handle:
        reader = csv.reader(handle)
        names = [name.strip().lower() for name in next(reader, None) or []]
        for name in required:
            if name not in names:
                found = ", ".join(n for n in names if n) or "none"
                raise _InputError(f"{path}: no '{name}' column (columns found: {found})")
        cols = {name: names.index(name) for name in required + optional if name in names}
        ts_col = names.index("ts") if "ts" in names else None
        table.columns = {name: [] for name in cols}
        stamps: list[str] = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            line = reader.line_num
            for name, values in table.columns.items():
                cell = row[cols[name]].strip() if cols[name] < len(row) else ""
                try:
                    value = float(cell)
                except ValueError:
                    raise _InputError(f"{path} line {line}: {cell!r} is not a number") from None
                if not math.isfinite(value):
                    raise _InputError(f"{path} line {line}: {cell!r} is not a finite number")
                values.append(value)
            table.lines.append(line)
            if ts_col is not None:
                stamps.append(row[ts_col].strip() if ts_col < len(row) else "")
    table.stamps = stamps if ts_col is not None else None
    return table


def _read(path: Path) -> tuple[list[float], list[str] | None]:
    """The ``value`` column as numbers and the ``ts`` column as written (if there is one)."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise _InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise _InputError(f"{path}: cannot read it ({exc.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        names = [name.strip().lower() for name in header or []]
        if "value" not in names:
            found = ", ".join(name for name in names if name) or "none"
            raise _InputError(f"{path}: no 'value' column (columns found: {found})")
        col = names.index("value")
        ts_col = names.index("ts") if "ts" in names else None
        values: list[float] = []
        stamps: list[str] = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            line = reader.line_num
            cell = row[col].strip() if col < len(row) else ""
            try:
                value = float(cell)
            except ValueError:
                raise _InputError(f"{path} line {line}: {cell!r} is not a number") from None
            if not math.isfinite(value):
                raise _InputError(f"{path} line {line}: {cell!r} is not a finite number")
            values.append(value)
            if ts_col is not None:
                stamps.append(row[ts_col].strip() if ts_col < len(row) else "")
    return values, (stamps if ts_col is not None else None)


def _parse_ts(text: str) -> datetime | None:
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text) / 1000, tz=UTC)  # epoch milliseconds
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return ts if ts.tzinfo is not None else None


def _limits_time(stamps: list[str] | None, n: int, baseline: int) -> datetime:
    """When the limits were set: the time of the reading that completed the baseline when
    the file says it, else now."""
    if stamps:
        ts = _parse_ts(stamps[baseline * n - 1])
        if ts is not None:
            return ts
    return datetime.now(UTC)


def _document(analysis: Analysis, stamp: str, subgroup_size: int) -> dict[str, Any]:
    # numbers spelt as the bridge spells them (engine/_serialize.py), so the two agree exactly
    from engine import figure, limits_payload, plotted_value

    shewhart = analysis.chart in _SHEWHART
    points: list[dict[str, Any]] = []
    for p in analysis.points:
        point: dict[str, Any] = {
            "index": p.index,
            "value": (
                int(p.value)
                if analysis.chart in _ATTRIBUTE
                else plotted_value(p.value, subgroup_size)
            ),
            "range": figure(p.range),
            "zone": None if p.zone is None else p.zone.value,
            "failed_rules": list(p.failed_rules),
            "range_failed_rules": list(p.range_failed_rules),
        }
        if not shewhart:  # the chart families of docs/spc.md
            point |= {"statistic": figure(p.statistic), "ucl": figure(p.ucl), "lcl": figure(p.lcl)}
            if analysis.chart == "cusum":
                point |= {
                    "cusum_upper": figure(p.cusum_upper),
                    "cusum_lower": figure(p.cusum_lower),
                }
        points.append(point)
    return {"limits": limits_payload(analysis.limits, None, stamp), "points": points}


_SHEWHART = ("imr", "xbar_r", "xbar_s")
_ATTRIBUTE = ("p", "np", "c", "u")


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _table(analysis: Analysis, args: argparse.Namespace, stamps: list[str] | None) -> str:
    from engine import chart_family
    from engine.charts import VariablesFamily

    family = chart_family(analysis.chart)
    if not isinstance(family, VariablesFamily):
        return _family_table(analysis, args, stamps)
    lim = analysis.limits
    assert lim.range is not None
    n = args.subgroup_size
    chart = family.secondary_name  # MR, R or S
    lines = [
        f"{args.file}: {len(analysis.points)} subgroups of {n}, limits from the first "
        f"{lim.sample_count} ({lim.method.value}), rules {args.rules or 'nelson'}",
        f"X chart:  CL {_num(lim.center_line)}  UCL {_num(lim.ucl)}  LCL {_num(lim.lcl)}  "
        f"sigma {_num(lim.sigma)}",
        f"{chart} chart: CL {_num(lim.range.center_line)}  UCL {_num(lim.range.ucl)}  "
        f"LCL {_num(lim.range.lcl)}",
    ]
    cap = lim.capability
    if cap is not None:
        lines.append(
            f"capability: Cp {_num(cap.cp)}  Cpk {_num(cap.cpk)}  "
            f"Pp {_num(cap.pp)}  Ppk {_num(cap.ppk)}"
        )
    headers = ["index", *(["ts"] if stamps is not None else []), "value", chart, "zone"]
    headers += ["failed", ""]
    rows: list[list[str]] = []
    for p in analysis.points:
        failed = [str(r) for r in p.failed_rules] + [f"{chart}{r}" for r in p.range_failed_rules]
        row = [str(p.index)]
        if stamps is not None:
            row.append(stamps[(p.index + 1) * n - 1])
        zone = "-" if p.zone is None else p.zone.value
        row += [_num(p.value), _num(p.range), zone, ",".join(failed) or "-"]
        row.append("*" if failed else "")
        rows.append(row)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    right = {0, headers.index("value"), headers.index(chart)}

    def fmt(cells: list[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    lines += ["", fmt(headers), *(fmt(r) for r in rows)]
    flagged = sum(1 for p in analysis.points if not p.in_control)
    lines += ["", f"{flagged} of {len(analysis.points)} points out of control"]
    return "\n".join(lines)


def _family_table(analysis: Analysis, args: argparse.Namespace, stamps: list[str] | None) -> str:
    """The table of a p, np, c, u, EWMA or CUSUM chart: each point with its own limits."""
    lim = analysis.limits
    params = "".join(f", {k} {_num(v)}" for k, v in lim.parameters)
    lines = [
        f"{args.file}: {analysis.chart} chart, {len(analysis.points)} samples, limits from the "
        f"first {lim.sample_count} ({lim.method.value}{params}), rules {args.rules or '1'}",
        f"CL {_num(lim.center_line)}  UCL {_num(lim.ucl)}  LCL {_num(lim.lcl)}  "
        f"sigma {_num(lim.sigma)}",
    ]
    headers = ["index", *(["ts"] if stamps is not None else []), "value", "statistic"]
    headers += ["lcl", "ucl", "zone", "failed", ""]
    rows: list[list[str]] = []
    per = 1 if analysis.chart in ("p", "np", "c", "u") else args.subgroup_size or 1
    for p in analysis.points:
        row = [str(p.index)]
        if stamps is not None:
            row.append(stamps[(p.index + 1) * per - 1])
        row += [_num(p.value), _num(p.statistic), _num(p.lcl), _num(p.ucl)]
        row += ["-" if p.zone is None else p.zone.value]
        row += [",".join(str(r) for r in p.failed_rules) or "-", "*" if p.failed_rules else ""]
        rows.append(row)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines += ["", *("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                    for r in [headers, *rows])]  # fmt: skip
    flagged = sum(1 for p in analysis.points if not p.in_control)
    lines += ["", f"{flagged} of {len(analysis.points)} points out of control"]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from engine import InvalidChartSettings, iso_z, resolve_rules

    def fail(message: str) -> int:
        print(f"openspc analyze: {message}", file=sys.stderr)
        return 2

    try:
        if args.rules is not None:
            resolve_rules(_parse_rules(args.rules))
    except ValueError as exc:
        return fail(f"--rules: {exc}")
    try:
        analysis, stamps, per = _analyse(args)
    except _InputError as exc:
        return fail(str(exc))
    except InvalidChartSettings as exc:
        return fail(f"{_FLAGS.get(exc.key, exc.key)}: {exc.reason} (got {exc.value!r})")
    except ValueError as exc:  # a bad subgroup size, baseline or rules setting
        return fail(str(exc))
    if args.json:
        stamp = iso_z(_limits_time(stamps, per, args.baseline))
        text = json.dumps(_document(analysis, stamp, per), allow_nan=False)
    else:
        text = _table(analysis, args, stamps)
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `openspc analyze ... | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _analyse(args: argparse.Namespace) -> tuple[Analysis, list[str] | None, int]:
    """The analysis, the file's ``ts`` column, and how many rows make one sample."""
    from engine import CharacteristicSpec, chart_family, check_chart

    chart: str | None = args.chart
    kind = None if chart is None else chart_family(chart).kind
    n: int | None = args.subgroup_size
    if n is None and kind != "attribute" and chart not in ("imr", "ewma", "cusum"):
        raise _InputError("--subgroup-size is required for this chart (or name a --chart)")
    check_chart(  # the settings first, before the file is read
        CharacteristicSpec(
            id=0,
            subgroup_size=1 if n is None or kind == "attribute" else n,
            chart=chart,
            inspected=args.inspected,
            ewma_lambda=args.ewma_lambda,
            ewma_l=args.ewma_l,
            cusum_k=args.cusum_k,
            cusum_h=args.cusum_h,
        )
    )
    if kind == "attribute":
        return _analyse_counts(args, chart or "")
    n = n or 1
    if args.inspected is not None:
        raise _InputError("--inspected: only an np chart takes it")
    analysis, stamps = _analyse_values(args, n)
    return analysis, stamps, n


def _analyse_values(args: argparse.Namespace, n: int) -> tuple[Analysis, list[str] | None]:
    from engine import InsufficientData, ZeroDispersion, analyze

    values, stamps = _read(args.file)
    if not values:
        raise _InputError(f"{args.file}: no readings")
    try:
        analysis = analyze(
            values,
            n,
            baseline=args.baseline,
            rules=_parse_rules(args.rules),  # checked in main
            usl=args.usl,
            lsl=args.lsl,
            chart=args.chart,
            ewma_lambda=args.ewma_lambda,
            ewma_l=args.ewma_l,
            cusum_k=args.cusum_k,
            cusum_h=args.cusum_h,
        )
    except InsufficientData as exc:
        raise _InputError(
            f"{args.file}: too few subgroups for the baseline: {exc.needed} subgroups of {n} "
            f"({exc.needed * n} readings) needed, the file has {len(values)} readings"
        ) from None
    except ZeroDispersion as exc:
        raise _InputError(f"{args.file}: {exc}") from None
    return analysis, stamps


def _analyse_counts(args: argparse.Namespace, chart: str) -> tuple[Analysis, list[str] | None, int]:
    from engine import InsufficientData, InvalidCount, ZeroDispersion, analyze_counts

    if args.subgroup_size is not None:
        raise _InputError(f"--subgroup-size: a {chart} chart takes one count a sample")
    count_col, size_col, needed = _COLUMNS[chart]
    sizing = [] if size_col is None else [size_col]
    table = _read_columns(args.file, [count_col, *sizing] if needed else [count_col], sizing)
    counts = [c for c in table.columns[count_col] if c is not None]
    if not counts:
        raise _InputError(f"{args.file}: no readings")
    sizes = table.columns.get(size_col or "", [None] * len(counts))
    try:
        analysis = analyze_counts(
            counts,
            sizes,
            chart,
            baseline=args.baseline,
            rules=_parse_rules(args.rules),
            inspected=args.inspected,
        )
    except InvalidCount as exc:
        where = "" if exc.index is None else f" line {table.lines[exc.index]}"
        raise _InputError(f"{args.file}{where}: {exc.name} {exc.value!r}: {exc.reason}") from None
    except InsufficientData as exc:
        raise _InputError(
            f"{args.file}: too few samples for the baseline: {exc.needed} needed, the file "
            f"has {exc.got}"
        ) from None
    except ZeroDispersion as exc:
        raise _InputError(
            f"{args.file}: the {exc.sample_count} baseline samples give a centre line of "
            f"{exc.center_line:g}: control limits need some defects (and some good parts)"
        ) from None
    return analysis, table.stamps, 1
