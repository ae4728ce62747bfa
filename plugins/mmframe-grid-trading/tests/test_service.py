"""The grid loaded by the service from the database like any other strategy: a ``grid_trading`` row in
``strategy_strategy`` beside the seed's ``external_index_follow`` (the seed's SQL run verbatim, then one more strategy
and one more market), on SQLite and on MariaDB. The grid market quotes its buy window once a price arrives, its
status is served by ``GET /api/v1/strategy/status``, and a second process finds what the first one held.

MariaDB must be on 127.0.0.1:3306 (user root, no password): skipped when unreachable, failed when
MMFRAME_REQUIRE_SERVICES=1. The control API runs on hypercorn on port 0.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import mmframe_external_index_follow
import mmframe_grid_trading
import pytest
import trio
import trio.testing

from mmframe import OrderType, Side
from mmframe._default_plugins.paper import PaperSink
from mmframe._plugins import make_plugin_manager
from mmframe._service import Service
from mmframe._settings import Settings
from mmframe._store import Store, seed_sql
from mmframe.testing import run_sql

from .helpers import D, FeedPlugin, IndexFeed

MARIADB = ("127.0.0.1", 3306)
TOKEN = "grid-test-token"

# The seed-000 form of the grid's config, with the market's description (as the seed's own row carries it).
GRID_CONFIG = {"grid_levels": 5, "grid_spacing_percent": 0.005, "grid_quantity": 0.5, "tick_size": 0.01,
               "quote_precision": 2, "base_precision": 4}
GRID_SQL = f"""
INSERT INTO strategy_strategy (strategy_name, config, `desc`) VALUES (
'grid_trading',
'{json.dumps(GRID_CONFIG)}',
'网格交易策略'
);
INSERT INTO strategy_currency (currency_id, index_symbol, index_source, market_status, market_type, default_strategy)
VALUES (881, 'SOLUSDT', 1, 1, 1, 2);
"""


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
    service: Service
    sink: PaperSink
    client: httpx.AsyncClient

    def sol(self) -> list[Any]:
        return self.sink.book("SOL/USDT").open_orders()

    def prices(self, side: Side) -> list[Any]:
        return sorted((o.price for o in self.sol() if o.side is side), reverse=side is Side.BUY)

    async def grid_status(self) -> dict[str, Any]:
        response = await self.client.get("/api/v1/strategy/status", params={"symbol": "SOL/USDT", "market_type": 1})
        assert response.status_code == 200
        return response.json()["data"]  # type: ignore[no-any-return]


@asynccontextmanager
async def running_service(url: str) -> AsyncIterator[Running]:
    """The service of one process: the store at *url*, a paper sink of its own, the scripted feed."""
    IndexFeed.instances.clear()
    store = Store(url)
    store.init()
    sink = PaperSink()
    plugins = (mmframe_grid_trading, mmframe_external_index_follow, FeedPlugin())
    pm = make_plugin_manager(load_entrypoints=False, plugins=plugins)
    service = Service(Settings(db_url=url, api_port=0, api_token=TOKEN, feed="scripted"), store, pm, sink)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            async with httpx.AsyncClient(base_url=service.binds[0], timeout=10) as client:
                yield Running(service, sink, client)
            await service.aclose()
    finally:
        store.close()


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked(cushion=0.01)


async def test_a_grid_row_runs_beside_the_seed_strategy(database_url: str) -> None:
    store = Store(database_url)
    try:
        run_sql(store, seed_sql())
        run_sql(store, GRID_SQL)
    finally:
        store.close()

    async with running_service(database_url) as first:
        rows = {r["id"]: r for r in (await first.client.get("/api/v1/strategies")).json()}
        assert set(rows) == {"879_1", "880_1", "881_1"}
        assert all(row["is_running"] for row in rows.values()), rows
        assert rows["879_1"]["strategy_name"] == "external_index_follow"
        assert rows["881_1"]["strategy_name"] == "grid_trading" and rows["881_1"]["symbol"] == "SOL/USDT"
        assert first.sol() == []  # no price yet: nothing quoted

        IndexFeed.instances[-1].push_price("SOLUSDT", "150.00")
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
        first.sink.submit_external("SOL/USDT", side=Side.SELL, type=OrderType.MARKET, quantity=D("0.8"))
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
        IndexFeed.instances[-1].push_price("SOLUSDT", "149.90")
        await settle()
        grid = (await second.grid_status())["strategy_status"]
        assert grid["anchor_source"] == "history" and grid["anchor"] == "149.25" and grid["spacing"] == "0.75"
        assert grid["recovered_fills"] == 2 and grid["held_quantity"] == 0.8
        # the held slots sell one spacing up (149.25 → 150.00, 148.50 → 149.25), at what each holds
        sells = {o.price: o.quantity for o in second.sol() if o.side is Side.SELL}
        assert sells == {D("150.00"): D("0.5"), D("149.25"): D("0.3")}
        assert second.prices(Side.BUY) == [D(p) for p in ("147.75", "147.00", "146.25")]
