"""Configuration: both of the seed's forms load unchanged; unknown keys and bad values are refused naming the key;
the seed's market-activity keys are accepted, reported once and never cause an order."""

from __future__ import annotations

import importlib.metadata
import logging
from decimal import Decimal
from typing import Any

import pytest
import trio
from mmframe_external_index_follow import Config, ExternalIndexFollow, Level

from mmframe import ConfigError, OrderType, structure_config
from mmframe.testing import load_plugins

from .helpers import BTC, D, flat_config, seed_config, settle, spec, start_engine


def load(data: dict[str, Any]) -> Config:
    return structure_config(data, Config)


def test_the_seed_database_form_loads_unchanged() -> None:
    config = load(seed_config())
    assert config.base_quantity == D(10) and config.price_follow_percent == D(100)
    assert config.price_change_amount == D("1.0") and config.maintenance_seconds == 1.0
    assert (config.tick_size, config.base_precision, config.quote_precision) == (D("0.1"), 2, 4)
    assert config.max_active_orders == 100 and config.mode == "reconcile"
    assert len(config.depth_levels) == 10
    assert config.depth_levels[0] == Level(D("0.0001"), D("1.0"))
    assert config.depth_levels[-1] == Level(D("0.04"), D("0.25"))
    assert config.ignored_keys == () and not config.opponent_detection_enabled


def test_the_seed_flat_form_loads_unchanged() -> None:
    config = load(flat_config())
    # depth_levels 10 is a count: level i at spread_percent * i, quantity ratio 1.
    assert config.depth_levels == tuple(Level(D("0.001") * i, D(1)) for i in range(1, 11))
    assert (config.external_exchange, config.external_symbol) == ("binance", "BTCUSDT")
    assert config.max_order_quantity == D("1.0") and config.max_active_orders == 10000
    assert config.order_refresh_interval_sec == 10 and config.order_refresh_percent == D("0.1")
    assert config.order_timeout_sec == 300
    assert config.opponent_detection_enabled and config.max_sweep_quantity == D("0.5")
    assert config.max_sweep_price_deviation == D("0.02") and config.sweep_cooldown_ms == 1000
    # refresh_interval_ms (the seed's depth refresh) paces the maintenance and the local book checks.
    assert config.maintenance_seconds == 0.5 and config.depth_check_seconds == 0.5
    assert config.ignored_keys == (
        "market_order_interval_ms",
        "market_order_size",
        "synthetic_trade_interval_ms",
        "synthetic_trade_size",
    )


@pytest.mark.parametrize(("value", "seconds"), [("1s", 1.0), ("500ms", 0.5), ("2m", 120.0), (3, 3.0), (0.25, 0.25)])
def test_maintenance_interval_is_a_duration(value: object, seconds: float) -> None:
    assert load(seed_config(maintenance_interval=value)).maintenance_seconds == seconds


