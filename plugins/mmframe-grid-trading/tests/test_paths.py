"""The acceptance: scripted price paths on the paper sink, on trio's MockClock, through mmframe.testing's engine.

Every test checks the same things exactly: the number of completed round trips, the realized PnL (round trips *
spacing * quantity, less fees), the inventory held at the end (the filled buys not yet sold, equal to the engine's
position), the orders resting at the end, and that no slot ever had two resting orders — checked on the paper book
at every event it produced and at every order event the engine applied, not only at the end.

The grid of every test (``helpers.grid_config``): anchor 100, spacing 1, 0.5 per order, buy and sell windows of 3
slots. Slot ``k`` buys at ``100 + k`` and sells one spacing above.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import trio
import trio.testing
from mmframe_grid_trading import LockStatus, OrderState

from mmframe import MarketState, OrderType, Side

from .helpers import KEY, PREFIX, QUANTITY, SPACING, D, Rig, RigSink, bought_less_sold, grid_config, spec, start_rig

# The path, and what the grid does on it (derived by hand from the rules; "taken" = another participant trades
# with our resting orders as the price crosses them):
#
#  price   taken                        then resting (bids | asks)           held slots (buy price)  round trips
#  100.00  -                            99 98 97 | -                         -                       0
#   98.40  bid 99                       98 97 96 | 100                       99                      0
#  100.70  ask 100 (slot 99)            100 99 98 | -                        -                       1
#   97.50  bids 100 99 98               97 96 95 | 99 100 (101 left the      98 99 100               1
#                                                  sell window: cancelled)
#   99.20  ask 99 (slot 98)             98 97 | 100 101                      99 100                  2
#  101.60  asks 100 101                 101 100 99 | -                       -                       4
#   96.30  bids 101 100 99 (a fast      96 95 94 | - (every sell beyond      99 100 101              4
#          move through three slots)    the window: held, no sell)
#   98.90  -                            98 97 96 | 100 101                   99 100 101              4
#  102.20  asks 100 101, then the       102 101 100 | -                      -                       7
#          sell at 102 placed when the index passed it (the price ran past
#          slot 101's sell while it was outside the window) is taken too
#   99.50  bids 102 101 100             99 98 97 | 101 102                   100 101 102             7
STEPS = [  # price, bids, asks, round trips: the table above
    ("100.00", "99 98 97", "", 0),
    ("98.40", "98 97 96", "100", 0),
    ("100.70", "100 99 98", "", 1),
    ("97.50", "97 96 95", "99 100", 1),
    ("99.20", "98 97", "100 101", 2),
    ("101.60", "101 100 99", "", 4),
    ("96.30", "96 95 94", "", 4),
    ("98.90", "98 97 96", "100 101", 4),
    ("102.20", "102 101 100", "", 7),
    ("99.50", "99 98 97", "101 102", 7),
]
PATH = [price for price, *_ in STEPS]
ROUND_TRIPS = 7
END_BIDS = [D("99"), D("98"), D("97")]
END_ASKS = [D("101"), D("102")]
END_HELD = {D("100"): QUANTITY, D("101"): QUANTITY, D("102"): QUANTITY}
# Every fill at its price: buys 99 | 100 99 98 | 101 100 99 | 102 101 100; sells 100 | 99 | 100 101 | 100 101 102.
BUY_NOTIONAL = sum(D(p) for p in ["99", "100", "99", "98", "101", "100", "99", "102", "101", "100"]) * QUANTITY
SELL_NOTIONAL = sum(D(p) for p in ["100", "99", "100", "101", "100", "101", "102"]) * QUANTITY


def assert_invariants(
    rig: Rig, *, round_trips: int, pnl: Decimal, held: dict[Decimal, Decimal], fees: Decimal, min_events: int = 20
) -> None:
    strategy = rig.strategy()
    status = rig.status()
    assert rig.violations == []
    assert rig.observer is not None and rig.observer.events >= min_events  # the checks really ran
    assert rig.checks > 2 * rig.observer.events  # at every order event, and at every event on the book
    assert strategy.round_trips == round_trips
    assert strategy.realized_pnl == pnl
    assert strategy.fees == fees
    assert strategy.held_slots() == held
    held_total = sum(held.values(), D(0))
    assert strategy.held_quantity == held_total
    assert bought_less_sold(rig.recorded_fills()) == held_total  # the filled buys not yet sold
    assert status.position == held_total  # the engine's own position
    assert strategy.uncovered == 0 and strategy.unrecorded == 0
    assert status.state is MarketState.RUNNING and status.orders_vetoed == 0


async def test_an_oscillating_path_completes_exactly_its_round_trips(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    rig = await start_rig(nursery)
    for n, (price, bids, asks, round_trips) in enumerate(STEPS):
        await (rig.tick(price) if n == 0 else rig.move(price))
        assert rig.resting() == ([D(p) for p in bids.split()], [D(p) for p in asks.split()]), price
        assert rig.strategy().round_trips == round_trips, price

    assert_invariants(rig, round_trips=ROUND_TRIPS, pnl=ROUND_TRIPS * SPACING * QUANTITY, held=END_HELD, fees=D(0))
    assert rig.strategy().realized_pnl == D("3.5")
    assert rig.resting() == (END_BIDS, END_ASKS)
    status = rig.status().strategy_status
    assert status["round_trips"] == 7 and status["realized_pnl"] == 3.5 and status["held_quantity"] == 1.5
    assert status["exact"]["realized_pnl"] == "3.500000" and status["exact"]["held_quantity"] == "1.5000"
    assert status["slots"]["buy_placed"] == 3 and status["slots"]["sell_placed"] == 2
    assert status["slots"]["holding"] == 1  # slot 102 (sell at 103) waits outside the sell window


async def test_a_maker_fee_comes_off_the_realized_pnl(nursery: trio.Nursery, autojump_clock: Any) -> None:
    rig = await start_rig(nursery, RigSink(fee_rate="0.001"))
    await rig.run_path(PATH)

    fees = D("0.001") * (BUY_NOTIONAL + SELL_NOTIONAL)
    assert fees == D("0.851")
    assert_invariants(rig, round_trips=ROUND_TRIPS, pnl=ROUND_TRIPS * SPACING * QUANTITY - fees, held=END_HELD,
                      fees=fees)
    assert rig.strategy().realized_pnl == D("2.649")
    assert rig.status().strategy_status["fees"] == 0.851
    assert rig.resting() == (END_BIDS, END_ASKS)


# A fast move through more slots than the window in one tick, wider windows (5 slots each):
#
#  price   taken                         then resting (bids | asks)           held slots        round trips
#  100.00  -                             99 98 97 96 95 | -                   -                 0
#   93.50  bids 99 98 97 96 95           93 92 91 90 89 | 96 97 98            95 96 97 98 99    0
#  100.50  asks 96 97 98, then 99 100    100 99 98 97 96 | -                  -                 5
#          (placed once the index is above them)
#   94.20  bids 100 99 98 97 96          94 93 92 91 90 | 97 98 99            96 97 98 99 100   5
FAST_PATH = ["100.00", "93.50", "100.50", "94.20"]


async def test_a_fast_move_through_several_levels(nursery: trio.Nursery, autojump_clock: Any) -> None:
    rig = await start_rig(nursery, config=grid_config(buy_window_size=5, sell_window_size=5))
    await rig.tick(FAST_PATH[0])
    await rig.move(FAST_PATH[1])
    assert rig.resting() == ([D(p) for p in ["93", "92", "91", "90", "89"]], [D("96"), D("97"), D("98")])
    await rig.move(FAST_PATH[2])
    assert rig.resting() == ([D(p) for p in ["100", "99", "98", "97", "96"]], [])
    assert rig.strategy().round_trips == 5
    await rig.move(FAST_PATH[3])

    held = {D(p): QUANTITY for p in ["96", "97", "98", "99", "100"]}
    assert_invariants(rig, round_trips=5, pnl=5 * SPACING * QUANTITY, held=held, fees=D(0))
    assert rig.resting() == ([D(p) for p in ["94", "93", "92", "91", "90"]], [D("97"), D("98"), D("99")])


async def test_events_arriving_shuffled_and_late_change_nothing(nursery: trio.Nursery, autojump_clock: Any) -> None:
    """Order events of different orders delivered late and in a shuffled order, a random part at a time, while the
    engine keeps deciding on what it has been told so far: the same round trips, PnL and book as in order."""
    rig = await start_rig(nursery, RigSink(delay=True, seed=11))
    await rig.run_path(PATH)

    assert rig.sink.reordered > 10 and rig.sink.released > 50  # the events really arrived out of order
    assert_invariants(rig, round_trips=ROUND_TRIPS, pnl=ROUND_TRIPS * SPACING * QUANTITY, held=END_HELD, fees=D(0))
    assert rig.resting() == (END_BIDS, END_ASKS)


# The same path with partial fills: each sweep's last order (the furthest from the best) is only half taken at
# first. A half-filled buy is done: its remainder is cancelled and the slot sells the half it holds, once the
# cancel is confirmed. A half-filled sell rests for the rest, and is taken by the next sweep. So the round trips
# are the same seven, of 0.25 (slot 99 at 98.40, slot 98 at 97.50, slot 99 at 96.30) or 0.5 each:
# sold 0.25 + 0.25 + 0.5 + 0.5 + 0.25 + 0.5 + 0.5 = 2.75, bought 0.25 + 1.25 + 1.25 + 1.25 = 4.
PARTIAL_SOLD = D("2.75")
PARTIAL_HELD = {D("100"): D("0.25"), D("101"): QUANTITY, D("102"): QUANTITY}


async def test_partial_fills_arriving_out_of_order(nursery: trio.Nursery, autojump_clock: Any) -> None:
    rig = await start_rig(nursery, RigSink(delay=True, seed=5))
    await rig.run_path(PATH, partial=True)

    assert rig.sink.reordered > 10
    assert_invariants(rig, round_trips=ROUND_TRIPS, pnl=PARTIAL_SOLD * SPACING, held=PARTIAL_HELD, fees=D(0))
    assert rig.strategy().sold == PARTIAL_SOLD and rig.strategy().bought == D(4)
    bids, asks = rig.resting()
    assert (bids, asks) == (END_BIDS, END_ASKS)
    sells = {o.price: o.remaining_quantity for o in rig.ours() if o.side is Side.SELL}
    assert sells == {D("101"): D("0.25"), D("102"): QUANTITY}  # each sell is for exactly what its slot holds


# ---- a restart in the middle of the path ------------------------------------------------------------------------
#
# After 99.20 the grid holds slots 99 and 100 (their sells at 100 and 101 rest, with bids at 98 and 97); the
# market stops there and starts again, and the path goes on: the end is exactly the uninterrupted path's end.

HALF = PATH.index("99.20") + 1


async def test_a_restart_in_the_middle_keeps_the_position(nursery: trio.Nursery, autojump_clock: Any) -> None:
    rig = await start_rig(nursery)
    await rig.run_path(PATH[:HALF])
    assert rig.strategy().held_slots() == {D("99"): QUANTITY, D("100"): QUANTITY}
    assert rig.engine is not None

    await rig.engine.stop(KEY)  # cancels every order of the market
    assert rig.ours() == []
    await rig.engine.start(spec())
    restarted = rig.strategy()
    assert restarted.held_slots() == {D("99"): QUANTITY, D("100"): QUANTITY}  # rebuilt from the fill history
    assert restarted.round_trips == 2 and restarted.realized_pnl == D("1")
    await rig.tick(PATH[HALF - 1])  # the feed's next tick, at the same price
    assert rig.resting() == ([D("98"), D("97")], [D("100"), D("101")])

    for price in PATH[HALF:]:
        await rig.move(price)
    assert_invariants(rig, round_trips=ROUND_TRIPS, pnl=ROUND_TRIPS * SPACING * QUANTITY, held=END_HELD, fees=D(0))
    assert rig.resting() == (END_BIDS, END_ASKS)


async def crash_and_restart(nursery: trio.Nursery, rig: Rig, **spec_kwargs: Any) -> None:
    """The process dies (nothing cancelled: its orders stay on the book); a new engine on the same exchange loads
    the fills recorded so far as its history and starts the market again."""
    assert rig.engine is not None
    rig.sink.crashed = True
    await rig.engine.aclose()
    rig.sink.crashed = False
    await rig.start(nursery, history=rig.history)
    assert rig.engine is not None
    await rig.engine.start(spec(**spec_kwargs))


async def test_a_crash_with_adopted_orders_duplicates_nothing(nursery: trio.Nursery, autojump_clock: Any) -> None:
    rig = await start_rig(nursery, leftovers="adopt")
    await rig.run_path(PATH[:HALF])
    before = rig.resting()
    assert before == ([D("98"), D("97")], [D("100"), D("101")])

    await crash_and_restart(nursery, rig, leftovers="adopt")
    assert rig.resting() == before  # left by the dead process, adopted
    strategy = rig.strategy()
    assert strategy.held_slots() == {D("99"): QUANTITY, D("100"): QUANTITY}
    assert strategy.recovered_orders == 4 and strategy.recovered_fills == len(rig.recorded_fills())
    assert all(f.client_order_id.startswith(PREFIX) for f in rig.recorded_fills())  # this market's, by prefix
    assert rig.status().position == 2 * QUANTITY
    await rig.tick(PATH[HALF - 1])
    status = rig.status()
    assert (status.orders_placed, status.orders_cancelled) == (0, 0)  # every adopted order is the one wanted
    assert rig.resting() == before

    for price in PATH[HALF:]:
        await rig.move(price)
    assert_invariants(rig, round_trips=ROUND_TRIPS, pnl=ROUND_TRIPS * SPACING * QUANTITY, held=END_HELD, fees=D(0))
    assert rig.resting() == (END_BIDS, END_ASKS)


async def test_a_crash_with_cancelled_leftovers_places_them_again(nursery: trio.Nursery, autojump_clock: Any) -> None:
    rig = await start_rig(nursery)
    await rig.run_path(PATH[:HALF])

    await crash_and_restart(nursery, rig)  # leftovers: cancel (the default)
    assert rig.ours() == []
    await rig.tick(PATH[HALF - 1])
    assert rig.resting() == ([D("98"), D("97")], [D("100"), D("101")])
    assert rig.status().orders_placed == 4

    for price in PATH[HALF:]:
        await rig.move(price)
    assert_invariants(rig, round_trips=ROUND_TRIPS, pnl=ROUND_TRIPS * SPACING * QUANTITY, held=END_HELD, fees=D(0))
    assert rig.resting() == (END_BIDS, END_ASKS)


async def test_without_an_anchor_a_restart_finds_the_grid_again(nursery: trio.Nursery, autojump_clock: Any) -> None:
    """No ``anchor_price``: the first price (100.37) anchors the grid; after the crash the new process anchors it on
    a price of the earlier grid found in its fills, so the slots line up. The same path, 0.37 higher, ends the same."""
    offset = D("0.37")
    path = [str(D(p) + offset) for p in PATH]
    config = grid_config(anchor_price=None)
    rig = await start_rig(nursery, anchor=D("100.37"), config=config, leftovers="adopt")
    await rig.run_path(path[:HALF])
    assert rig.strategy().anchor_source == "first_price"

    await crash_and_restart(nursery, rig, config=config, leftovers="adopt")
    strategy = rig.strategy()
    assert strategy.anchor_source == "history" and strategy.grid is not None
    assert strategy.grid.price(0) in {D("100.37") + k for k in range(-10, 10)}  # on the earlier run's grid
    assert strategy.held_slots() == {D("99.37"): QUANTITY, D("100.37"): QUANTITY}
    await rig.tick(path[HALF - 1])
    assert (rig.status().orders_placed, rig.status().orders_cancelled) == (0, 0)

    for price in path[HALF:]:
        await rig.move(price)
    held = {price + offset: quantity for price, quantity in END_HELD.items()}
    assert_invariants(rig, round_trips=ROUND_TRIPS, pnl=ROUND_TRIPS * SPACING * QUANTITY, held=held, fees=D(0))
    assert rig.resting() == ([p + offset for p in END_BIDS], [p + offset for p in END_ASKS])


async def test_an_order_filled_while_its_cancel_is_under_way(nursery: trio.Nursery, autojump_clock: Any) -> None:
    """A buy fills half, so the grid cancels the rest; before the cancel reaches the book, the rest trades too. The
    slot waits (pending) while the cancel is under way, then sells all it holds: one order at a time throughout."""
    rig = await start_rig(nursery, RigSink(delay=True, seed=3))
    await rig.tick("100.00")
    assert rig.resting() == ([D("99"), D("98"), D("97")], [])
    sink, strategy = rig.sink, rig.strategy()
    slot = strategy.slots[-1]  # buys at 99

    sink.submit_external("BTC/USDT", side=Side.SELL, type=OrderType.IOC, quantity=D("0.25"), price=D("99"))
    await sink.release(everything=True, cancels=False)
    await trio.testing.wait_all_tasks_blocked()
    assert slot.held == D("0.25") and slot.lock is LockStatus.PENDING
    assert slot.order_state is OrderState.PARTIALLY_FILLED
    assert len(sink.cancels) == 1  # the rest of the buy is being cancelled, and still rests on the book
    await trio.sleep(5)  # refreshes come and go: nothing else is wanted for the slot while its cancel is under way
    assert rig.resting() == ([D("99"), D("98"), D("97")], [])

    sink.submit_external("BTC/USDT", side=Side.SELL, type=OrderType.IOC, quantity=D("0.25"), price=D("99"))
    await sink.release(everything=True, cancels=False)
    await trio.testing.wait_all_tasks_blocked()
    assert slot.held == QUANTITY and slot.order_state is OrderState.FILLED
    await rig.settle()  # the cancel reaches the book and finds nothing left to cancel
    assert rig.resting() == ([D("98"), D("97")], [D("100")])
    assert [o.remaining_quantity for o in rig.ours() if o.side is Side.SELL] == [QUANTITY]

    await rig.move("100.50")
    assert_invariants(rig, round_trips=1, pnl=SPACING * QUANTITY, held={}, fees=D(0), min_events=10)
    assert rig.resting() == ([D("100"), D("99"), D("98")], [])
