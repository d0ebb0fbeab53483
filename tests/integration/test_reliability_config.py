"""Bad configuration: every kind of mistake is one clear line and exit status 2.

``openspc run --config FILE`` as a real process, for a table of broken files (and broken
``OPENSPC_...`` overrides). Each case holds one fault, so stderr must be exactly one line,
naming what is wrong (the ``expect`` text), and never a traceback. Nothing needs a broker:
the config is checked before anything connects.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.reliability import OPENSPC, report

pytestmark = pytest.mark.reliability

GOOD_CHAR = '[[characteristic]]\nid = 1\nname = "Shaft OD"\nsubgroup_size = 5\n'


@dataclass(frozen=True)
class Case:
    name: str
    text: str | bytes | None  # None: the file does not exist
    expect: str  # a piece of the one line
    env: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("toml syntax", "[broker\nport = 1883\n" + GOOD_CHAR, "line 1"),
    Case("toml syntax, value", "[broker]\nport = \n" + GOOD_CHAR, "line 2"),
    Case("not utf-8", b'[broker]\nhost = "\xff\xfe"\n', "UTF-8"),
    Case("unknown key", '[broker]\nhots = "plant"\n' + GOOD_CHAR, "hots"),
    Case("unknown section", "[brokr]\nport = 1883\n" + GOOD_CHAR, "brokr"),
    Case("wrong type", '[broker]\nport = "eighteen"\n' + GOOD_CHAR, "broker.port"),
    Case("wrong type, bool", "[broker]\ntls = 3\n" + GOOD_CHAR, "broker.tls"),
    Case("out of range, port", "[broker]\nport = 70000\n" + GOOD_CHAR, "broker.port = 70000"),
    Case(
        "out of range, subgroup",
        '[[characteristic]]\nid = 1\nname = "x"\nsubgroup_size = 26\n',
        "subgroup_size = 26",
    ),
    Case("out of range, batch", "[bridge]\nbatch_max = 0\n" + GOOD_CHAR, "bridge.batch_max"),
    Case(
        "duplicate ids",
        GOOD_CHAR + '[[characteristic]]\nid = 1\nname = "Bore"\n',
        "id",
    ),
    Case("missing file", None, "missing.toml"),
    Case("bad database url", '[database]\nurl = "mysql://x/y"\n' + GOOD_CHAR, "database.url"),
    Case("bad rules preset", GOOD_CHAR + 'rules = "nelsen"\n', "rules"),
    Case(
        "password twice",
        '[broker]\npassword = "a"\npassword_file = "p.txt"\n' + GOOD_CHAR,
        "password",
    ),
    Case("bad env override", GOOD_CHAR, "OPENSPC_BROKER__PORT", {"OPENSPC_BROKER__PORT": "abc"}),
    Case(
        "env override out of range",
        GOOD_CHAR,
        "OPENSPC_BRIDGE__HISTORY_SIZE",
        {"OPENSPC_BRIDGE__HISTORY_SIZE": "0"},
    ),
    Case("bad env JSON", GOOD_CHAR, "OPENSPC_CHARACTERISTIC", {"OPENSPC_CHARACTERISTIC": "[{"}),
]


async def run_case(case: Case, tmp: Path, gate: asyncio.Semaphore) -> tuple[int | None, str]:
    path = tmp / f"{case.name.replace(' ', '-').replace(',', '')}.toml"
    if case.text is None:
        path = tmp / "missing.toml"
    elif isinstance(case.text, bytes):
        path.write_bytes(case.text)
    else:
        path.write_text(case.text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSPC_")}
    async with gate:
        process = await asyncio.create_subprocess_exec(
            str(OPENSPC),
            "run",
            "--config",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**env, **case.env},
            cwd=tmp,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    return process.returncode, (out + err).decode(errors="replace")


async def test_every_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    gate = asyncio.Semaphore(4)
    results = await asyncio.gather(*(run_case(c, tmp_path, gate) for c in CASES))
    wrong = []
    for case, (status, output) in zip(CASES, results, strict=True):
        lines = output.strip().splitlines()
        if (
            status != 2
            or len(lines) != 1
            or "Traceback" in output
            or case.expect.lower() not in output.lower()
        ):
            wrong.append(f"{case.name}: exit {status}, output:\n{output}")
    report(f"config: {len(CASES)} broken files, {len(CASES) - len(wrong)} one clear line + exit 2")
    assert not wrong, "\n\n".join(wrong)
