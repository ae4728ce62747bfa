"""The order state machine: every allowed transition works, every other one is refused loudly."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from mmframe import Fill, InvalidTransition, OrderEvent, OrderEventKind, OrderRequest, OrderStatus, OrderType, Side
from mmframe._engine.tracker import ALLOWED, OrderTracker

S = OrderStatus
K = OrderEventKind


def request(coid: str = "c1", qty: str = "1", side: Side = Side.BUY, price: str = "100") -> OrderRequest:
    return OrderRequest(coid, "AAA/USDT", side, OrderType.LIMIT, quantity=qty, price=price)


def fill_event(
    kind: OrderEventKind, qty: str, cumulative: str, price: str = "100", side: Side = Side.BUY
) -> OrderEvent:
    return OrderEvent(
        kind,
        "c1",
        "AAA/USDT",
        filled_quantity=cumulative,
        fill=Fill("t", "c1", "AAA/USDT", side, price=price, quantity=qty),
    )


def tracked(status: OrderStatus) -> OrderTracker:
    """A tracker holding order c1 (quantity 1) in *status*, reached through legal transitions."""
    t = OrderTracker()
    t.add(request(), 0.0)
    path = {
        S.NEW: [],
        S.PENDING: [S.PENDING],
        S.OPEN: [S.PENDING, S.OPEN],
        S.PARTIALLY_FILLED: [S.PENDING, S.OPEN, S.PARTIALLY_FILLED],
        S.FILLED: [S.PENDING, S.OPEN, S.FILLED],
        S.CANCELLED: [S.PENDING, S.OPEN, S.CANCELLED],
        S.REJECTED: [S.PENDING, S.REJECTED],
        S.EXPIRED: [S.PENDING, S.OPEN, S.EXPIRED],
    }[status]
    for step in path:
        if step is S.PARTIALLY_FILLED:
            t.apply(fill_event(K.PARTIALLY_FILLED, "0.4", "0.4"), 1.0)
        elif step is S.FILLED:
            t.apply(fill_event(K.FILLED, "1", "1"), 1.0)
        else:
            t.transition("c1", step, 1.0)
    assert t.get("c1").status is status  # type: ignore[union-attr]
    return t


def test_happy_path_through_events() -> None:
    t = OrderTracker()
    t.add(request(qty="1"), 0.0)
    t.mark_sent("c1", 0.1)
    order = t.apply(OrderEvent(K.ACCEPTED, "c1", "AAA/USDT", order_id="42"), 0.2)
    assert order.status is S.OPEN and order.order_id == "42"
    order = t.apply(fill_event(K.PARTIALLY_FILLED, "0.25", "0.25", price="99"), 0.3)
    assert order.status is S.PARTIALLY_FILLED and order.remaining_quantity == Decimal("0.75")
    order = t.apply(fill_event(K.FILLED, "0.75", "1", price="100"), 0.4)
    assert order.status is S.FILLED and order.average_price == Decimal("99.75")
    assert t.live_count() == 0 and [o.client_order_id for o in t.finished()] == ["c1"]


@pytest.mark.parametrize(("start", "target"), list(itertools.product(list(S), list(S))))
def test_every_transition_is_allowed_or_refused_by_the_table(start: OrderStatus, target: OrderStatus) -> None:
    t = tracked(start)
    if target in ALLOWED[start] and target not in (S.PARTIALLY_FILLED, S.FILLED):
        assert t.transition("c1", target, 2.0).status is target
    elif target not in ALLOWED[start]:
        with pytest.raises(InvalidTransition, match=f"{start} → {target}"):
            t.transition("c1", target, 2.0)


def test_terminal_states_have_no_way_out() -> None:
    for status in (S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED):
        assert ALLOWED[status] == frozenset()
        t = tracked(status)
        with pytest.raises(InvalidTransition):
            t.apply(OrderEvent(K.CANCELLED, "c1", "AAA/USDT"), 3.0)


def test_overfill_and_inconsistent_fills_are_refused() -> None:
    t = tracked(S.OPEN)
    with pytest.raises(InvalidTransition, match="more than its quantity"):
        t.apply(fill_event(K.FILLED, "1.5", "1.5"), 2.0)
    with pytest.raises(InvalidTransition, match="does not match"):
        t.apply(fill_event(K.PARTIALLY_FILLED, "0.2", "0.5"), 2.0)
    with pytest.raises(InvalidTransition, match="but 1 of 1 is filled"):
        t.apply(fill_event(K.PARTIALLY_FILLED, "1", "1"), 2.0)
    with pytest.raises(InvalidTransition, match="filled as a sell"):
        t.apply(fill_event(K.PARTIALLY_FILLED, "0.5", "0.5", side=Side.SELL), 2.0)
    with pytest.raises(InvalidTransition, match="filled at 101"):
        t.apply(fill_event(K.PARTIALLY_FILLED, "0.5", "0.5", price="101"), 2.0)  # a buy at 100 filled above it
    with pytest.raises(InvalidTransition, match="without its fill"):
        t.apply(OrderEvent(K.FILLED, "c1", "AAA/USDT", filled_quantity="1"), 2.0)
    assert t.get("c1").status is S.OPEN  # type: ignore[union-attr]  # nothing was half-applied


def test_unknown_and_duplicate_ids_are_refused() -> None:
    t = OrderTracker()
    t.add(request(), 0.0)
    with pytest.raises(InvalidTransition, match="already tracked"):
        t.add(request(), 0.0)
    with pytest.raises(InvalidTransition, match="unknown client order id"):
        t.apply(OrderEvent(K.ACCEPTED, "nope", "AAA/USDT"), 0.0)


def test_repeated_acknowledgement_is_harmless() -> None:
    t = tracked(S.PARTIALLY_FILLED)
    order = t.apply(OrderEvent(K.ACCEPTED, "c1", "AAA/USDT"), 2.0)
    assert order.status is S.PARTIALLY_FILLED and order.filled_quantity == Decimal("0.4")


def test_cancel_requested_orders_leave_the_quoting_set_but_stay_live() -> None:
    t = tracked(S.OPEN)
    assert [o.client_order_id for o in t.quoting()] == ["c1"]
    t.mark_cancel_requested("c1", 2.0)
    assert t.quoting() == [] and t.live_count() == 1
    t.apply(OrderEvent(K.CANCELLED, "c1", "AAA/USDT"), 3.0)
    assert t.live_count() == 0
    with pytest.raises(InvalidTransition, match="cannot be cancelled"):
        t.mark_cancel_requested("c1", 4.0)


def test_quoting_is_best_first_and_history_is_bounded() -> None:
    t = OrderTracker(history=3)
    for i, (side, price) in enumerate([(Side.BUY, "99"), (Side.BUY, "100"), (Side.SELL, "102"), (Side.SELL, "101")]):
        t.add(request(f"o{i}", side=side, price=price), 0.0)
        t.mark_sent(f"o{i}", 0.0)
    assert [str(o.price) for o in t.quoting()] == ["100", "99", "101", "102"]
    for i in range(10):
        t.add(request(f"r{i}"), 0.0)
        t.transition(f"r{i}", S.REJECTED, 0.0)
    assert len(t.finished()) <= 6 and len(t) <= 4 + 6
