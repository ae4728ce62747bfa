"""The real plugin loaded by the service from MariaDB holding the seed's own tables and rows (the seed's SQL run
verbatim): both seed markets run, and BTC/USDT's book holds the 20 orders of the seed's ladder after an index tick.

Needs MariaDB on 127.0.0.1:3306 (user root, no password): skipped when unreachable, failed when
MMFRAME_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import trio

from mmframe import Side
from mmframe.testing import run_service, split_sql

from .helpers import SEED_SQL, expected_ladder, plugins, seed_config, seed_levels

MARIADB = ("127.0.0.1", 3306)
TOKEN = "eif-test-token"


@pytest.fixture
def seeded_mariadb() -> Iterator[str]:
    """A fresh MariaDB database holding the seed's tables and rows, made by the seed's SQL verbatim; dropped after."""
    try:
        socket.create_connection(MARIADB, timeout=1).close()
    except OSError:
        if os.environ.get("MMFRAME_REQUIRE_SERVICES") == "1":
            pytest.fail("MariaDB is required (MMFRAME_REQUIRE_SERVICES=1) but unreachable at 127.0.0.1:3306")
        pytest.skip("MariaDB is not reachable at 127.0.0.1:3306")
    import pymysql

    name = f"mmframe_test_{secrets.token_hex(6)}"
    conn = pymysql.connect(host=MARIADB[0], port=MARIADB[1], user="root", password="", autocommit=True,
                           charset="utf8mb4")
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            cur.execute(f"USE `{name}`")
            statements = split_sql(SEED_SQL)
            assert len(statements) == 4  # two CREATE TABLEs, two INSERTs
            for statement in statements:
                cur.execute(statement)
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


async def eventually(check: Callable[[], Any], seconds: float = 5.0, what: str = "") -> None:
    with trio.move_on_after(seconds):
        while True:
            result = check()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await trio.sleep(0.02)
    raise AssertionError(f"not within {seconds}s: {what}")


async def test_the_service_runs_the_seed_markets_from_mariadb(seeded_mariadb: str) -> None:
    # mmframe's own tables are made beside the seed's; the seed's are left as they are
    async with run_service(seeded_mariadb, *plugins(), api_token=TOKEN) as service:
        client = service.client
        rows = {r["id"]: r for r in (await client.get("/api/v1/strategies")).json()}
        assert set(rows) == {"879_1", "880_1"}
        assert rows["879_1"]["is_running"] and rows["880_1"]["is_running"]
        assert rows["879_1"]["symbol"] == "BTC/USDT" and rows["880_1"]["symbol"] == "ETH/USDT"

        service.engine.push_tick("45000.00", market="BTC/USDT")

        def btc() -> list[Any]:
            return service.engine.book("BTC/USDT").open_orders()

        await eventually(lambda: len(btc()) == 20, what="20 orders on BTC/USDT's book")
        want_bids, want_asks = expected_ladder("45000.00", seed_levels(), 10)
        bids = sorted((o.price for o in btc() if o.side is Side.BUY), reverse=True)
        asks = sorted(o.price for o in btc() if o.side is Side.SELL)
        assert bids == [p for p, _ in want_bids] and asks == [p for p, _ in want_asks]
        assert service.engine.book("ETH/USDT").open_orders() == []  # no ETH index yet

        response = await client.get("/api/v1/strategy/status", params={"symbol": "BTC/USDT", "market_type": 1})
        data = response.json()["data"]
        assert data["status"] == "running" and data["config"] == seed_config()
        assert data["metrics"]["active_orders"] == 20
        assert data["strategy_status"]["anchor_reference"] == "45000.00"
        assert data["strategy_status"]["bids_quoted"] == 10
        assert Decimal(data["current_price"]) == Decimal("45000")
    assert service.engine.book("BTC/USDT").open_orders() == []  # stopping cancelled them
