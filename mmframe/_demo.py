"""The demo: BTC/USDT and ETH/USDT quoted by the ``external_index_follow`` strategy with the seed's own
configuration (ten levels, tick 0.1), on the ``sim`` feed and the ``paper`` sink, with simulated takers so that
fills, inventory and PnL move.

The markets are plain data (:data:`DEMO_MARKETS`) that ``Store.seed_demo`` (``mmframe db seed-demo``, and
``mmframe serve --demo``) writes into the configuration database.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._models import MarketType
from ._store import seed_sql

__all__ = [
    "DEMO_MARKETS",
    "DEMO_STRATEGY",
    "SEED_STRATEGY_CONFIG",
    "demo_feed_config",
    "demo_options",
    "demo_risk",
    "demo_sink_config",
    "demo_strategy_config",
    "demo_tolerance",
]

DEMO_STRATEGY = "external_index_follow"

#: The demo markets as plain, JSON-able data. ``currency_id`` is the ``strategy_currency.currency_id`` the demo
#: uses when it is written into a database; ``price`` is the sim feed's starting index price, ``quantity`` the
#: strategy's order size and ``max_order`` the risk gate's largest order.
DEMO_MARKETS: list[dict[str, Any]] = [
    {
        "currency_id": 9001,
        "symbol": "BTC/USDT",
        "index_symbol": "BTCUSDT",
        "market_type": int(MarketType.SPOT),
        "tick_size": "0.1",
        "price_precision": 4,
        "quantity_precision": 2,
        "min_quantity": "0.01",
        "price": "60000",
        "max_order": "20",
    },
    {
        "currency_id": 9002,
        "symbol": "ETH/USDT",
        "index_symbol": "ETHUSDT",
        "market_type": int(MarketType.SPOT),
        "tick_size": "0.1",
        "price_precision": 4,
        "quantity_precision": 2,
        "min_quantity": "0.01",
        "price": "3000",
        "max_order": "20",
    },
]

#: The seed's ``strategy_strategy`` config for ``external_index_follow``, exactly as its SQL inserts it.
SEED_STRATEGY_CONFIG: dict[str, Any] = json.loads(
    re.search(r"'(\{.*?\})',", seed_sql(), re.S).group(1)  # type: ignore[union-attr]
)


def demo_strategy_config(market: dict[str, Any]) -> dict[str, Any]:
    """The demo strategy's config for one entry of :data:`DEMO_MARKETS`: the seed's, unchanged."""
    return dict(SEED_STRATEGY_CONFIG)


def demo_risk(market: dict[str, Any]) -> dict[str, Any]:
    """The risk limits of one demo market, as :class:`~mmframe.RiskLimits` keyword arguments (JSON-able)."""
    return {"max_order_quantity": market["max_order"], "price_band": "0.05"}


def demo_tolerance() -> dict[str, Any]:
    """The demo markets' reconciler tolerance (:class:`~mmframe._engine.reconcile.Tolerance` keyword arguments)."""
    return {}


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
