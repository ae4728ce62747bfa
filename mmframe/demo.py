"""The demo: BTC/USDT and ETH/USDT quoted by the ``fixed_spread`` example strategy on the ``sim`` feed and the
``paper`` sink, with simulated takers so that fills, inventory and PnL move.

The markets are plain data (:data:`DEMO_MARKETS`) that ``Store.seed_demo`` (``mmframe db seed-demo``, and
``mmframe serve --demo``) writes into the configuration database.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .models import MarketType

__all__ = [
    "DEMO_MARKETS",
    "DEMO_STRATEGY",
    "demo_feed_config",
    "demo_options",
    "demo_risk",
    "demo_sink_config",
    "demo_strategy_config",
    "demo_tolerance",
]

DEMO_STRATEGY = "fixed_spread"

#: The demo markets as plain, JSON-able data. ``currency_id`` is the ``strategy_currency.currency_id`` the demo
#: uses when it is written into a database; ``price`` is the sim feed's starting index price, ``quantity`` the
#: strategy's order size and ``max_order`` the risk gate's largest order.
DEMO_MARKETS: list[dict[str, Any]] = [
    {
        "currency_id": 9001,
        "symbol": "BTC/USDT",
        "index_symbol": "BTCUSDT",
        "market_type": int(MarketType.SPOT),
        "tick_size": "0.01",
        "price_precision": 2,
        "quantity_precision": 4,
        "min_quantity": "0.0001",
        "price": "60000",
        "quantity": "0.01",
        "max_order": "1",
    },
    {
        "currency_id": 9002,
        "symbol": "ETH/USDT",
        "index_symbol": "ETHUSDT",
        "market_type": int(MarketType.SPOT),
        "tick_size": "0.01",
        "price_precision": 2,
        "quantity_precision": 3,
        "min_quantity": "0.001",
        "price": "3000",
        "quantity": "0.2",
        "max_order": "20",
    },
]


def demo_strategy_config(market: dict[str, Any]) -> dict[str, Any]:
    """The ``fixed_spread`` strategy's config for one entry of :data:`DEMO_MARKETS` (JSON-able)."""
    return {
        "spread": "0.0008",
        "levels": 5,
        "level_step": "0.0004",
        "quantity": market["quantity"],
        "skew_per_unit": str(Decimal("0.0001") / Decimal(market["quantity"])),
        "max_skew": "0.002",
    }


def demo_risk(market: dict[str, Any]) -> dict[str, Any]:
    """The risk limits of one demo market, as :class:`~mmframe.engine.risk.RiskLimits` keyword arguments (JSON-able)."""
    return {"max_order_quantity": market["max_order"], "price_band": "0.05"}


def demo_tolerance() -> dict[str, Any]:
    """The demo markets' reconciler tolerance (:class:`~mmframe.engine.reconcile.Tolerance` keyword arguments)."""
    return {"price_fraction": "0.0001", "quantity_fraction": "0.5"}


def demo_feed_config(seed: int | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "prices": {m["index_symbol"]: m["price"] for m in DEMO_MARKETS},
        "volatility": 0.0002,
        "tick_rate": 2.0,
    }
    if seed is not None:
        config["seed"] = seed
    return config


def demo_options(market: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    """The engine options of one demo market as stored in ``mmframe_market.options`` (JSON-able)."""
    return {
        "feed": "sim",
        "feed_config": demo_feed_config(seed),
        "risk": demo_risk(market),
        "tolerance": demo_tolerance(),
    }


def demo_sink_config(seed: int | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"taker_flow_rate": 0.5}
    if seed is not None:
        config["seed"] = seed
    return config
