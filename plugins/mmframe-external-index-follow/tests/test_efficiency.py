"""Message efficiency: a recorded index path replayed on MockClock through both modes with the seed's config.

``reconcile`` (the default) keeps its ladder anchored and lets the engine's reconciler send only what changed;
``replace_all`` is the seed's loop (cancel every order and place the ladder again every maintenance interval).
The path is ``data/price_path.ndjson`` (see ``data/make_price_path.py``); the README reports the numbers.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
from mmframe_external_index_follow import ExternalIndexFollow, build_ladder

from mmframe import AmendRequest, OrderRequest, Side
from mmframe.config import structure_config
from mmframe.testing import PaperSink

from .helpers import BTC, D, seed_config, settle, spec, start_engine

DATA = Path(__file__).parent / "data"


def recorded_path() -> list[tuple[int, Decimal]]:
    with (DATA / "price_path.ndjson").open() as f:
        return [(int(row["t"]), D(row["price"])) for row in map(json.loads, f)]


async def replay(prices: list[tuple[int, Decimal]], mode: str, amend: bool = False) -> tuple[int, int, Any]:
    """Replay *prices* (one per second) through a market quoting the seed's config in *mode* (with amends, or every
    move a cancel and a place); returns ``(orders placed, orders cancelled, final status)``."""
    async with trio.open_nursery() as nursery:
        engine = await start_engine(nursery)
        await engine.start(spec(seed_config(mode=mode), amend=amend))
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


# ---------------------------------------------------------------------------------------------------------------
# Amend, and the message budget (issue 19)
# ---------------------------------------------------------------------------------------------------------------


class TimedPaperSink(PaperSink):
    """The paper sink, noting when each message left the market: one per order placed, cancelled or amended."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[float, str]] = []

    async def place(self, requests: Sequence[OrderRequest]) -> None:
        self.sent += [(trio.current_time(), "place")] * len(requests)
        await super().place(requests)

    async def cancel(self, symbol: str, client_order_ids: Sequence[str]) -> None:
        self.sent += [(trio.current_time(), "cancel")] * len(client_order_ids)
        await super().cancel(symbol, client_order_ids)

    async def amend(self, requests: Sequence[AmendRequest]) -> None:
        self.sent += [(trio.current_time(), "amend")] * len(requests)
        await super().amend(requests)

    def most_in_one_second(self) -> int:
        """The most messages sent within any one second (a sliding window: from each message, one second on)."""
        times = sorted(t for t, _ in self.sent)
        return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def target_prices(price: Decimal) -> tuple[list[Decimal], list[Decimal]]:
    """The bid and ask prices of the seed's ladder at index *price*, best first."""
    ladder = build_ladder(structure_config(seed_config(), ExternalIndexFollow.Config), BTC, price)
    bids = sorted((q.price for q in ladder if q.side is Side.BUY), reverse=True)
    asks = sorted(q.price for q in ladder if q.side is Side.SELL)
    return bids, asks


async def test_amends_move_the_ladder_with_one_message_per_level(autojump_clock: Any) -> None:
    """With a sink that can amend, a moved level costs one amend instead of a cancel and a place: the same ladder,
    tick for tick, for about half the messages; the orders amended are the very orders placed at the start."""
    prices = recorded_path()[:300]
    results = {}
    for amend in (False, True):
        sink = TimedPaperSink()
        async with trio.open_nursery() as nursery:
            engine = await start_engine(nursery, sink)
            await engine.start(spec(seed_config(), amend=amend))
            start = trio.current_time()
            for t, price in prices:
                await trio.sleep_until(start + t)
                engine.push_tick(price)
                await settle()
                assert engine.prices() == target_prices(price), f"t={t}: not the target ladder"
            results[amend] = (engine.status(), len(sink.sent))
            nursery.cancel_scope.cancel()
    (plain, plain_sent), (amended, amended_sent) = results[False], results[True]
    assert plain.orders_amended == 0 and amended.orders_amended > 200
    assert amended.amends_rejected == 0 and amended.orders_vetoed == 0
    # Every level the plain run moved with a cancel and a place, the amending run moved with one amend.
    assert amended.orders_amended == plain.orders_cancelled
    assert amended.orders_cancelled == 0 and amended.orders_placed == 20
    assert amended_sent == amended.orders_placed + amended.orders_amended
    assert amended_sent * 1.9 < plain_sent


@pytest.mark.parametrize("amend", [False, True], ids=["cancel-and-place", "amend"])
async def test_a_budget_of_ten_messages_a_second_holds_and_converges(amend: bool, autojump_clock: Any) -> None:
    """The seed's ten-level ladder, its index moving every second, with ``max_messages_per_second: 10``: never more
    than ten messages in any one second; while it cannot keep up the status says how far behind it is, and the
    levels nearest the touch are the ones kept current; once the index stops moving it reaches the target ladder."""
    sink = TimedPaperSink()
    prices = recorded_path()[:120]
    behind: list[tuple[int, float]] = []
    touch_current = outer_current = 0
    async with trio.open_nursery() as nursery:
        engine = await start_engine(nursery, sink)
        await engine.start(spec(seed_config(), amend=amend, max_messages_per_second=10))
        start = trio.current_time()
        for t, price in prices:
            await trio.sleep_until(start + t)
            engine.push_tick(price)
            await settle()
            await trio.sleep_until(start + t + 0.99)  # how the second ends, just before the next tick
            await settle()
            status = engine.status()
            behind.append((status.messages_held, status.behind_seconds))
            (bids, asks), (want_bids, want_asks) = engine.prices(), target_prices(price)
            touch_current += bids[:1] == want_bids[:1] and asks[:1] == want_asks[:1]
            outer_current += bids[-1:] == want_bids[-1:] and asks[-1:] == want_asks[-1:]
        last_t, last = prices[-1]
        # The index stops moving (it still ticks, at the same price, or it would go stale).
        for extra in range(1, 31):
            await trio.sleep_until(start + last_t + extra)
            engine.push_tick(last)
            await settle()
        status = engine.status()
        assert engine.prices() == target_prices(last)
        nursery.cancel_scope.cancel()
    assert sink.most_in_one_second() <= 10
    # The budget held it back, often, and the status said so.
    print(f"\nseconds ending behind: {sum(1 for held, _ in behind if held)}, touch current {touch_current}, "
          f"outermost current {outer_current}, of {len(prices)}")
    assert sum(1 for held, _ in behind if held) >= 5
    assert max(seconds for _, seconds in behind) >= 1
    # The budget went to the touch first: the best bid and ask were current at the end of nearly every second, the
    # outermost levels less often.
    assert touch_current >= 0.9 * len(prices) and outer_current < touch_current
    # Once the index stopped, it caught up.
    assert status.messages_held == 0 and status.behind_seconds == 0
    assert status.bids == 10 and status.asks == 10 and status.orders_vetoed == 0
    kinds = {kind for _, kind in sink.sent}
    assert ("amend" in kinds) is amend
