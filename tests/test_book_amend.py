"""Amending an order in the matching book: queue priority kept on a smaller quantity at the same price and lost on
a new price (a taker's fill order proves it), refusals, self-trade prevention at the new price."""

from __future__ import annotations

from decimal import Decimal

from mmframe import OrderType, Side
from mmframe.book import SELF_TRADE_PREVENTION, OrderBook

D = Decimal


def book_with_two_bids() -> OrderBook:
    book = OrderBook("BTC/USDT")
    for coid, owner in (("first", "alice"), ("second", "bob")):
        book.submit(client_order_id=coid, owner=owner, side=Side.BUY, type=OrderType.LIMIT, price=D("100"),
                    quantity=D("2"))
    return book


def fill_order(book: OrderBook) -> list[str]:
    """Which resting bids a taker selling 3 meets, in order."""
    result = book.submit(client_order_id="taker", owner="carol", side=Side.SELL, type=OrderType.IOC, price=D("99"),
                         quantity=D("3"))
    return [trade.maker.client_order_id for trade in result.trades]


def test_a_smaller_quantity_at_the_same_price_keeps_the_queue_place() -> None:
    book = book_with_two_bids()
    result = book.amend("first", quantity=D("1"))
    assert result.accepted and result.kept_priority and result.order is not None and result.order.quantity == 1
    assert book.depth() == (((D("100"), D("3")),), ())
    assert fill_order(book) == ["first", "second"]  # still first in line


def test_a_larger_quantity_or_a_new_price_goes_to_the_back() -> None:
    book = book_with_two_bids()
    result = book.amend("first", quantity=D("3"))
    assert result.accepted and not result.kept_priority
    assert fill_order(book) == ["second", "first"]
    book = book_with_two_bids()
    assert book.amend("first", price=D("99.5")).accepted
    assert book.amend("first", price=D("100")).accepted  # back at 100: behind the second now
    assert fill_order(book) == ["second", "first"]
    assert book.depth()[0] == ((D("100"), D("1")),)


def test_amends_that_cannot_be_are_refused_with_a_reason() -> None:
    book = book_with_two_bids()
    book.submit(client_order_id="hit", owner="carol", side=Side.SELL, type=OrderType.IOC, price=D("100"),
                quantity=D("1"))  # the first bid has filled 1 of 2
    refused = book.amend("first", quantity=D("1"))
    assert not refused.accepted and "already filled 1" in refused.reason
    assert book.amend("nope", quantity=D("1")).reason.startswith("the order is not open")
    assert not book.amend("second", quantity=D("1"), owner="alice").accepted  # not alice's order
    assert "positive" in book.amend("second", price=D("-1")).reason
    book.cancel("second")
    assert not book.amend("second", quantity=D("1")).accepted


def test_self_trade_prevention_applies_to_the_new_price() -> None:
    book = OrderBook("BTC/USDT")
    book.submit(client_order_id="bid", owner="mm", side=Side.BUY, type=OrderType.LIMIT, price=D("99"),
                quantity=D("1"))
    book.submit(client_order_id="ask", owner="mm", side=Side.SELL, type=OrderType.LIMIT, price=D("101"),
                quantity=D("1"))
    refused = book.amend("bid", price=D("101"))
    assert not refused.accepted and refused.reason.startswith(SELF_TRADE_PREVENTION)
    book.submit(client_order_id="other", owner="x", side=Side.SELL, type=OrderType.LIMIT, price=D("100"),
                quantity=D("1"))
    crossing = book.amend("bid", price=D("100"))
    assert not crossing.accepted and "cross the book" in crossing.reason
    assert book.get("bid").price == D("99")  # nothing changed  # type: ignore[union-attr]
