"""Configs an adversarial tester got past ``config/update`` with the real strategy (issue 13, "Config validated before
it is stored"): each is refused before it is stored, naming the key, and a reload of such a row answers 422 and
leaves the market quoting. The service runs on SQLite holding the seed's rows, with the control API on hypercorn on
port 0 and real HTTP.

- a value the engine cannot represent exactly (``max_sweep_quantity`` 1e30 killed the market at its first look at
  the local book, a path the dry build did not take); an upkeep interval of 1e-300 s (1000 orders a second);
- ``risk.settled_band`` made every config/update a 400 (the dry build had no settled price);
- a change that leaves the book empty (a quantity below the market's minimum) passed, and after it any junk did;
- a switch of the index to another instrument (ETH/USDT following BTCUSDT) quoted ETH at BTC's price.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, ClassVar

import attrs
import httpx
import pytest
import trio
import trio.testing

from mmframe import (
    ConfigError,
    DepthSnapshot,
    MarketSpec,
    OrderType,
    Quote,
    RiskLimits,
    Side,
    Strategy,
    StrategyContext,
    hookimpl,
)
from mmframe.feedtools import FeedSymbolStats
from mmframe.testing import ScriptedFeed, ServiceHarness, describe_market, run_service, seed_database, start_engine

from .helpers import BTC, flat_config, plugins, seed_config, settle, spec
from .helpers import start_engine as start_eif_engine

TOKEN = "eif-hostile-token"
BTC_BODY = {"symbol": "BTC/USDT", "market_type": 1}
ETH_BODY = {"symbol": "ETH/USDT", "market_type": 1}


class PricedFeed(ScriptedFeed):
    """The scripted feed, with the last price of every symbol pushed (as the real feeds' ``symbol_statistics``)."""

    name: ClassVar[str] = "scripted"

    def push_price(self, symbol: str, price: Any, **kwargs: Any) -> Any:
        tick = super().push_price(symbol, price, **kwargs)
        self.last_prices[symbol] = tick.price
        return tick

    def symbol_statistics(self, symbol: str) -> FeedSymbolStats:
        return FeedSymbolStats(self.name, symbol, last_price=self.last_prices.get(symbol), connected=True)

    @property
    def last_prices(self) -> dict[str, Decimal]:
        return self.__dict__.setdefault("_last_prices", {})


@attrs.define
class Running:
    service: ServiceHarness

    @property
    def sink(self) -> Any:
        return self.service.sink

    @property
    def feed(self) -> PricedFeed:
        feed = self.service.engine.feed("BTC/USDT")
        assert isinstance(feed, PricedFeed)
        return feed

    async def post(self, path: str, body: Any) -> httpx.Response:
        return await self.service.post(path, body)

    async def update(self, body: dict[str, Any], **config: Any) -> httpx.Response:
        return await self.post("/api/v1/strategy/config/update", {**body, "config": config})

    async def reload(self, body: dict[str, Any]) -> httpx.Response:
        return await self.post("/api/v1/strategy/reload", body)

    async def status(self, body: dict[str, Any]) -> dict[str, Any]:
        return (await self.service.get("/api/v1/strategy/status", **body)).json()["data"]  # type: ignore[no-any-return]

    def book(self, symbol: str) -> list[Any]:
        return self.sink.book(symbol).open_orders()

    async def quote(self) -> None:
        self.feed.push_price("BTCUSDT", "45000")
        self.feed.push_price("ETHUSDT", "3000")
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)


@asynccontextmanager
async def running_service(tmp_path: Any, options: dict[str, Any] | None = None) -> AsyncIterator[Running]:
    """The seed's two markets (BTC/USDT and ETH/USDT: tick 0.1, 4 price and 2 quantity decimals, minimum 0.01) run by
    the real strategy, both quoting; BTC/USDT with the engine *options* when given."""
    url = f"sqlite:///{tmp_path / 'mmframe.sqlite'}"
    seed_database(url)  # the seed's tables and rows first, then mmframe's own beside them
    if options is not None:
        describe_market(url, 879, 1, symbol="BTC/USDT", tick_size="0.1", price_precision=4, quantity_precision=2,
                        min_quantity="0.01", options=options)
    async with run_service(url, *plugins(), feeds=[PricedFeed], api_token=TOKEN) as service:
        running = Running(service)
        await running.quote()
        assert len(running.book("BTC/USDT")) == 20 and len(running.book("ETH/USDT")) == 20
        yield running


async def still_quoting(running: Running, body: dict[str, Any] = BTC_BODY, orders: int = 20) -> None:
    await running.quote()
    await trio.sleep(0.3)
    await running.quote()
    data = await running.status(body)
    assert data["status"] == "running" and data["error"] == "", data
    assert len(running.book(body["symbol"])) == orders


# ---- A: values the engine cannot represent exactly are refused by the config's own checks ------------------------


