"""Soak: bursts of 50 ticks/s per symbol with takers on the reference engine, over HTTP on loopback, with the real
match-engine sink, two real markets (the ``external_index_follow`` strategy on the seed's config: a ladder of 10
bids and 10 asks) and a scripted feed. Real time, bounded (about 15 s).

At every 200 ms sample, our resting orders per market on the engine must be at most the ladder's size plus the
orders in flight by the tracker (pending: sent and not confirmed; cancelling: cancel asked and not confirmed).
After the burst the engine must hold exactly one ladder per market, the tracker's, within a couple of refreshes.
"""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal
from typing import Any, ClassVar

import attrs
import pytest
import trio
from mmframe_match_engine.server import Engine, serve_engine
from mmframe_match_engine.sink import MatchEngineSink

from mmframe import Market, MarketKey, MarketSpec, OrderStatus, Side, hookimpl
from mmframe.testing import Harness, ScriptedFeed, seed_sql, start_engine

mmframe_external_index_follow = pytest.importorskip(
    "mmframe_external_index_follow", reason="the soak quotes the seed's external_index_follow strategy"
)

#: The seed's strategy config, literally (its strategy_strategy row): ten levels a side, max_active_orders 100.
SEED_CONFIG = json.loads(re.search(r"'(\{.*?\})',", seed_sql(), re.S).group(1))  # type: ignore[union-attr]
LADDER = 2 * len(SEED_CONFIG["depth_levels"])
MARKETS = {"BTC/USDT": Decimal("45000"), "ETH/USDT": Decimal("3000")}
BURST_SECONDS = 8.0
BURST_RATE = 50.0  # ticks per second per symbol
JITTER = 0.0008  # ±0.08 %
CALM_RATE = 4.0
SAMPLE_EVERY = 0.2
SETTLE_WITHIN = 3.0  # seconds after the burst: a couple of the strategy's 1 s refreshes


class SoakFeed(ScriptedFeed):
    name: ClassVar[str] = "soak_feed"
    instances: ClassVar[list[SoakFeed]] = []

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        SoakFeed.instances.append(self)


class FeedPlugin:
    @hookimpl
    def register_feeds(self, register: Any) -> None:
        register(SoakFeed)


def feed_symbol(symbol: str) -> str:
    return symbol.replace("/", "")


def market_spec(symbol: str) -> MarketSpec:
    return MarketSpec(
        market=Market(symbol, tick_size="0.1", price_precision=4, quantity_precision=2),
        strategy="external_index_follow",
        strategy_config=SEED_CONFIG,
        feed="soak_feed",
        index_symbol=feed_symbol(symbol),
        refresh_interval=1.0,
        seed=7,
    )


@attrs.define
class Sample:
    at: float
    symbol: str
    resting: int
    pending: int
    cancelling: int

    @property
    def allowed(self) -> int:
        return LADDER + self.pending + self.cancelling


def sample(engine: Engine, harness: Harness, prefixes: dict[str, str], at: float) -> list[Sample]:
    """The engine's book and each tracker at one instant (no await in between)."""
    out = []
    for symbol in MARKETS:
        resting = len(engine.open_orders(symbol, prefixes[symbol]))
        live = harness.live_orders(include_cancelling=True, market=symbol)
        pending = sum(1 for o in live if o.status in (OrderStatus.NEW, OrderStatus.PENDING))
        cancelling = sum(1 for o in live if o.cancel_requested and o.status not in (OrderStatus.NEW,
                                                                                     OrderStatus.PENDING))
        out.append(Sample(at, symbol, resting, pending, cancelling))
    return out


async def drive(feed: SoakFeed, rng: random.Random, until: float, rate: float, jitter: float) -> None:
    while trio.current_time() < until:
        for symbol, base in MARKETS.items():
            moved = base * (1 + Decimal(str(round(rng.uniform(-jitter, jitter), 6))))
            feed.push_price(feed_symbol(symbol), moved.quantize(Decimal("0.01")))
        await trio.sleep(1 / rate)


