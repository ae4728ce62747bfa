"""The fixed_spread strategy on a real engine (mmframe.testing's harness): the paper sink, a scripted index feed,
trio's MockClock. The ladder reaches the book, follows the index, leans against a fill and honours max_inventory;
stopping the market leaves none of its orders on the book."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import trio
from mmframe_fixed_spread import FixedSpreadStrategy

from mmframe import MarketState, OrderType, RiskLimits, Side
from mmframe.testing import PaperSink, make_market, run_strategy

D = Decimal
BTC = make_market("BTC/USDT", tick_size="0.01", price_precision=2, quantity_precision=4, min_quantity="0.0001")


async def test_the_default_ladder_reaches_the_paper_book_and_follows_the_index(autojump_clock: Any) -> None:
    async with run_strategy(FixedSpreadStrategy, market=BTC) as engine:
        engine.push_tick("30000")
        await engine.settle()
        # spread 0.001: best bid and ask 0.05 % from the index, each further level 0.05 % further; 0.01 each
        assert engine.ladder() == (
            [(D(p), D("0.01")) for p in ("29985.00", "29970.00", "29955.00", "29940.00", "29925.00")],
            [(D(p), D("0.01")) for p in ("30015.00", "30030.00", "30045.00", "30060.00", "30075.00")],
        )
        status = engine.status()
        assert status.state is MarketState.RUNNING and (status.bids, status.asks, status.orders_placed) == (5, 5, 10)
        assert status.strategy_status == {"levels": 5, "bids": 5, "asks": 5, "mid": "30000", "skew": "0"}
        assert {o.request.tag for o in engine.live_orders()} == {f"level{i}" for i in range(5)}

        engine.push_tick("30100")
        await engine.settle()
        bids, asks = engine.prices()
        assert bids[0] == D("30084.95") and asks[0] == D("30115.05")  # 30100 * (1 ∓ 0.0005), rounded outwards
        # Each level moved by one amend (the paper sink can amend; an order keeps its level's tag).
        assert len(engine.our_orders()) == 10 and engine.status().orders_amended == 10
        assert engine.status().orders_cancelled == 0
    assert engine.our_orders() == []  # leaving the block stopped the market: its orders are cancelled


async def test_a_fill_skews_the_ladder_and_max_inventory_trims_it(autojump_clock: Any) -> None:
    config = {"skew_per_unit": "0.01", "max_inventory": "0.05"}
    async with run_strategy(FixedSpreadStrategy, config, market=BTC, risk=RiskLimits(max_position="1")) as engine:
        engine.push_tick("30000")
        await engine.settle()
        assert engine.prices()[0][0] == D("29985.00")
        # Another participant sells 0.01 into our best bid.
        engine.take(Side.SELL, "0.01", "29985.00", type=OrderType.IOC)
        await engine.settle()
        (fill,) = engine.fills()
        assert (fill.side, fill.price, fill.quantity) == (Side.BUY, D("29985.00"), D("0.01"))
        status = engine.status()
        assert status.position == D("0.01") and status.fills == 1
        # Long 0.01: the mid leans down by 0.01 * 0.01 = 0.0001 of the index (to 29997), and the bids may only
        # take 0.04 more before the position reaches max_inventory: four bid levels, five asks.
        assert status.strategy_status["mid"] == "29997.0000" and status.strategy_status["skew"] == "0.0001"
        bids, asks = engine.prices()
        assert bids[0] == D("29982.00") and asks[0] == D("30012.00")
        assert (len(bids), len(asks)) == (4, 5)


async def test_simulated_takers_trade_with_the_ladder(autojump_clock: Any) -> None:
    sink = PaperSink(PaperSink.Config(taker_flow_rate=1.0, seed=7))
    async with run_strategy(FixedSpreadStrategy, {"skew_per_unit": "0.01"}, market=BTC, sink=sink,
                            stale_after=1e9) as engine:
        for _ in range(60):
            engine.push_tick("30000")
            await trio.sleep(1)
        fills = engine.fills()
        assert fills and engine.status().fills == len(fills)
        held = sum((f.quantity if f.side is Side.BUY else -f.quantity for f in fills), D(0))
        assert engine.status().position == held
    assert engine.our_orders() == [] and engine.book().open_orders() == []