async def test_a_sweep_quantity_that_killed_the_market_is_refused_naming_the_key(tmp_path: Any) -> None:
    """``max_sweep_quantity`` 1e30 was stored (200), reloaded (200, running) and failed the market within a second
    with ``InvalidOperation`` at its first look at the local book."""
    async with running_service(tmp_path) as running:
        response = await running.update(BTC_BODY, opponent_detection_enabled=True, max_sweep_quantity="1e30")
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert "max_sweep_quantity must be below 1e15" in message, message
        for changes in ({"base_quantity": "1e30"}, {"price_follow_percent": "1e20"},
                        {"base_quantity": "1.0000000000000000000001"}, {"price_change_amount": "1e-300"},
                        {"depth_levels": [{"spread_percent": "0.01", "quantity_ratio": "1e-99999"}]},
                        {"base_quantity": "1e-30"}, {"max_order_quantity": "1e-30"}):
            response = await running.update(BTC_BODY, **changes)
            assert response.status_code == 400, (changes, response.text)
            key = next(iter(changes))
            assert key in response.json()["message"], (changes, response.text)
        # Nothing was stored: a reload keeps the seed's config, and the market quotes on.
        assert (await running.reload(BTC_BODY)).status_code == 200
        await still_quoting(running)


async def test_an_upkeep_interval_that_churns_orders_is_refused(tmp_path: Any) -> None:
    """``order_timeout_sec: 1e-300`` was accepted and replaced the whole ladder on every evaluation."""
    async with running_service(tmp_path) as running:
        for key in ("order_timeout_sec", "order_refresh_interval_sec"):
            for value in (1e-300, 0.5):
                response = await running.update(BTC_BODY, **{key: value})
                assert response.status_code == 400, (key, value, response.text)
                assert f"{key} must be at least 1 s" in response.json()["message"]
        response = await running.update(BTC_BODY, order_timeout_sec=300, order_refresh_interval_sec=10)
        assert response.status_code == 200, response.text


class DepthCrash(Strategy):
    """One bid and one ask; its look at the local book divides by a config value (as a sweep does)."""

    name = "depth_crash"
    local_depth_interval = 0.5

    @attrs.frozen
    class Config:
        divisor: Decimal = Decimal(1)
        sweep: Decimal = Decimal(0)

    def desired_orders(self, ctx: StrategyContext) -> list[Quote]:
        index = ctx.index_price
        assert index is not None
        return [Quote(Side.BUY, ctx.market.floor_price(index * Decimal("0.99")), Decimal(1)),
                Quote(Side.SELL, ctx.market.ceil_price(index * Decimal("1.01")), Decimal(1))]

    def on_local_depth(self, depth: DepthSnapshot, ctx: StrategyContext) -> None:
        assert depth.asks and depth.bids  # a mispriced order of another participant on each side
        Decimal(1) / self.config.divisor
        if self.config.sweep:
            ctx.submit(Quote(Side.BUY, depth.asks[0][0], self.config.sweep, OrderType.IOC, tag="sweep"))


class DepthCrashPlugin:
    @hookimpl
    def register_strategies(self, register: Any) -> None:
        register(DepthCrash)


async def test_the_dry_build_looks_at_the_local_book_and_checks_what_a_sweep_sends(nursery: trio.Nursery) -> None:
    engine = await start_engine(nursery, DepthCrashPlugin())

    def dry(**config: Any) -> Any:
        return engine.dry_build(MarketSpec(market=BTC, strategy="depth_crash", strategy_config=config,
                                           risk=RiskLimits(max_order_quantity="5")))

    assert len(dry().quotes) == 2
    with pytest.raises(ConfigError, match=r"cannot handle a snapshot of the local book .*DivisionByZero"):
        dry(divisor="0")
    with pytest.raises(ConfigError, match=r"buy ioc 6\.00 @ .*exceeds max_order_quantity 5"):
        dry(sweep="6")
    assert len(dry(sweep="5").quotes) == 2  # a sweep is checked, not part of the resting book


