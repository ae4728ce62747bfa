"""Prices a market computes: a desired quote put on the tick grid as the engine sends it, and the local book's mid
without our own orders (the risk gate's ``book_band``)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import attrs

from .._models import DepthSnapshot, Market, Order, Quote, Side

__all__ = ["UnplaceableQuote", "on_grid_safely", "others_mid", "put_on_grid"]


def others_mid(depth: DepthSnapshot, ours: Iterable[Order], quantity: Decimal | None = None) -> Decimal | None:
    """The mid of the local book without our own orders (their unfilled quantity taken off their levels), or ``None``
    when other participants do not have *quantity* (any, by default) on both sides. Each side's price is where the
    others' quantity, best price first, adds up to *quantity*: a few lots far away cannot move it."""
    mine: dict[tuple[Side, Decimal], Decimal] = {}
    for order in ours:
        if order.price is not None:
            key = (order.side, order.price)
            mine[key] = mine.get(key, Decimal(0)) + order.quantity - order.filled_quantity
    wanted = quantity if quantity is not None and quantity > 0 else Decimal(0)
    best = []
    for side, levels in ((Side.BUY, depth.bids), (Side.SELL, depth.asks)):
        others = sorted(((Decimal(price), Decimal(qty) - mine.get((side, Decimal(price)), 0)) for price, qty in levels),
                        key=lambda level: level[0], reverse=side is Side.BUY)
        total, reached = Decimal(0), None
        for price, qty in others:
            if qty <= 0:
                continue
            total += qty
            if total >= wanted:
                reached = price
                break
        if reached is None:
            return None
        best.append(reached)
    bid, ask = best
    return (bid + ask) / 2 if bid < ask else None


class UnplaceableQuote(ValueError):
    """A quote that cannot be placed: ``unrepresentable`` when its price or quantity cannot be written at the market's
    precision at all (a decimal overflow), else it is below the minimum quantity or not at a positive price."""

    def __init__(self, message: str, *, unrepresentable: bool) -> None:
        super().__init__(message)
        self.unrepresentable = unrepresentable


def on_grid_safely(market: Market, price: Decimal) -> bool:
    try:
        return market.is_on_grid(price)
    except ArithmeticError:  # too many digits for the decimal context: certainly not a price we can send
        return False


def put_on_grid(market: Market, quote: Quote) -> Quote:
    """*quote* on *market*'s tick grid (never more aggressively: a bid rounds down, an ask up) and at its quantity
    precision, as the engine sends it; raises :class:`UnplaceableQuote` saying why it cannot be placed."""
    try:
        price, qty = market.round_price(quote.price, quote.side), market.round_quantity(quote.quantity)
        on_grid = market.is_on_grid(price)
    except (ArithmeticError, ValueError):
        raise UnplaceableQuote(
            f"{quote.side} {quote.quantity} @ {quote.price} cannot be written with {market.price_precision} price "
            f"and {market.quantity_precision} quantity decimals",
            unrepresentable=True,
        ) from None
    if not on_grid:
        raise UnplaceableQuote(f"price {quote.price} does not round onto the tick grid", unrepresentable=True)
    if not price > 0:
        raise UnplaceableQuote(
            f"{quote.side} price {quote.price} rounds to {price}, not positive", unrepresentable=False
        )
    if not (qty > 0 and qty >= market.min_quantity):
        raise UnplaceableQuote(
            f"{quote.side} quantity {quote.quantity} rounds to {qty}, below the minimum {market.min_quantity}",
            unrepresentable=False,
        )
    return attrs.evolve(quote, price=price, quantity=qty)

