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
    parser.add_argument("file", type=Path, metavar="FILE.csv", help="a CSV with a 'value' column")
    parser.add_argument(
        "-n",
        "--subgroup-size",
        type=int,
        required=True,
        metavar="N",
        help="readings per subgroup (1..25), taken in file order",
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
        default="nelson",
        metavar="PRESET",
        help="'nelson' (default), 'western_electric', or rule ids such as 1,2,5",
    )
    parser.add_argument("--usl", type=float, default=None, help="upper specification limit")
    parser.add_argument("--lsl", type=float, default=None, help="lower specification limit")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _parse_rules(text: str) -> str | list[int]:
    if all(part.strip().isdigit() for part in text.split(",")):
        return [int(part) for part in text.split(",")]
    return text


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

    return {
        "limits": limits_payload(analysis.limits, None, stamp),
        "points": [
            {
                "index": p.index,
                "value": plotted_value(p.value, subgroup_size),
                "range": figure(p.range),
                "zone": p.zone.value,
                "failed_rules": list(p.failed_rules),
                "range_failed_rules": list(p.range_failed_rules),
            }
            for p in analysis.points
        ],
    }


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _table(analysis: Analysis, args: argparse.Namespace, stamps: list[str] | None) -> str:
    from engine import method_for

    lim = analysis.limits
    n = args.subgroup_size
    chart = {"moving_range": "MR", "r_bar_d2": "R", "s_bar_c4": "S"}[method_for(n).value]
    lines = [
        f"{args.file}: {len(analysis.points)} subgroups of {n}, limits from the first "
        f"{lim.sample_count} ({lim.method.value}), rules {args.rules}",
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
        row += [_num(p.value), _num(p.range), p.zone.value, ",".join(failed) or "-"]
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


def main(args: argparse.Namespace) -> int:
    from engine import InsufficientData, ZeroDispersion, analyze, iso_z, resolve_rules

    def fail(message: str) -> int:
        print(f"openspc analyze: {message}", file=sys.stderr)
        return 2

    n: int = args.subgroup_size
    try:
        resolve_rules(_parse_rules(args.rules))
    except ValueError as exc:
        return fail(f"--rules: {exc}")
    try:
        values, stamps = _read(args.file)
        if not values:
            raise _InputError(f"{args.file}: no readings")
        analysis = analyze(
            values,
            n,
            baseline=args.baseline,
            rules=_parse_rules(args.rules),  # checked above
            usl=args.usl,
            lsl=args.lsl,
        )
    except _InputError as exc:
        return fail(str(exc))
    except InsufficientData as exc:
        return fail(
            f"{args.file}: too few subgroups for the baseline: {exc.needed} subgroups of {n} "
            f"({exc.needed * n} readings) needed, the file has {len(values)} readings"
        )
    except ZeroDispersion as exc:
        return fail(f"{args.file}: {exc}")
    except ValueError as exc:  # a bad subgroup size, baseline or rules setting
        return fail(str(exc))
    if args.json:
        stamp = iso_z(_limits_time(stamps, n, args.baseline))
        text = json.dumps(_document(analysis, stamp, n), allow_nan=False)
    else:
        text = _table(analysis, args, stamps)
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `openspc analyze ... | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
