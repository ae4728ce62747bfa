"""A minimal ``external_index_follow`` strategy (the real one is its own plugin) and a running service fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, ClassVar

import attrs
import httpx
import pluggy
import trio

from mmframe import Quote, Side, Strategy, StrategyContext, hookimpl
from mmframe._control.serve import serve
from mmframe._default_plugins.paper import PaperSink
from mmframe._plugins import make_plugin_manager
from mmframe._service.service import Service
from mmframe._settings import Settings
from mmframe._store import Store
from mmframe.testing import ScriptedFeed

TOKEN = "test-token-3f9a"


@attrs.frozen
class SeedLevel:
    spread_percent: Decimal
    quantity_ratio: Decimal


class SeedIndexFollow(Strategy):
    """Accepts the seed's database config; quotes one bid and one ask at its first level's spread."""

    name = "external_index_follow"

    @attrs.frozen
    class Config:
        price_change_amount: Decimal
        tick_size: Decimal
        base_quantity: Decimal
        price_follow_percent: Decimal
        base_precision: int
        quote_precision: int
        max_active_orders: int
        maintenance_interval: str
        depth_levels: list[SeedLevel]

    quotes_made = 0

    def status(self) -> dict[str, Any]:
        # numbers (nested too) reach Prometheus as mmframe_strategy_status; text and booleans do not
        return {"quotes_made": self.quotes_made, "levels": {"configured": len(self.config.depth_levels)},
                "mode": "seed", "enabled": True, "first_spread": self.config.depth_levels[0].spread_percent}

    def desired_orders(self, ctx: StrategyContext) -> Iterable[Quote]:
        index = ctx.index_price
        if index is None:
            return []
        self.quotes_made += 1
        level = self.config.depth_levels[0]
        qty = ctx.market.round_quantity(self.config.base_quantity * level.quantity_ratio)
        return [
            Quote(Side.BUY, ctx.market.round_price(index * (1 - level.spread_percent), Side.BUY), qty),
            Quote(Side.SELL, ctx.market.round_price(index * (1 + level.spread_percent), Side.SELL), qty),
        ]


class TestFeed(ScriptedFeed):
    name: ClassVar[str] = "scripted"
    instances: ClassVar[list[TestFeed]] = []

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        TestFeed.instances.append(self)


class ServicePlugin:
    @hookimpl
    def register_strategies(self, register: Any) -> None:
        register(SeedIndexFollow)

    @hookimpl
    def register_feeds(self, register: Any) -> None:
        register(TestFeed)


def plugin_manager(*extra: object) -> pluggy.PluginManager:
    return make_plugin_manager(load_entrypoints=False, plugins=(ServicePlugin(), *extra))


@attrs.define
class Running:
    service: Service
    sink: PaperSink
    client: httpx.AsyncClient
    url: str

    @property
    def feed(self) -> TestFeed:
        return TestFeed.instances[-1]

    def book(self, symbol: str) -> list[Any]:
        return self.sink.book(symbol).open_orders()

    async def post(self, path: str, body: Any = None, *, token: str | None = TOKEN, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return await self.client.post(path, json=body, headers=headers, **kwargs)


@asynccontextmanager
async def running_service(
    url: str, *extra_plugins: object, token: str | None = TOKEN, **settings: Any
) -> AsyncIterator[Running]:
    TestFeed.instances.clear()
    store = Store(url)
    store.init()
    defaults: dict[str, Any] = {"db_url": url, "api_port": 0, "api_token": token, "feed": "scripted"}
    defaults.update(settings)
    sink = PaperSink()
    service = Service(Settings(**defaults), store, plugin_manager(*extra_plugins), sink)
    try:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, service)
            base = binds[0]
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                yield Running(service, sink, client, base)
            await service.aclose()
    finally:
        store.close()


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked(cushion=0.01)
