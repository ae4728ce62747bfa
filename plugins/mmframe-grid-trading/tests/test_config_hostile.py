"""Grid configs an adversarial tester got past ``config/update`` (issue 13, "Config validated before it is stored"):
values beyond exact decimal arithmetic answered 400 with nothing but ``[<class 'decimal.InvalidOperation'>]``, and a
change that left the grid with no order at all passed. The service runs on SQLite holding the seed's rows and one grid
market (SOL/USDT: tick 0.01, 2 price and 4 quantity decimals), the control API on hypercorn on port 0, real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import mmframe_grid_trading
import pytest
import trio
import trio.testing
from mmframe_grid_trading import Config, GridTrading

from mmframe import ConfigError, Market, structure_config
from mmframe.testing import ServiceHarness, run_service, seed_database

from .helpers import GRID_SQL

TOKEN = "grid-hostile-token"
SOL = {"symbol": "SOL/USDT", "market_type": 1}


@attrs.define
class Running:
    service: ServiceHarness

    async def update(self, **config: Any) -> httpx.Response:
        return await self.service.post("/api/v1/strategy/config/update", {**SOL, "config": config})

    async def reload(self) -> httpx.Response:
        return await self.service.post("/api/v1/strategy/reload", SOL)

    def push_price(self, price: str) -> None:
        self.service.engine.push_tick(price, market="SOL/USDT")

    def orders(self) -> list[Any]:
        return self.service.engine.book("SOL/USDT").open_orders()


@asynccontextmanager
async def running_grid(tmp_path: Any) -> AsyncIterator[Running]:
    """The grid market quoting its buy window at 150 (5 bids), the index at 150."""
    url = f"sqlite:///{tmp_path / 'mmframe.sqlite'}"
    seed_database(url, GRID_SQL)
    async with run_service(url, mmframe_grid_trading, api_token=TOKEN) as service:
        running = Running(service)
        running.push_price("150.00")
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        assert len(running.orders()) == 5
        yield running


@pytest.mark.parametrize("key", ["price_interval", "anchor_price", "grid_quantity"])
async def test_a_value_beyond_exact_arithmetic_is_refused_saying_which_key_and_why(tmp_path: Any, key: str) -> None:
    """``price_interval`` 1e30 answered ``[<class 'decimal.InvalidOperation'>]``, ``anchor_price`` 1e30
    ``[<class 'decimal.DivisionImpossible'>]``."""
    async with running_grid(tmp_path) as running:
        changes = {key: "1e30"}
        if key == "price_interval":
            changes["grid_spacing_percent"] = None
        response = await running.update(**changes)
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert "[<class" not in message and f"{key} must be below 1e15" in message, message


def test_the_strategy_names_the_key_when_the_market_cannot_hold_a_value() -> None:
    """Within the config's bounds, yet beyond a very fine market's precision: the key is named, not a decimal signal."""
    fine = Market("FINE/USDT", tick_size="1e-18", price_precision=18, quantity_precision=4)
    config = structure_config({"price_interval": "100000000000000", "order_quantity": "1"}, Config)
    with pytest.raises(ConfigError, match=r"^price_interval 100000000000000 cannot be written at the market"):
        GridTrading(config, fine)


@pytest.mark.parametrize(
    "changes",
    [{"grid_spacing_percent": "0.999999"}, {"anchor_price": "1000000"}, {"anchor_price": "1"}],
)
async def test_a_change_that_leaves_the_grid_without_orders_is_refused(tmp_path: Any, changes: dict[str, Any]) -> None:
    async with running_grid(tmp_path) as running:
        response = await running.update(**changes)
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert message.startswith(f"config.{next(iter(changes))}: its book at the index price 150.00 would be empty"), (
            message)
        assert (await running.reload()).status_code == 200
        running.push_price("150.00")
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        assert len(running.orders()) == 5


async def test_a_grid_that_is_empty_already_can_still_be_configured(tmp_path: Any) -> None:
    """A grid anchored far from the price (put there in the database) wants no order: it may be changed in other
    ways; a change that would empty the grid of the strategy's own config is still refused."""
    async with running_grid(tmp_path) as running:
        await running.service.save_override(881, 1, {"anchor_price": "1000000"})
        response = await running.update(grid_quantity="0.7")
        assert response.status_code == 200, response.text
        response = await running.update(grid_spacing_percent="0.999999")
        assert response.status_code == 400 and response.json()["message"].startswith("config.grid_spacing_percent: ")
        assert (await running.update(anchor_price=None)).status_code == 200
