"""The revisions form one numbered line, 0001 first (docs/bridge.md, "Schema migrations").

Two branches that each add a revision after the same one give two heads, which the bridge
refuses to start on: this test names the fix.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from alembic.script import ScriptDirectory

from bridge.store._migrate import BASELINE, alembic_config, head_revision, script_location
from bridge.store._schema import newest_revision


def test_the_revisions_are_one_numbered_line_from_0001() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    heads = script.get_heads()
    assert len(heads) == 1, (
        f"the migrations have {len(heads)} heads {sorted(heads)}: set the later revision's "
        "down_revision to the other's id and renumber it (docs/bridge.md, Schema migrations)"
    )
    line = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in line] == [f"{n:04d}" for n in range(1, len(line) + 1)]
    assert line[0].revision == BASELINE
    assert line[0].down_revision is None
    for before, after in itertools.pairwise(line):
        assert after.down_revision == before.revision
    assert head_revision() == line[-1].revision


def test_each_revision_file_is_named_after_its_revision() -> None:
    for path in (script_location() / "versions").glob("[0-9]*.py"):
        declared = re.search(r'^revision = "(\d{4})"$', path.read_text(), re.MULTILINE)
        assert declared is not None, path.name
        assert path.name.startswith(f"{declared.group(1)}_"), path.name


def test_the_newest_revision_file_is_alembics_head() -> None:
    """The store's check at start-up reads the revision files' names instead of Alembic
    (bridge/store/_schema.py): both must name the same head."""
    assert newest_revision() == head_revision()


def test_no_revision_files_means_only_alembic_can_tell(tmp_path: Path) -> None:
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "__init__.py").write_text("")
    assert newest_revision(tmp_path) is None
    assert newest_revision(tmp_path / "missing") is None
    (tmp_path / "versions" / "0002_b.py").write_text("")
    (tmp_path / "versions" / "0010_c.py").write_text("")
    (tmp_path / "versions" / "0009_d.pyc").write_text("")
    assert newest_revision(tmp_path) == "0010"
