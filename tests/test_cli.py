"""``mmframe serve --demo`` as a user runs it: a real process in a fresh directory, the README's curl lines
against its control API, real signals, the paper book checked at the end."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest
from click.testing import CliRunner

from mmframe._cli import cli

ROOT = Path(__file__).parent.parent
DEMO_INSTALLED = any(ep.name == "external_index_follow" for ep in importlib.metadata.entry_points(group="mmframe"))
needs_example = pytest.mark.skipif(not DEMO_INSTALLED, reason="the demo strategy's plugin is not installed")

STATUS = re.compile(
    r"\[(?P<market>\d+_1) (?P<symbol>[A-Z]+/USDT)\] running \| .* \| "
    r"bids (?P<bids>\d+) asks (?P<asks>\d+) \| .* fills (?P<fills>\d+)"
)
LISTENING = re.compile(r"HTTP API server listening on 127\.0\.0\.1:(\d+)")


def _serve(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMFRAME_", "DB_", "API_PORT"))}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "mmframe", "serve", "--demo", "--status-interval", "1", "--api-port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
    )


def _read_until(stream: IO[str], lines: list[str], done: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done():  # type: ignore[operator]
        line = stream.readline()
        if not line:
            return
        lines.append(line)


def _readme_curls() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("curl ") and ":8081" in line]


@needs_example
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_demo_quotes_answers_the_readme_curls_and_stops_clean(tmp_path: Path, signum: int) -> None:
    proc = _serve(tmp_path, "--seed", "7")
    lines: list[str] = []
    quoting: set[str] = set()
    filled: set[str] = set()

    def ready() -> bool:
        for line in lines[-1:]:
            m = STATUS.search(line)
            if m:
                if int(m["bids"]) > 0 and int(m["asks"]) > 0:
                    quoting.add(m["symbol"])
                if int(m["fills"]) > 0:
                    filled.add(m["symbol"])
        return len(quoting) == 2 and len(filled) == 2

    try:
        assert proc.stdout is not None
        _read_until(proc.stdout, lines, ready, 30)
        text = "".join(lines)
        assert quoting == {"BTC/USDT", "ETH/USDT"}, text
        assert filled == {"BTC/USDT", "ETH/USDT"}, text
        port = LISTENING.search(text)
        assert port is not None, text
        if signum == signal.SIGINT and shutil.which("curl"):
            _run_readme_curls(int(port.group(1)))
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "cancelling our orders and stopping" in text
    assert "Open orders left on the paper book: BTC/USDT 0, ETH/USDT 0" in text
    assert "Loaded 2 currencies from database" in text
    assert "Strategy [9001_1] initialized successfully" in text
    assert "Traceback" not in text
    assert (tmp_path / "mmframe.sqlite").exists()


def _run_readme_curls(port: int) -> None:
    curls = _readme_curls()
    assert len(curls) >= 6
    for line in curls:
        args = shlex.split(line.replace("127.0.0.1:8081", f"127.0.0.1:{port}"))
        result = subprocess.run(args, capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, (line, result.stderr)
        if "/metrics" in line:
            assert "strategy_orders_total" in result.stdout
            continue
        body = json.loads(result.stdout)
        if isinstance(body, dict) and "code" in body:
            assert body["code"] == 0, (line, body)
        elif isinstance(body, dict):
            assert body["status"] == "healthy"
        else:
            assert {row["id"] for row in body} == {"9001_1", "9002_1"}


def test_serve_refuses_a_bad_setting_with_a_clear_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--api-port", "eighty", "--env-file", str(tmp_path / "none")])
    assert result.exit_code == 2 and "API_PORT must be a port" in result.output


def test_db_commands(tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    runner = CliRunner()
    first = runner.invoke(cli, ["db", "init", "--sqlite", str(db)])
    assert first.exit_code == 0 and "strategy_currency" in first.output
    again = runner.invoke(cli, ["db", "init", "--sqlite", str(db)])
    assert again.exit_code == 0 and "created nothing" in again.output
    seeded = runner.invoke(cli, ["db", "seed-demo", "--sqlite", str(db)])
    assert seeded.exit_code == 0 and "demo markets written" in seeded.output
    from mmframe._store import Store

    store = Store.sqlite(db)
    assert [row.id for row in store.load_markets()] == ["9001_1", "9002_1"]
    store.close()
    bad = runner.invoke(cli, ["db", "init", "--db", "mysql+pymysql://root:hunter2@127.0.0.1:1/x"])
    assert bad.exit_code == 1 and "hunter2" not in bad.output and "127.0.0.1:1" in bad.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "mmframe, version" in result.output
