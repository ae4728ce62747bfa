"""A dry build's pieces: what a strategy is shown (one tick at a reference price, a flat position, a mispriced local
book, one order accepted and filled) and what it is found to want, so that a configuration is checked before it
runs (:meth:`mmframe._engine.manager.StrategyManager.dry_build`). Nothing here sends anything."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import attrs
import trio

from .._models import (
    DepthSnapshot,
    Fill,
    Market,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderStatus,
    OrderType,
    PriceTick,
    Quote,
    Side,
)
from ..protocols import Position
from .pricing import UnplaceableQuote, put_on_grid

__all__ = ["DryBuild", "DryContext", "dry_depth", "dry_events"]


@attrs.frozen
class DryBuild:
    """What a dry build found: the reference price (and its source, see :meth:`StrategyManager.reference_price`)
    and the quotes as the engine would place them."""

    reference: Decimal
    source: str
    quotes: tuple[Quote, ...]


class DryContext:
    """The :class:`~mmframe.StrategyContext` of a dry build: one tick at the reference price, a flat position, no
    orders; what the strategy submits is kept for the checks, never sent."""

    def __init__(self, market: Market, price: Decimal) -> None:
        self.market = market
        self.tick = PriceTick(exchange="dry-build", symbol=market.symbol, price=price)
        self.submitted: list[Quote] = []

    @property
    def now(self) -> float:
        return trio.current_time()

    @property
    def index_price(self) -> Decimal | None:
        return self.tick.price

    @property
    def last_tick(self) -> PriceTick | None:
        return self.tick

    @property
    def depth(self) -> DepthSnapshot | None:
        return None

    @property
    def position(self) -> Position:
        return Position()

    def live_orders(self, side: Side | None = None, *, include_cancelling: bool = False) -> Sequence[Order]:
        return ()

    @property
    def fill_history(self) -> Sequence[Fill]:
        return ()

    def submit(self, quote: Quote) -> str:
        self.submitted.append(quote)
        return f"dry-build-{len(self.submitted)}"

    def cancel(self, client_order_id: str) -> None:
        pass


def dry_depth(market: Market, reference: Decimal) -> DepthSnapshot:
    """A local book with another participant's mispriced orders: an ask one tick below *reference* and a bid one tick
    above it, each for a large quantity (a sweep is then limited by the strategy's own maximum)."""
    tick = market.tick_size
    quantity = Decimal(10) ** min(12, 14 - market.quantity_precision)
    ask = market.floor_price(reference) - tick
    bid = market.ceil_price(reference) + tick
    return DepthSnapshot(
        exchange="dry-build", symbol=market.symbol, bids=((bid, quantity),), asks=((ask, quantity),) if ask > 0 else ()
    )


def dry_events(market: Market, quotes: Sequence[object]) -> list[tuple[OrderEvent, Order]]:
    """The first placeable quote of *quotes* accepted, then filled in full: the events a strategy sees for one of its
    orders (none if no quote can be placed: that is reported on its own)."""
    for candidate in quotes:
        if isinstance(candidate, Quote) and candidate.type is not OrderType.MARKET:
            try:
                quote = put_on_grid(market, candidate)
            except UnplaceableQuote:
                continue
            break
    else:
        return []
    request = OrderRequest(
        client_order_id="dry-build-1", symbol=market.symbol, side=quote.side, type=quote.type,
        quantity=quote.quantity, price=None if quote.type is OrderType.MARKET else quote.price,
        market_type=market.market_type, tag=quote.tag,
    )
    accepted = Order(request, OrderStatus.OPEN, order_id="dry-build-1")
    fill = Fill("dry-build-1", request.client_order_id, market.symbol, quote.side, quote.price, quote.quantity)
    filled = attrs.evolve(accepted, status=OrderStatus.FILLED, filled_quantity=quote.quantity,
                          average_price=quote.price)
    return [
        (OrderEvent(OrderEventKind.ACCEPTED, request.client_order_id, market.symbol, order_id="dry-build-1"), accepted),
        (OrderEvent(OrderEventKind.FILLED, request.client_order_id, market.symbol, filled_quantity=quote.quantity,
                    order_id="dry-build-1", fill=fill), filled),
    ]
