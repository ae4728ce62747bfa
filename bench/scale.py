"""scale: N markets in one process on the ``sim`` feed at 5 ticks a second each, with the ``paper`` sink.

Each size runs in a process of its own (``python -m bench.scale --child N``) running the engine as ``mmframe
serve`` does — one :class:`~mmframe._engine.manager.StrategyManager`, the plugins found through entry points, one
shared ``sim`` feed, the ``paper`` sink — without the configuration store, the audit trail and the control API
(see ``docs/performance.md`` for why the SQLite audit trail is left out):

- market ``S{i}/USDT`` (tick 0.01, prices to 4 places, quantities to 2, minimum 0.01), quoted by
  ``external_index_follow`` with the seed's config (ten levels a side) and the demo's risk limits;
- all on one ``sim`` feed (each symbol its own seeded random walk from 100) at ``tick_rate`` 5 with a per-tick
  volatility of 0.0045 % (about 55 % a year, as :mod:`bench.quote_path`'s path). At a price of 100 the seed's
  ``price_change_amount`` of 1.0 is 1 %, so a market requotes when its ``maintenance_interval`` (1 s) has passed:
  about once a second, moving the levels whose rounded price changed.

After every market is running and a warm-up, the child measures for a while: ``cpu_pct`` is the process's CPU
time (all threads) over the wall time (100 = one core), ``rss_mb`` the peak resident set of the process's whole
life (``ru_maxrss``), ``p99_ms`` the 99th percentile of every market's quote latency — the engine's own
measurement, from a tick's arrival in the market's inbox to its orders handed to the sink (and, on the paper
sink, acknowledged) — recorded exactly rather than in the histogram's buckets.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

import trio

from mmframe import Market
from mmframe._cli import tune_gc
from mmframe._default_plugins.paper import PaperSink
from mmframe._engine.manager import StrategyManager
from mmframe._engine.risk import RiskLimits
from mmframe._engine.spec import MarketSpec, MarketState
from mmframe._latency import LatencyHistogram
from mmframe._plugins import get_plugin_manager

from .common import emit, log, percentile, result, seed_config

NAME = "scale"
SIZES = {"tiny": ([3], 0.5, 1.5), "full": ([10, 100, 500, 1000], 5.0, 15.0)}  # (markets, warm-up s, measured s)
TICK_RATE = 5.0
VOLATILITY = 0.000045
P99_LIMIT_MS = 5.0
MAX_STARTUP = 90.0  # seconds to start every market; past it the size is measured with those running


class RecordingHistogram(LatencyHistogram):
    """The engine's quote-latency histogram that also keeps every observation while ``recording`` is set."""

    recording: list[float] | None = None

    def observe(self, seconds: float) -> None:
        super().observe(seconds)
        if RecordingHistogram.recording is not None:
            RecordingHistogram.recording.append(seconds)


def specs(count: int) -> list[MarketSpec]:
    """*count* markets quoting with the seed's config on one shared sim feed."""
    feed_config = {"tick_rate": TICK_RATE, "volatility": VOLATILITY, "seed": 8}
    risk = RiskLimits(max_order_quantity="20", price_band="0.05")  # the demo's limits
    return [
        MarketSpec(
            market=Market(f"S{i}/USDT", tick_size="0.01", price_precision=4, quantity_precision=2,
                          min_quantity="0.01"),
            strategy="external_index_follow",
            strategy_config=seed_config(),
            feed="sim",
            feed_config=feed_config,
            risk=risk,
            name=f"{10_000 + i}_1",
        )
        for i in range(count)
    ]


async def serve_and_measure(
    manager: StrategyManager, count: int, warmup: float, seconds: float, leave: Callable[[dict[str, Any]], NoReturn]
) -> None:
    async with trio.open_nursery() as nursery:
        started = time.perf_counter()
        await nursery.start(manager.run)
        # One by one, as the engine starts a service's markets; an overloaded process may not start them all.
        with trio.move_on_at(trio.current_time() + MAX_STARTUP):
            for spec in specs(count):
                await manager.start_market(spec)
        startup = time.perf_counter() - started
        tune_gc()  # as mmframe serve does once its markets have started
        runners = [manager.runner(key) for key in manager.markets]
        running = sum(1 for s in manager.status() if s.state is MarketState.RUNNING)
        log("%s: %d of %d markets running after %.1f s", NAME, running, count, startup)
        for runner in runners:
            if runner is not None:
                runner.quote_latency = RecordingHistogram()
        await trio.sleep(warmup)
        before = {s.market: (s.orders_placed, s.orders_cancelled, s.ticks) for s in manager.status()}
        RecordingHistogram.recording = latencies = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await trio.sleep(seconds)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        RecordingHistogram.recording = None
        statuses = manager.status()
        placed = sum(s.orders_placed - before.get(s.market, (0, 0, 0))[0] for s in statuses)
        cancelled = sum(s.orders_cancelled - before.get(s.market, (0, 0, 0))[1] for s in statuses)
        ticks = sum(s.ticks - before.get(s.market, (0, 0, 0))[2] for s in statuses)
        still_running = sum(1 for s in statuses if s.state is MarketState.RUNNING)
        elapsed = wall1 - wall0
        figures = {
            "markets": count,
            "cpu_pct": round(100 * (cpu1 - cpu0) / elapsed, 1),
            "rss_mb": round(rss / 1024, 1),
            "p99_ms": round(percentile(latencies, 99) * 1e3, 3),
            "p50_ms": round(percentile(latencies, 50) * 1e3, 3),
            "max_ms": round(max(latencies, default=float("nan")) * 1e3, 3),
            "running": still_running,
            "ticks_per_s": round(ticks / elapsed),
            "orders_per_s": round((placed + cancelled) / elapsed),
            "startup_s": round(startup, 1),
        }
        leave(figures)


def child(count: int, warmup: float, seconds: float) -> NoReturn:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    manager = StrategyManager(PaperSink(), get_plugin_manager(), instance_id="bench")

    def leave(figures: dict[str, Any]) -> NoReturn:
        # Straight out once the figures are printed: stopping a thousand markets one by one, each cancelling its
        # orders on the paper book, is not what is measured.
        log("%s: %s", NAME, figures)
        emit(figures)
        os._exit(0)

    trio.run(serve_and_measure, manager, count, warmup, seconds, leave)
    raise AssertionError("unreachable: leave() exits")


def run(size: str = "full") -> dict[str, Any]:
    counts, warmup, seconds = SIZES[size]
    results = []
    for count in counts:
        log("%s: %d markets (%.1f s warm-up, %.1f s measured)", NAME, count, warmup, seconds)
        out = subprocess.run(
            [sys.executable, "-m", "bench.scale", "--child", str(count), "--warmup", str(warmup),
             "--seconds", str(seconds)],
            stdout=subprocess.PIPE,
            check=True,
            text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    holding = [r["markets"] for r in results if r["p99_ms"] <= P99_LIMIT_MS and r["running"] == r["markets"]]
    return result(
        NAME,
        size,
        results=results,
        max_markets_p99_5ms=max(holding, default=0),
        tick_rate=TICK_RATE,
        volatility_per_tick=VOLATILITY,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--child", type=int, required=True, metavar="N", help="run N markets and print their figures")
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    child(args.child, args.warmup, args.seconds)


if __name__ == "__main__":
    main()
