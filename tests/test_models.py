"""Exact prices and quantities: rounding at the edges, and decimals as strings on the wire."""

from __future__ import annotations

import json
from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmframe import (
    DepthSnapshot,
    Fill,
    Market,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderType,
    PriceTick,
    Side,
    _convert,
)
from mmframe._models import to_decimal

BTC = Market("BTC/USDT", tick_size="0.1", price_precision=2, quantity_precision=4, min_quantity="0.0001")


@pytest.mark.parametrize(
    ("price", "bid", "ask"),
    [
        ("100.05", "100.00", "100.10"),
        ("100.1", "100.10", "100.10"),  # already on the grid: unchanged on both sides
        ("100.0999999999", "100.00", "100.10"),
        ("100.1000000001", "100.10", "100.20"),
        ("0.05", "0.00", "0.10"),
        (0.3, "0.30", "0.30"),  # a float goes through its repr, never its binary expansion
        (0.1 + 0.2, "0.30", "0.40"),  # 0.30000000000000004 is above 0.3: an ask rounds up
    ],
)
def test_bids_round_down_and_asks_up(price: object, bid: str, ask: str) -> None:
    assert BTC.round_price(price, Side.BUY) == Decimal(bid)
    assert BTC.round_price(price, Side.SELL) == Decimal(ask)
    assert str(BTC.round_price(price, Side.BUY)) == bid  # at the market's precision, as a string


def test_odd_tick_sizes() -> None:
    m = Market("X/Y", tick_size="0.25", price_precision=2, quantity_precision=0)
    assert m.round_price("10.3", Side.BUY) == Decimal("10.25")
    assert m.round_price("10.3", Side.SELL) == Decimal("10.50")
    m5 = Market("X/Y", tick_size="5", price_precision=0, quantity_precision=2)
    assert m5.round_price("12", Side.BUY) == Decimal("10") and m5.round_price("12", Side.SELL) == Decimal("15")


@pytest.mark.parametrize(
    ("qty", "expected"), [("0.12345", "0.1234"), ("0.00009", "0.0000"), ("1", "1.0000"), (0.1, "0.1000")]
)
def test_quantities_round_down_to_the_precision(qty: object, expected: str) -> None:
    assert str(BTC.round_quantity(qty)) == expected


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000"), places=8, allow_nan=False))
def test_rounding_is_on_grid_and_never_more_aggressive(price: Decimal) -> None:
    bid, ask = BTC.round_price(price, Side.BUY), BTC.round_price(price, Side.SELL)
    assert bid <= price <= ask
    assert ask - bid in (Decimal(0), BTC.tick_size)
    assert BTC.is_on_grid(bid) and BTC.is_on_grid(ask)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tick_size": "0"}, "tick_size must be positive"),
        ({"tick_size": "-1"}, "tick_size must be positive"),
        ({"tick_size": "0.001"}, "more decimal places than price_precision"),
        ({"price_precision": 19}, "price_precision must be between 0 and 18"),
        ({"tick_size": "NaN"}, "must be finite"),
        ({"min_quantity": "-1"}, "min_quantity must not be negative"),
    ],
)
def test_bad_markets_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"symbol": "X/Y", "tick_size": "0.01", "price_precision": 2, "quantity_precision": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Market(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "abc", True, None, [1]])
def test_to_decimal_refuses_non_numbers(bad: object) -> None:
    with pytest.raises(ValueError):
        to_decimal(bad)


@pytest.mark.parametrize("price", ["0", "-1", "NaN", "Infinity", "-Infinity", Decimal("NaN"), Decimal(0), -1, 0.0])
def test_bad_ticks_cannot_be_built(price: object) -> None:
    """Nor made from a good one: the index screen relies on every PriceTick's price being finite and positive."""
    with pytest.raises(ValueError):
        PriceTick("sim", "BTCUSDT", price=price)
    good = PriceTick("sim", "BTCUSDT", price="1")
    with pytest.raises(ValueError):
        attrs.evolve(good, price=price)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        good.price = Decimal(-1)  # type: ignore[misc]


def test_decimals_cross_the_wire_as_strings_and_come_back_exact() -> None:
    event = OrderEvent(
        OrderEventKind.PARTIALLY_FILLED,
        "c1",
        "BTC/USDT",
        filled_quantity="0.1000",
        fill=Fill("t1", "c1", "BTC/USDT", Side.BUY, price="60000.10", quantity="0.1000", timestamp=1.0),
        timestamp=1.0,
    )
    text = _convert.dumps(event)
    data = json.loads(text)
    assert data["fill"]["price"] == "60000.10" and data["filled_quantity"] == "0.1000"
    assert _convert.loads(text, OrderEvent) == event
    request = OrderRequest("c2", "BTC/USDT", Side.SELL, OrderType.POST_ONLY, quantity="1.5", price="60000.1")
    assert _convert.loads(_convert.dumps(request), OrderRequest) == request
    depth = DepthSnapshot("sim", "BTCUSDT", bids=[["100.1", "2"]], asks=[["100.2", "1"]], sequence=3, timestamp=1.0)
    assert json.loads(_convert.dumps(depth))["bids"] == [["100.1", "2"]]
    assert depth.mid == Decimal("100.15")


def test_order_requests_are_checked() -> None:
    with pytest.raises(ValueError, match="needs a price"):
        OrderRequest("c", "X/Y", Side.BUY, OrderType.LIMIT, quantity="1")
    with pytest.raises(ValueError, match="quantity must be positive"):
        OrderRequest("c", "X/Y", Side.BUY, OrderType.MARKET, quantity="0")
