"""quote_path: one index tick on a market with a 10 + 10 ladder, through the strategy, the reconciler, the risk gate
and the paper sink's acknowledgement, in one process on the real trio clock.

The market is the demo's BTC/USDT (tick 0.1) quoted by ``external_index_follow`` with the seed's config (ten levels
a side). The index is a seeded log-normal random walk from 60,000 with a per-tick standard deviation of 0.01 %
(about one second of BTC at an annual volatility of 55 %), so nearly every tick moves the reference by more than
the seed's ``price_change_amount`` and the whole ladder moves: 20 amends per tick on the paper sink, which can amend
(20 cancels and 20 places before issue 19, or on a sink that cannot).

Per tick the benchmark hands the tick to the market's feed listener (what a feed does on the trio thread), then
waits until every task is idle. The latency of a tick is from just before the hand-over to the paper sink's
acknowledgement of the orders that tick placed or amended: the sink emits every ``accepted`` and ``amended`` event
synchronously inside ``place`` and ``amend``, so the clock stops as the last of them returns. Ticks that sent
nothing are counted (``ticks_without_orders``) but have no acknowledgement to time.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import mmframe_external_index_follow
import trio
import trio.testing

from mmframe._cli import tune_gc
from mmframe._default_plugins.paper import PaperSink
from mmframe._engine.manager import StrategyManager
from mmframe._engine.risk import RiskLimits
from mmframe._engine.spec import MarketSpec
from mmframe._models import MarketKey, PriceTick
from mmframe._plugins import make_plugin_manager

from .common import BenchFeed, FeedPlugin, log, lognormal_path, market, percentile, result, seed_config

NAME = "quote_path"
TICKS = {"tiny": 500, "full": 100_000}
WARMUP = {"tiny": 50, "full": 2_000}
START = Decimal("60000")
VOLATILITY = 0.0001  # per tick
SEED = 8


class TimedPaperSink(PaperSink):
    """The paper sink, noting when it has acknowledged a batch (every ``accepted`` or ``amended`` event is out when
    ``place`` or ``amend`` returns)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0
        self.last_ack = 0.0

    async def place(self, requests: Any) -> None:
        await super().place(requests)
        self.last_ack = time.perf_counter()
        self.batches += 1

    async def amend(self, requests: Any) -> None:
        await super().amend(requests)
        self.last_ack = time.perf_counter()
        self.batches += 1


def spec() -> MarketSpec:
    return MarketSpec(
        market=market("BTC/USDT"),
        strategy="external_index_follow",
        strategy_config=seed_config(),
        feed="bench",
        index_symbol="BTCUSDT",
        risk=RiskLimits(max_order_quantity="20", price_band="0.05"),  # the demo's limits
        seed=7,
        name="bench",
    )


async def measure(prices: list[Decimal], warmup: int) -> dict[str, Any]:
    BenchFeed.instances.clear()
    pm = make_plugin_manager(load_entrypoints=False, plugins=(mmframe_external_index_follow, FeedPlugin()))
    sink = TimedPaperSink()
    manager = StrategyManager(sink, pm, instance_id="bench")
    latencies: list[float] = []
    without_orders = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        await manager.start_market(spec())
        feed = BenchFeed.instances[-1]
        tune_gc()  # the collector as mmframe serve sets it once its markets have started
        started = time.perf_counter()
        for i, price in enumerate(prices):
            tick = PriceTick(exchange="bench", symbol="BTCUSDT", price=price)  # built (and stamped) before timing
            before = sink.batches
            t0 = time.perf_counter()
            feed.deliver(tick)
            await trio.testing.wait_all_tasks_blocked()
            if i < warmup:
                continue
            if sink.batches > before:
                latencies.append(sink.last_ack - t0)
            else:
                without_orders += 1
            if i and i % 20_000 == 0:
                log("%s: %d ticks", NAME, i)
        elapsed = time.perf_counter() - started
        status = manager.status(MarketKey("BTC/USDT"))[0]
        runner = manager.runner(MarketKey("BTC/USDT"))
        assert runner is not None
        engine_mean = runner.quote_latency.sum / max(runner.quote_latency.count, 1)
        nursery.cancel_scope.cancel()
    measured = len(prices) - warmup
    return {
        "latencies": latencies,
        "without_orders": without_orders,
        "placed_per_tick": status.orders_placed / len(prices),
        "cancelled_per_tick": status.orders_cancelled / len(prices),
        "amended_per_tick": status.orders_amended / len(prices),
        "vetoed": status.orders_vetoed,
        "rejected": status.orders_rejected,
        "engine_mean_us": engine_mean * 1e6,
        "ticks_per_s": len(prices) / elapsed,
        "measured": measured,
        "bids": status.bids,
        "asks": status.asks,
    }


def run(size: str = "full") -> dict[str, Any]:
    count = TICKS[size]
    prices = lognormal_path(START, VOLATILITY, count, SEED)
    log("%s: %d ticks (log-normal, sigma %.4f %% a tick) through a 10 + 10 ladder", NAME, count, VOLATILITY * 100)
    figures = trio.run(measure, prices, WARMUP[size])
    latencies = figures["latencies"]
    us = 1e6
    return result(
        NAME,
        size,
        p50_us=round(percentile(latencies, 50) * us, 1),
        p99_us=round(percentile(latencies, 99) * us, 1),
        max_us=round(max(latencies) * us, 1),
        n=len(latencies),
        mean_us=round(sum(latencies) / len(latencies) * us, 1),
        ticks=count,
        warmup_ticks=WARMUP[size],
        ticks_without_orders=figures["without_orders"],
        places_per_tick=round(figures["placed_per_tick"], 2),
        cancels_per_tick=round(figures["cancelled_per_tick"], 2),
        amends_per_tick=round(figures["amended_per_tick"], 2),
        orders_vetoed=figures["vetoed"],
        orders_rejected=figures["rejected"],
        ladder=[figures["bids"], figures["asks"]],
        engine_quote_latency_mean_us=round(figures["engine_mean_us"], 1),
        volatility_per_tick=VOLATILITY,
    )
