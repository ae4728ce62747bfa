"""Configuration: the defaults, and hostile values refused with a ConfigError whose message names the key."""

from __future__ import annotations

from typing import Any

import pytest
from mmframe_avellaneda_stoikov import AvellanedaStoikovConfig, GLFTConfig
from mmframe_avellaneda_stoikov.config import (
    DEFAULT_INTENSITY_WINDOW,
    DEFAULT_MIN_SIGMA_SAMPLES,
    DEFAULT_MIN_TRADES,
    DEFAULT_SIGMA_WINDOW,
)

from mmframe import ConfigError, structure_config

from .helpers import D, as_config, glft_config


def test_the_defaults() -> None:
    config = structure_config({"gamma": 0.1, "quantity": "0.01", "horizon": 3600}, AvellanedaStoikovConfig)
    assert (config.gamma, config.quantity, config.horizon) == (D("0.1"), D("0.01"), 3600.0)
    assert (config.mode, config.horizon_mode, config.spread) == ("inventory", "rolling", None)
    assert (config.sigma, config.A, config.k) == (None, None, None)
    assert (config.sigma_window, config.min_sigma_samples) == (DEFAULT_SIGMA_WINDOW, DEFAULT_MIN_SIGMA_SAMPLES)
    assert (config.intensity_window, config.min_trades) == (DEFAULT_INTENSITY_WINDOW, DEFAULT_MIN_TRADES)
    assert (config.levels, config.level_spacing, config.max_inventory, config.min_spread) == (1, None, None, None)
    glft = structure_config({"gamma": "0.5", "quantity": 1}, GLFTConfig)
    assert glft.gamma == D("0.5") and glft.k is None


def test_the_market_keys_the_service_reads_are_accepted() -> None:
    config = structure_config(
        {**glft_config(), "tick_size": 0.01, "base_precision": 4, "quote_precision": 2,
         "external_exchange": "binance", "external_symbol": "BTCUSDT"},
        GLFTConfig,
    )
    assert (config.tick_size, config.base_precision, config.quote_precision) == (D("0.01"), 4, 2)


NAN = float("nan")


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"gamma": -0.1}, "gamma", "gamma must be positive, got -0.1"),
        ({"gamma": 0}, "gamma", "gamma must be positive, got 0"),
        ({"gamma": "NaN"}, "gamma", "finite"),
        ({"gamma": NAN}, "gamma", "finite"),
        ({"gamma": True}, "gamma", "boolean"),
        ({"gamma": "1e30"}, "gamma", "gamma must be below 1e15"),
        ({"gamma": None}, "gamma", ""),
        ({"quantity": "-1"}, "quantity", "quantity must be positive, got -1"),
        ({"k": 0}, "k", "k must be positive, got 0"),
        ({"k": -1.5}, "k", "k must be positive"),
        ({"A": 0}, "A", "A must be positive, got 0"),
        ({"sigma": "inf"}, "sigma", "finite"),
        ({"sigma": -2}, "sigma", "sigma must be positive"),
        ({"sigma": "two"}, "sigma", "not a decimal number"),
        ({"horizon": 0}, "horizon", "horizon must be a positive number of seconds, got 0"),
        ({"horizon": NAN}, "horizon", "finite"),
        ({"horizon": -1}, "horizon", "horizon must be a positive number of seconds"),
        ({"horizon": None}, "horizon", ""),
        ({"horizon_mode": "forever"}, "horizon_mode", "horizon_mode must be one of finite, rolling, got 'forever'"),
        ({"mode": "greedy"}, "mode", "mode must be one of inventory, symmetric, got 'greedy'"),
        ({"spread": 1}, "spread", "spread only applies with mode symmetric"),
        ({"mode": "symmetric", "spread": 0}, "spread", "spread must be positive, got 0"),
        ({"sigma_window": 0}, "sigma_window", "sigma_window must be a positive number of seconds"),
        ({"intensity_window": NAN}, "intensity_window", "finite"),
        ({"min_sigma_samples": 1}, "min_sigma_samples", "min_sigma_samples must be a whole number from 2"),
        ({"min_trades": 0}, "min_trades", "min_trades must be a whole number from 2"),
        ({"min_trades": 2.5}, "min_trades", "expected an integer"),
        ({"levels": 0}, "levels", "levels must be a whole number from 1 to 50, got 0"),
        ({"levels": 51}, "levels", "levels must be a whole number from 1 to 50, got 51"),
        ({"levels": "two"}, "levels", "expected an integer"),
        ({"level_spacing": 0}, "level_spacing", "level_spacing must be positive"),
        ({"max_inventory": -1}, "max_inventory", "max_inventory must be positive"),
        ({"min_spread": "-0.01"}, "min_spread", "min_spread must not be negative"),
        ({"min_spread": NAN}, "min_spread", "finite"),
        ({"gama": 0.1}, "gama", "extra fields found (gama)"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key(changes: dict[str, Any], key: str, message: str) -> None:
    for cls, config in ((AvellanedaStoikovConfig, as_config()), (GLFTConfig, glft_config())):
        data = {**config, **changes}
        data = {k: v for k, v in data.items() if v is not None}
        if cls is GLFTConfig and set(changes) & {"horizon", "horizon_mode", "mode", "spread"}:
            if set(data) & set(changes):  # glft has no horizon or mode: an unknown key there
                with pytest.raises(ConfigError, match=r"extra fields found"):
                    structure_config(data, cls)
            continue
        with pytest.raises(ConfigError) as raised:
            structure_config(data, cls)
        text = str(raised.value)
        assert key in text and message in text, text


def test_a_missing_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"required field missing @ config\.gamma"):
        structure_config({"quantity": 1, "horizon": 1}, AvellanedaStoikovConfig)
    with pytest.raises(ConfigError, match=r"required field missing @ config\.horizon"):
        structure_config({"gamma": 0.1, "quantity": 1}, AvellanedaStoikovConfig)
    with pytest.raises(ConfigError, match=r"required field missing @ config\.quantity"):
        structure_config({"gamma": 0.1}, GLFTConfig)


def test_a_config_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ConfigError, match="config must be a JSON object"):
        structure_config([1, 2], GLFTConfig)  # type: ignore[arg-type]
