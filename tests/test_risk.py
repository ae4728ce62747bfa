"""The risk gate's built-in checks, one by one, and the pre-trade hook behind them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from mmframe import Market, Order, OrderRequest, OrderStatus, OrderType, Position, Side
from mmframe._engine.risk import RiskContext, RiskGate, RiskLimits

MARKET = Market("AAA/USDT", tick_size="0.5", price_precision=1, quantity_precision=2, min_quantity="0.1")


def req(
    side: Side = Side.BUY, price: str | None = "100", qty: str = "1", type: OrderType = OrderType.LIMIT
) -> OrderRequest:
    return OrderRequest("new", MARKET.symbol, side, type, quantity=qty, price=price)


def resting(side: Side, price: str, coid: str = "live") -> Order:
    return Order(OrderRequest(coid, MARKET.symbol, side, OrderType.LIMIT, quantity="1", price=price), OrderStatus.OPEN)


def ctx(live: tuple[Order, ...] = (), ref: str | None = "100", base: str = "0") -> RiskContext:
    return RiskContext(None if ref is None else Decimal(ref), live, Position(base=Decimal(base)))


@pytest.mark.parametrize(
    ("limits", "request_", "context", "reason"),
    [
        (RiskLimits(), req(price="100.2"), ctx(), "not on the tick grid"),
        (RiskLimits(), req(qty="0.05"), ctx(), "quantity 0.05 is not a positive multiple"),
        (RiskLimits(), req(qty="0.123"), ctx(), "not a positive multiple of 0.01"),
        (RiskLimits(max_order_quantity="2"), req(qty="2.5"), ctx(), "exceeds max_order_quantity 2"),
        (RiskLimits(max_active_orders=1), req(), ctx((resting(Side.BUY, "99"),)), "max_active_orders 1 reached"),
        (RiskLimits(price_band="0.1"), req(price="111"), ctx(), "outside the price band"),
        (RiskLimits(price_band="0.1"), req(side=Side.SELL, price="89.5"), ctx(), "outside the price band"),
        (RiskLimits(price_band="0.1"), req(), ctx(ref=None), "no reference price"),
        (RiskLimits(price_band="0.1"), req(price=None, type=OrderType.MARKET), ctx(), "market orders are refused"),
        (RiskLimits(max_position="1"), req(qty="1.5"), ctx(), "beyond max_position 1"),
        (RiskLimits(max_position="1"), req(side=Side.SELL, qty="1.5"), ctx(base="-0.5"), "beyond max_position"),
        (RiskLimits(), req(price="101"), ctx((resting(Side.SELL, "101"),)), "self-trade prevention"),
        (RiskLimits(), req(side=Side.SELL, price="99"), ctx((resting(Side.BUY, "99.5"),)), "self-trade prevention"),
        (
            RiskLimits(price_band=None),
            req(price=None, type=OrderType.MARKET),
            ctx((resting(Side.SELL, "150"),)),
            "self-trade",
        ),
    ],
)
def test_each_builtin_check_vetoes_with_its_reason(
    limits: RiskLimits, request_: OrderRequest, context: RiskContext, reason: str
) -> None:
    veto = RiskGate(MARKET, limits).check(request_, context)
    assert veto is not None and reason in veto


@pytest.mark.parametrize(
    ("limits", "request_", "context"),
    [
        (RiskLimits(), req(), ctx()),
        (RiskLimits(price_band="0.1"), req(price="110"), ctx()),  # exactly on the band's edge
        (RiskLimits(), req(price="100.5"), ctx((resting(Side.SELL, "101"), resting(Side.BUY, "101", "b")))),
        (RiskLimits(max_position="1"), req(side=Side.SELL, qty="1.5"), ctx(base="1")),  # reduces the position
        (RiskLimits(price_band=None), req(price=None, type=OrderType.MARKET), ctx(ref=None)),
    ],
)
def test_orders_within_every_limit_pass(limits: RiskLimits, request_: OrderRequest, context: RiskContext) -> None:
    assert RiskGate(MARKET, limits).check(request_, context) is None


def test_the_hook_runs_after_the_builtins_and_may_veto() -> None:
    calls: list[dict[str, Any]] = []

    def hook(**kwargs: Any) -> str | None:
        calls.append(kwargs)
        return "too late in the day" if kwargs["request"].side is Side.SELL else None

    gate = RiskGate(MARKET, RiskLimits(), hook)
    assert gate.check(req(), ctx()) is None
    assert gate.check(req(side=Side.SELL, price="101"), ctx()) == "too late in the day"
    assert gate.check(req(price="100.2"), ctx()) is not None
    assert len(calls) == 2  # an order the built-ins refused never reached the hook
    assert calls[0]["market"] is MARKET and calls[0]["context"].reference_price == Decimal("100")


def test_a_hook_that_returns_a_non_reason_still_vetoes_loudly() -> None:
    gate = RiskGate(MARKET, RiskLimits(), lambda **_: False)  # type: ignore[arg-type,return-value]
    veto = gate.check(req(), ctx())
    assert veto is not None and "without a reason" in veto


def test_limits_refuse_negative_values() -> None:
    with pytest.raises(ValueError, match="max_order_quantity must not be negative"):
        RiskLimits(max_order_quantity="-1")
