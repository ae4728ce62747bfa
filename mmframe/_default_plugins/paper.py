"""The built-in ``paper`` order sink: the matching book of :mod:`mmframe.book`, in-process, one per symbol.

Every outcome is delivered synchronously, in causal order, as :class:`~mmframe.OrderEvent` to the
listeners subscribed for the order's symbol and client-id prefix:

- a placed order: ``accepted``; then per trade ``partially_filled``/``filled`` with the cumulative filled
  quantity and its :class:`~mmframe.Fill` (``taker`` liquidity), the resting counterparty's own
  ``maker`` fill right after it; then ``expired`` for what an IOC or market order could not fill or what
  self-trade prevention expired. A refused order gets ``rejected`` with the reason;
- ``cancelled`` for each order ``cancel`` or ``cancel_all`` took off the book;
- ``amended`` (with the new price and quantity) for each amend ``amend`` applied, ``amend_rejected`` with the reason
  for each it refused: the sink can amend (:class:`~mmframe.protocols.AmendsOrders`), by the book's rules
  (:meth:`mmframe.book.OrderBook.amend`: a smaller quantity at the same price keeps the queue place; an amend never
  takes liquidity).

A duplicate client order id produces no event, nor does cancelling an order that is not open. The sink acts only on
its own ``owner``'s orders: an id another participant's order holds (``submit_external``) makes our place
``rejected``, and ``cancel``, ``cancel_all`` and ``open_orders`` never touch or list another participant's order.

Optionally the sink simulates other participants: with ``taker_flow_rate > 0`` taker orders (market or IOC, of
a random side, owned by ``taker_owner``) arrive as a Poisson process, per symbol that has resting orders, each
taking a random part (up to ``taker_size_fraction``) of the best level. Their own orders produce no events; our
orders they hit get their maker fills. With ``seed`` set, the flow is reproducible.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, ClassVar

import attrs
import trio

from .._book import OrderBook, OrderState, RestingOrder, SubmitResult, SubmitStatus, Trade, TradeParty
from .._hookspecs import hookimpl
from .._listeners import OrderEventListeners, OrderListener
from .._models import (
    AmendRequest,
    DepthSnapshot,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
)
from .._takers import TakerFlow
from .._validators import finite, not_empty, not_negative
from ..protocols import Subscription

__all__ = ["PaperSink", "register_sinks"]

logger = logging.getLogger("mmframe.paper")

_ZERO = Decimal(0)
_REMEMBER_IDS = 200_000  # client order ids remembered for the cross-symbol check


def _fraction(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not math.isfinite(value) or not 0 < value <= 1:
        raise ValueError(f"{attribute.name} must be in (0, 1], got {value!r}")


def _other_than_owner(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    not_empty(instance, attribute, value)
    if value == instance.owner:
        raise ValueError(f"{attribute.name} must differ from owner ({value!r}): we never trade with ourselves")


class PaperSink:
    """An :class:`~mmframe.protocols.OrderSink` that matches orders in-process. See the module documentation."""

    name: ClassVar[str] = "paper"

    @attrs.frozen
    class Config:
        """Options of the ``paper`` sink.

        :param taker_flow_rate: simulated other-participant taker orders per second, per symbol that has resting
            orders; 0 turns the simulation off.
        :param taker_size_fraction: each simulated taker order takes a random fraction, up to this, of the
            quantity at the best level.
        :param seed: seed of the simulation's random numbers (``None``: unpredictable).
        :param owner: the self-trade-prevention owner of the orders placed through the sink.
        :param taker_owner: the owner of simulated taker orders; their client ids start with ``"{taker_owner}-"``.
        :param remember_finished: finished orders each symbol's book remembers (for duplicate client ids and
            lookups). In-process nothing retries a place, so far fewer than the reference engine's 100,000 do; every
            remembered order is an object the garbage collector walks on each full collection.
        """

        taker_flow_rate: float = attrs.field(default=0.0, validator=[finite, not_negative])
        taker_size_fraction: float = attrs.field(default=0.3, validator=_fraction)
        seed: int | None = None
        owner: str = attrs.field(default="mmframe", validator=not_empty)
        taker_owner: str = attrs.field(default="sim-taker", validator=_other_than_owner)
        remember_finished: int = attrs.field(default=10_000, validator=attrs.validators.ge(0))

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else PaperSink.Config()
        self._books: dict[str, OrderBook] = {}
        # Which symbol each client order id was first used on (an id is never reused across symbols), bounded. An
        # OrderedDict, because forgetting the oldest of a plain dict (``next(iter(d))``) walks past every slot
        # deleted before it: once full, each place paid for all the ids forgotten since the dict last resized.
        self._id_symbol: OrderedDict[str, str] = OrderedDict()
        self._listeners = OrderEventListeners(logger)
        self._takers = TakerFlow(self.config.taker_flow_rate, self.config.taker_size_fraction, self.config.seed)
        self._taker_ids = itertools.count(1)

    # ---------------------------------------------------------------------------------------------------------
    # OrderSink
    # ---------------------------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Ready at once; then runs the simulated taker flow (if configured) until cancelled."""
        task_status.started()
        if self.config.taker_flow_rate > 0:
            await self._takers.run(self._books.values, self.simulate_taker)
        else:
            await trio.sleep_forever()

    def subscribe(self, symbol: str, prefix: str, listener: OrderListener) -> Subscription:
        """Deliver the events of *symbol*'s orders whose client id starts with *prefix* to *listener*."""
        return self._listeners.subscribe(symbol, prefix, listener)

    async def place(self, requests: Sequence[OrderRequest]) -> None:
        await trio.lowlevel.checkpoint()
        for request in requests:
            self._place(request)

    async def cancel(self, symbol: str, client_order_ids: Sequence[str]) -> None:
        await trio.lowlevel.checkpoint()
        book = self._books.get(symbol)
        if book is None:
            return
        owner = self.config.owner
        for coid in client_order_ids:
            if book.owner(coid) != owner:
                continue  # not open, or another participant's order with that id: not ours to cancel
            order = book._withdraw(coid)
            if order is not None:
                self._emit_cancelled(symbol, order)

    async def amend(self, requests: Sequence[AmendRequest]) -> None:
        """Amend our orders in order (:class:`~mmframe.protocols.AmendsOrders`): each gets ``amended`` or
        ``amend_rejected`` at once."""
        await trio.lowlevel.checkpoint()
        owner = self.config.owner
        for request in requests:
            coid, symbol = request.client_order_id, request.symbol
            book = self._books.get(symbol)
            if book is None:
                self._emit(OrderEvent(OrderEventKind.AMEND_REJECTED, coid, symbol,
                                      reason="the order is not open (filled, cancelled or unknown)"))
                continue
            accepted, state, reason, _ = book._amend(coid, request.price, request.quantity, owner)
            if not accepted or state is None:
                self._emit(OrderEvent(OrderEventKind.AMEND_REJECTED, coid, symbol,
                                      filled_quantity=state.filled_quantity if state is not None else _ZERO,
                                      order_id=state.order_id if state is not None else None, reason=reason))
                continue
            self._emit(OrderEvent(OrderEventKind.AMENDED, coid, symbol, state.filled_quantity, state.order_id,
                                  price=state.price, quantity=state.quantity))

    async def cancel_all(self, symbol: str, prefix: str = "") -> int:
        await trio.lowlevel.checkpoint()
        book = self._books.get(symbol)
        if book is None:
            return 0
        cancelled = book._withdraw_all(self.config.owner, prefix)
        for order in cancelled:
            self._emit_cancelled(symbol, order)
        return len(cancelled)

    async def open_orders(self, symbol: str, prefix: str = "") -> list[Order]:
        await trio.lowlevel.checkpoint()
        book = self._books.get(symbol)
        if book is None:
            return []
        return [_to_order(symbol, state) for state in book.open_orders(prefix, owner=self.config.owner)]

    async def depth(self, symbol: str, limit: int = 20) -> DepthSnapshot:
        await trio.lowlevel.checkpoint()
        book = self._books.get(symbol)
        if book is None:
            return DepthSnapshot(exchange="paper", symbol=symbol)
        bids, asks = book.depth(limit)
        return DepthSnapshot(exchange="paper", symbol=symbol, bids=bids, asks=asks, sequence=book.sequence)

    # ---------------------------------------------------------------------------------------------------------
    # Helpers for tests and demos
    # ---------------------------------------------------------------------------------------------------------

    def book(self, symbol: str) -> OrderBook:
        """*symbol*'s matching book (made on first use)."""
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = OrderBook(symbol, remember_finished=self.config.remember_finished)
        return book

    def submit_external(
        self,
        symbol: str,
        *,
        side: Side,
        type: OrderType,
        quantity: Decimal,
        price: Decimal | None = None,
        owner: str | None = None,
        client_order_id: str | None = None,
    ) -> SubmitResult:
        """Put another participant's order on *symbol*'s book now (tests, demos, the simulated flow).

        Our resting orders it trades with get their maker fill events; the order itself produces none.
        *owner* defaults to ``taker_owner`` and must not be our ``owner``; the client id defaults to
        ``"{owner}-{n}"``.
        """
        owner = owner if owner is not None else self.config.taker_owner
        if owner == self.config.owner:
            raise ValueError(f"an external order must not be owned by our owner {owner!r}; use place()")
        result = self.book(symbol).submit(
            client_order_id=client_order_id if client_order_id is not None else f"{owner}-{next(self._taker_ids)}",
            owner=owner,
            side=side,
            type=type,
            price=price,
            quantity=quantity,
        )
        for trade in result.trades:
            self._emit_fill(trade, trade.maker, complete=trade.maker_filled)
        return result

    def simulate_taker(self, symbol: str) -> SubmitResult | None:
        """Send one simulated taker order against *symbol*'s best level now; ``None`` if there is none.

        The side is random among those with resting orders; the order is a market order or an IOC at the best
        price, for a random part (up to ``taker_size_fraction``) of the best level's quantity.
        """
        book = self._books.get(symbol)
        order = self._takers.order_for(book) if book is not None else None
        if order is None:
            return None
        return self.submit_external(symbol, side=order.side, type=order.type, quantity=order.quantity,
                                    price=order.price)

    # ---------------------------------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------------------------------

    def _place(self, request: OrderRequest) -> None:
        symbol = request.symbol
        first_symbol = self._id_symbol.setdefault(request.client_order_id, symbol)
        if first_symbol != symbol:
            self._emit(
                OrderEvent(
                    kind=OrderEventKind.REJECTED,
                    client_order_id=request.client_order_id,
                    symbol=symbol,
                    reason=f"client order id already used on {first_symbol}",
                )
            )
            return
        if len(self._id_symbol) > _REMEMBER_IDS:
            self._id_symbol.popitem(last=False)  # forget the oldest
        status, order, trades, _, expired = self.book(symbol)._enter(
            request.client_order_id, self.config.owner, request.side, request.type, request.price, request.quantity,
            request,
        )
        coid = request.client_order_id
        if status is SubmitStatus.DUPLICATE:
            if order.owner != self.config.owner:
                # Another participant's order holds the id: ours was not placed; never take theirs for ours.
                reason = "client order id is used by another participant's order"
                self._emit(OrderEvent(kind=OrderEventKind.REJECTED, client_order_id=coid, symbol=symbol, reason=reason))
            return
        order_id = order.order_id
        if status is SubmitStatus.REJECTED:
            self._emit(
                OrderEvent(
                    kind=OrderEventKind.REJECTED,
                    client_order_id=coid,
                    symbol=symbol,
                    order_id=order_id,
                    reason=order.reason,
                )
            )
            return
        self._emit(OrderEvent(OrderEventKind.ACCEPTED, coid, symbol, _ZERO, order_id))
        for trade in trades:
            complete = trade.taker.filled_quantity == request.quantity
            self._emit_fill(trade, trade.taker, complete=complete)
            self._emit_fill(trade, trade.maker, complete=trade.maker_filled)
        if expired > 0:
            self._emit(
                OrderEvent(
                    kind=OrderEventKind.EXPIRED,
                    client_order_id=coid,
                    symbol=symbol,
                    filled_quantity=order.filled_quantity,
                    order_id=order_id,
                    reason=order.reason,
                )
            )

    def _emit_fill(self, trade: Trade, party: TradeParty, *, complete: bool) -> None:
        if party.owner == self.config.owner:  # another participant's order has nobody of ours to tell
            self._emit(trade.fill_event(party, complete=complete))

    def _emit_cancelled(self, symbol: str, order: RestingOrder) -> None:
        self._emit(
            OrderEvent(OrderEventKind.CANCELLED, order.client_order_id, symbol, order.filled_quantity, order.order_id,
                       None, order.reason)
        )

    def _emit(self, event: OrderEvent) -> None:
        self._listeners.emit(event)


def _to_order(symbol: str, state: OrderState) -> Order:
    request = state.payload
    if not isinstance(request, OrderRequest):
        # An order put on the book directly (tests, demos): rebuild the request from what the book knows.
        request = OrderRequest(
            client_order_id=state.client_order_id,
            symbol=symbol,
            side=state.side,
            type=state.type,
            quantity=state.quantity,
            price=state.price,
        )
    elif request.price != state.price or request.quantity != state.quantity:
        request = attrs.evolve(request, price=state.price, quantity=state.quantity)  # amended since it was placed
    return Order(
        request=request,
        status=OrderStatus.PARTIALLY_FILLED if state.filled_quantity else OrderStatus.OPEN,
        filled_quantity=state.filled_quantity,
        average_price=state.average_price,
        order_id=state.order_id,
    )


@hookimpl
def register_sinks(register: Callable[..., None]) -> None:
    register(PaperSink)
