"""The demo: BTC/USDT and ETH/USDT quoted by the ``fixed_spread`` example strategy on the ``sim`` feed and the
``paper`` sink, with simulated takers so that fills, inventory and PnL move."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .engine.market import MarketSpec
from .engine.reconcile import Tolerance
from .engine.risk import RiskLimits
from .models import Market, MarketType

DEMO_STRATEGY = "fixed_spread"

_MARKETS: list[dict[str, Any]] = [
    {
        "market": Market("BTC/USDT", tick_size="0.01", price_precision=2, quantity_precision=4,
                         min_quantity="0.0001", market_type=MarketType.SPOT),
        "index": "BTCUSDT",
        "price": "60000",
        "quantity": "0.01",
        "max_order": "1",
    },
    {
        "market": Market("ETH/USDT", tick_size="0.01", price_precision=2, quantity_precision=3,
                         min_quantity="0.001", market_type=MarketType.SPOT),
        "index": "ETHUSDT",
        "price": "3000",
        "quantity": "0.2",
        "max_order": "20",
    },
]


def demo_feed_config(seed: int | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "prices": {m["index"]: m["price"] for m in _MARKETS},
        "volatility": 0.0002,
        "tick_rate": 2.0,
    }
    if seed is not None:
        config["seed"] = seed
    return config


def demo_sink_config(seed: int | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"taker_flow_rate": 0.5}
    if seed is not None:
        config["seed"] = seed
    return config


def demo_specs(seed: int | None = None, strategy: str = DEMO_STRATEGY) -> list[MarketSpec]:
    specs = []
    for m in _MARKETS:
        specs.append(
            MarketSpec(
                market=m["market"],
                strategy=strategy,
                strategy_config={
                    "spread": "0.0008",
                    "levels": 5,
                    "level_step": "0.0004",
                    "quantity": m["quantity"],
                    "skew_per_unit": str(Decimal("0.0001") / Decimal(m["quantity"])),
                    "max_skew": "0.002",
                },
                feed="sim",
                feed_config=demo_feed_config(seed),
                index_symbol=m["index"],
                risk=RiskLimits(max_order_quantity=m["max_order"], price_band="0.05"),
                tolerance=Tolerance(price_fraction="0.0001", quantity_fraction="0.5"),
                refresh_interval=1.0,
                stale_after=10.0,
            )
        )
    return specs
