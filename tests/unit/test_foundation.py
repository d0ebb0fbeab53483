"""The foundation: the `openspc` command is wired and every sub-command module loads."""

from __future__ import annotations

import pytest

from bridge.cli import build_parser


def test_openspc_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "COMMAND" in capsys.readouterr().out
