"""Which feed a market follows: its own option, the service's --feed, the Redis bus when MARKET_REDIS_* is set,
else its exchange's feed plugin directly (the exchange: the config's external_exchange, else MMFRAME_EXCHANGE);
end to end, the seed's markets quoting off prices published on a real Redis."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import attrs
import pytest
import redis
import trio

from mmframe import ConfigError
from mmframe._service.specs import MarketOptions, choose_feed
from mmframe._settings import RedisSettings, Settings, load_settings
from mmframe._store import MarketDescription, MarketRow, Store
from mmframe.testing import RedisServer

from .seed_sql import apply_seed_sql
from .service_helpers import running_service

BUS = RedisSettings(host="10.0.0.5", port=6378, password="s3cret", db=2)


def row(**config: Any) -> MarketRow:
    return MarketRow(
        id="879_1", currency_id=879, market_type=1, index_symbol="BTCUSDT", index_source=1, market_status=1,
        strategy_id=1, strategy_name="external_index_follow", strategy_config=config, overrides={}, description=None,
    )


class Okex:
    name = "okex"


SEED = Settings(exchange="binance")  # what mmframe's defaults (MMFRAME_EXCHANGE) give, as the seed behaves


def test_without_a_bus_a_market_connects_to_its_exchange_directly() -> None:
    assert choose_feed(row(), MarketOptions(), SEED) == ("binance", {}, "BTCUSDT")
    assert choose_feed(row(external_exchange="okex", external_symbol="ETHUSDT"), MarketOptions(), SEED) == (
        "okex", {}, "ETHUSDT"
    )
    assert choose_feed(row(), MarketOptions(), Settings(exchange="okex")) == ("okex", {}, "BTCUSDT")


def test_the_default_exchange_is_configuration_and_none_is_a_clear_error() -> None:
    assert load_settings(environ={}, env_file=None).exchange == "binance"  # mmframe/defaults.env, as the seed
    assert load_settings(environ={"MMFRAME_EXCHANGE": "okex"}, env_file=None).exchange == "okex"
    with pytest.raises(ConfigError, match="names no external_exchange and MMFRAME_EXCHANGE is not set"):
        choose_feed(row(), MarketOptions(), Settings())
    # with the bus, the channels need an exchange too: refused when the spec is built, saying what to set
    from mmframe._service.specs import spec_from_row

    described = row(tick_size="0.1", quote_precision=1, base_precision=2)
    with pytest.raises(ConfigError, match=r"redis feed needs the exchange .* MMFRAME_EXCHANGE"):
        spec_from_row(attrs.evolve(described, strategy_name="x"), Settings(market_redis=BUS))


def test_with_a_market_redis_markets_follow_the_bus_on_their_exchanges_channels() -> None:
    settings = Settings(market_redis=BUS, exchange="binance")
    feed, config, symbol = choose_feed(row(), MarketOptions(), settings)
    assert feed == "redis" and symbol == "BTCUSDT"
    assert config == {"exchange": "binance", "host": "10.0.0.5", "port": 6378, "db": 2, "password": "s3cret"}
    # an alias in the config names the feed's own channels: okx publishes as okex
    _, config, _ = choose_feed(row(external_exchange="OKX"), MarketOptions(), settings, {"okx": Okex, "okex": Okex})
    assert config["exchange"] == "okex"


def test_a_markets_own_feed_option_always_wins() -> None:
    settings = Settings(market_redis=BUS, feed="sim")
    options = MarketOptions(feed="binance", feed_config={"ws_url": "ws://127.0.0.1:9"}, index_symbol="XBTUSDT")
    assert choose_feed(row(), options, settings) == ("binance", {"ws_url": "ws://127.0.0.1:9"}, "XBTUSDT")
    # naming the redis feed explicitly still takes the connection from MARKET_REDIS_*, unless it says otherwise
    options = MarketOptions(feed="redis", feed_config={"exchange": "okex", "port": 7000})
    _, config, _ = choose_feed(row(), options, settings)
    assert config == {"exchange": "okex", "port": 7000, "host": "10.0.0.5", "db": 2, "password": "s3cret"}


def test_the_bus_password_never_shows_in_a_spec_or_the_feeds_repr() -> None:
    from mmframe._bus import RedisFeed
    from mmframe._service.specs import spec_from_row
    from mmframe.config import structure_config

    with_description = row(tick_size="0.1", quote_precision=1, base_precision=2)
    spec = spec_from_row(attrs.evolve(with_description, strategy_name="x"), Settings(market_redis=BUS, exchange="b"))
    assert spec.feed_config["password"] == "s3cret"  # the feed gets it ...
    assert "s3cret" not in repr(spec) and "'password': '***'" in repr(spec)  # ... logs never show it
    feed = RedisFeed(structure_config(spec.feed_config, RedisFeed.Config))
    assert "s3cret" not in repr(feed) and "s3cret" not in repr(feed.config)


def test_the_services_feed_setting_comes_before_the_bus() -> None:
    assert choose_feed(row(), MarketOptions(), Settings(market_redis=BUS, feed="sim"))[0] == "sim"


async def test_a_market_whose_exchange_feed_is_not_installed_fails_alone_saying_what_to_install(
    database_url: str,
) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url, feed=None, exchange="binance") as running:
        response = await running.client.get("/api/v1/strategies")
        rows = {r["id"]: r for r in response.json()}
        assert rows["879_1"]["is_running"] is False
        error = running.service.records["879_1"].error
        assert "feed 'binance' is not installed" in error and "pip install mmframe-binance" in error
        assert "MARKET_REDIS_HOST" in error


async def test_a_market_asking_for_a_feed_not_installed_fails_alone_naming_the_package(database_url: str) -> None:
    apply_seed_sql(database_url)
    store = Store(database_url)
    try:
        store.init()
        store.save_market(880, 1, MarketDescription("ETH/USDT", "0.01", 2, 4, options={"feed": "kraken"}))
    finally:
        store.close()
    async with running_service(database_url) as running:  # every other market follows the scripted feed
        rows = {r["id"]: r for r in (await running.client.get("/api/v1/strategies")).json()}
        assert rows["879_1"]["is_running"] is True
        assert rows["880_1"]["is_running"] is False and rows["880_1"]["status"] == "failed"
        assert rows["880_1"]["error"].startswith(
            "feed 'kraken' is not installed (pip install mmframe-kraken, or set MARKET_REDIS_HOST to follow the "
            "Redis bus); installed feeds: "
        )
        running.feed.push_price("BTCUSDT", "45000")
        with trio.fail_after(5):
            while not running.book("BTC/USDT"):  # noqa: ASYNC110
                await trio.sleep(0.01)


async def test_the_seeds_markets_quote_off_prices_published_on_the_bus(
    database_url: str, private_redis: RedisServer
) -> None:
    apply_seed_sql(database_url)
    bus = RedisSettings(port=private_redis.port)
    async with running_service(database_url, feed=None, market_redis=bus, exchange="binance") as running:
        spec = running.service.records["879_1"].spec
        assert spec is not None and spec.feed == "redis" and spec.feed_config["port"] == private_redis.port
        client = redis.Redis(port=private_redis.port)
        payload = json.dumps({"exchange": "binance", "symbol": "BTCUSDT", "price": "45000",
                              "timestamp": int(time.time() * 1000)})
        with trio.fail_after(10):
            while not running.book("BTC/USDT"):
                client.publish("price:update:binance:BTCUSDT", payload)
                await trio.sleep(0.05)
        prices = sorted(o.price for o in running.book("BTC/USDT"))
        assert prices == [Decimal("44995.5000"), Decimal("45004.5000")]  # the seed's ladder around 45000
        client.publish("price:update:binance:BTCUSDT", b"{not json")

        def btc_feed() -> Any:
            return next(s.feed for s in running.service.manager.status() if s.symbol == "BTC/USDT")

        with trio.fail_after(5):
            while not btc_feed().rejected:  # noqa: ASYNC110
                await trio.sleep(0.02)
        feed = btc_feed()
        assert feed.feed == "redis" and feed.rejected == 1 and feed.last_price == Decimal("45000") and feed.connected
        metrics = (await running.client.get("/metrics")).text
        labels = 'feed="redis",market="879_1",market_type="1",symbol="BTC/USDT"'
        assert f"mmframe_feed_rejected_total{{{labels}}} 1.0" in metrics
        assert f"mmframe_feed_last_price{{{labels}}} 45000.0" in metrics
        assert f"mmframe_feed_connected{{{labels}}} 1.0" in metrics

        def subscribers(channel: str) -> int:
            return int(client.pubsub_numsub(channel)[0][1])

        assert subscribers("price:update:binance:ETHUSDT") == 1
        stopped = await running.post("/api/v1/strategy/stop", {"symbol": "BTCUSDT", "market_type": 1})
        assert stopped.json()["code"] == 0
        stopped_at = trio.current_time()
        with trio.fail_after(1.0):  # the market's feed subscription is gone within a second
            while subscribers("price:update:binance:BTCUSDT"):  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert trio.current_time() - stopped_at < 1.0
        assert subscribers("price:update:binance:ETHUSDT") == 1  # the other market still follows the bus
        client.close()


@pytest.fixture(autouse=True)
def _no_env_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMFRAME_FEED", raising=False)


@pytest.mark.parametrize(
    ("index_symbol", "symbol"),
    [("BTCUSDT", "BTC/USDT"), ("ethbtc", "ETH/BTC"), ("BTCFDUSD", "BTC/FDUSD"), ("XTUSD", "X/TUSD"),
     ("BTC-USDT", "BTC/USDT"), ("BTC-", "BTC/"), ("-USDT", "/USDT"), ("eth_", "ETH/"), (" btc_usdt ", "BTC/USDT"),
     # quotes mmframe's list does not hold keep the symbol as the seed wrote it: a market's orders and fills are
     # kept under its symbol, so a longer list would rename the market and lose track of what it left
     ("BTCAUD", "BTCAUD"), ("ETHSGD", "ETHSGD"), ("BTCAED", "BTCAED"), ("XRPUSDK", "XRPUSDK"), ("OKBUSDT", "OKB/USDT")],
)
def test_a_seed_market_keeps_its_symbol(index_symbol: str, symbol: str) -> None:
    from mmframe._service.specs import market_symbol

    assert market_symbol(index_symbol) == symbol


def test_a_misspelt_feed_is_not_sent_to_pypi() -> None:
    """A typo of an installed feed gets "did you mean", not advice to install a distribution named after the typo
    (which anyone could publish)."""
    from mmframe import MarketSpec
    from mmframe._service.specs import check_feeds
    from mmframe.testing import make_market

    feeds = {"binance": object, "sim": object, "redis": object}
    spec = MarketSpec(market=make_market(), strategy="s", feed="binanace")
    with pytest.raises(ConfigError) as caught:
        check_feeds(spec, feeds)
    assert "did you mean 'binance'?" in str(caught.value) and "pip install" not in str(caught.value)
    spec = MarketSpec(market=make_market(), strategy="s", feed="kraken")
    with pytest.raises(ConfigError, match=r"pip install mmframe-kraken"):
        check_feeds(spec, feeds)
