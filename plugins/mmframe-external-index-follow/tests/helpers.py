"""What the tests share: the seed's two configs (copied literally), a scripted feed plugin, and an engine on the
paper sink run by a StrategyManager (the same rig as mmframe's own engine tests, copied here)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, ClassVar

import attrs
import mmframe_external_index_follow
import trio
import trio.testing

from mmframe import Market, Side, hookimpl
from mmframe._default_plugins.paper import PaperSink
from mmframe._engine.manager import StrategyManager
from mmframe._engine.market import MarketRunner, MarketSpec, MarketStatus
from mmframe._engine.risk import RiskLimits
from mmframe._models import MarketKey
from mmframe._plugins import make_plugin_manager
from mmframe._store import seed_sql
from mmframe.testing import ScriptedFeed

# The seed's SQL (seeds/000) verbatim, as mmframe ships it, and its strategy config: the JSON text of its
# strategy_strategy INSERT, literally.
SEED_SQL = seed_sql()
SEED_DATABASE_CONFIG_JSON = re.search(r"'(\{.*?\})',", SEED_SQL, re.S).group(1)  # type: ignore[union-attr]

# The seed's documented flat config, literally.
SEED_FLAT_CONFIG_JSON = """{
"external_exchange": "binance",
"external_symbol": "BTCUSDT",
"spread_percent": 0.001,
"base_quantity": 0.1,
"max_order_quantity": 1.0,
"depth_levels": 10,
"refresh_interval_ms": 500,
"market_order_interval_ms": 300,
"market_order_size": 0.001,
"synthetic_trade_interval_ms": 2000,
"synthetic_trade_size": 0.01,
"order_refresh_interval_sec": 10,
"order_refresh_percent": 0.1,
"opponent_detection_enabled": true,
"max_sweep_price_deviation": 0.02,
"max_sweep_quantity": 0.5,
"sweep_cooldown_ms": 1000,
"order_timeout_sec": 300,
"max_active_orders": 10000
}"""


def seed_config(**changes: Any) -> dict[str, Any]:
    """The seed's database config (a fresh dict), with *changes* applied."""
    return {**json.loads(SEED_DATABASE_CONFIG_JSON), **changes}


def flat_config(**changes: Any) -> dict[str, Any]:
    """The seed's flat config (a fresh dict), with *changes* applied."""
    return {**json.loads(SEED_FLAT_CONFIG_JSON), **changes}


BTC = Market("BTC/USDT", tick_size="0.1", price_precision=4, quantity_precision=2)
KEY = MarketKey("BTC/USDT")
D = Decimal


# ---------------------------------------------------------------------------------------------------------------
# The expected ladder, computed here from the formulas (not by the strategy)
# ---------------------------------------------------------------------------------------------------------------


def on_tick_grid(price: Decimal, tick: Decimal, rounding: str, places: int) -> Decimal:
    return ((price / tick).to_integral_value(rounding=rounding) * tick).quantize(Decimal(1).scaleb(-places))


def expected_ladder(
    index: Decimal | str,
    levels: Sequence[tuple[str | float, str | float]],
    base_quantity: Decimal | str | float,
    *,
    tick: str = "0.1",
    price_places: int = 4,
    quantity_places: int = 2,
) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    """``(bids, asks)`` as ``(price, nominal quantity)``, nearest first: bid = index * (1 - s) down to the tick,
    ask = index * (1 + s) up to the tick, quantity = base * ratio down to the quantity precision."""
    index = D(str(index))
    step = D(tick)
    bids, asks = [], []
    for spread, ratio in levels:
        s = D(str(spread))
        q = (D(str(base_quantity)) * D(str(ratio))).quantize(Decimal(1).scaleb(-quantity_places), ROUND_FLOOR)
        bids.append((on_tick_grid(index * (1 - s), step, ROUND_FLOOR, price_places), q))
        asks.append((on_tick_grid(index * (1 + s), step, ROUND_CEILING, price_places), q))
    return bids, asks


def seed_levels() -> list[tuple[float, float]]:
    levels = json.loads(SEED_DATABASE_CONFIG_JSON)["depth_levels"]
    return [(level["spread_percent"], level["quantity_ratio"]) for level in levels]


# ---------------------------------------------------------------------------------------------------------------
# The engine rig: a scripted feed, the paper sink, a StrategyManager with the real plugin module registered
# ---------------------------------------------------------------------------------------------------------------


class IndexFeed(ScriptedFeed):
    """A ScriptedFeed registered as ``scripted``; every instance the engine makes is kept in ``instances``."""

    name: ClassVar[str] = "scripted"
    instances: ClassVar[list[IndexFeed]] = []

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        IndexFeed.instances.append(self)


class FeedPlugin:
    @hookimpl
    def register_feeds(self, register: Any) -> None:
        register(IndexFeed)


def plugins() -> tuple[object, ...]:
    """The real strategy plugin (the module its entry point names) and the scripted feed."""
    return (mmframe_external_index_follow, FeedPlugin())


def spec(config: dict[str, Any] | None = None, **kwargs: Any) -> MarketSpec:
    values: dict[str, Any] = {
        "market": BTC,
        "strategy": "external_index_follow",
        "strategy_config": seed_config() if config is None else config,
        "feed": "scripted",
        "index_symbol": "BTCUSDT",
        "risk": RiskLimits(),
        "refresh_interval": 1.0,
        "stale_after": 10.0,
        "seed": 7,
    }
    values.update(kwargs)
    return MarketSpec(**values)


@attrs.define
class Engine:
    manager: StrategyManager
    sink: PaperSink

    @property
    def feed(self) -> IndexFeed:
        return IndexFeed.instances[-1]

    def tick(self, price: str | Decimal, **kwargs: Any) -> None:
        self.feed.push_price("BTCUSDT", price, **kwargs)

    def ours(self) -> list[Any]:
        """Our orders resting on the paper book (the sink's owner), in arrival order."""
        return [o for o in self.sink.book("BTC/USDT").open_orders() if o.owner == self.sink.config.owner]

    def others(self) -> list[Any]:
        return [o for o in self.sink.book("BTC/USDT").open_orders() if o.owner != self.sink.config.owner]

    def ladder(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """``(bids best first, asks best first)`` of our resting orders as ``(price, remaining quantity)``."""
        orders = self.ours()
        bids = sorted(((o.price, o.remaining_quantity) for o in orders if o.side is Side.BUY), reverse=True)
        asks = sorted((o.price, o.remaining_quantity) for o in orders if o.side is Side.SELL)
        return bids, asks

    def prices(self) -> tuple[list[Decimal], list[Decimal]]:
        bids, asks = self.ladder()
        return [p for p, _ in bids], [p for p, _ in asks]

    def status(self) -> MarketStatus:
        return self.manager.status(KEY)[0]

    def runner(self) -> MarketRunner:
        runner = self.manager.runner(KEY)
        assert runner is not None
        return runner

    def messages(self) -> int:
        status = self.status()
        return status.orders_placed + status.orders_cancelled


async def start_engine(nursery: trio.Nursery, sink: PaperSink | None = None) -> Engine:
    IndexFeed.instances.clear()
    pm = make_plugin_manager(load_entrypoints=False, plugins=plugins())
    sink = sink or PaperSink()
    manager = StrategyManager(sink, pm, instance_id="t")
    await nursery.start(manager.run)
    return Engine(manager, sink)


async def settle() -> None:
    """Let every task run until all are blocked: the engine has processed what was pushed."""
    await trio.testing.wait_all_tasks_blocked()
