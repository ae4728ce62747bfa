"""Configuration: the seed-000 keys and the seed-001 keys load; unknown keys and bad values are refused with a message
naming the key, also those only the market can judge (a spacing off the tick grid, a quantity too precise)."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest
import trio
from mmframe_grid_trading import DEFAULT_WINDOW, Config, GridTrading

from mmframe import ConfigError, MarketState, structure_config
from mmframe.testing import load_plugins, make_market

from .helpers import BTC, KEY, D, grid_config, start_rig


def load(data: dict[str, Any]) -> Config:
    return structure_config(data, Config)


def test_the_seed_000_keys_load() -> None:
    config = load({"grid_levels": 10, "grid_spacing_percent": 0.005, "grid_quantity": 0.1})
    assert config.grid_levels == 10 and config.grid_spacing_percent == D("0.005") and config.quantity == D("0.1")
    assert config.price_interval is None and config.anchor_price is None
    assert (config.buy_window, config.sell_window) == (10, 10)  # the windows default to grid_levels


def test_the_seed_001_keys_load() -> None:
    config = load({"price_interval": 50, "order_quantity": "0.01", "buy_window_size": 5, "sell_window_size": 8,
                   "anchor_price": "30000.5"})
    assert config.price_interval == D(50) and config.quantity == D("0.01") and config.quantity_key == "order_quantity"
    assert (config.buy_window, config.sell_window) == (5, 8)
    assert config.anchor_price == D("30000.5") and config.grid_levels is None


def test_without_grid_levels_or_windows_each_window_is_ten_slots() -> None:
    config = load({"price_interval": 1, "order_quantity": 1, "anchor_price": None})
    assert DEFAULT_WINDOW == 10 and (config.buy_window, config.sell_window) == (10, 10)


def test_the_market_keys_the_service_reads_are_accepted() -> None:
    config = load({**grid_config(), "tick_size": 0.01, "base_precision": 4, "quote_precision": 2,
                   "external_exchange": "binance", "external_symbol": "BTCUSDT"})
    assert (config.tick_size, config.base_precision, config.quote_precision) == (D("0.01"), 4, 2)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"price_interval": None}, "price_interval or grid_spacing_percent is required"),
        ({"grid_spacing_percent": "0.01"}, "price_interval and grid_spacing_percent both set"),
        ({"order_quantity": None}, "order_quantity or grid_quantity is required"),
        ({"grid_quantity": 1}, "order_quantity and grid_quantity both set"),
        ({"price_interval": 0}, "price_interval must be positive, got 0"),
        ({"price_interval": None, "grid_spacing_percent": 1}, "grid_spacing_percent must be above 0 and below 1"),
        ({"order_quantity": "-1"}, "order_quantity must be positive, got -1"),
        ({"grid_levels": 0}, "grid_levels must be a whole number of at least 1, got 0"),
        ({"buy_window_size": 0}, "buy_window_size must be a whole number of at least 1"),
        ({"sell_window_size": -2}, "sell_window_size must be a whole number of at least 1"),
        ({"buy_window_size": 2.5}, "config.buy_window_size"),
        ({"sell_window_size": True}, "config.sell_window_size"),
        ({"anchor_price": "0"}, "anchor_price must be positive, got 0"),
        ({"anchor_price": "abc"}, "not a decimal number: 'abc' @ config.anchor_price"),
        ({"order_quantity": "NaN"}, "must be finite, got 'NaN' @ config.order_quantity"),
        ({"tick_size": 0}, "tick_size must be positive"),
        ({"base_precision": 19}, "base_precision must be from 0 to 18"),
        ({"external_symbol": " "}, "external_symbol must not be empty"),
        ({"grid_spacing": 1}, "extra fields found (grid_spacing)"),
        ({"order_refresh_interval_sec": 10}, "extra fields found (order_refresh_interval_sec)"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(grid_config(**changes))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"price_interval": "0.015"}, "price_interval 0.015 must be a positive multiple of the market's tick size"),
        ({"order_quantity": "0.00005"}, "order_quantity 0.00005 has more decimal places than the market's quantity"),
        ({"order_quantity": None, "grid_quantity": "0.123456"}, "grid_quantity 0.123456 has more decimal places"),
        ({"anchor_price": "100.005"}, "anchor_price 100.005 is not on the market's tick grid"),
        ({"price_interval": None, "grid_spacing_percent": "0.00001"},
         "grid_spacing_percent 0.00001 of the anchor 100.00 is 0.0010000, less than one tick (0.01)"),
    ],
)
def test_what_the_market_refuses_is_refused_naming_the_key(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        GridTrading(load(grid_config(**changes)), BTC)
    assert message in str(info.value)


def test_the_minimum_quantity_is_checked() -> None:
    market = make_market(min_quantity="0.01")
    with pytest.raises(ConfigError, match=r"order_quantity 0\.005 is below the market's minimum quantity 0\.01"):
        GridTrading(load(grid_config(order_quantity="0.005")), market)


def test_percent_spacing_becomes_an_absolute_spacing_on_the_tick_grid() -> None:
    strategy = GridTrading(load(grid_config(price_interval=None, grid_spacing_percent="0.005")), BTC)
    assert strategy.spacing == D("0.50") and strategy.grid is not None and strategy.grid.price(-3) == D("98.50")
    # 0.1 % of 30012.34 is 30.01234: rounded to the tick, 30.01
    strategy = GridTrading(load(grid_config(price_interval=None, grid_spacing_percent="0.001",
                                            anchor_price="30012.34")), BTC)
    assert strategy.spacing == D("30.01") and strategy.grid is not None and strategy.grid.price(1) == D("30042.35")


async def test_a_spacing_too_small_for_the_first_price_fails_the_market_naming_the_key(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    config = grid_config(price_interval=None, grid_spacing_percent="0.00001", anchor_price=None)
    rig = await start_rig(nursery, config=config)
    await rig.tick("100.00")
    assert rig.engine is not None
    status = rig.engine.status(KEY)
    assert status.state is MarketState.FAILED and "grid_spacing_percent 0.00001" in status.error


async def test_a_config_the_market_refuses_fails_to_start(nursery: trio.Nursery, autojump_clock: Any) -> None:
    rig = await start_rig(nursery, config=grid_config(price_interval="0.005"))
    assert rig.engine is not None
    status = rig.engine.status(KEY)
    assert status.state is MarketState.FAILED
    assert "price_interval 0.005 must be a positive multiple of the market's tick size" in status.error


def test_the_entry_point_registers_the_strategy() -> None:
    (ep,) = [e for e in importlib.metadata.entry_points(group="mmframe") if e.name == "grid_trading"]
    assert ep.value == "mmframe_grid_trading"
    loaded = load_plugins()
    assert loaded.strategies["grid_trading"] is GridTrading
    info = {i.name: i for i in loaded.info}["grid_trading"]
    assert info.distribution == "mmframe-grid-trading" and "register_strategies" in info.hooks
