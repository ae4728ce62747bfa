"""Both strategies on a real engine (mmframe.testing.run_strategy: the paper sink, a scripted feed, trio's MockClock):
the quotes reach the paper book at the model's prices, a fill skews them, and the estimators learn sigma from the
index ticks and A and k from the public trades the feed delivers."""

from __future__ import annotations

import random
from typing import Any

import mmframe_avellaneda_stoikov
import trio
from mmframe_avellaneda_stoikov import GLFT, AvellanedaStoikov

from mmframe import MarketState, OrderType, Side
from mmframe.testing import run_strategy

from .helpers import MARKET, D, as_config, ceil, floor, glft_config, gueant_glft, paper_as


async def test_avellaneda_stoikov_quotes_reach_the_book_and_lean_against_a_fill(autojump_clock: Any) -> None:
    config = as_config(horizon_mode="rolling", levels=2, level_spacing="0.1")
    async with run_strategy(AvellanedaStoikov, config, market=MARKET, plugins=[mmframe_avellaneda_stoikov]) as engine:
        engine.push_tick("100")
        await engine.settle()
        # q = 0, T - t = 1: 99.1546 -> 99.15 and 100.8454 -> 100.85, the second level 0.1 further out
        assert engine.ladder() == ([(D("99.15"), D("1")), (D("99.05"), D("1"))],
                                   [(D("100.85"), D("1")), (D("100.95"), D("1"))])
        status = engine.status()
        assert status.state is MarketState.RUNNING and status.strategy_status["waiting"] is None
        assert status.strategy_status["model"] == "avellaneda_stoikov"

        # Another participant sells 1 into our best bid: long 1, r = 100 - 1 * 0.1 * 4 * 1 = 99.6
        engine.take(Side.SELL, "1", "99.15", type=OrderType.IOC)
        await engine.settle()
        assert engine.status().position == D("1")
        bid, ask = paper_as(100, 1, 0.1, 2, 1.5, 1)
        assert engine.prices() == ([floor(bid), floor(bid - 0.1)], [ceil(ask), ceil(ask + 0.1)])
        assert engine.prices() == ([D("98.75"), D("98.65")], [D("100.45"), D("100.55")])
        assert engine.status().strategy_status["reservation_price"] == 99.6

        # The index moves: the quotes follow it
        engine.push_tick("101")
        await engine.settle()
        bid, ask = paper_as(101, 1, 0.1, 2, 1.5, 1)
        assert engine.prices()[0][0] == floor(bid) and engine.prices()[1][0] == ceil(ask)
    assert engine.our_orders() == []


async def test_max_inventory_on_the_engine(autojump_clock: Any) -> None:
    config = glft_config(max_inventory=1)
    async with run_strategy(GLFT, config, market=MARKET, plugins=[mmframe_avellaneda_stoikov]) as engine:
        engine.push_tick("100")
        await engine.settle()
        assert engine.prices() == ([D("99.32")], [D("100.68")])
        engine.take(Side.SELL, "1", "99.32", type=OrderType.IOC)
        await engine.settle()
        # long 1 = max_inventory: no bid; the ask leans in: c1 - 0.5 sigma c2 = 0.6195 -> 100.62
        assert engine.prices() == ([], [D("100.62")])
        assert engine.status().strategy_status["inventory_limit"] == "bids"


async def test_glft_learns_sigma_a_and_k_from_the_feed(autojump_clock: Any) -> None:
    """sigma from index ticks (a seeded walk, 0.1 s apart), A and k from public trades at distances drawn from
    exp(-1.5 delta) around the index, about 40 a second: nothing is quoted until each has its minimum of samples, then
    the book holds the GLFT quotes of the estimated parameters."""
    config = glft_config(sigma=None, A=None, k=None, min_sigma_samples=20, sigma_window=30, min_trades=100,
                         intensity_window=30)
    rng = random.Random(11)
    async with run_strategy(GLFT, config, market=MARKET, plugins=[mmframe_avellaneda_stoikov],
                            stale_after=1e9) as engine:
        price = D("100")
        engine.push_tick(price)
        await engine.settle()
        assert engine.ladder() == ([], [])
        waiting = engine.status().strategy_status["waiting"]
        assert "sigma: 0 of the 20" in waiting and "A and k: 0 of the 100" in waiting
        seen_waiting_for_trades = False
        for _ in range(100):  # 10 s
            for _ in range(4):
                distance = D(str(round(rng.expovariate(1.5), 2)))
                side = rng.choice([Side.BUY, Side.SELL])
                engine.push_trade(side, "0.5", price + distance if side is Side.BUY else price - distance)
            price += rng.choice([D("-0.05"), D("0.05")])
            engine.push_tick(price)
            await trio.sleep(0.1)
            status = engine.status().strategy_status
            if status["waiting"] is not None:
                assert engine.ladder() == ([], [])
                seen_waiting_for_trades |= "A and k" in status["waiting"]
        assert seen_waiting_for_trades
        status = engine.status().strategy_status
        assert status["waiting"] is None
        assert status["trades_in_window"] == 400 and status["sigma_samples"] == 100
        assert 0.05 < status["sigma"] < 0.3  # 0.05 moves 10 times a second: sigma = 0.05 sqrt(10) = 0.158
        assert 25 < status["A"] < 60 and 1.0 < status["k"] < 2.2
        bid_depth, ask_depth = gueant_glft(0, 1, 0.1, status["sigma"], status["A"], status["k"])
        mid = float(price)
        assert engine.prices() == ([floor(mid - bid_depth)], [ceil(mid + ask_depth)])


async def test_a_steady_index_sends_no_new_orders(autojump_clock: Any) -> None:
    async with run_strategy(AvellanedaStoikov, as_config(horizon_mode="rolling"), market=MARKET,
                            plugins=[mmframe_avellaneda_stoikov], stale_after=1e9) as engine:
        engine.push_tick("100")
        await engine.settle()
        placed = engine.status().orders_placed
        for _ in range(20):
            engine.push_tick("100.001")  # rounds to the same quotes
            await trio.sleep(0.5)
        assert engine.status().orders_placed == placed == 2 and engine.status().orders_cancelled == 0
