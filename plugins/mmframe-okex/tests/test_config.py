"""The ``okex`` feed's configuration, its symbol mapping and its registration through the entry point."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mmframe_okex import OkexFeed, to_inst_id
from mmframe_okex.feed import QUOTE_ASSETS

import mmframe
from mmframe.config import structure_config
from mmframe.testing import load_plugins


def test_the_defaults() -> None:
    config = structure_config({}, OkexFeed.Config)

    assert config == OkexFeed.Config()
    assert (config.ws_url, config.channels) == ("wss://ws.okx.com:8443/ws/v5/public", ("tickers", "books5"))
    assert (config.ping_interval, config.pong_timeout) == (20.0, 10.0)
    assert (config.backoff_initial, config.backoff_max, config.max_subscribe_batch) == (0.5, 30.0, 20)


def test_a_full_config_is_structured() -> None:
    config = structure_config(
        {"ws_url": "ws://127.0.0.1:9/ws/v5/public", "channels": ["books5"], "ping_interval": "5",
         "pong_timeout": 2, "backoff_initial": 0.1, "backoff_max": 1, "max_subscribe_batch": 5},
        OkexFeed.Config,
    )

    assert config.channels == ("books5",)
    assert (config.ping_interval, config.pong_timeout, config.backoff_max) == (5.0, 2.0, 1.0)


@pytest.mark.parametrize(
    ("mapping", "key"),
    [
        ({"ping_interval": 30}, "ping_interval"),
        ({"ping_interval": 0}, "ping_interval"),
        ({"pong_timeout": -1}, "pong_timeout"),
        ({"pong_timeout": "abc"}, "pong_timeout"),
        ({"channels": ["trades"]}, "channels"),
        ({"channels": []}, "channels"),
        ({"channels": "tickers"}, "channels"),
        ({"channels": ["tickers", "tickers"]}, "channels"),
        ({"ws_url": "https://ws.okx.com/ws/v5/public"}, "ws_url"),
        ({"ws_url": "ws://"}, "ws_url"),
        ({"backoff_initial": 0}, "backoff_initial"),
        ({"backoff_initial": 5, "backoff_max": 1}, "backoff_max"),
        ({"max_subscribe_batch": 0}, "max_subscribe_batch"),
        ({"max_subscribe_batch": 1.5}, "max_subscribe_batch"),
        ({"ping_intervall": 10}, "ping_intervall"),
    ],
)
def test_config_errors_name_the_key(mapping: dict[str, Any], key: str) -> None:
    with pytest.raises(mmframe.ConfigError, match=key):
        structure_config(mapping, OkexFeed.Config)


@pytest.mark.parametrize(
    ("symbol", "inst_id"),
    [
        ("BTCUSDT", "BTC-USDT"),
        ("ETHBTC", "ETH-BTC"),
        ("SOLUSDC", "SOL-USDC"),
        ("BTCUSD", "BTC-USD"),
        ("ETHEUR", "ETH-EUR"),
        ("USDCUSDT", "USDC-USDT"),
        ("btcusdt", "BTC-USDT"),
        ("BTC-USDT", "BTC-USDT"),
        ("BTC-USDT-SWAP", "BTC-USDT-SWAP"),
        ("BTC-USD-250328", "BTC-USD-250328"),
    ],
)
def test_symbols_map_to_instrument_ids(symbol: str, inst_id: str) -> None:
    assert to_inst_id(symbol) == inst_id


@pytest.mark.parametrize("symbol", ["", "USDT", "FOOBAR", "BTC--USDT", "-BTC", "BTC-", "BTC/USDT", "BTC USDT"])
def test_unmappable_symbols_are_a_clear_value_error(symbol: str) -> None:
    with pytest.raises(ValueError, match="okex feed"):
        to_inst_id(symbol)


@given(base=st.from_regex(r"[A-Z0-9]{1,8}", fullmatch=True), quote=st.sampled_from(QUOTE_ASSETS))
def test_base_and_known_quote_always_map_back(base: str, quote: str) -> None:
    assert to_inst_id(base + quote) == f"{base}-{quote}"


@pytest.mark.parametrize(("symbol", "inst_id"), [("DOTUSD", "DOT-USD"), ("ARBUSD", "ARB-USD"), ("BTCUSDT", "BTC-USDT"),
                                                 ("ETHAUD", "ETH-AUD"), ("OKBUSDK", "OKB-USDK")])
def test_usd_and_okx_only_quotes_map_to_okx_instruments(symbol: str, inst_id: str) -> None:
    assert to_inst_id(symbol) == inst_id


def test_the_plugin_registers_the_feed_as_okex_and_okx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMFRAME_LOAD_PLUGINS", "okex")
    loaded = load_plugins()

    feeds = loaded.feeds

    assert feeds["okex"] is OkexFeed and feeds["okx"] is OkexFeed
    info = next(info for info in loaded.info if info.name == "okex")
    assert (info.distribution, info.hooks, info.builtin) == ("mmframe-okex", ("register_feeds",), False)
