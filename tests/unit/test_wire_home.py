"""The wire contract keeps one home (docs/architecture.md): no topic of the bridge's tree is
spelt, and no message envelope shaped, outside ``bridge/wire/``.

Found in the syntax tree: string and bytes constants (f-string parts too) and dict literals;
docstrings and comments are prose and do not count, bytes do (a message joined by hand is
shaped too). Each remaining place is listed with its reason; a new one fails here, and a
listed one that is gone must leave the list.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = ROOT / "bridge"

TOPIC = re.compile(r"/(?:char|cmd|reply)/|/bridge/(?:status|errors|metrics|cluster|nodes)\b")
"""A level of the bridge's tree: ``<prefix>/char/...``, ``<prefix>/bridge/status``..."""

TOPICS_ALLOWED: dict[str, tuple[int, str]] = {
    "bridge/gateway/_topics.py": (1, "the gateway's parser of the result kinds it serves"),
    "bridge/demo.py": (2, "a printed hint (mosquitto_sub -t 'openspc/char/#'), a TOML comment"),
    "bridge/_cli/users.py": (1, "the help text of --characteristics"),
}

ENVELOPES_ALLOWED: dict[str, tuple[int, str]] = {
    "bridge/gateway/_protocol.py": (4, "the gateway's own WebSocket protocol (docs/gateway.md)"),
    "bridge/gateway/_bench.py": (3, "a WebSocket client of that protocol"),
}


def _docstrings(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _sources() -> list[tuple[str, ast.AST]]:
    return [
        (path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), str(path)))
        for path in sorted(BRIDGE.rglob("*.py"))
        if "wire" not in path.relative_to(BRIDGE).parts
    ]


def _scan(tree: ast.AST) -> tuple[int, int]:
    """How many topics of the tree ``tree`` spells, and how many envelopes it shapes."""
    prose = _docstrings(tree)
    topics = envelopes = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            if id(node) in prose:
                continue
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            topics += bool(TOPIC.search(text))
            envelopes += '{"type":' in text or '{"type": ' in text
        elif isinstance(node, ast.Dict):
            envelopes += "type" in {k.value for k in node.keys if isinstance(k, ast.Constant)}
    return topics, envelopes


@functools.cache  # one parse of bridge/ for both tests
def _counts() -> tuple[dict[str, int], dict[str, int]]:
    topics: dict[str, int] = {}
    envelopes: dict[str, int] = {}
    for name, tree in _sources():
        spelt, shaped = _scan(tree)
        if spelt:
            topics[name] = spelt
        if shaped:
            envelopes[name] = shaped
    return topics, envelopes


def test_every_topic_of_the_tree_is_built_in_bridge_wire() -> None:
    topics, _ = _counts()
    assert dict(topics) == {name: count for name, (count, _) in TOPICS_ALLOWED.items()}


def test_every_message_envelope_is_shaped_in_bridge_wire() -> None:
    _, envelopes = _counts()
    assert dict(envelopes) == {name: count for name, (count, _) in ENVELOPES_ALLOWED.items()}


def test_the_check_sees_what_it_looks_for() -> None:
    spelt = ast.parse(
        'def f(p, c):\n    """p/char/1 in prose is not counted"""\n'
        '    return f"{p}/char/{c}/sample", "x/bridge/status", "x/reply/kim"'
    )
    assert _scan(spelt) == (3, 0)
    shaped = ast.parse('a = {"type": "sample", "payload": {}}\nb = b\'{"type":"sample"}\'\n')
    assert _scan(shaped) == (0, 2)  # a dict, and bytes joined by hand
    assert _scan(ast.parse("c = '{\"type\": 1}'")) == (0, 1)
