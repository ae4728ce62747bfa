"""Issue 13's index reproductions as the tester ran them: prices on the real Redis bus (127.0.0.1:6379), a market
following them through the ``redis`` feed, and its orders on the real reference match engine over HTTP (hypercorn on
port 0) through the ``match-engine`` sink. Real sockets, real clock: conditions are awaited with deadlines.

1. Good ticks at 45000, then five ticks 80 ms apart that agree on nothing (1000000, 2, 300000, 7, 600000): the index
   stays, no order of ours ever rests away from 45000 (the old engine took them as "5 ticks agreed" and bid 599940).
2. One tick stamped a day ahead: the feed rejects and counts it, the good ticks after it keep the market quoting (the
   old engine took it as the last good tick, refused every later one as older and went stale).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs
import pytest
import redis
import trio
from mmframe_match_engine.server import Engine, serve_engine
from mmframe_match_engine.sink import MatchEngineSink

from mmframe import Market, MarketKey, MarketSpec, MarketState, RiskLimits
from mmframe.testing import Harness, start_engine

from .helpers import Plugin

D = Decimal
KEY = MarketKey("BTC/USDT")
MARKET = Market("BTC/USDT", tick_size="0.01", price_precision=2, quantity_precision=4, min_quantity="0.0001")


@pytest.fixture
def bus() -> redis.Redis:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        if os.environ.get("MMFRAME_REQUIRE_SERVICES") == "1":
            pytest.fail("Redis is required (MMFRAME_REQUIRE_SERVICES=1) but unreachable at 127.0.0.1:6379")
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    client = redis.Redis(host="127.0.0.1", port=6379)
    yield client
    client.close()


@attrs.define
class Rig:
    engine: Engine
    harness: Harness
    sink: MatchEngineSink
    bus: redis.Redis
    exchange: str
    samples: list[list[Decimal]] = attrs.field(factory=list)

    async def publish(self, price: str, *, timestamp: float | None = None) -> None:
        stamp = round((time.time() if timestamp is None else timestamp) * 1000)
        body = json.dumps({"exchange": self.exchange, "symbol": "BTCUSDT", "price": price, "timestamp": stamp})
        await trio.to_thread.run_sync(self.bus.publish, f"price:update:{self.exchange}:BTCUSDT", body)

    async def quoting(self, price: str) -> None:
        """Publish *price* at 4 Hz until the ladder around it is on the engine (the feed subscribes on its own
        time: a tick published before that is heard by nobody)."""
        with trio.move_on_after(10):
            while self.ours() != ladder_at(price):
                await self.publish(price)
                await trio.sleep(0.25)
            return
        raise AssertionError(f"no ladder around {price} on the engine within 10 s: {self.ours()}")

    def ours(self) -> list[Decimal]:
        return sorted(o.price for o in self.engine.open_orders("BTC/USDT", "t-"))

    def status(self) -> Any:
        return self.harness.status(KEY)

    async def sample_forever(self) -> None:
        while True:
            self.samples.append(self.ours())
            await trio.sleep(0.02)


async def rig(nursery: trio.Nursery, bus: redis.Redis, **spec_options: Any) -> Rig:
    engine = Engine()
    binds = await nursery.start(serve_engine, engine, "127.0.0.1", 0)
    sink = MatchEngineSink(MatchEngineSink.Config(endpoint=binds[0], timeout=1.0))
    harness = await start_engine(nursery, Plugin(), sink=sink, instance_id="t")
    exchange = f"t13{secrets.token_hex(4)}"  # channels of our own: parallel runs never hear each other
    spec = MarketSpec(
        market=MARKET, strategy="me_ladder", strategy_config={"levels": 5, "step": "10", "quantity": "0.01"},
        feed="redis", feed_config={"exchange": exchange, "depth": False},
        index_symbol="BTCUSDT", risk=RiskLimits(price_band="0.5"), refresh_interval=0.5,
        **{"stale_after": 3.0, **spec_options},
    )
    status = await harness.start(spec)
    assert status.state in (MarketState.RUNNING, MarketState.DEGRADED), status.error
    return Rig(engine, harness, sink, bus, exchange)


async def eventually(check: Callable[[], Any], seconds: float, what: str) -> None:
    with trio.move_on_after(seconds):
        while not check():  # noqa: ASYNC110 - state in the engine and on the bus cannot wake us
            await trio.sleep(0.02)
        return
    raise AssertionError(f"not within {seconds}s: {what}")


def ladder_at(price: str) -> list[Decimal]:
    p = D(price)
    return sorted([p - 10 * i for i in range(1, 6)] + [p + 10 * i for i in range(1, 6)])


async def test_disagreeing_ticks_on_the_bus_never_move_our_book(nursery: trio.Nursery, bus: redis.Redis) -> None:
    r = await rig(nursery, bus)
    await r.quoting("45000")
    for _ in range(8):  # good ticks at 45000 (4 Hz)
        await r.publish("45000")
        await trio.sleep(0.25)
    nursery.start_soon(r.sample_forever)
    for price in ("1000000", "2", "300000", "7", "600000"):
        await r.publish(price)
        await trio.sleep(0.08)
    # and mixed bursts of x10, x0.1 and 1e-400 among good ticks at 4 Hz, for three seconds
    for i in range(12):
        await r.publish("45000")
        for bad in (("450000", "450000", "450000"), ("4500", "4500"), ("1e-400",))[i % 3]:
            await r.publish(bad)
            await trio.sleep(0.02)
        await trio.sleep(0.2)
    await eventually(lambda: r.status().ticks_rejected_by_reason.get("jump", 0) >= 5 + 24, 3, "every bad tick seen")
    status = r.status()
    assert status.index_price == D("45000") and status.state is MarketState.RUNNING
    assert len(r.samples) > 100
    far = [s for s in r.samples if any(abs(p - D("45000")) > 60 for p in s)]
    assert far == [], f"{len(far)} samples of the engine's book held an order of ours away from 45000: {far[:3]}"
    # The last bad tick left the index in doubt (no quotes at all, rather than wrong ones); the next good tick
    # brings the ladder back.
    with trio.fail_after(2):
        await r.quoting("45000")


async def test_a_tick_dated_a_day_ahead_neither_moves_nor_freezes_the_market(
    nursery: trio.Nursery, bus: redis.Redis
) -> None:
    r = await rig(nursery, bus, stale_after=2.0)
    await r.quoting("45000")
    await r.publish("60600.00", timestamp=time.time() + 86400)
    feed: Any = r.harness.feed(KEY)
    await eventually(lambda: feed.symbol_statistics("BTCUSDT").rejected == 1, 3, "the feed rejects and counts it")
    # the good ticks after it are taken, for longer than stale_after
    for i in range(16):
        await r.publish(str(45000 + i))
        await trio.sleep(0.25)
        assert not r.status().stale
    await eventually(lambda: r.ours() == ladder_at("45015"), 3, "the ladder follows the good ticks")
    status = r.status()
    assert status.index_price == D("45015") and status.ticks_rejected == 0
    assert feed.symbol_statistics("BTCUSDT").rejected == 1
