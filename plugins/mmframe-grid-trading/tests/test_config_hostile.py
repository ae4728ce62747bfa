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

from mmframe import Market, structure_config
from mmframe._default_plugins.paper import PaperSink
from mmframe._errors import ConfigError
from mmframe._plugins import make_plugin_manager
from mmframe._service import Service
from mmframe._settings import Settings
from mmframe._store import Store, seed_sql
from mmframe.testing import run_sql

from .helpers import FeedPlugin, IndexFeed
from .test_service import GRID_SQL

TOKEN = "grid-hostile-token"
SOL = {"symbol": "SOL/USDT", "market_type": 1}


@attrs.define
class Running:
    service: Service
    sink: PaperSink
    client: httpx.AsyncClient

    async def update(self, **config: Any) -> httpx.Response:
        return await self.client.post("/api/v1/strategy/config/update", json={**SOL, "config": config},
                                      headers={"Authorization": f"Bearer {TOKEN}"})

    async def reload(self) -> httpx.Response:
        return await self.client.post("/api/v1/strategy/reload", json=SOL, headers={"Authorization": f"Bearer {TOKEN}"})

    def orders(self) -> list[Any]:
        return self.sink.book("SOL/USDT").open_orders()


@asynccontextmanager
async def running_grid(tmp_path: Any) -> AsyncIterator[Running]:
    """The grid market quoting its buy window at 150 (5 bids), the index at 150."""
    IndexFeed.instances.clear()
    store = Store(f"sqlite:///{tmp_path / 'mmframe.sqlite'}")
    run_sql(store, seed_sql())
    run_sql(store, GRID_SQL)
    store.init()
    pm = make_plugin_manager(load_entrypoints=False, plugins=(mmframe_grid_trading, FeedPlugin()))
    sink = PaperSink()
    settings = Settings(db_url=str(store.engine.url), api_port=0, api_token=TOKEN, feed="scripted")
    service = Service(settings, store, pm, sink)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            async with httpx.AsyncClient(base_url=service.binds[0], timeout=10) as client:
                running = Running(service, sink, client)
                IndexFeed.instances[-1].push_price("SOLUSDT", "150.00")
                await trio.testing.wait_all_tasks_blocked(cushion=0.01)
                assert len(running.orders()) == 5
                yield running
            await service.aclose()
    finally:
        store.close()


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
        IndexFeed.instances[-1].push_price("SOLUSDT", "150.00")
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        assert len(running.orders()) == 5


async def test_a_grid_that_is_empty_already_can_still_be_configured(tmp_path: Any) -> None:
    """A grid anchored far from the price (put there in the database) wants no order: it may be changed in other
    ways; a change that would empty the grid of the strategy's own config is still refused."""
    async with running_grid(tmp_path) as running:
        store = running.service.store
        await trio.to_thread.run_sync(store.save_override, 881, 1, {"anchor_price": "1000000"})
        response = await running.update(grid_quantity="0.7")
        assert response.status_code == 200, response.text
        response = await running.update(grid_spacing_percent="0.999999")
        assert response.status_code == 400 and response.json()["message"].startswith("config.grid_spacing_percent: ")
        assert (await running.update(anchor_price=None)).status_code == 200
