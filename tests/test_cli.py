"""``mmframe serve --demo`` as a user runs it: a real process, real signals, the paper book checked at the end."""

from __future__ import annotations

import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from mmframe.cli import cli

EXAMPLE_INSTALLED = any(ep.name == "fixed_spread" for ep in importlib.metadata.entry_points(group="mmframe"))
needs_example = pytest.mark.skipif(not EXAMPLE_INSTALLED, reason="the demo strategy (example plugin) is not installed")

STATUS = re.compile(
    r"\[(?P<market>[A-Z]+/USDT:spot)\] running \| .* \| "
    r"bids (?P<bids>\d+) asks (?P<asks>\d+) \| .* fills (?P<fills>\d+)"
)


def _serve(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "mmframe", "serve", "--demo", "--status-interval", "1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


@needs_example
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_demo_quotes_both_markets_fills_and_stops_clean_on_a_signal(signum: int) -> None:
    proc = _serve("--seed", "7")
    lines: list[str] = []
    quoting: set[str] = set()
    filled: set[str] = set()
    deadline = time.monotonic() + 30
    try:
        assert proc.stdout is not None
        while time.monotonic() < deadline and not (len(quoting) == 2 and len(filled) == 2):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = STATUS.search(line)
            if m:
                if int(m["bids"]) > 0 and int(m["asks"]) > 0:
                    quoting.add(m["market"])
                if int(m["fills"]) > 0:
                    filled.add(m["market"])
        assert quoting == {"BTC/USDT:spot", "ETH/USDT:spot"}, "".join(lines)
        assert filled == {"BTC/USDT:spot", "ETH/USDT:spot"}, "".join(lines)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "cancelling our orders and stopping" in text
    assert "Open orders left on the paper book: BTC/USDT 0, ETH/USDT 0" in text
    assert "Strategy [BTC/USDT:spot] initialized successfully" in text
    assert "Traceback" not in text


def test_serve_without_a_configuration_says_what_to_do() -> None:
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2 and "pass --demo" in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "mmframe, version" in result.output
