"""The ``okex`` feed driving a market on a real engine (mmframe.testing's harness): a FakeOkx on loopback, the feed as
the engine builds it from its registered name and config, the paper sink. OKX's last price is the index the market
quotes around."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import attrs
import mmframe_okex
import trio
from mmframe_okex.testing import FakeOkx

from mmframe import Market, MarketState, Quote, Side, Strategy, StrategyContext
from mmframe.testing import run_strategy

D = Decimal
BTC = Market("BTC/USDT", tick_size="0.01", price_precision=2, quantity_precision=4, min_quantity="0.0001")


class AroundTheIndex(Strategy):
    """One bid and one ask ``step`` either side of the index."""

    name = "around_the_index"

    @attrs.frozen
    class Config:
        step: Decimal = attrs.field(default=D(1), converter=Decimal)

    def desired_orders(self, ctx: StrategyContext) -> Iterable[Quote]:
        index = ctx.index_price
        if index is None:
            return []
        return [Quote(Side.BUY, index - self.config.step, D("0.01")), Quote(Side.SELL, index + self.config.step,
                                                                           D("0.01"))]


async def eventually(check: Callable[[], Any], what: str, seconds: float = 10.0) -> None:
    with trio.move_on_after(seconds):
        while not check():  # noqa: ASYNC110 - the engine's and the paper book's plain state
            await trio.sleep(0.02)
        return
    raise AssertionError(f"not within {seconds}s: {what}")


async def test_the_last_price_is_the_index_a_market_quotes_around(nursery: trio.Nursery) -> None:
    fake = FakeOkx()
    url = await nursery.start(fake.serve)
    async with run_strategy(AroundTheIndex, {"step": "5"}, market=BTC, plugins=[mmframe_okex], feed="okex",
                            feed_config={"ws_url": url, "channels": ["tickers"]}, index_symbol="BTCUSDT") as engine:
        assert engine.status().state is MarketState.RUNNING
        with trio.fail_after(10):
            await fake.wait_until(lambda: ("tickers", "BTC-USDT") in fake.subscriptions)
        await fake.ticker("BTC-USDT", "45001.00", bid="45000.00", ask="45002.00")
        await eventually(lambda: engine.prices() == ([D("44996.00")], [D("45006.00")]), "quotes around 45001")
        status = engine.status()
        assert status.index_price == D("45001") and status.feed is not None
        assert (status.feed.feed, status.feed.connected) == ("okex", True)

        await fake.ticker("BTC-USDT", "45101.00")
        await eventually(lambda: engine.prices() == ([D("45096.00")], [D("45106.00")]), "quotes around 45101")
    assert engine.our_orders() == []  # the market stopped and cancelled its orders
