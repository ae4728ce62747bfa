"""The risk gate: built-in pre-trade checks, then the ``pre_trade_check`` hook. Any of them can veto an order.

Built-in checks, in order: the price is on the tick grid and the quantity at the market's precision and at least
its minimum; the quantity is at most ``max_order_quantity``; the market has fewer than ``max_active_orders``
live orders; the price is within ``price_band`` of the reference (index) price; a second line of defence that does
not trust the index alone: the price is within ``settled_band`` of the index as it stood ``settled_after`` seconds ago
and within ``book_band`` of the local book's mid (the other participants' orders, ours left out); the position after
a full fill stays within ``max_position``; and self-trade prevention (always on): the order would not cross one of our
own live orders.

A market runs the gate once per order (:meth:`RiskGate.refusal`), every check once. A refusal says whether it was
the self-trade check: an order of the desired book is checked for self-trade first, so that one whose opposite order
of ours is still being cancelled is held back for a later step rather than counted as vetoed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import attrs
import pluggy

from .._models import Market, Order, OrderRequest, OrderType, Side
from .._validators import not_negative
from ..protocols import Position

__all__ = ["Refusal", "RiskContext", "RiskGate", "RiskLimits", "self_trade_reason"]


def _opt_decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@attrs.frozen
class RiskLimits:
    """A market's pre-trade limits. ``None`` switches a limit off (self-trade prevention cannot be switched off).

    :param max_order_quantity: the largest quantity of one order.
    :param max_active_orders: the most live orders (pending, resting or being cancelled) at once.
    :param price_band: the largest distance of an order's price from the reference price, as a fraction of it.
        While it is set, an order without a reference price, and a market order, are refused.
    :param max_position: the largest absolute base position a fill of the order could leave.
    :param max_loss: the kill switch: a market whose PnL falls below ``-max_loss`` (quote currency) cancels
        everything and halts.
    :param settled_band: the largest distance of an order's price from the *settled* index — the index as it stood
        ``settled_after`` seconds ago (or the first index, in a market younger than that) — as a fraction of it.
        A sudden move of the index, right or wrong, is not quoted on at once: orders wait until it has held.
    :param settled_after: seconds back to the settled index.
    :param book_band: the largest distance of an order's price from the mid of the local book (the match engine's
        own book, our orders left out) as a fraction of it. Checked only while the book has other participants'
        orders on both sides; the book is read every ``book_interval`` seconds.
    :param book_interval: how often the market reads the local book for ``book_band``.
    :param book_quantity: each side of that mid is the price where the others' quantity, best first, adds up to
        this much (default: any): a few lots placed far away cannot move it and block our quotes.
    """

    max_order_quantity: Decimal | None = attrs.field(default=None, converter=_opt_decimal, validator=not_negative)
    max_active_orders: int = attrs.field(default=200, validator=not_negative)
    price_band: Decimal | None = attrs.field(default=Decimal("0.1"), converter=_opt_decimal, validator=not_negative)
    max_position: Decimal | None = attrs.field(default=None, converter=_opt_decimal, validator=not_negative)
    max_loss: Decimal | None = attrs.field(default=None, converter=_opt_decimal, validator=not_negative)
    settled_band: Decimal | None = attrs.field(default=None, converter=_opt_decimal, validator=not_negative)
    settled_after: float = attrs.field(default=10.0, validator=not_negative)
    book_band: Decimal | None = attrs.field(default=None, converter=_opt_decimal, validator=not_negative)
    book_interval: float = attrs.field(default=2.0, validator=not_negative)
    book_quantity: Decimal | None = attrs.field(default=None, converter=_opt_decimal, validator=not_negative)


@attrs.frozen
class RiskContext:
    """What a pre-trade check may look at: the reference price, every live order of the market, the position, and
    (when the market's limits use them) the settled index and the local book's mid without our orders."""

    reference_price: Decimal | None
    live_orders: Sequence[Order]
    position: Position
    settled_price: Decimal | None = None
    book_mid: Decimal | None = None


PreTradeHook = Callable[..., str | None]


@attrs.frozen
class Refusal:
    """Why the gate refuses an order; ``self_trade``: because it would cross one of our own live orders."""

    reason: str
    self_trade: bool = False


@attrs.define
class RiskGate:
    market: Market
    limits: RiskLimits
    hook: PreTradeHook | None = None

    def check(self, request: OrderRequest, context: RiskContext) -> str | None:
        """The reason to refuse *request*, or ``None`` when every check passes."""
        refusal = self.refusal(request, context)
        return None if refusal is None else refusal.reason

    @property
    def hooked(self) -> bool:
        """Whether a ``pre_trade_check`` hook (or a plain callable) will be asked."""
        hook = self.hook
        return hook is not None and (not isinstance(hook, pluggy.HookCaller) or bool(hook.get_hookimpls()))

    def refusal(self, request: OrderRequest, context: RiskContext, *, self_trade_first: bool = False) -> Refusal | None:
        """Every check, each once: the built-in checks in their order, self-trade prevention last (first, with
        *self_trade_first*), then the ``pre_trade_check`` hook. ``None`` when every check passes."""
        if self_trade_first:
            reason = self_trade_reason(request, context.live_orders)
            if reason is not None:
                return Refusal(reason, self_trade=True)
        reason = self._builtin(request, context)
        if reason is None and not self_trade_first:
            reason = self_trade_reason(request, context.live_orders)
            if reason is not None:
                return Refusal(reason, self_trade=True)
        hook = self.hook
        # No plugin implementing pre_trade_check (the usual case): no hook call, which costs more than the gate.
        if reason is None and hook is not None and (not isinstance(hook, pluggy.HookCaller) or hook.get_hookimpls()):
            reason = hook(market=self.market, request=request, context=context)
            if reason is not None and not (isinstance(reason, str) and reason):
                reason = f"a pre_trade_check hook vetoed the order without a reason ({reason!r})"
        return None if reason is None else Refusal(reason)

    def _builtin(self, request: OrderRequest, context: RiskContext) -> str | None:
        market, limits = self.market, self.limits
        price, qty = request.price, request.quantity
        if price is not None and not market.is_on_grid(price):
            return f"price {price} is not on the tick grid ({market.tick_size})"
        if not market.is_valid_quantity(qty):
            return (
                f"quantity {qty} is not a positive multiple of {market.quantity_step} "
                f"of at least {market.min_quantity}"
            )
        if limits.max_order_quantity is not None and qty > limits.max_order_quantity:
            return f"quantity {qty} exceeds max_order_quantity {limits.max_order_quantity}"
        if len(context.live_orders) >= limits.max_active_orders:
            return f"max_active_orders {limits.max_active_orders} reached"
        if limits.price_band is not None:
            ref = context.reference_price
            if request.type is OrderType.MARKET:
                return "market orders are refused while a price band is set (use an IOC order with a limit)"
            if ref is None:
                return "no reference price to check the price band against"
            assert price is not None
            if abs(price - ref) > ref * limits.price_band:
                return f"price {price} is outside the price band of {limits.price_band} around {ref}"
        if limits.settled_band is not None and price is not None:
            settled = context.settled_price
            if settled is None:
                return "no settled index price to check settled_band against"
            if abs(price - settled) > settled * limits.settled_band:
                return (f"price {price} is outside settled_band {limits.settled_band} around {settled}, the index "
                        f"{limits.settled_after:g}s ago")
        if limits.book_band is not None and price is not None and context.book_mid is not None:
            mid = context.book_mid
            if abs(price - mid) > mid * limits.book_band:
                return f"price {price} is outside book_band {limits.book_band} around the local book's mid {mid}"
        if limits.max_position is not None:
            after = context.position.base + request.side.sign * qty
            if abs(after) > limits.max_position and abs(after) > abs(context.position.base):
                return f"a fill would take the position to {after}, beyond max_position {limits.max_position}"
        return None


def self_trade_reason(request: OrderRequest, live: Sequence[Order]) -> str | None:
    """Why *request* would trade against one of our own *live* orders, or ``None``."""
    # Called once per order placed, over every live order: the request's fields are read once, each order's through
    # its request (Order's properties cost a call each).
    side, price, coid = request.side, request.price, request.client_order_id
    buy = side is Side.BUY
    for order in live:
        other = order.request
        if other.side is side or other.price is None or other.client_order_id == coid:
            continue
        if price is None:
            return f"self-trade prevention: a market order would meet our own {order.side} {order.client_order_id}"
        if price >= other.price if buy else price <= other.price:
            return (
                f"self-trade prevention: {side} at {price} would cross our own "
                f"{order.side} at {order.price} ({order.client_order_id})"
            )
    return None
