"""Random price paths (hypothesis), with partial fills and order events delivered late and shuffled, checked against
what the fills themselves say: never two resting orders on a slot, the round trips and the holding counted from the
fills, PnL = spacing * quantity sold, and at the end exactly the book the windows call for."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmframe import Fill, Side

from .helpers import ANCHOR, QUANTITY, SPACING, D, RigSink, bought_less_sold, start_rig

WINDOW = 3


def ledger(fills: Sequence[Fill]) -> tuple[dict[int, Decimal], int]:
    """``({slot: held}, round trips)`` from the fills alone: a buy at a slot's price fills that slot, a sell one
    spacing above it empties it."""
    held: dict[int, Decimal] = {}
    round_trips = 0
    for fill in fills:
        steps = int((fill.price - ANCHOR) / SPACING)
        if fill.side is Side.BUY:
            held[steps] = held.get(steps, D(0)) + fill.quantity
        else:
            held[steps - 1] -= fill.quantity
            if held[steps - 1] == 0:
                round_trips += 1
    return {k: v for k, v in held.items() if v}, round_trips


def expected_book(held: dict[int, Decimal], index: Decimal) -> tuple[list[Decimal], dict[Decimal, Decimal]]:
    """The windows' book for *index*: ``(bid prices high to low, {ask price: quantity})``."""
    steps = (index - ANCHOR) / SPACING
    buy_high = int(steps.to_integral_value(rounding=ROUND_CEILING)) - 1
    sell_high = int(steps.to_integral_value(rounding=ROUND_FLOOR)) + WINDOW
    asks = {ANCHOR + (k + 1) * SPACING: q for k, q in held.items() if k + 1 <= sell_high}
    lowest_ask = min(asks, default=None)
    bids = [
        ANCHOR + k * SPACING
        for k in range(buy_high, buy_high - WINDOW, -1)
        if k not in held and (lowest_ask is None or ANCHOR + k * SPACING < lowest_ask)
    ]
    return bids, asks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cents=st.lists(st.integers(9600, 10400), min_size=2, max_size=10),
    partial=st.lists(st.booleans(), min_size=10, max_size=10),
    seed=st.integers(0, 1000),
)
def test_any_path_accounts_for_every_unit(cents: list[int], partial: list[bool], seed: int) -> None:
    path = [D(c) / 100 for c in cents]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            rig = await start_rig(nursery, RigSink(delay=True, seed=seed))
            await rig.tick(path[0])
            for price, part in zip(path[1:], partial, strict=False):
                await rig.move(str(price), partial=part)

            strategy = rig.strategy()
            fills = rig.recorded_fills()
            held, round_trips = ledger(fills)
            sold = sum((f.quantity for f in fills if f.side is Side.SELL), D(0))
            assert rig.violations == []
            assert strategy.round_trips == round_trips
            assert strategy.realized_pnl == SPACING * sold
            assert strategy.held_slots() == {ANCHOR + k * SPACING: q for k, q in sorted(held.items())}
            assert strategy.held_quantity == bought_less_sold(fills) == rig.status().position
            assert strategy.uncovered == 0 and rig.status().orders_vetoed == 0
            bids, asks = expected_book(held, path[-1])
            assert rig.resting()[0] == bids
            assert {o.price: o.remaining_quantity for o in rig.ours() if o.side is Side.SELL} == asks
            assert all(o.remaining_quantity == QUANTITY for o in rig.ours() if o.side is Side.BUY)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
