"""A live ``mmframe serve --demo`` for the dashboard's tests: a subprocess on a free loopback port, with a token."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

TOKEN = "dashboard-test-token"
HOSTILE = "<img src=x onerror=alert(1)>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoServer:
    def __init__(self, url: str, database_url: str) -> None:
        self.url = url
        self.database_url = database_url
        self.client = httpx.Client(base_url=url, timeout=10)

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()["data"]

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> httpx.Response:
        return self.client.post(path, json=body or {}, headers={"Authorization": f"Bearer {TOKEN}"})

    def rows(self) -> dict[str, dict[str, Any]]:
        return {row["symbol"]: row for row in self.get("/api/v1/dashboard/markets")["markets"]}

    def wait(self, predicate: Any, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the demo server did not get there in time")


@contextmanager
def demo_server(tmp: Path, *, hostile: bool = False, clash: bool = False) -> Iterator[DemoServer]:
    """``mmframe serve --demo`` on a free port; with *hostile*, ETH/USDT's local symbol is :data:`HOSTILE`; with
    *clash*, a third market (9003_1) follows BTC/USDT's index with a strategy that does not exist: it fails to load
    and shows BTC/USDT's symbol."""
    db = tmp / "demo.sqlite"
    database_url = f"sqlite:///{db}"
    env = {**os.environ, "MMFRAME_API_TOKEN": TOKEN}
    env.pop("MMFRAME_CLUSTER_REDIS", None)
    cli = [sys.executable, "-m", "mmframe"]
    subprocess.run([*cli, "db", "seed-demo", "--sqlite", str(db), "--env-file", str(tmp / "none.env")], env=env,
                   check=True, capture_output=True)
    if hostile:
        from mmframe.testing import describe_market

        describe_market(database_url, 9002, symbol=HOSTILE, tick_size="0.01", price_precision=2,
                        quantity_precision=4)
    if clash:
        import sqlite3

        with sqlite3.connect(db) as connection:
            connection.execute("INSERT INTO strategy_currency (currency_id, index_symbol, index_source, market_status,"
                               " market_type, default_strategy) VALUES (9003, 'BTCUSDT', 1, 1, 1, 999)")
    port = free_port()
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [*cli, "serve", "--demo", "--sqlite", str(db), "--api-port", str(port), "--env-file", str(tmp / "none.env")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    server = DemoServer(f"http://127.0.0.1:{port}", database_url)
    try:
        server.wait(lambda: sum(row["state"] == "running" for row in server.get("/api/v1/dashboard/markets")["markets"])
                    >= (1 if hostile else 2))
        yield server
    finally:
        server.client.close()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
