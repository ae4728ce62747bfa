"""The grid loaded by the service from the database like any other strategy: a ``grid_trading`` row in
``strategy_strategy`` beside the seed's ``external_index_follow`` (the seed's SQL run verbatim, then one more strategy
and one more market), on SQLite and on MariaDB. The grid market quotes its buy window once a price arrives, its
status is served by ``GET /api/v1/strategy/status``, and a second process finds what the first one held.

MariaDB must be on 127.0.0.1:3306 (user root, no password): skipped when unreachable, failed when
MMFRAME_REQUIRE_SERVICES=1. The control API runs on hypercorn on port 0.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import mmframe_grid_trading
import pytest
import trio
import trio.testing

from mmframe import OrderType, Side
from mmframe.testing import ServiceHarness, run_service, seed_database

from .helpers import GRID_CONFIG, GRID_SQL, D

# The seed's own rows (loaded beside the grid's) run the seed's strategy.
mmframe_external_index_follow = pytest.importorskip(
    "mmframe_external_index_follow", reason="the seed's rows run the external_index_follow strategy"
)

MARIADB = ("127.0.0.1", 3306)
TOKEN = "grid-test-token"

@pytest.fixture(params=["sqlite", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: an SQLite file, or a new MariaDB database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mmframe.sqlite'}"
        return
    try:
        socket.create_connection(MARIADB, timeout=1).close()
    except OSError:
        if os.environ.get("MMFRAME_REQUIRE_SERVICES") == "1":
            pytest.fail("MariaDB is required (MMFRAME_REQUIRE_SERVICES=1) but unreachable at 127.0.0.1:3306")
        pytest.skip("MariaDB is not reachable at 127.0.0.1:3306")
    import pymysql

    name = f"mmframe_test_{secrets.token_hex(6)}"
    conn = pymysql.connect(host=MARIADB[0], port=MARIADB[1], user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@attrs.define
class Running:
    service: ServiceHarness

    @property
    def sink(self) -> Any:
        return self.service.sink

    @property
    def client(self) -> httpx.AsyncClient:
        return self.service.client

    def sol(self) -> list[Any]:
        return self.sink.book("SOL/USDT").open_orders()

    def prices(self, side: Side) -> list[Any]:
        return sorted((o.price for o in self.sol() if o.side is side), reverse=side is Side.BUY)

    def push_price(self, price: str) -> None:
        self.service.engine.push_tick(price, market="SOL/USDT")

    async def grid_status(self) -> dict[str, Any]:
        response = await self.client.get("/api/v1/strategy/status", params={"symbol": "SOL/USDT", "market_type": 1})
        assert response.status_code == 200
        return response.json()["data"]  # type: ignore[no-any-return]


@asynccontextmanager
async def running_service(url: str) -> AsyncIterator[Running]:
    """The service of one process: the store at *url*, a paper sink of its own, the scripted feed."""
    plugins = (mmframe_grid_trading, mmframe_external_index_follow)
    async with run_service(url, *plugins, api_token=TOKEN) as service:
        yield Running(service)


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked(cushion=0.01)


async def test_a_grid_row_runs_beside_the_seed_strategy(database_url: str) -> None:
    seed_database(database_url, GRID_SQL)

    async with running_service(database_url) as first:
        rows = {r["id"]: r for r in (await first.client.get("/api/v1/strategies")).json()}
        assert set(rows) == {"879_1", "880_1", "881_1"}
        assert all(row["is_running"] for row in rows.values()), rows
        assert rows["879_1"]["strategy_name"] == "external_index_follow"
        assert rows["881_1"]["strategy_name"] == "grid_trading" and rows["881_1"]["symbol"] == "SOL/USDT"
        assert first.sol() == []  # no price yet: nothing quoted

        first.push_price("150.00")
        await settle()
        # 0.5 % of the first price, 150.00, is a spacing of 0.75; the buy window is grid_levels (5) slots
        assert first.prices(Side.BUY) == [D(p) for p in ("149.25", "148.50", "147.75", "147.00", "146.25")]
        assert first.prices(Side.SELL) == []
        assert {o.quantity for o in first.sol()} == {D("0.5")}

        data = await first.grid_status()
        assert data["strategy_name"] == "grid_trading" and data["status"] == "running"
        assert data["config"] == GRID_CONFIG
        grid = data["strategy_status"]
        assert (grid["anchor"], grid["anchor_source"], grid["spacing"]) == ("150.00", "first_price", "0.75")
        assert grid["slots"]["buy_placed"] == 5 and grid["round_trips"] == 0 and grid["held_quantity"] == 0

        # another participant sells 0.8 into the grid's best bids: 149.25 fills, 148.50 for 0.3 (its rest is
        # cancelled); each slot sells what it holds one spacing up
        first.service.engine.take(Side.SELL, D("0.8"), type=OrderType.MARKET, market="SOL/USDT")
        await settle()
        sells = {o.price: o.quantity for o in first.sol() if o.side is Side.SELL}
        assert sells == {D("150.00"): D("0.5"), D("149.25"): D("0.3")}
        assert first.prices(Side.BUY) == [D(p) for p in ("147.75", "147.00", "146.25")]
        data = await first.grid_status()
        grid = data["strategy_status"]
        assert grid["held_quantity"] == 0.8 and grid["exact"]["held_quantity"] == "0.8000"
        assert grid["slots"]["sell_placed"] == 2 and grid["slots"]["buy_placed"] == 3
        assert D(data["metrics"]["position"]) == D("0.8")
        metrics = (await first.client.get("/metrics")).text
        assert 'mmframe_inventory{market="881_1"' in metrics
        labels = 'market="881_1",market_type="1",symbol="SOL/USDT"'
        assert f'mmframe_strategy_status{{key="held_quantity",{labels}}} 0.8' in metrics  # the status' numbers
        assert f'mmframe_strategy_status{{key="slots.sell_placed",{labels}}} 2.0' in metrics

    # A new process on the same database (a new, empty paper book): the grid finds what it held in the fill audit.
    async with running_service(database_url) as second:
        assert D((await second.grid_status())["metrics"]["position"]) == D("0.8")  # from the fill audit
        second.push_price("149.90")
        await settle()
        grid = (await second.grid_status())["strategy_status"]
        assert grid["anchor_source"] == "history" and grid["anchor"] == "149.25" and grid["spacing"] == "0.75"
        assert grid["recovered_fills"] == 2 and grid["held_quantity"] == 0.8
        # the held slots sell one spacing up (149.25 → 150.00, 148.50 → 149.25), at what each holds
        sells = {o.price: o.quantity for o in second.sol() if o.side is Side.SELL}
        assert sells == {D("150.00"): D("0.5"), D("149.25"): D("0.3")}
        assert second.prices(Side.BUY) == [D(p) for p in ("147.75", "147.00", "146.25")]
