"""soak: the suite's soak test (``plugins/mmframe-match-engine/tests/test_soak.py``), longer: cycles of a burst of 50
ticks/s per symbol (±0.08 % jitter) and a calm 4 Hz stretch, with simulated takers, on the reference match engine
over loopback HTTP through the ``match-engine`` sink; two markets on the seed's ``external_index_follow`` config
(ten bids, ten asks).

Every 200 ms it samples each market's resting orders on the engine against the ladder's size plus the orders the
tracker has in flight (pending, or cancel asked and not confirmed). Figures: ``over_allowance`` (samples above that
bound: must be 0), ``max_resting``, per calm stretch the seconds until the engine holds exactly one ladder per market
(``settle_p50_s``, ``settle_max_s``, ``unsettled``: stretches that never got there), what the periodic reconciliation
had to repair (``reconcile_cancelled``, ``reconcile_gone``, ``cancel_retries``), and the orders left on the engine
after an orderly stop (``left_after_stop``: must be 0).
"""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal
from typing import Any

import mmframe_external_index_follow
import trio
from mmframe_match_engine.server import Engine, serve_engine
from mmframe_match_engine.sink import MatchEngineSink

from mmframe import Market, OrderStatus, Side
from mmframe._engine.manager import StrategyManager
from mmframe._engine.market import MarketRunner
from mmframe._engine.spec import MarketSpec
from mmframe._models import MarketKey
from mmframe._plugins import make_plugin_manager
from mmframe._store import seed_sql

from .common import BenchFeed, FeedPlugin, log, percentile, result

NAME = "soak"
CYCLES = {"tiny": (1, 1.0, 2.0), "full": (8, 8.0, 7.0)}  # cycles, burst seconds, calm seconds
MARKETS = {"BTC/USDT": Decimal("45000"), "ETH/USDT": Decimal("3000")}
SEED_CONFIG = json.loads(re.search(r"'(\{.*?\})',", seed_sql(), re.S).group(1))  # type: ignore[union-attr]
LADDER = 2 * len(SEED_CONFIG["depth_levels"])


def _spec(symbol: str) -> MarketSpec:
    return MarketSpec(
        market=Market(symbol, tick_size="0.1", price_precision=4, quantity_precision=2),
        strategy="external_index_follow", strategy_config=SEED_CONFIG, feed="bench",
        index_symbol=symbol.replace("/", ""), refresh_interval=1.0, seed=7,
    )


def _one_ladder(engine: Engine, runners: dict[str, MarketRunner], prefixes: dict[str, str]) -> bool:
    for symbol, runner in runners.items():
        on_engine = engine.open_orders(symbol, prefixes[symbol])
        bids = sum(1 for o in on_engine if o.side is Side.BUY)
        live = list(runner.tracker.live())
        if (bids, len(on_engine) - bids) != (LADDER // 2, LADDER // 2):
            return False
        if {o.client_order_id for o in on_engine} != {o.client_order_id for o in live}:
            return False
        if any(o.cancel_requested or o.status is OrderStatus.PENDING for o in live):
            return False
    return True


async def _main(size: str) -> dict[str, Any]:
    cycles, burst, calm = CYCLES[size]
    engine = Engine(taker_flow_rate=1.0, seed=11)
    BenchFeed.instances.clear()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_engine, engine, "127.0.0.1", 0)
        sink = MatchEngineSink(MatchEngineSink.Config(endpoint=binds[0]))
        pm = make_plugin_manager(load_entrypoints=False,
                                 plugins=(mmframe_external_index_follow, FeedPlugin()))
        manager = StrategyManager(sink, pm, instance_id="soak")
        await nursery.start(manager.run)
        while sink.degraded:  # noqa: ASYNC110 - a plain property of the sink
            await trio.sleep(0.02)
        specs = {symbol: _spec(symbol) for symbol in MARKETS}
        for spec in specs.values():
            await manager.start_market(spec)
        runners = {s: manager.runner(MarketKey(s)) for s in MARKETS}
        prefixes = {s: manager.client_prefix(spec) for s, spec in specs.items()}
        feed = BenchFeed.instances[-1]
        rng = random.Random(5)
        over = samples = max_resting = 0
        settle: list[float] = []
        unsettled = 0

        async def sampler() -> None:
            nonlocal over, samples, max_resting
            while True:
                for symbol, runner in runners.items():
                    assert runner is not None
                    resting = len(engine.open_orders(symbol, prefixes[symbol]))
                    live = list(runner.tracker.live())
                    in_flight = sum(1 for o in live if o.status in (OrderStatus.NEW, OrderStatus.PENDING)
                                    or o.cancel_requested)
                    samples += 1
                    max_resting = max(max_resting, resting)
                    over += resting > LADDER + in_flight
                await trio.sleep(0.2)

        async def drive(seconds: float, rate: float, jitter: float) -> None:
            until = trio.current_time() + seconds
            while trio.current_time() < until:
                for symbol, base in MARKETS.items():
                    moved = base * (1 + Decimal(str(round(rng.uniform(-jitter, jitter), 6))))
                    feed.push_price(symbol.replace("/", ""), moved.quantize(Decimal("0.01")))
                await trio.sleep(1 / rate)

        async with trio.open_nursery() as watch:
            watch.start_soon(sampler)
            await drive(1.0, 4.0, 0.0)
            for cycle in range(cycles):
                log("soak: cycle %d of %d", cycle + 1, cycles)
                await drive(burst, 50.0, 0.0008)
                calm_from = trio.current_time()
                settled_at = None
                async with trio.open_nursery() as calming:
                    calming.start_soon(drive, calm, 4.0, 0.0)
                    while trio.current_time() - calm_from < calm:
                        if settled_at is None and _one_ladder(engine, runners, prefixes):  # type: ignore[arg-type]
                            settled_at = trio.current_time() - calm_from
                        await trio.sleep(0.05)
                if settled_at is None:
                    unsettled += 1
                else:
                    settle.append(settled_at)
            watch.cancel_scope.cancel()
        statuses = [manager.status(MarketKey(s))[0] for s in MARKETS]
        await manager.aclose()
        left = sum(len(engine.open_orders(s, prefixes[s])) for s in MARKETS)
        nursery.cancel_scope.cancel()
    settle.sort()
    return result(
        NAME, size,
        cycles=cycles, burst_s=burst, calm_s=calm, samples=samples, over_allowance=over, max_resting=max_resting,
        ladder=LADDER, settle_p50_s=round(percentile(settle, 50), 3) if settle else None,
        settle_max_s=round(max(settle), 3) if settle else None, unsettled=unsettled,
        orders_placed=sum(s.orders_placed for s in statuses),
        orders_amended=sum(s.orders_amended for s in statuses),
        reconcile_cancelled=sum(s.reconcile_cancelled for s in statuses),
        reconcile_gone=sum(s.reconcile_gone for s in statuses),
        cancel_retries=sum(s.cancel_retries for s in statuses),
        left_after_stop=left,
    )


def run(size: str) -> dict[str, Any]:
    return trio.run(_main, size)
