"""What the tests share: the seed's two configs (copied literally), the market spec the engine tests run, and an
engine on the paper sink with the real plugin module (mmframe.testing's harness)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import mmframe_external_index_follow
import trio
import trio.testing

from mmframe import Market, MarketKey, MarketSpec, RiskLimits
from mmframe.testing import Harness, PaperSink, seed_sql
from mmframe.testing import start_engine as start_harness

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
# The engine: the paper sink, the real plugin module, mmframe.testing's scripted feed (registered as ``scripted``)
# ---------------------------------------------------------------------------------------------------------------


def plugins() -> tuple[object, ...]:
    """The real strategy plugin (the module its entry point names)."""
    return (mmframe_external_index_follow,)


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


#: The engine the tests drive: mmframe.testing's Harness (``start``, ``push_tick``, ``status``, ``ladder``, ...).
Engine = Harness


async def start_engine(nursery: trio.Nursery, sink: PaperSink | None = None) -> Engine:
    return await start_harness(nursery, *plugins(), sink=sink)


def messages(engine: Engine) -> int:
    """Messages sent so far: orders placed, cancels and amends."""
    status = engine.status()
    return status.orders_placed + status.orders_cancelled + status.orders_amended


async def settle() -> None:
    """Let every task run until all are blocked: the engine has processed what was pushed."""
    await trio.testing.wait_all_tasks_blocked()
