"""The pipeline depends on the ports, never on a concrete adapter (docs/architecture.md,
"The layers"): no module of bridge/pipeline/ imports the MQTT adapter or the ``Store``."""

from __future__ import annotations

import ast
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[2] / "bridge" / "pipeline"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_the_pipeline_imports_no_concrete_adapter() -> None:
    banned = (
        "bridge._mqtt",
        "bridge.store.Store",
        "bridge.store._store",
        "paho.mqtt.client.Client",
    )
    offending = {
        path.name: sorted(name for name in _imports(path) if name.startswith(banned))
        for path in sorted(PIPELINE.glob("*.py"))
    }
    assert {name: found for name, found in offending.items() if found} == {}
