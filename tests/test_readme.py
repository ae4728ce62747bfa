"""The README holds exactly two set-up commands, and CI runs the second one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_exactly_two_setup_commands() -> None:
    commands = _commands()
    assert len(commands) == 2
    run, test = commands
    assert run.startswith("python3 -m venv .venv") and run.endswith("mmframe serve --demo")
    assert test.startswith("python3 -m venv .venv") and test.endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert _commands()[1] in ci.splitlines()
    assert "MMFRAME_REQUIRE_SERVICES=1" in ci
