"""The order state machine: every order of one market, and the only place its status changes.

::

    new ──▶ pending ──▶ open ──▶ partially_filled ──▶ filled
     │         │          │              │
     │         │          └──────────────┴──▶ cancelled / expired
     │         └──▶ rejected / filled / partially_filled / cancelled / expired
     └──▶ rejected (the risk gate refused it; it never left the process)

A transition the table does not allow, a fill beyond the order's quantity or a cumulative fill that goes
backwards raises :class:`~mmframe.InvalidTransition`: the sink and the tracker disagree about an order, and the
market must stop rather than quote on a book it does not understand.

An amend changes a resting order's price and quantity, not its status. The tracker shows the amended price and
quantity as soon as the amend is sent (:meth:`OrderTracker.mark_amend_requested`: what the reconciler compares and
the strategy sees), and keeps the order as it stood until the sink says: ``amended`` confirms (with the sink's
values), ``amend_rejected`` puts the order back as it was. Meanwhile a fill may still come at the old price or up to
the old quantity (the amend had not reached the book yet): a fill is checked against every price the order has had,
and a fill that shows the amend cannot have applied puts the order back at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import attrs

from .._errors import InvalidTransition
from .._models import Order, OrderEvent, OrderEventKind, OrderRequest, OrderStatus, Side

_AMENDED = OrderEventKind.AMENDED
_AMEND_REJECTED = OrderEventKind.AMEND_REJECTED

__all__ = ["ALLOWED", "OrderTracker"]

_ZERO = Decimal(0)

S = OrderStatus
ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.NEW: frozenset({S.PENDING, S.REJECTED}),
    S.PENDING: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.REJECTED, S.CANCELLED, S.EXPIRED}),
    S.OPEN: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}

#: The tracker updates its records in place (``Order`` is read-only to everyone else): one object per order for its
#: whole life instead of one per transition, on every market's hot path.
_set = object.__setattr__

#: Order's fields, in order: :meth:`OrderTracker.add` passes them positionally. A field added to Order fails here.
_ORDER_FIELDS = (
    "request", "status", "filled_quantity", "average_price", "order_id", "reason", "created_at", "updated_at",
    "cancel_requested",
)
if tuple(a.name for a in attrs.fields(Order)) != _ORDER_FIELDS:  # pragma: no cover - a guard for maintainers
    raise ImportError(f"mmframe._engine.tracker._ORDER_FIELDS is out of date: Order has {attrs.fields(Order)}")


_EVENT_STATUS = {
    OrderEventKind.ACCEPTED: S.OPEN,
    OrderEventKind.PARTIALLY_FILLED: S.PARTIALLY_FILLED,
    OrderEventKind.FILLED: S.FILLED,
    OrderEventKind.CANCELLED: S.CANCELLED,
    OrderEventKind.REJECTED: S.REJECTED,
    OrderEventKind.EXPIRED: S.EXPIRED,
}


@attrs.define
class OrderTracker:
    """Every order of one market by client order id. Finished orders are kept for ``history`` of them."""

    history: int = 1000
    _orders: dict[str, Order] = attrs.field(factory=dict, init=False)
    _live: dict[str, Order] = attrs.field(factory=dict, init=False)
    _finished: list[str] = attrs.field(factory=list, init=False)
    #: Orders with an amend under way: client id -> the request as it stood before (see mark_amend_requested), and
    #: the order's price bound before it (None: it had none), restored if the amend does not apply.
    _amending: dict[str, tuple[OrderRequest, Decimal | None]] = attrs.field(factory=dict, init=False)
    #: Orders ever amended: client id -> the most generous price the order has had (the highest of a buy, the lowest
    #: of a sell): no fill may be worse for us than that.
    _price_bound: dict[str, Decimal] = attrs.field(factory=dict, init=False)
    #: Orders whose amend the sink refused: never amended again (cancelled and placed instead), so that an amend the
    #: sink will keep refusing (a price that would now trade) is not sent step after step.
    _no_amend: set[str] = attrs.field(factory=set, init=False)
    #: Goes up with every change to any order (added, moved, filled, its cancel asked): two equal readings mean
    #: :meth:`quoting` would answer the same.
    version: int = attrs.field(default=0, init=False)

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._orders

    def get(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def add(self, request: OrderRequest, now: float, *, status: OrderStatus = S.NEW) -> Order:
        """Track a new order, ``new`` (or ``pending``: about to be sent). Its client order id must never have been
        seen."""
        coid = request.client_order_id
        if coid in self._orders:
            raise InvalidTransition(f"client order id {coid!r} is already tracked")
        if status is not S.NEW and status is not S.PENDING:
            raise InvalidTransition(f"a new order is new or pending, not {status}")
        order = Order(request, status, _ZERO, None, None, "", now, now, False)
        self._orders[coid] = order
        self._live[coid] = order
        self.version += 1
        return order

    def adopt(self, order: Order, now: float) -> Order:
        """Track an order found resting on the book (left by an earlier run): it keeps its status and fills."""
        if order.client_order_id in self._orders:
            raise InvalidTransition(f"client order id {order.client_order_id!r} is already tracked")
        if not order.status.is_live or order.status is S.PENDING:
            raise InvalidTransition(f"only a resting order can be adopted, {order.client_order_id} is {order.status}")
        # a record of our own: the sink's order object is not ours to update in place
        return self._store(attrs.evolve(order, created_at=now, updated_at=now, cancel_requested=False))

    def transition(self, client_order_id: str, status: OrderStatus, now: float, *, reason: str = "") -> Order:
        """Move an order to *status*, refusing what the state machine does not allow."""
        order = self._require(client_order_id)
        self._check(order, status)
        _set(order, "status", status)
        _set(order, "updated_at", now)
        if reason:
            _set(order, "reason", reason)
        return self._store(order)

    def mark_sent(self, client_order_id: str, now: float) -> Order:
        return self.transition(client_order_id, S.PENDING, now)

    def mark_cancel_requested(self, client_order_id: str, now: float) -> Order:
        order = self._require(client_order_id)
        if not order.status.is_live:
            raise InvalidTransition(f"order {client_order_id} is {order.status}; it cannot be cancelled")
        _set(order, "cancel_requested", True)
        _set(order, "updated_at", now)
        self.version += 1
        return order

    def mark_amend_requested(
        self, client_order_id: str, price: Decimal, quantity: Decimal, now: float, *,
        request: OrderRequest | None = None,
    ) -> Order:
        """An amend of a resting order to *price* and *quantity* (its new total) is about to be sent: the order shows
        them from now on; ``amend_rejected`` puts it back (see the module docstring). *request*: the order's request
        with those values already made (saves making it again)."""
        order = self._require(client_order_id)
        if not self.amendable(order):
            raise InvalidTransition(f"order {client_order_id} is {order.status}"
                                    f"{' and being cancelled' if order.cancel_requested else ''}"
                                    f"{' with an amend under way' if client_order_id in self._amending else ''}: "
                                    "it cannot be amended")
        if quantity <= order.filled_quantity:
            raise InvalidTransition(f"order {client_order_id}: an amend to {quantity} but {order.filled_quantity} "
                                    "is filled already")
        old = order.request
        self._amending[client_order_id] = (old, self._price_bound.get(client_order_id))
        self._bound(order, old.price)
        if request is None or (request.price, request.quantity, request.client_order_id) != (
            price, quantity, client_order_id
        ):
            request = attrs.evolve(old, price=price, quantity=quantity)
        _set(order, "request", request)
        self._bound(order, price)
        _set(order, "updated_at", now)
        self.version += 1
        return order

    def amendable(self, order: Order) -> bool:
        """Whether *order* may be amended now: resting (acknowledged by the sink), not being cancelled, no amend of it
        under way."""
        status = order.status
        return (
            (status is S.OPEN or status is S.PARTIALLY_FILLED)
            and not order.cancel_requested
            and order.request.client_order_id not in self._amending
            and order.request.client_order_id not in self._no_amend
        )

    def amend_pending(self, client_order_id: str) -> OrderRequest | None:
        """The request as it stood before the order's amend under way, or ``None``."""
        pending = self._amending.get(client_order_id)
        return None if pending is None else pending[0]

    def amends_pending(self) -> list[tuple[Order, OrderRequest]]:
        """Every order with an amend under way, with its request as it stood before the amend."""
        return [(self._orders[c], old) for c, (old, _) in self._amending.items() if c in self._orders]

    def _bound(self, order: Order, price: Decimal | None) -> None:
        if price is None:
            return
        coid = order.request.client_order_id
        bound = self._price_bound.get(coid)
        if bound is None or (price > bound if order.side is Side.BUY else price < bound):
            self._price_bound[coid] = price

    def _undo_amend(self, order: Order, coid: str) -> OrderRequest:
        """The amend under way did not apply: the order is as it was, and it never had the amend's price, so no fill
        may come at it. Returns the request it is back to."""
        old, bound = self._amending.pop(coid)
        _set(order, "request", old)
        if bound is None:
            self._price_bound.pop(coid, None)
        else:
            self._price_bound[coid] = bound
        self._bound(order, old.price)
        return old

    def _amend_event(self, order: Order, event: OrderEvent, now: float) -> Order:
        coid = order.request.client_order_id
        if event.kind is _AMEND_REJECTED:
            self._no_amend.add(coid)
            if coid in self._amending:
                old = self._undo_amend(order, coid)
                if order.filled_quantity > old.quantity:
                    raise InvalidTransition(f"order {coid}: its amend was refused, but {order.filled_quantity} is "
                                            f"filled of its quantity {old.quantity}")
        else:
            price, quantity = event.price, event.quantity
            if price is None or quantity is None:
                raise InvalidTransition(f"order {coid}: an amended event without the new price and quantity")
            if quantity < order.filled_quantity:
                raise InvalidTransition(f"order {coid}: amended to {quantity}, but {order.filled_quantity} is filled")
            pending = self._amending.get(coid)
            target = order.request
            if pending is not None and (target.price, target.quantity) != (price, quantity):
                # Not the amend under way (an earlier change of the order, told late): it is how the order stood
                # before that amend; the order still shows the amend's values until the sink answers it.
                self._amending[coid] = (attrs.evolve(pending[0], price=price, quantity=quantity), pending[1])
                self._bound(order, price)
            else:
                self._amending.pop(coid, None)
                if (target.price, target.quantity) != (price, quantity):
                    self._bound(order, target.price)
                    _set(order, "request", attrs.evolve(target, price=price, quantity=quantity))
                    self._bound(order, price)
        if event.reason:
            _set(order, "reason", event.reason)
        _set(order, "updated_at", now)
        return self._store(order)

    def apply(self, event: OrderEvent, now: float) -> Order:
        """Apply a sink event and return the order's new state."""
        order = self._require(event.client_order_id)
        if event.kind is _AMENDED or event.kind is _AMEND_REJECTED:
            if not order.status.is_live or order.status is S.PENDING:
                raise InvalidTransition(f"order {order.client_order_id}: {event.kind} while it is {order.status}")
            return self._amend_event(order, event, now)
        status = _EVENT_STATUS[event.kind]
        if event.kind is OrderEventKind.ACCEPTED and order.status in (S.OPEN, S.PARTIALLY_FILLED):
            # A retried acknowledgement of an order we already know is resting: harmless, nothing changes.
            return order
        self._check(order, status)
        if status.is_terminal and event.fill is None and order.request.client_order_id in self._amending:
            # Ended with an amend unanswered: the order as the sink last confirmed it is what ended.
            self._undo_amend(order, order.request.client_order_id)
        if event.kind is OrderEventKind.PARTIALLY_FILLED or event.kind is OrderEventKind.FILLED:
            filled, average = self._apply_fill(order, event)
            _set(order, "filled_quantity", filled)
            _set(order, "average_price", average)
        elif event.filled_quantity and event.filled_quantity != order.filled_quantity:
            raise InvalidTransition(
                f"order {order.client_order_id}: {event.kind} reports {event.filled_quantity} filled, "
                f"we know of {order.filled_quantity}"
            )
        _set(order, "status", status)
        if event.order_id:
            _set(order, "order_id", event.order_id)
        if event.reason:
            _set(order, "reason", event.reason)
        _set(order, "updated_at", now)
        return self._store(order)

    def _apply_fill(self, order: Order, event: OrderEvent) -> tuple[Decimal, Decimal | None]:
        fill = event.fill
        if fill is None:
            raise InvalidTransition(f"order {order.client_order_id}: a {event.kind} event without its fill")
        if fill.quantity <= 0:
            raise InvalidTransition(f"order {order.client_order_id}: a fill of {fill.quantity}")
        if fill.side is not order.side:
            raise InvalidTransition(f"order {order.client_order_id} is a {order.side}, filled as a {fill.side}")
        filled = order.filled_quantity + fill.quantity
        if event.filled_quantity and event.filled_quantity != filled:
            raise InvalidTransition(
                f"order {order.client_order_id}: cumulative fill {event.filled_quantity} does not match "
                f"{order.filled_quantity} + {fill.quantity}"
            )
        if self._amending and order.request.client_order_id in self._amending and (
            filled >= order.quantity if event.kind is OrderEventKind.PARTIALLY_FILLED else filled != order.quantity
        ):
            # A fill the amend under way cannot have come after (the sink refuses an amend to no more than what has
            # filled): it reached the book first, and the amend will be refused. The order is as it was.
            self._undo_amend(order, order.request.client_order_id)
        if filled > order.quantity:
            raise InvalidTransition(
                f"order {order.client_order_id}: filled {filled} is more than its quantity {order.quantity}"
            )
        complete = filled == order.quantity
        if complete != (event.kind is OrderEventKind.FILLED):
            raise InvalidTransition(
                f"order {order.client_order_id}: {event.kind} but {filled} of {order.quantity} is filled"
            )
        if order.price is not None:
            # An amended order may still fill at a price it had before (the fill raced the amend).
            limit = self._price_bound.get(order.request.client_order_id, order.price) if self._price_bound else (
                order.price
            )
            worse = fill.price > limit if order.side is Side.BUY else fill.price < limit
            if worse:
                raise InvalidTransition(
                    f"order {order.client_order_id}: {order.side} at {limit} filled at {fill.price}"
                )
        previous_cost = (order.average_price or Decimal(0)) * order.filled_quantity
        average = (previous_cost + fill.price * fill.quantity) / filled
        return filled, average

    def _check(self, order: Order, status: OrderStatus) -> None:
        if status not in ALLOWED[order.status]:
            raise InvalidTransition(f"order {order.client_order_id}: {order.status} → {status} is not allowed")

    def _require(self, client_order_id: str) -> Order:
        try:
            return self._orders[client_order_id]
        except KeyError:
            raise InvalidTransition(f"unknown client order id {client_order_id!r}") from None

    def _store(self, order: Order) -> Order:
        """File *order* (already changed in place) as live or finished; finished orders beyond ``history`` are
        forgotten."""
        coid = order.request.client_order_id
        self._orders[coid] = order
        self.version += 1
        if order.status.is_terminal:
            if self._amending:
                self._amending.pop(coid, None)
            if self._price_bound:
                self._price_bound.pop(coid, None)
            if self._no_amend:
                self._no_amend.discard(coid)
            if self._live.pop(coid, None) is not None:
                self._finished.append(coid)
                if len(self._finished) > self.history * 2:
                    for old in self._finished[: -self.history]:
                        self._orders.pop(old, None)
                    del self._finished[: -self.history]
        else:
            self._live[coid] = order
        return order

    def live(self) -> Iterator[Order]:
        """Orders that are new, pending or resting (including those being cancelled)."""
        return iter(self._live.values())

    def live_count(self) -> int:
        return len(self._live)

    def quoting(self, side: Side | None = None) -> list[Order]:
        """Live orders not being cancelled, best price first: what the reconciler compares against."""
        orders = [
            o
            for o in self._live.values()
            if not o.cancel_requested and o.status is not S.NEW and (side is None or o.side is side)
        ]
        orders.sort(key=best_first)
        return orders

    def finished(self) -> list[Order]:
        return [self._orders[c] for c in self._finished if c in self._orders]


def best_first(order: Order) -> tuple[int, Decimal]:
    """Sort key: bids before asks, each best price first."""
    price = order.price if order.price is not None else Decimal(0)
    return (0, -price) if order.side is Side.BUY else (1, price)
