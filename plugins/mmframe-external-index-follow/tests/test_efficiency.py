"""Message efficiency: a recorded index path replayed on MockClock through both modes with the seed's config.

``reconcile`` (the default) keeps its ladder anchored and lets the engine's reconciler send only what changed;
``replace_all`` is the seed's loop (cancel every order and place the ladder again every maintenance interval).
The path is ``data/price_path.ndjson`` (see ``data/make_price_path.py``); the README reports the numbers.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from .helpers import D, seed_config, settle, spec, start_engine

DATA = Path(__file__).parent / "data"


def recorded_path() -> list[tuple[int, Decimal]]:
    with (DATA / "price_path.ndjson").open() as f:
        return [(int(row["t"]), D(row["price"])) for row in map(json.loads, f)]


async def replay(prices: list[tuple[int, Decimal]], mode: str) -> tuple[int, int, Any]:
    """Replay *prices* (one per second) through a market quoting the seed's config in *mode*; returns
    ``(orders placed, orders cancelled, final status)``."""
    async with trio.open_nursery() as nursery:
        engine = await start_engine(nursery)
        await engine.start(spec(seed_config(mode=mode)))
        start = trio.current_time()
        for t, price in prices:
            await trio.sleep_until(start + t)
            engine.push_tick(price)
        await trio.sleep(1)
        await settle()
        status = engine.status()
        nursery.cancel_scope.cancel()
    return status.orders_placed, status.orders_cancelled, status


async def test_reconcile_sends_far_fewer_messages_than_replace_all(autojump_clock: Any) -> None:
    prices = recorded_path()
    assert len(prices) == 1800 and prices[0] == (0, D("45000.00"))  # 30 minutes, one tick a second
    hours = len(prices) / 3600
    placed, cancelled, reconcile = await replay(prices, "reconcile")
    all_placed, all_cancelled, replace_all = await replay(prices, "replace_all")
    ours, seeds = placed + cancelled, all_placed + all_cancelled
    print(
        f"\nmessage efficiency over {len(prices)} s of data/price_path.ndjson, the seed's config:"
        f"\n  reconcile:   {placed} places + {cancelled} cancels = {ours} ({ours / hours:.0f} per hour)"
        f"\n  replace_all: {all_placed} places + {all_cancelled} cancels = {seeds} ({seeds / hours:.0f} per hour)"
        f"\n  replace_all / reconcile = {seeds / ours:.1f}"
    )
    # The seed's loop: the 20 orders cancelled and placed again every second, after the first 20.
    assert all_placed - all_cancelled == 20 and all_placed >= 20 * len(prices)
    assert ours * 4 < seeds  # far fewer
    # Both quoted the whole time, without a single refusal.
    for status in (reconcile, replace_all):
        assert status.bids == 10 and status.asks == 10 and status.orders_vetoed == 0
        assert status.orders_rejected == 0 and status.ticks == len(prices)
    assert reconcile.strategy_status["requotes"] < len(prices)