async def test_a_sweep_is_never_larger_than_max_order_quantity(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_eif_engine(nursery)
    config = seed_config(base_quantity=1, depth_levels=[{"spread_percent": 0.03, "quantity_ratio": 1}],
                         opponent_detection_enabled=True, max_sweep_quantity=5, max_order_quantity="0.7",
                         refresh_interval_ms=500)
    await engine.start(spec(config, stale_after=3600.0))
    engine.push_tick("45000")
    await settle()
    engine.sink.submit_external("BTC/USDT", side=Side.SELL, type=OrderType.LIMIT, quantity=Decimal(3),
                                price=Decimal(44500), owner="alice")
    await trio.sleep(0.6)
    status = engine.status()
    assert status.strategy_status["sweeps"] == 1 and status.position == Decimal("0.7")


# ---- B: risk.settled_band ---------------------------------------------------------------------------------------


async def test_a_market_with_a_settled_band_can_be_reconfigured(tmp_path: Any) -> None:
    """Every config/update answered 400 (and reload 422) ``no settled index price to check settled_band against``."""
    async with running_service(tmp_path, {"risk": {"settled_band": "0.05", "settled_after": 0}}) as running:
        response = await running.update(BTC_BODY, base_quantity=3)
        assert response.status_code == 200, response.text
        assert (await running.reload(BTC_BODY)).status_code == 200
        await still_quoting(running)
        assert {o.quantity <= Decimal(3) for o in running.book("BTC/USDT")} == {True}
        # The band is still checked against the index: a ladder beyond it is refused.
        response = await running.update(BTC_BODY, depth_levels=[{"spread_percent": "0.07", "quantity_ratio": 1}])
        assert response.status_code == 400 and "outside settled_band 0.05" in response.json()["message"], response.text


# ---- C: a change that leaves the book empty ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{"base_quantity": "0.001"}, {"max_order_quantity": "0.001"}, {"max_order_quantity": "0.009"},
     {"depth_levels": [{"spread_percent": "0.01", "quantity_ratio": "0.0001"}]}],
)
async def test_a_change_that_empties_the_book_is_refused_naming_the_key(tmp_path: Any, changes: dict[str, Any]) -> None:
    async with running_service(tmp_path) as running:
        response = await running.update(BTC_BODY, **changes, max_active_orders=50)
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert message.startswith(f"config.{next(iter(changes))}: its book at the index price 45000 would be empty"), (
            message)
        assert "the current config quotes 20 orders" in message
        assert (await running.reload(BTC_BODY)).status_code == 200
        await still_quoting(running)


async def test_an_empty_stored_config_does_not_let_junk_through(tmp_path: Any) -> None:
    """Once the stored config yielded an empty book, every other junk change passed too."""
    async with running_service(tmp_path) as running:
        await running.service.save_override(879, 1, {"base_quantity": "0.001"})  # past the API
        response = await running.update(BTC_BODY, base_quantity="0.002")
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith("config.base_quantity: ")
        assert "the strategy config alone quotes 20" in response.json()["message"]
        # A change that is not what empties the book is stored; one that fixes it is too.
        assert (await running.update(BTC_BODY, max_active_orders=50)).status_code == 200
        assert (await running.update(BTC_BODY, base_quantity=2)).status_code == 200
        # A reload that would empty a quoting market's book answers 422 and leaves it quoting.
        await running.service.save_override(879, 1, {"base_quantity": "0.001"})
        reload = await running.reload(BTC_BODY)
        assert reload.status_code == 422, reload.text
        assert "keeps running on its previous config" in reload.json()["message"]
        assert "would be empty" in reload.json()["message"]
        await still_quoting(running)


# ---- D: a switch of the index to another instrument --------------------------------------------------------------


async def test_a_switch_of_the_index_to_another_instrument_is_refused(tmp_path: Any) -> None:
    """ETH/USDT told to follow BTCUSDT was stored (200) and reloaded (200): its book then held bids at BTC's price."""
    async with running_service(tmp_path) as running:
        response = await running.update(ETH_BODY, external_symbol="BTCUSDT")
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert message.startswith("config.external_symbol: the index would switch from scripted:ETHUSDT at 3000 to "
                                  "sources including scripted:BTCUSDT at 45000"), message
        assert "more than the market's max_tick_jump 0.02" in message and "a stop, then a reload" in message
        # A symbol whose price is not known here cannot be checked: refused while the market quotes.
        response = await running.update(ETH_BODY, external_symbol="XRPUSDT")
        assert response.status_code == 400 and "whose price is not known here" in response.json()["message"]
        # The same instrument under another name, at the same price, is fine.
        running.feed.push_price("ETHUSDC", "3001")
        assert (await running.update(ETH_BODY, external_symbol="ETHUSDC")).status_code == 200
        # Past the API, in the database: the reload answers 422 and ETH/USDT quotes on at ETH's price.
        await running.service.save_override(880, 1, {"external_symbol": "BTCUSDT"})
        reload = await running.reload(ETH_BODY)
        assert reload.status_code == 422, reload.text
        assert "keeps running on its previous config" in reload.json()["message"]
        await still_quoting(running, ETH_BODY)
        assert max(o.price for o in running.book("ETH/USDT")) < 4000
        # A deliberate switch: stop, then reload.
        assert (await running.post("/api/v1/strategy/stop", ETH_BODY)).status_code == 200
        reload = await running.reload(ETH_BODY)
        assert reload.status_code == 200 and reload.json()["data"]["status"] == "running", reload.text
        # Its first ticks are a big move from its last index (3000): quoted once confirmed, over a second.
        for _ in range(7):
            await running.quote()
            assert all(o.price > 40000 for o in running.book("ETH/USDT"))  # never the old ladder off the new price
            await trio.sleep(0.25)
        assert min(o.price for o in running.book("ETH/USDT")) > 40000


async def test_the_flat_seed_config_still_builds(tmp_path: Any) -> None:
    async with running_service(tmp_path) as running:
        flat = flat_config(external_symbol="BTCUSDT")
        assert (await running.update(BTC_BODY, **flat)).status_code == 200
        assert (await running.reload(BTC_BODY)).status_code == 200
        await still_quoting(running)