def test_unknown_key_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="sprad"):
        load(seed_config(sprad=1))
    with pytest.raises(ConfigError, match=r"depth_levels\[1\]\.quantity_ration"):
        load(seed_config(depth_levels=[{"spread_percent": 0.001, "quantity_ratio": 1},
                                       {"spread_percent": 0.002, "quantity_ration": 1}]))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"base_quantity": 0}, "base_quantity"),
        ({"base_quantity": "lots"}, "base_quantity"),
        ({"price_follow_percent": -5}, "price_follow_percent"),
        ({"price_change_amount": -1}, "price_change_amount"),
        ({"maintenance_interval": "soon"}, "maintenance_interval"),
        ({"maintenance_interval": "0s"}, "maintenance_interval"),
        ({"max_active_orders": 1}, "max_active_orders"),
        ({"max_active_orders": "many"}, "max_active_orders"),
        ({"base_precision": 40}, "base_precision"),
        ({"tick_size": 0}, "tick_size"),
        ({"mode": "fast"}, "mode"),
        ({"depth_levels": []}, "depth_levels"),
        ({"depth_levels": True}, "depth_levels"),
        ({"depth_levels": "ten"}, "depth_levels"),
        ({"depth_levels": [{"spread_percent": 0.001, "quantity_ratio": 0}]}, r"depth_levels\[0\]\.quantity_ratio"),
        ({"depth_levels": [{"spread_percent": 0.001, "quantity_ratio": 1}, {"spread_percent": 1.5,
                                                                            "quantity_ratio": 1}]},
         r"depth_levels\[1\]\.spread_percent"),
        ({"depth_levels": [{"spread_percent": 0.001}]}, r"depth_levels\[0\]\.quantity_ratio is required"),
        ({"depth_levels": [7]}, r"depth_levels\[0\]"),
        ({"depth_levels": 10}, "spread_percent"),  # a count needs spread_percent
        ({"spread_percent": 0.001}, "spread_percent"),  # spread_percent with a list of levels is a contradiction
        ({"order_refresh_percent": 2}, "order_refresh_percent"),
        ({"order_timeout_sec": 0}, "order_timeout_sec"),
        ({"sweep_cooldown_ms": -1}, "sweep_cooldown_ms"),
        ({"opponent_detection_enabled": "yes"}, "opponent_detection_enabled"),
        ({"opponent_detection_enabled": True}, "max_sweep_quantity"),  # a sweep needs its limit
        ({"max_sweep_price_deviation": 1}, "max_sweep_price_deviation"),
        ({"external_symbol": ""}, "external_symbol"),
    ],
)
def test_bad_values_are_refused_naming_the_key(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load(seed_config(**changes))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"spread_percent": 0}, "spread_percent"),
        ({"spread_percent": 0.2}, "spread_percent"),  # 10 levels of 0.2 reach below zero
        ({"depth_levels": 0}, "depth_levels"),
        ({"depth_levels": 1000}, "depth_levels"),
        ({"max_order_quantity": 0}, "max_order_quantity"),
        ({"refresh_interval_ms": 0}, "refresh_interval_ms"),
        ({"market_order_size": "x"}, "market_order_size"),
    ],
)
def test_bad_values_in_the_flat_form_are_refused_naming_the_key(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load(flat_config(**changes))


def test_missing_required_keys_are_named() -> None:
    data = seed_config()
    del data["base_quantity"]
    with pytest.raises(ConfigError, match="base_quantity"):
        load(data)
    data = seed_config()
    del data["depth_levels"]
    with pytest.raises(ConfigError, match="depth_levels"):
        load(data)


def test_the_plugin_is_found_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMFRAME_LOAD_PLUGINS", raising=False)
    (ep,) = [e for e in importlib.metadata.entry_points(group="mmframe") if e.name == "external_index_follow"]
    assert ep.value == "mmframe_external_index_follow"
    loaded = load_plugins()
    assert loaded.strategies["external_index_follow"] is ExternalIndexFollow
    info = {i.name: i for i in loaded.info}["external_index_follow"]
    assert info.distribution == "mmframe-external-index-follow" and "register_strategies" in info.hooks


def test_the_ignored_keys_are_reported_once_per_instance(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mmframe.strategy.external_index_follow")
    strategy = ExternalIndexFollow(load(flat_config()), BTC)
    lines = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert lines == [
        "[BTC/USDT] ignoring market_order_interval_ms, market_order_size, synthetic_trade_interval_ms, "
        "synthetic_trade_size: mmframe does not inject market orders or trade with itself"
    ]
    assert strategy.status()["ignored_keys"] == list(load(flat_config()).ignored_keys)
    caplog.clear()
    ExternalIndexFollow(load(seed_config()), BTC)  # nothing to ignore: nothing said
    assert not [r for r in caplog.records if "ignoring" in r.getMessage()]


async def test_the_seed_flat_config_runs_with_one_warning_and_no_market_order(
    nursery: trio.Nursery, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The flat form on the engine for a minute of virtual time: one warning, only the ladder's limit orders."""
    caplog.set_level(logging.INFO)
    engine = await start_engine(nursery)
    await engine.start(spec(flat_config()))
    for second in range(60):
        engine.push_tick(D(45000) + second % 2)  # a price that moves, so the ladder moves too
        await trio.sleep(1)
    await settle()
    warnings = [r for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    # Every order ever sent went through the tracker: all limit orders of the ladder, none a market/IOC order.
    sent = engine.live_orders(include_cancelling=True) + engine.finished_orders()
    assert sent and {o.request.type for o in sent} == {OrderType.LIMIT}
    assert {o.request.tag for o in sent} <= {f"L{i}" for i in range(1, 11)}
    status = engine.status()
    assert status.fills == 0 and status.position == 0 and status.orders_vetoed == 0
    assert status.bids == 10 and status.asks == 10
    assert status.strategy_status["sweeps"] == 0 and status.strategy_status["refreshes"] >= 5
    # Quantities are the flat form's 0.1 (less at most 20 % of size variation); prices 0.1 % apart per level.
    bids, asks = engine.ladder()
    assert all(D("0.08") <= q <= D("0.1") for _, q in bids + asks)
    assert asks[0][0] - bids[0][0] > Decimal(80)  # 0.2 % of 45000 at the best level
