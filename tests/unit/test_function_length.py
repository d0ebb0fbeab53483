"""No function in bridge/ or engine/ over 60 lines without a written reason (issue 11).

A new long function fails here until it is split or given its reason in ``LONG``; a listed
one that got short again fails too, so the list stays the truth (docs/architecture.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 60  # def line to last line, docstring and comments included

LONG: dict[str, str] = {
    # came in the same round as this rule, from branches written before it (to split next)
    "bridge/_bench/_clients.py::subscriber": "paho callbacks closing over one run's counters; "
    "the plant phase added its arrival times",
    "bridge/_bench/_run.py::_plant": "the plant phase's steps in order (bridge, subscriber, "
    "paced publisher, RSS sampler, report); to split by step",
    "bridge/_cli/bench.py::configure": "argparse options, one statement each",
    "bridge/_cli/bench.py::main": "one branch per option of a flat CLI; to split with configure",
    "bridge/readings.py::parse_count": "every accepted form of an attribute reading with its "
    "precise refusal, as parse_reading does for measurements",
    "bridge/gateway/_bench.py::_clients": "one benchmark client's whole life in one view",
    "bridge/gateway/_bench.py::_run": "the gateway benchmark's steps in order (broker, bridge, "
    "gateway, clients, report); to split by step",
    "bridge/readings.py::parse_reading": "the hot path's one function for every accepted "
    "form, each refusal with its precise reason (docs/performance.md)",
    "bridge/store/migrations/versions/0001_release_0_1_0.py::upgrade": "a migration is the "
    "schema written out, table after table; never edited once released",
    "engine/_engine.py::CharacteristicEngine._advance": "the per-sample hot path: every "
    "rule's counters in one pass, no call per rule (docs/performance.md)",
    "engine/alarms/_bench.py::overdue_costs": "a benchmark's measurements in order",
}


def _functions(path: Path) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                found.append((name, (child.end_lineno or child.lineno) - child.lineno + 1))
                walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")

    walk(ast.parse(path.read_text(encoding="utf-8")), "")
    return found


def _long_functions() -> dict[str, int]:
    long: dict[str, int] = {}
    for package in ("bridge", "engine"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "_pb" in path.relative_to(ROOT).parts:
                continue  # generated protobuf code
            where = path.relative_to(ROOT).as_posix()
            for name, lines in _functions(path):
                if lines > MAX_LINES:
                    long[f"{where}::{name}"] = lines
    return long


def test_no_function_over_60_lines_without_a_reason() -> None:
    unexplained = {name: lines for name, lines in _long_functions().items() if name not in LONG}
    assert unexplained == {}, "split these, or give each its reason in LONG"


def test_every_listed_long_function_is_still_long() -> None:
    assert sorted(set(LONG) - set(_long_functions())) == [], "no longer long: drop from LONG"
