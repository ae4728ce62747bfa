"""The strategy without an engine (``mmframe.testing.FakeContext``): the windows, one order per slot whatever the
order of events, recovery from the fill history and the live orders, and the status."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import attrs
import pytest
from mmframe_grid_trading import Config, GridTrading, LockStatus, SlotState

from mmframe import (
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    structure_config,
)
from mmframe.testing import FakeContext

from .helpers import BTC, D, grid_config

B, S = Side.BUY, Side.SELL


def make(**changes: Any) -> GridTrading:
    return GridTrading(structure_config(grid_config(**changes), Config), BTC)


def context(price: str | None = None, orders: Sequence[Order] = (), history: Sequence[Fill] = ()) -> FakeContext:
    ctx = FakeContext(market=BTC, orders=list(orders), fill_history=list(history))
    if price is not None:
        ctx.set_index_price(price)
    return ctx


def book(strategy: GridTrading, ctx: FakeContext) -> list[tuple[Side, Decimal, Decimal]]:
    """The desired book as ``(side, price, quantity)``, bids high to low then asks low to high."""
    quotes = strategy.desired_orders(ctx)
    bids = sorted(((q.side, q.price, q.quantity) for q in quotes if q.side is B), key=lambda q: -q[1])
    asks = sorted(((q.side, q.price, q.quantity) for q in quotes if q.side is S), key=lambda q: q[1])
    return bids + asks


def order(side: Side, price: str, quantity: str = "0.5", *, coid: str = "", status: OrderStatus = OrderStatus.OPEN,
          filled: str = "0", cancelling: bool = False) -> Order:
    request = OrderRequest(coid or f"t-{side}-{price}", "BTC/USDT", side, OrderType.LIMIT, D(quantity), D(price))
    return Order(request=request, status=status, filled_quantity=D(filled), cancel_requested=cancelling)


def fill(side: Side, price: str, quantity: str = "0.5", *, coid: str = "", fee: str = "0") -> Fill:
    return Fill(f"x{price}", coid or f"t-{side}-{price}", "BTC/USDT", side, D(price), D(quantity), fee=D(fee))


def filled(strategy: GridTrading, ctx: FakeContext, live: Order, quantity: str, price: str | None = None) -> Order:
    """Apply a fill of *quantity* of *live* as the engine would: the order's new state in ``ctx.orders`` and the
    strategy's ``on_order_event``. Returns the order's new state."""
    total = live.filled_quantity + D(quantity)
    complete = total == live.quantity
    after = attrs.evolve(live, filled_quantity=total,
                         status=OrderStatus.FILLED if complete else OrderStatus.PARTIALLY_FILLED)
    trade = Fill("x", live.client_order_id, "BTC/USDT", live.side, D(price) if price else live.price, D(quantity))
    kind = OrderEventKind.FILLED if complete else OrderEventKind.PARTIALLY_FILLED
    event = OrderEvent(kind, live.client_order_id, "BTC/USDT", filled_quantity=total, fill=trade)
    ctx.orders = [after if o.client_order_id == live.client_order_id else o for o in ctx.orders]
    strategy.on_order_event(event, after, ctx)
    return after


def gone(strategy: GridTrading, ctx: FakeContext, live: Order) -> None:
    """The cancel of *live* is confirmed."""
    after = attrs.evolve(live, status=OrderStatus.CANCELLED)
    ctx.orders = [after if o.client_order_id == live.client_order_id else o for o in ctx.orders]
    strategy.on_order_event(OrderEvent(OrderEventKind.CANCELLED, live.client_order_id, "BTC/USDT"), after, ctx)


# ---- the windows ---------------------------------------------------------------------------------------------------


def test_buys_fill_the_window_strictly_below_the_index() -> None:
    strategy = make()
    assert book(strategy, context("100.00")) == [(B, D("99"), D("0.5")), (B, D("98"), D("0.5")), (B, D("97"), D("0.5"))]
    assert book(strategy, context("100.01")) == [(B, D("100"), D("0.5")), (B, D("99"), D("0.5")),
                                                 (B, D("98"), D("0.5"))]


def test_the_windows_slide_with_the_index() -> None:
    strategy = make()
    resting = [order(B, p) for p in ("99.00", "98.00", "97.00")]
    ctx = context("100.00", resting)
    assert book(strategy, ctx) == [(B, D(p), D("0.5")) for p in ("99", "98", "97")]  # the three are kept as they are

    ctx.set_index_price("101.20")
    assert book(strategy, ctx) == [(B, D(p), D("0.5")) for p in ("101", "100", "99")]
    # 98 and 97 left the window: not wanted, so the engine cancels them; their slots wait for that
    assert strategy.slots[-2].lock is LockStatus.PENDING and strategy.slots[-3].lock is LockStatus.PENDING
    assert strategy.slots[-1].lock is LockStatus.LOCKED
    status = strategy.status()
    assert (status["buy_window_low"], status["buy_window_high"]) == ("99.00", "101.00")
    assert (status["sell_window_low"], status["sell_window_high"]) == ("102.00", "104.00")


def test_a_held_slot_beyond_the_sell_window_waits_for_the_price() -> None:
    strategy = make()
    ctx = context("100.00", [order(B, "99.00")])
    book(strategy, ctx)
    filled(strategy, ctx, ctx.orders[0], "0.5")
    ctx.orders = []
    assert (S, D("100"), D("0.5")) in book(strategy, ctx)

    ctx.set_index_price("96.50")  # the sell at 100 is the 4th grid price above: beyond a window of 3
    assert [q for q in book(strategy, ctx) if q[0] is S] == []
    assert strategy.slots[-1].state is SlotState.HOLDING and strategy.held_quantity == D("0.5")
    ctx.set_index_price("97.00")  # now the 3rd
    assert [q for q in book(strategy, ctx) if q[0] is S] == [(S, D("100"), D("0.5"))]


def test_a_held_slot_sells_even_when_the_price_ran_past_its_sell_and_buys_stay_below_it() -> None:
    strategy = make()
    ctx = context("100.00", history=[fill(B, "99.00")])
    strategy.on_start(ctx)
    ctx.set_index_price("102.50")
    # the sell at 100 is below the index: still wanted; the window's buys at 100 and above would cross it
    assert book(strategy, ctx) == [(S, D("100"), D("0.5"))]
    ctx.set_index_price("101.50")
    assert book(strategy, ctx) == [(S, D("100"), D("0.5"))]  # slot 99 holds; 100 and 101 are at or above the sell


def test_grid_levels_bound_the_buys() -> None:
    strategy = make(grid_levels=2)
    assert book(strategy, context("100.00")) == [(B, D("99"), D("0.5")), (B, D("98"), D("0.5"))]
    assert book(strategy, context("98.50")) == [(B, D("98"), D("0.5"))]
    assert book(strategy, context("110.00")) == []  # the window (107 to 109) is beyond the grid's last slot, 102
    assert strategy.status()["grid_levels"] == 2
    # a slot outside the grid that holds something (an earlier, wider grid's) still sells it, and never buys
    strategy = make(grid_levels=2)
    ctx = context(None, history=[fill(B, "96.00")])
    strategy.on_start(ctx)
    ctx.set_index_price("96.50")
    assert book(strategy, ctx) == [(S, D("97"), D("0.5"))]


def test_without_an_anchor_the_first_price_anchors_the_grid_on_the_tick() -> None:
    strategy = make(anchor_price=None, price_interval="0.25")
    assert strategy.grid is None
    assert [p for _, p, _ in book(strategy, context("100.037"))] == [D("100.03"), D("99.78"), D("99.53")]
    assert strategy.grid is not None and strategy.grid.anchor == D("100.03")
    assert strategy.anchor_source == "first_price"
    # the anchor stays: a later price does not move the grid
    assert [p for _, p, _ in book(strategy, context("101.00"))] == [D("100.78"), D("100.53"), D("100.28")]


# ---- one order per slot ----------------------------------------------------------------------------------------------


def test_a_partially_filled_buy_locks_its_slot_until_it_is_gone() -> None:
    strategy = make()
    ctx = context("100.00", [order(B, p) for p in ("99.00", "98.00", "97.00")])
    book(strategy, ctx)
    partial = filled(strategy, ctx, ctx.orders[0], "0.2")
    slot = strategy.slots[-1]
    assert slot.held == D("0.2") and slot.lock is LockStatus.LOCKED

    # the rest of the buy is not wanted (the engine cancels it), and no sell yet: the buy is still live
    assert book(strategy, ctx) == [(B, D("98"), D("0.5")), (B, D("97"), D("0.5"))]
    assert slot.lock is LockStatus.PENDING
    ctx.orders[0] = partial = attrs.evolve(partial, cancel_requested=True)
    assert book(strategy, ctx) == [(B, D("98"), D("0.5")), (B, D("97"), D("0.5"))]  # cancel under way: still
    partial = filled(strategy, ctx, partial, "0.1")  # it can still fill until the cancel is confirmed
    assert slot.held == D("0.3") and book(strategy, ctx) == [(B, D("98"), D("0.5")), (B, D("97"), D("0.5"))]

    gone(strategy, ctx, partial)
    assert slot.lock is LockStatus.FREE
    assert book(strategy, ctx) == [(B, D("98"), D("0.5")), (B, D("97"), D("0.5")), (S, D("100"), D("0.3"))]


def test_a_resting_sell_is_restated_at_what_remains() -> None:
    strategy = make()
    ctx = context("99.50", history=[fill(B, "99.00")])
    strategy.on_start(ctx)
    ctx.orders = [order(S, "100.00")]
    assert (S, D("100"), D("0.5")) in book(strategy, ctx)
    filled(strategy, ctx, ctx.orders[0], "0.2")
    assert (S, D("100"), D("0.3")) in book(strategy, ctx)  # the same order, its remaining quantity: kept
    assert strategy.slots[-1].state is SlotState.SELL_PLACED and strategy.realized_pnl == D("0.2")


def test_a_sell_that_does_not_match_the_holding_is_replaced_only_once_gone() -> None:
    strategy = make()
    ctx = context("99.50", [order(S, "100.00", "0.4")], history=[fill(B, "99.00")])
    strategy.on_start(ctx)
    assert [q for q in book(strategy, ctx) if q[0] is S] == []  # not wanted: cancelled
    assert strategy.slots[-1].lock is LockStatus.PENDING
    ctx.orders[0] = attrs.evolve(ctx.orders[0], cancel_requested=True)
    assert [q for q in book(strategy, ctx) if q[0] is S] == []
    gone(strategy, ctx, ctx.orders[0])
    assert [q for q in book(strategy, ctx) if q[0] is S] == [(S, D("100"), D("0.5"))]


def test_a_pending_order_is_restated_so_the_engine_keeps_it() -> None:
    strategy = make()
    ctx = context("100.00", [order(B, "99.00", status=OrderStatus.PENDING)])
    assert (B, D("99"), D("0.5")) in book(strategy, ctx)
    assert strategy.slots[-1].lock is LockStatus.PENDING and strategy.slot_counts()["pending"] == 1


def test_two_orders_on_one_slot_are_both_cancelled_before_one_is_placed() -> None:
    strategy = make()
    twins = [order(B, "99.00", coid="t-a"), order(B, "99.00", coid="t-b")]
    ctx = context("100.00", twins)
    assert book(strategy, ctx) == [(B, D("98"), D("0.5")), (B, D("97"), D("0.5"))]  # neither is wanted
    assert strategy.status()["duplicate_orders"] == 1 and strategy.slots[-1].lock is LockStatus.PENDING
    ctx.orders = twins = [attrs.evolve(o, cancel_requested=True) for o in twins]  # so the engine cancels both
    gone(strategy, ctx, twins[0])
    assert book(strategy, ctx) == [(B, D("98"), D("0.5")), (B, D("97"), D("0.5"))]  # the other is still live
    gone(strategy, ctx, twins[1])
    assert book(strategy, ctx)[0] == (B, D("99"), D("0.5"))


def test_an_order_at_no_grid_price_is_not_wanted() -> None:
    strategy = make()
    ctx = context("100.00", [order(B, "98.50")])
    assert book(strategy, ctx) == [(B, D(p), D("0.5")) for p in ("99", "98", "97")]
    assert strategy.status()["off_grid_orders"] == 1


def test_events_of_different_orders_in_any_order_give_the_same_slots() -> None:
    def run(order_of_events: Sequence[int]) -> tuple[Any, ...]:
        strategy = make()
        ctx = context("100.00", [order(B, "99.00"), order(B, "98.00"), order(S, "101.00", "0.5")],
                      history=[fill(B, "100.00")])
        strategy.on_start(ctx)
        book(strategy, ctx)
        live = list(ctx.orders)
        for i in order_of_events:
            filled(strategy, ctx, live[i], "0.5")
        ctx.orders = []
        return strategy.held_slots(), strategy.round_trips, strategy.realized_pnl, book(strategy, ctx)

    assert run([0, 1, 2]) == run([2, 1, 0]) == run([1, 2, 0])
    held, round_trips, pnl, _ = run([2, 0, 1])
    assert held == {D("98"): D("0.5"), D("99"): D("0.5")} and round_trips == 1 and pnl == D("0.5")


# ---- fills and recovery -----------------------------------------------------------------------------------------


def test_the_fill_history_rebuilds_the_slots() -> None:
    strategy = make()
    history = [fill(B, "99.00"), fill(B, "98.00"), fill(S, "99.00", fee="0.01"), fill(B, "97.00", "0.2")]
    ctx = context(None, history=history)
    strategy.on_start(ctx)
    assert strategy.held_slots() == {D("97"): D("0.2"), D("99"): D("0.5")}
    assert strategy.round_trips == 1 and strategy.realized_pnl == D("0.49") and strategy.fees == D("0.01")
    assert strategy.held_quantity == D("0.7") and strategy.recovered_fills == 4
    ctx.set_index_price("98.50")
    # slot 97 sells its 0.2 at 98, so the window's buy at 98 would cross it: only 96 buys (97 holds)
    assert book(strategy, ctx) == [(B, D("96"), D("0.5")), (S, D("98"), D("0.2")), (S, D("100"), D("0.5"))]


def test_without_an_anchor_the_history_gives_the_grid_its_phase() -> None:
    strategy = make(anchor_price=None)
    ctx = context(None, history=[fill(S, "101.37"), fill(B, "99.37"), fill(B, "100.37")])
    strategy.on_start(ctx)
    assert strategy.grid is not None and strategy.grid.anchor == D("99.37") and strategy.anchor_source == "history"
    assert strategy.held_slots() == {D("99.37"): D("0.5"), D("100.37"): D("0.5")}
    assert strategy.uncovered == D("0.5")  # the first sell had no recorded buy: reported, not hidden
    assert strategy.held_quantity == D("0.5")  # bought 1.0, sold 0.5


def test_the_surest_grid_price_anchors_a_recovered_grid() -> None:
    taker = attrs.evolve(fill(B, "98.70"), liquidity=Liquidity.TAKER)  # may have filled below its slot's price
    strategy = make(anchor_price=None, price_interval="0.25")
    strategy.on_start(context(None, history=[taker, fill(B, "99.10")]))
    assert strategy.grid is not None and strategy.grid.anchor == D("99.10")  # the maker fill: a slot's price
    assert strategy.held_slots() == {D("98.85"): D("0.5"), D("99.10"): D("0.5")}  # the taker fill: the slot above
    strategy = make(anchor_price=None, price_interval="0.25")
    strategy.on_start(context(None, [order(S, "100.35")], history=[fill(B, "99.10")]))
    assert strategy.grid is not None and strategy.grid.anchor == D("100.35")  # a live order's own price first
    strategy = make(anchor_price=None)
    strategy.on_start(context(None, history=[taker]))
    assert strategy.grid is not None and strategy.grid.anchor == D("98.70")  # nothing surer


def test_without_history_or_orders_there_is_nothing_to_rebuild() -> None:
    strategy = make(anchor_price=None)
    strategy.on_start(context(None))
    assert strategy.grid is None and strategy.slots == {}


def test_adopted_orders_are_attached_and_fills_the_history_lacks_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mmframe.strategy.grid_trading")
    strategy = make()
    sell = order(S, "100.00", coid="t-s")  # slot 99's sell, for what it holds
    buy = order(B, "98.00", coid="t-b", status=OrderStatus.PARTIALLY_FILLED, filled="0.1")  # 0.1 never recorded
    ctx = context(None, [sell, buy], history=[fill(B, "99.00", coid="t-old")])
    strategy.on_start(ctx)
    assert strategy.held_slots() == {D("98"): D("0.1"), D("99"): D("0.5")}
    assert strategy.unrecorded == D("0.1") and strategy.recovered_orders == 2
    assert "order t-b filled 0.1 more than its recorded fills" in caplog.text
    ctx.set_index_price("99.50")
    # the sell is kept; the partly filled buy is not (its slot sells its 0.1 once the buy is gone)
    assert book(strategy, ctx) == [(B, D("97"), D("0.5")), (S, D("100"), D("0.5"))]


def test_a_buy_filled_below_its_slot_price_is_sold_at_its_own_cost() -> None:
    strategy = make()
    ctx = context(None, history=[fill(B, "98.70"), fill(S, "100.00")])  # a taker fill for slot 99, then its sell
    strategy.on_start(ctx)
    assert strategy.round_trips == 1 and strategy.realized_pnl == D("0.65") and strategy.held_quantity == 0


# ---- status ------------------------------------------------------------------------------------------------------


def test_the_status_counts_slots_and_the_ledger() -> None:
    strategy = make()
    assert strategy.status()["anchor"] == "100.00" and strategy.status()["slots"]["total"] == 0
    ctx = context("100.00", [order(B, "99.00"), order(B, "98.00", status=OrderStatus.PENDING)],
                  history=[fill(B, "97.00"), fill(S, "98.00", fee="0.02"), fill(B, "97.00", fee="0.03")])
    strategy.on_start(ctx)
    book(strategy, ctx)
    ctx.set_index_price("96.50")
    ctx.orders = [order(B, "96.00", status=OrderStatus.PENDING)]
    book(strategy, ctx)
    status = strategy.status()
    json.dumps(status)  # JSON-able, as the API needs it
    # slots 94 and 95 (empty, their buys about to be placed), 96 (its buy sent), 97 (holds, its sell about to be
    # placed); 98 and 99 are idle outside the window, and forgotten
    assert status["slots"] == {"empty": 2, "buy_placed": 0, "holding": 1, "sell_placed": 0, "pending": 1,
                               "total": 4}
    assert status == {
        **status,
        "anchor": "100.00", "anchor_source": "config", "spacing": "1.00", "grid_levels": None,
        "order_quantity": "0.5000", "buy_window_size": 3, "sell_window_size": 3,
        "buy_window_low": "94.00", "buy_window_high": "96.00", "sell_window_low": "97.00",
        "sell_window_high": "99.00",
        "held_quantity": 0.5, "round_trips": 1, "realized_pnl": 0.45, "fees": 0.05,
        "bought_quantity": 1.0, "sold_quantity": 0.5, "uncovered_quantity": 0.0, "unrecorded_fill_quantity": 0.0,
        "duplicate_orders": 0, "off_grid_orders": 0, "recovered_fills": 3, "recovered_orders": 2,
    }
    assert status["exact"] == {"held_quantity": "0.5", "realized_pnl": "0.450", "fees": "0.05",
                               "bought_quantity": "1.0", "sold_quantity": "0.5"}