def one_ladder(engine: Engine, harness: Harness, prefixes: dict[str, str]) -> str:
    """'' when the engine holds exactly the tracker's ladder for every market (10 + 10, nothing in flight); else
    what differs."""
    problems = []
    for symbol in MARKETS:
        on_engine = engine.open_orders(symbol, prefixes[symbol])
        bids = sum(1 for o in on_engine if o.side is Side.BUY)
        live = harness.live_orders(include_cancelling=True, market=symbol)
        tracked = {o.client_order_id for o in live}
        if (bids, len(on_engine) - bids) != (LADDER // 2, LADDER // 2) or {
            o.client_order_id for o in on_engine
        } != tracked or any(o.cancel_requested or o.status is OrderStatus.PENDING for o in live):
            problems.append(f"{symbol}: {bids} bids and {len(on_engine) - bids} asks on the engine, "
                            f"{len(tracked)} live in the tracker")
    return "; ".join(problems)


async def test_bursts_with_takers_leave_exactly_one_ladder(nursery: trio.Nursery) -> None:
    SoakFeed.instances.clear()
    engine = Engine(taker_flow_rate=1.0, seed=11)
    binds = await nursery.start(serve_engine, engine, "127.0.0.1", 0)
    sink = MatchEngineSink(MatchEngineSink.Config(endpoint=binds[0]))
    harness = await start_engine(nursery, mmframe_external_index_follow, FeedPlugin(), sink=sink, instance_id="soak")
    with trio.fail_after(5):
        while sink.degraded:  # noqa: ASYNC110 - a plain property of the sink
            await trio.sleep(0.02)
    specs = {symbol: market_spec(symbol) for symbol in MARKETS}
    for spec in specs.values():
        await harness.start(spec)
    prefixes = {symbol: harness.client_prefix(symbol) for symbol in specs}
    feed = SoakFeed.instances[-1]
    rng = random.Random(5)

    # A calm second to build the ladders, then the burst, then the calm 4 Hz feed at a steady price.
    samples: list[Sample] = []

    async def sampler() -> None:
        while True:
            samples.extend(sample(engine, harness, prefixes, trio.current_time()))
            await trio.sleep(SAMPLE_EVERY)

    async with trio.open_nursery() as watch:
        watch.start_soon(sampler)
        await drive(feed, rng, trio.current_time() + 1.0, CALM_RATE, 0.0)
        await drive(feed, rng, trio.current_time() + BURST_SECONDS, BURST_RATE, JITTER)
        burst_over = trio.current_time()
        async with trio.open_nursery() as calm:
            calm.start_soon(drive, feed, rng, burst_over + SETTLE_WITHIN + 2.0, CALM_RATE, 0.0)
            problem = "not checked"
            while trio.current_time() - burst_over < SETTLE_WITHIN:
                problem = one_ladder(engine, harness, prefixes)
                if not problem:
                    break
                await trio.sleep(0.05)
            settled_after = trio.current_time() - burst_over
            calm.cancel_scope.cancel()
        watch.cancel_scope.cancel()

    over = [s for s in samples if s.resting > s.allowed]
    statuses = {symbol: harness.status(MarketKey(symbol)) for symbol in MARKETS}
    figures = {symbol: (s.orders_placed, s.orders_cancelled, s.orders_amended, s.amends_rejected, s.orders_rejected,
                        s.reconcile_cancelled, s.reconcile_gone, s.cancel_retries) for symbol, s in statuses.items()}
    assert len(samples) >= 2 * (BURST_SECONDS / SAMPLE_EVERY), "the sampler did not keep up"
    assert not over, f"{len(over)} samples with more resting orders than the ladder plus those in flight: {over[:5]}"
    assert not problem, f"not exactly one ladder {SETTLE_WITHIN}s after the burst: {problem}; {figures}"
    assert settled_after < SETTLE_WITHIN
    busiest = max(s.resting for s in samples)
    assert busiest >= LADDER  # the ladders were there (and the samples saw them)
    for symbol, status in statuses.items():
        # A level moves by an amend (or, when one cannot be amended, a cancel and a place).
        moved = status.orders_placed + status.orders_amended
        assert moved > 10 * LADDER, f"{symbol}: the burst hardly moved the ladder: {figures}"
        # The sink lost track of nothing: the periodic reconciliation found no order to cancel and none gone.
        assert (status.reconcile_cancelled, status.reconcile_gone) == (0, 0), figures
        assert status.bids + status.asks + status.cancelling == status.active_orders == LADDER

    await harness.aclose()  # as on SIGTERM: every order of ours leaves the engine
    assert not any(engine.open_orders(symbol, prefixes[symbol]) for symbol in MARKETS)
