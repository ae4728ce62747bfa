"""Public trades: the Trade model, a strategy's on_trade, and what carries them (and what does not)."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest

from mmframe import Quote, Side, Strategy, Trade
from mmframe._bus.publisher import BusPublisher
from mmframe._bus.wire import encode
from mmframe._settings import RedisSettings
from mmframe.testing import run_strategy


class TapeWatcher(Strategy):
    name = "tape_watcher"

    @attrs.frozen
    class Config:
        pass

    def __init__(self, config: object, market: object) -> None:
        super().__init__(config, market)  # type: ignore[arg-type]
        self.seen: list[tuple[str, object]] = []
        self.decisions = 0

    def on_trade(self, trade: Trade, ctx: object) -> None:
        self.seen.append(("trade", trade.price))

    def on_tick(self, tick: object, ctx: object) -> None:
        self.seen.append(("tick", tick.price))  # type: ignore[attr-defined]

    def desired_orders(self, ctx: object) -> list[Quote]:
        self.decisions += 1
        return []


def test_trade_refuses_bad_values() -> None:
    with pytest.raises(ValueError):
        Trade("x", "BTCUSDT", price="0", quantity="1", side=Side.BUY)
    with pytest.raises(ValueError):
        Trade("x", "BTCUSDT", price="1", quantity="-1", side=Side.BUY)
    with pytest.raises(ValueError):
        Trade("x", "BTCUSDT", price="1", quantity="1", side="sideways")
    trade = Trade("x", "BTCUSDT", price="1.5", quantity="2", side="sell")
    assert trade.side is Side.SELL and trade.price == Decimal("1.5")


async def test_trades_reach_on_trade_in_order_at_the_next_step(autojump_clock: object) -> None:
    async with run_strategy(TapeWatcher, {}) as engine:
        engine.push_tick("100")
        await engine.settle()
        strategy = engine.strategy()
        assert isinstance(strategy, TapeWatcher)
        decisions = strategy.decisions
        engine.push_trade(Side.BUY, "1", "100.5")
        engine.push_trade(Side.SELL, "2", "99.5")
        await engine.settle()
        # a trade alone does not make the market decide again
        assert strategy.decisions == decisions
        assert strategy.seen == [("tick", Decimal("100"))]
        engine.push_tick("101")
        await engine.settle()
        assert strategy.seen == [
            ("tick", Decimal("100")),
            ("trade", Decimal("100.5")),
            ("trade", Decimal("99.5")),
            ("tick", Decimal("101")),
        ]
        assert strategy.decisions == decisions + 1


def test_the_bus_carries_no_trades() -> None:
    trade = Trade("binance", "BTCUSDT", price="1", quantity="1", side=Side.BUY)
    with pytest.raises(TypeError, match="no channel for Trade"):
        encode("binance", trade)
    publisher = BusPublisher(RedisSettings())
    publisher.publish("binance", trade)  # skipped, not mis-encoded as a depth snapshot
    assert publisher._pending == {}


class DepthBlind(TapeWatcher):
    name = "depth_blind"
    wake_on_depth = False

    def on_depth(self, depth: object, ctx: object) -> None:
        self.seen.append(("depth", depth.bids[0][0]))  # type: ignore[attr-defined]


async def test_a_strategy_that_does_not_decide_on_depth_is_not_woken_by_it(autojump_clock: object) -> None:
    async with run_strategy(DepthBlind, {}) as engine:
        engine.push_tick("100")
        await engine.settle()
        strategy = engine.strategy()
        assert isinstance(strategy, DepthBlind)
        decisions = strategy.decisions
        engine.push_depth(bids=[("99", "1")], asks=[("101", "1")])
        engine.push_depth(bids=[("98", "1")], asks=[("102", "1")])
        await engine.settle()
        assert strategy.decisions == decisions  # depth alone: no decision
        engine.push_tick("100.5")
        await engine.settle()
        # the latest depth (conflated) reaches on_depth at the next step, before the tick
        assert strategy.seen[-2:] == [("depth", Decimal("98")), ("tick", Decimal("100.5"))]
        assert strategy.decisions == decisions + 1


async def test_a_strategy_decides_on_depth_by_default(autojump_clock: object) -> None:
    async with run_strategy(TapeWatcher, {}) as engine:
        engine.push_tick("100")
        await engine.settle()
        strategy = engine.strategy()
        assert isinstance(strategy, TapeWatcher)
        decisions = strategy.decisions
        engine.push_depth(bids=[("99", "1")], asks=[("101", "1")])
        await engine.settle()
        assert strategy.decisions == decisions + 1
