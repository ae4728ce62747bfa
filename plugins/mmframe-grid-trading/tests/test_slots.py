"""The grid's geometry and the slot state machine, on their own."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest
from mmframe_grid_trading import Grid, LockStatus, OrderState, PositionStatus, Slot, SlotState

from mmframe import Order, OrderRequest, OrderStatus, OrderType, Side

D = Decimal
GRID = Grid(D("100.00"), D("0.50"), None, D("0.01"))


def order(side: Side, price: str, quantity: str = "1", *, coid: str = "o1", status: OrderStatus = OrderStatus.OPEN,
          filled: str = "0", cancelling: bool = False) -> Order:
    request = OrderRequest(coid, "BTC/USDT", side, OrderType.LIMIT, D(quantity), D(price))
    return Order(request=request, status=status, filled_quantity=D(filled), cancel_requested=cancelling)


def test_slot_prices_are_arithmetic_and_written_at_the_price_precision() -> None:
    assert [GRID.price(k) for k in (-2, -1, 0, 1)] == [D("99.00"), D("99.50"), D("100.00"), D("100.50")]
    assert str(GRID.price(3)) == "101.50"


@pytest.mark.parametrize(
    ("price", "at", "below", "above", "at_or_above", "at_or_below"),
    [
        ("100.00", 0, -1, 1, 0, 0),
        ("100.20", None, 0, 1, 1, 0),
        ("99.50", -1, -2, 0, -1, -1),
        ("98.99", None, -3, -2, -2, -3),
    ],
)
def test_where_a_price_falls_on_the_grid(
    price: str, at: int | None, below: int, above: int, at_or_above: int, at_or_below: int
) -> None:
    p = D(price)
    assert GRID.at(p) == at
    assert GRID.below(p) == below and GRID.price(below) < p <= GRID.price(below + 1)
    assert GRID.above(p) == above and GRID.price(above - 1) <= p < GRID.price(above)
    assert (GRID.at_or_above(p), GRID.at_or_below(p)) == (at_or_above, at_or_below)


def test_an_order_belongs_to_its_slot_by_side_and_price() -> None:
    assert GRID.buy_slot(D("99.50")) == -1
    assert GRID.sell_slot(D("100.00")) == -1  # slot -1 sells one spacing above its price
    assert GRID.buy_slot(D("99.70")) is None and GRID.sell_slot(D("99.70")) is None


def test_grid_levels_bound_the_slots_and_prices_stay_positive() -> None:
    bounded = attrs.evolve(GRID, levels=2)
    assert [k for k in range(-4, 5) if bounded.contains(k)] == [-2, -1, 0, 1, 2]
    near_zero = Grid(D("1.00"), D("0.50"))
    assert near_zero.contains(-1) and not near_zero.contains(-2)  # 0.00 is no price


def test_a_slot_goes_through_a_round_trip() -> None:
    slot = Slot(-1, D("99.50"), D("100.00"))
    assert (slot.position, slot.order_state, slot.lock, slot.state) == (
        PositionStatus.EMPTY, OrderState.NONE, LockStatus.FREE, SlotState.EMPTY)

    buy = order(Side.BUY, "99.50", status=OrderStatus.PENDING)
    slot.bind([buy])  # sent, not confirmed
    assert (slot.order_state, slot.lock, slot.state) == (OrderState.PLACED, LockStatus.PENDING, SlotState.PENDING)
    slot.order_changed(attrs.evolve(buy, status=OrderStatus.OPEN))  # accepted: it rests
    assert (slot.lock, slot.state, slot.order_id) == (LockStatus.LOCKED, SlotState.BUY_PLACED, "o1")

    slot.bought(D("1"), D("99.50"))
    slot.order_changed(attrs.evolve(buy, status=OrderStatus.FILLED, filled_quantity=D("1")))
    assert (slot.position, slot.order_state, slot.lock, slot.state) == (
        PositionStatus.FILLED, OrderState.FILLED, LockStatus.FREE, SlotState.HOLDING)
    assert slot.order_id is None and slot.held == D("1")

    sell = order(Side.SELL, "100.00", coid="o2")
    slot.bind([sell])
    assert (slot.lock, slot.state, slot.order_side) == (LockStatus.LOCKED, SlotState.SELL_PLACED, Side.SELL)
    sale = slot.sold(D("0.4"), D("100.00"))
    assert sale.profit == D("0.200") and sale.uncovered == 0 and not sale.round_trip
    slot.order_changed(attrs.evolve(sell, status=OrderStatus.PARTIALLY_FILLED, filled_quantity=D("0.4")))
    assert (slot.order_state, slot.lock) == (OrderState.PARTIALLY_FILLED, LockStatus.LOCKED)
    sale = slot.sold(D("0.6"), D("100.00"))
    assert sale.profit == D("0.300") and sale.round_trip and slot.round_trips == 1
    slot.order_changed(attrs.evolve(sell, status=OrderStatus.FILLED, filled_quantity=D("1")))
    assert (slot.position, slot.lock, slot.state, slot.idle) == (PositionStatus.EMPTY, LockStatus.FREE,
                                                                 SlotState.EMPTY, True)


def test_a_cancel_under_way_keeps_the_slot_pending_until_it_is_confirmed() -> None:
    slot = Slot(-1, D("99.50"), D("100.00"))
    buy = order(Side.BUY, "99.50")
    slot.bind([buy])
    assert slot.lock is LockStatus.LOCKED
    slot.bind([attrs.evolve(buy, cancel_requested=True)])
    assert slot.lock is LockStatus.PENDING and slot.order_state is OrderState.PLACED
    slot.order_changed(attrs.evolve(buy, status=OrderStatus.CANCELLED, cancel_requested=True))
    assert (slot.lock, slot.order_state, slot.order_id) == (LockStatus.FREE, OrderState.CANCELLED, None)


@pytest.mark.parametrize("status", [OrderStatus.REJECTED, OrderStatus.EXPIRED])
def test_an_order_gone_without_a_fill_counts_as_cancelled(status: OrderStatus) -> None:
    slot = Slot(0, D("100.00"), D("100.50"))
    slot.bind([order(Side.BUY, "100.00", status=OrderStatus.PENDING)])
    slot.order_changed(order(Side.BUY, "100.00", status=status))
    assert (slot.lock, slot.order_state) == (LockStatus.FREE, OrderState.CANCELLED)


def test_two_live_orders_on_one_slot_keep_it_pending_until_both_are_gone() -> None:
    slot = Slot(0, D("100.00"), D("100.50"))
    first, second = order(Side.BUY, "100.00", coid="a"), order(Side.BUY, "100.00", coid="b")
    slot.bind([first, second])
    assert slot.lock is LockStatus.PENDING and slot.conflict == ("b",) and slot.order_id == "a"
    slot.order_changed(attrs.evolve(second, status=OrderStatus.CANCELLED))  # the duplicate goes first
    assert slot.conflict == () and slot.order_id == "a"
    slot.order_changed(attrs.evolve(first, status=OrderStatus.CANCELLED))
    assert slot.lock is LockStatus.FREE
    slot.bind([first, second])
    slot.order_changed(attrs.evolve(first, status=OrderStatus.CANCELLED))  # the first goes first
    assert slot.lock is LockStatus.PENDING and slot.order_id is None  # "b" is still live
    slot.bind([second])
    assert slot.lock is LockStatus.LOCKED and slot.order_id == "b" and slot.conflict == ()


def test_lots_are_sold_oldest_first_at_their_own_cost() -> None:
    slot = Slot(0, D("100.00"), D("100.50"))
    slot.bought(D("0.3"), D("99.80"))  # a buy that filled below the slot's price
    slot.bought(D("0.2"), D("100.00"))
    assert slot.held == D("0.5") and slot.cost == D("49.940")
    sale = slot.sold(D("0.4"), D("100.50"))
    assert sale.profit == D("0.3") * D("0.70") + D("0.1") * D("0.50")
    assert [(lot.quantity, lot.price) for lot in slot.lots] == [(D("0.1"), D("100.00"))]
    sale = slot.sold(D("0.3"), D("100.50"))  # 0.1 held, 0.3 sold: 0.2 the slot never had
    assert sale.uncovered == D("0.2") and sale.profit == D("0.050") and sale.round_trip


def test_fills_must_be_positive() -> None:
    slot = Slot(0, D("100.00"), D("100.50"))
    with pytest.raises(ValueError, match="slot 0: a buy fill of 0"):
        slot.bought(D(0), D("100"))
    with pytest.raises(ValueError, match="slot 0: a sell fill of -1"):
        slot.sold(D(-1), D("100"))
