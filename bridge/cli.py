"""The `openspc` command: one entry point, one module per sub-command in ``bridge._cli``.

Each sub-command module exposes ``HELP`` (one line), ``configure(parser)`` and
``main(args) -> int``; heavy imports happen inside ``main`` so ``openspc --help`` stays fast.
Exit status: 0 success, 1 runtime failure, 2 a usage, input or configuration mistake.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

SUBCOMMANDS = ("run", "gateway", "demo", "analyze", "bench", "users")


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"bridge._cli.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"bridge._cli.{name}":
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openspc",
        description="OpenSPC Bridge: statistical process control for MQTT shop floors.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        module = _load(name)
        if module is None:
            continue
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module: ModuleType = args._module  # noqa: SLF001  set_defaults(_module=...): underscored so no option can clash
    try:
        return int(module.main(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
