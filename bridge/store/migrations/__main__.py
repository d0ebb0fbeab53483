"""Developer tools for the schema migrations: ``scripts/new-revision`` (docs/bridge.md).

python -m bridge.store.migrations revision "add dead letters"
python -m bridge.store.migrations check
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bridge.store._migrate import check_tables, head_revision, new_revision


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge.store.migrations",
        description="Developer tools for the schema migrations (docs/bridge.md).",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    rev = sub.add_parser("revision", help="write the next revision from _tables.py")
    rev.add_argument("message", help='what it changes, e.g. "add dead letters"')
    sub.add_parser("check", help="exit 1 if _tables.py differs from the head revision")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.action == "revision":
        path = new_revision(args.message)
        ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
        if ruff is not None:
            subprocess.run([ruff, "format", "-q", str(path)], check=False)
        print(f"wrote {path}")
        print("review it, then: .venv/bin/python -m pytest tests/integration/test_migrations.py")
        return 0
    differences = check_tables()
    for difference in differences:
        print(difference)
    if differences:
        print("_tables.py differs from the migrations: scripts/new-revision 'what changed'")
        return 1
    print(f"_tables.py matches the migrations at revision {head_revision()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
