"""Opponent sweeps on the paper book: other participants' mispriced orders are taken with an IOC, within the
deviation, quantity and cooldown limits; our own orders are never touched."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import trio

from mmframe import OrderType, Side

from .helpers import D, Engine, seed_config, settle, spec, start_engine

# One level 3 % either side of the index, so other participants' orders can rest between our quotes and the index.
# At index 45000 our bid is 43650 and our ask 46350.
SWEEP_CONFIG = seed_config(
    base_quantity=1,
    depth_levels=[{"spread_percent": 0.03, "quantity_ratio": 1}],
    opponent_detection_enabled=True,
    max_sweep_price_deviation=0.02,
    max_sweep_quantity=0.5,
    sweep_cooldown_ms=1000,
    refresh_interval_ms=500,
)


async def quoting(nursery: trio.Nursery, config: dict[str, Any] | None = None) -> Engine:
    engine = await start_engine(nursery)
    await engine.start(spec(SWEEP_CONFIG if config is None else config, stale_after=3600.0))
    engine.push_tick("45000")
    await settle()
    assert engine.prices() == ([D(43650)], [D(46350)])
    return engine


def other(engine: Engine, side: Side, price: str, quantity: str, owner: str = "alice") -> None:
    """Another participant's limit order on our exchange's book."""
    engine.take(side, D(quantity), D(price), type=OrderType.LIMIT, owner=owner)


def others(engine: Engine) -> list[tuple[Side, Decimal, Decimal]]:
    return [(o.side, o.price, o.remaining_quantity) for o in engine.other_orders()]


async def test_a_mispriced_ask_below_the_reference_is_taken(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await quoting(nursery)
    other(engine, Side.SELL, "44500", "0.3")  # 1.1 % below the index: within 2 %
    await trio.sleep(0.6)  # the next look at the local book (every 500 ms)
    status = engine.status()
    assert status.position == D("0.3") and status.fills == 1
    assert others(engine) == []  # taken whole
    assert status.strategy_status["sweeps"] == 1 and D(status.strategy_status["sweep_filled"]) == D("0.3")
    assert status.orders_vetoed == 0
    (ioc,) = [o for o in engine.finished_orders() if o.request.type is OrderType.IOC]
    assert ioc.side is Side.BUY and ioc.price == D("44500.0000") and ioc.request.tag == "sweep"
    assert engine.prices() == ([D(43650)], [D(46350)])  # the ladder is untouched


async def test_a_mispriced_bid_above_the_reference_is_hit(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await quoting(nursery)
    other(engine, Side.BUY, "45500", "0.25", owner="bob")
    await trio.sleep(0.6)
    assert engine.status().position == D("-0.25") and others(engine) == []


async def test_a_sweep_takes_at_most_max_sweep_quantity_once_per_cooldown(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await quoting(nursery)
    other(engine, Side.SELL, "44500", "2")
    await trio.sleep(0.6)
    assert engine.status().position == D("0.5")
    assert others(engine) == [(Side.SELL, D(44500), D("1.5"))]  # reduced by max_sweep_quantity
    await trio.sleep(0.6)  # 1.2 s: the book was looked at again, but the 1 s cooldown holds
    assert engine.status().position == D("0.5") and engine.status().strategy_status["sweeps"] == 1
    await trio.sleep(1.0)  # past the cooldown: the next sweep
    assert engine.status().position == D("1.0")
    assert others(engine) == [(Side.SELL, D(44500), D("1.0"))]
    await trio.sleep(10)  # one sweep per second at most until it is gone
    assert engine.status().position == D("2") and others(engine) == []
    assert engine.status().strategy_status["sweeps"] == 4


async def test_an_ask_beyond_the_deviation_is_left_alone(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await quoting(nursery)
    other(engine, Side.SELL, "43700", "0.3")  # 2.9 % below the index: beyond max_sweep_price_deviation (2 %)
    await trio.sleep(5)
    assert engine.status().position == 0 and engine.status().strategy_status["sweeps"] == 0
    assert others(engine) == [(Side.SELL, D(43700), D("0.3"))]
    # A nearer mispriced ask behind it is left alone too: any IOC reaching it would take the 43700 one first.
    other(engine, Side.SELL, "44800", "0.3")
    await trio.sleep(3)
    assert engine.status().position == 0 and len(others(engine)) == 2


async def test_a_bid_beyond_the_deviation_is_left_alone(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await quoting(nursery)
    other(engine, Side.BUY, "46300", "0.3", owner="bob")  # 2.9 % above the index
    await trio.sleep(5)
    assert engine.status().position == 0 and others(engine) == [(Side.BUY, D(46300), D("0.3"))]


async def test_without_opponent_detection_nothing_is_swept(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await quoting(nursery, {**SWEEP_CONFIG, "opponent_detection_enabled": False})
    assert engine.strategy().local_depth_interval is None
    other(engine, Side.SELL, "44500", "0.3")
    await trio.sleep(5)
    assert engine.status().position == 0 and others(engine) == [(Side.SELL, D(44500), D("0.3"))]


async def test_our_own_orders_are_never_swept(nursery: trio.Nursery, autojump_clock: Any) -> None:
    # The ladder stays anchored at 45000 (a move under 5000 and an hour's maintenance interval), so when the index
    # rises to 47000 our own ask at 46350 is 1.4 % below the reference: it must not look like a mispriced order.
    config = {**SWEEP_CONFIG, "price_change_amount": 5000, "maintenance_interval": "1h"}
    engine = await quoting(nursery, config)
    (our_ask,) = [o for o in engine.our_orders() if o.side is Side.SELL]
    engine.push_tick("47000")
    await trio.sleep(3)
    status = engine.status()
    assert status.index_price == D(47000) and engine.prices() == ([D(43650)], [D(46350)])
    assert status.position == 0 and status.strategy_status["sweeps"] == 0
    assert status.orders_vetoed == 0  # not even tried: the risk gate had nothing to refuse
    # Other participants' asks at and behind our own ask cannot be reached without crossing ours: left alone.
    other(engine, Side.SELL, "46350", "0.3")
    other(engine, Side.SELL, "46400", "0.2")
    await trio.sleep(3)
    assert engine.status().position == 0 and engine.status().orders_vetoed == 0
    # One in front of ours is taken, and ours stays as it was.
    other(engine, Side.SELL, "46200", "0.3")
    await trio.sleep(1)
    status = engine.status()
    assert status.position == D("0.3") and status.orders_vetoed == 0
    assert sorted(others(engine)) == [(Side.SELL, D(46350), D("0.3")), (Side.SELL, D(46400), D("0.2"))]
    (still,) = [o for o in engine.our_orders() if o.side is Side.SELL]
    assert still.client_order_id == our_ask.client_order_id and still.filled_quantity == 0
