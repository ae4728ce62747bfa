"""The demo: BTC/USDT and ETH/USDT quoted by the ``external_index_follow`` strategy with the seed's own
configuration (ten levels, tick 0.1), on the ``sim`` feed and the ``paper`` sink, with simulated takers so that
fills, inventory and PnL move.

The markets are plain data (:data:`DEMO_MARKETS`) that :func:`write_demo` (``mmframe db seed-demo``, and
``mmframe serve --demo``) writes into the configuration database through the store's public methods.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ._errors import ConfigError
from ._models import MarketType
from ._store import MarketDescription, Store, seed_sql

__all__ = [
    "DEMO_MARKETS",
    "DEMO_SINK",
    "DEMO_STRATEGY",
    "SEED_STRATEGY_CONFIG",
    "demo_feed_config",
    "demo_options",
    "demo_risk",
    "demo_sink_config",
    "demo_sink_options",
    "demo_strategy_config",
    "demo_tolerance",
    "require_demo_strategy",
    "write_demo",
]

DEMO_STRATEGY = "external_index_follow"
#: The sink the demo's simulated takers come with (:func:`demo_sink_config`).
DEMO_SINK = "paper"

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
    """The risk limits of one demo market, as :class:`mmframe.RiskLimits` keyword arguments (JSON-able)."""
    return {"max_order_quantity": market["max_order"], "price_band": "0.05"}


def demo_tolerance() -> dict[str, Any]:
    """The demo markets' reconciler tolerance (``mmframe_market.options.tolerance``: its keyword arguments)."""
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


def demo_sink_options(sink: str, seed: int | None = None) -> dict[str, Any]:
    """What the demo adds to the options of the sink named *sink*: simulated takers on the ``paper`` sink
    (:func:`demo_sink_config`), nothing on another."""
    return demo_sink_config(seed) if sink == DEMO_SINK else {}


def require_demo_strategy(strategies: Mapping[str, Any]) -> None:
    """Refuse to run the demo without its strategy's plugin, saying what to install."""
    if DEMO_STRATEGY not in strategies:
        raise ConfigError(
            f"the demo quotes with the {DEMO_STRATEGY} strategy: pip install ./plugins/mmframe-external-index-follow"
        )


def write_demo(store: Store) -> None:
    """Write the demo markets (BTC/USDT as currency 9001, ETH/USDT as 9002, both spot, auto-started, next to the
    seed's 879 and 880) with the ``external_index_follow`` strategy and the seed's config, their descriptions and
    options.

    Idempotent, and it never overwrites: only what is missing is written. The strategy row holds the first demo
    market's config; a market whose config differs (order size, skew) gets the differing keys as its config
    override, so every market's :attr:`MarketRow.effective_config` is its demo config.
    """
    found = store.find_strategy(DEMO_STRATEGY)
    if found is None:
        store.add_strategy(
            DEMO_STRATEGY,
            demo_strategy_config(DEMO_MARKETS[0]),
            desc="mmframe demo: the seed's external index follow strategy",
        )
        found = store.find_strategy(DEMO_STRATEGY)
        assert found is not None
    strategy_id, base = found
    for m in DEMO_MARKETS:
        currency_id, market_type = m["currency_id"], m["market_type"]
        store.add_currency(currency_id, market_type, m["index_symbol"], strategy_id, market_status=1, index_source=0)
        description = MarketDescription(
            symbol=m["symbol"],
            tick_size=m["tick_size"],
            price_precision=m["price_precision"],
            quantity_precision=m["quantity_precision"],
            min_quantity=m["min_quantity"],
            options=demo_options(m),
        )
        store.save_market(currency_id, market_type, description, replace=False)
        overrides = {k: v for k, v in demo_strategy_config(m).items() if base.get(k) != v}
        if overrides:
            store.save_override(currency_id, market_type, overrides, replace=False)
