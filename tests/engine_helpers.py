"""A tiny strategy, a feed that records its instances, and an engine fixture for the engine tests."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar

import attrs
import trio
import trio.testing

from mmframe import Market, PriceTick, Quote, Side, Strategy, StrategyContext, hookimpl
from mmframe._engine.reconcile import Tolerance
from mmframe._engine.risk import RiskLimits
from mmframe._engine.spec import MarketSpec
from mmframe.testing import ScriptedFeed


class Ladder(Strategy):
    """``levels`` bids and asks ``step`` apart around the index; raises on a tick at or above ``fail_at``."""

    name = "test_ladder"

    @attrs.frozen
    class Config:
        levels: int = 2
        step: Decimal = Decimal("1")
        quantity: Decimal = Decimal("1")
        fail_at: Decimal | None = None

    def on_tick(self, tick: PriceTick, ctx: StrategyContext) -> None:
        if self.config.fail_at is not None and tick.price >= self.config.fail_at:
            raise RuntimeError(f"boom at {tick.price}")

    def desired_orders(self, ctx: StrategyContext) -> Iterable[Quote]:
        mid = ctx.index_price
        if mid is None:
            return []
        c = self.config
        quotes = []
        for i in range(1, c.levels + 1):
            quotes.append(Quote(Side.BUY, mid - i * c.step, c.quantity))
            quotes.append(Quote(Side.SELL, mid + i * c.step, c.quantity))
        return quotes


class RecordingFeed(ScriptedFeed):
    """A ScriptedFeed registered as ``recording``; every instance the engine makes is kept in ``instances``."""

    name: ClassVar[str] = "recording"
    instances: ClassVar[list[RecordingFeed]] = []

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        RecordingFeed.instances.append(self)


class EnginePlugin:
    @hookimpl
    def register_strategies(self, register: Any) -> None:
        register(Ladder)

    @hookimpl
    def register_feeds(self, register: Any) -> None:
        register(RecordingFeed)


def market(symbol: str = "AAA/USDT") -> Market:
    return Market(symbol, tick_size="0.01", price_precision=2, quantity_precision=2, min_quantity="0.01")


def spec(symbol: str = "AAA/USDT", **kwargs: Any) -> MarketSpec:
    strategy_config = kwargs.pop("strategy_config", {})
    defaults: dict[str, Any] = {
        "market": market(symbol),
        "strategy": "test_ladder",
        "strategy_config": strategy_config,
        "feed": "recording",
        "risk": RiskLimits(price_band=Decimal("0.5")),
        "tolerance": Tolerance(),
        "refresh_interval": 1.0,
        "stale_after": 10.0,
    }
    defaults.update(kwargs)
    return MarketSpec(**defaults)


async def settle() -> None:
    """Let every task run until all are blocked: the engine has processed what was pushed."""
    await trio.testing.wait_all_tasks_blocked()
