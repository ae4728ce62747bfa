"""A price-time-priority matching book for one symbol: pure, synchronous, exact.

The in-process ``paper`` sink and the reference match engine share this book, so that what a strategy sees
against paper is what it sees against the reference engine. It knows nothing about trio, markets or listeners:
:meth:`OrderBook.submit` takes an order and returns everything that happened to it (:class:`SubmitResult`,
with its :class:`Trade` records in execution order); the caller turns that into events.

Rules:

- **Price-time priority.** The best price trades first; at one price, the order that arrived first. A trade
  executes at the resting (maker) order's price.
- **Order types.** ``limit`` rests what it does not fill; ``post_only`` is rejected if it would cross and never
  trades; ``ioc`` fills what it can up to its limit price and expires the rest; ``market`` (no price) takes at any
  price and expires the rest.
- **Self-trade prevention, always on (expire taker).** An incoming order never trades with a resting order of the
  same ``owner``: when the next match would be against its own owner, the incoming order's remaining quantity is
  expired with the reason ``"self-trade prevention"``. Trades against other owners' better orders before that
  point stand.
- **Idempotency.** A client order id the book has already seen, live or finished, never makes a second order:
  :meth:`OrderBook.submit` answers ``duplicate`` with the existing order's state. Finished orders are remembered
  in insertion order up to ``remember_finished`` of them (default 100,000: about 70 MB at most; a cap of a
  million would cost most of a gigabyte in a long-running paper process); the oldest are forgotten first, so a
  retry must come within that many finished orders of the original.
- **Bad input is refused, not raised:** a non-positive or non-finite quantity or price, a price on a market order
  or a missing price on any other type, an empty client order id → a ``rejected`` result with the reason.

Data structures: each side keeps ``price → level`` in a dict plus a sorted list of its prices (maintained with
:mod:`bisect`); a level is a FIFO deque of orders with its open total. Cancel finds an order in O(1) by client id
and removes it lazily (the deque is compacted once dead entries outnumber live ones).
"""

from __future__ import annotations

import bisect
import enum
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import attrs

from ._models import Fill, Liquidity, OrderEvent, OrderEventKind, OrderStatus, OrderType, Side

__all__ = [
    "SELF_TRADE_PREVENTION",
    "AmendResult",
    "Levels",
    "OrderBook",
    "OrderState",
    "RestingOrder",
    "SubmitResult",
    "SubmitStatus",
    "Trade",
    "TradeParty",
]

SELF_TRADE_PREVENTION = "self-trade prevention"
Levels = tuple[tuple[Decimal, Decimal], ...]
_ZERO = Decimal(0)


class SubmitStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


@attrs.frozen
class OrderState:
    """A snapshot of one order as the book knows it.

    ``quantity`` is the original quantity; it always equals ``filled_quantity + remaining_quantity +
    expired_quantity + cancelled_quantity``. ``remaining_quantity`` is what still rests on the book.
    ``sequence`` is the book sequence at the order's arrival (its time priority). ``payload`` is whatever the
    submitter attached (the paper sink keeps the original request there). ``amends`` counts the amends that changed
    the order: of two reports of it, the one with more amends is the later.
    """

    client_order_id: str
    order_id: str
    owner: str
    side: Side
    type: OrderType
    price: Decimal | None
    quantity: Decimal
    filled_quantity: Decimal
    filled_notional: Decimal
    expired_quantity: Decimal
    cancelled_quantity: Decimal
    status: OrderStatus
    sequence: int
    reason: str = ""
    payload: Any = attrs.field(default=None, eq=False, repr=False)
    amends: int = 0

    @property
    def remaining_quantity(self) -> Decimal:
        return self.quantity - self.filled_quantity - self.expired_quantity - self.cancelled_quantity

    @property
    def average_price(self) -> Decimal | None:
        return self.filled_notional / self.filled_quantity if self.filled_quantity else None

    @property
    def is_open(self) -> bool:
        return self.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


@attrs.define(slots=True, eq=False)
class RestingOrder:
    """An order the book holds (the incoming order too, while it is being matched). Mutable; the book owns it.

    Callers get :class:`OrderState` snapshots (:meth:`snapshot`), never a live ``RestingOrder``.
    """

    client_order_id: str
    order_id: str
    owner: str
    side: Side
    type: OrderType
    price: Decimal | None
    quantity: Decimal
    sequence: int
    filled_quantity: Decimal = _ZERO
    filled_notional: Decimal = _ZERO
    expired_quantity: Decimal = _ZERO
    cancelled_quantity: Decimal = _ZERO
    status: OrderStatus = OrderStatus.OPEN
    reason: str = ""
    payload: Any = None
    amends: int = 0

    @property
    def remaining_quantity(self) -> Decimal:
        return self.quantity - self.filled_quantity - self.expired_quantity - self.cancelled_quantity

    @property
    def is_open(self) -> bool:
        return self.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)

    def snapshot(self) -> OrderState:
        return OrderState(
            client_order_id=self.client_order_id,
            order_id=self.order_id,
            owner=self.owner,
            side=self.side,
            type=self.type,
            price=self.price,
            quantity=self.quantity,
            filled_quantity=self.filled_quantity,
            filled_notional=self.filled_notional,
            expired_quantity=self.expired_quantity,
            cancelled_quantity=self.cancelled_quantity,
            status=self.status,
            sequence=self.sequence,
            reason=self.reason,
            payload=self.payload,
            amends=self.amends,
        )


@attrs.frozen
class TradeParty:
    """One side of a trade: which order, whose, and which way it traded."""

    client_order_id: str
    order_id: str
    owner: str
    side: Side
    filled_quantity: Decimal
    """The order's cumulative filled quantity after this trade."""


@attrs.frozen
class Trade:
    """One execution between a resting maker order and an incoming taker order, at the maker's price."""

    trade_id: str
    symbol: str
    price: Decimal
    quantity: Decimal
    maker: TradeParty
    taker: TradeParty
    maker_filled: bool
    """True when this trade completed the maker order (it left the book)."""
    sequence: int

    def fill_event(self, party: TradeParty, *, complete: bool, timestamp: float | None = None) -> OrderEvent:
        """The ``partially_filled`` (or, with *complete*, ``filled``) event of *party* — this trade's ``maker`` or
        ``taker`` — carrying its :class:`~mmframe.Fill`. The paper sink and the reference engine both
        report trades with it."""
        now = time.time() if timestamp is None else timestamp
        liquidity = Liquidity.MAKER if party is self.maker else Liquidity.TAKER
        return OrderEvent(
            kind=OrderEventKind.FILLED if complete else OrderEventKind.PARTIALLY_FILLED,
            client_order_id=party.client_order_id,
            symbol=self.symbol,
            filled_quantity=party.filled_quantity,
            order_id=party.order_id,
            fill=Fill(self.trade_id, party.client_order_id, self.symbol, party.side, price=self.price,
                      quantity=self.quantity, liquidity=liquidity, timestamp=now),
            timestamp=now,
        )


@attrs.frozen
class SubmitResult:
    """Everything that happened to one submitted order.

    ``order`` is the order's state after the submit: for ``duplicate`` the existing order's current state, for a
    ``rejected`` order its (rejected) state. ``resting_quantity`` is what now rests on the book (0 if none);
    ``expired_quantity`` is what an IOC or market order could not fill, or what self-trade prevention expired.
    """

    status: SubmitStatus
    order: OrderState
    reason: str = ""
    trades: tuple[Trade, ...] = ()
    resting_quantity: Decimal = _ZERO
    expired_quantity: Decimal = _ZERO

    @property
    def accepted(self) -> bool:
        return self.status is SubmitStatus.ACCEPTED

    @property
    def duplicate(self) -> bool:
        return self.status is SubmitStatus.DUPLICATE

    @property
    def rejected(self) -> bool:
        return self.status is SubmitStatus.REJECTED

    @property
    def filled_quantity(self) -> Decimal:
        return sum((t.quantity for t in self.trades), _ZERO)


@attrs.frozen
class AmendResult:
    """What :meth:`OrderBook.amend` did: ``accepted`` (and then whether the order ``kept_priority``: its place in
    its level's queue), or refused with a ``reason``; ``order`` is the order's state afterwards (``None`` for an
    order that is not open)."""

    accepted: bool
    order: OrderState | None
    reason: str = ""
    kept_priority: bool = False


@attrs.define(slots=True, eq=False)
class _Level:
    price: Decimal
    orders: deque[RestingOrder] = attrs.field(factory=deque)
    total: Decimal = _ZERO  # open quantity of the live orders
    live: int = 0  # live orders in ``orders``; the rest are cancelled entries not yet dropped

    def front(self) -> RestingOrder:
        """The first live order (drops dead entries in front of it). Only call with ``live > 0``."""
        orders = self.orders
        while not orders[0].is_open:
            orders.popleft()
        return orders[0]

    def compact(self) -> None:
        if len(self.orders) > 2 * self.live + 16:
            self.orders = deque(o for o in self.orders if o.is_open)


class _Side:
    """One side of the book: levels by price and the sorted list of their prices."""

    __slots__ = ("levels", "prices", "side")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.levels: dict[Decimal, _Level] = {}
        self.prices: list[Decimal] = []  # ascending; bids' best is last, asks' best is first

    def best_price(self) -> Decimal | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.side is Side.BUY else self.prices[0]

    def best_first(self) -> Iterator[_Level]:
        prices = reversed(self.prices) if self.side is Side.BUY else iter(self.prices)
        return (self.levels[p] for p in prices)

    def add(self, order: RestingOrder) -> None:
        price = order.price
        assert price is not None
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = _Level(price)
            bisect.insort(self.prices, price)
        level.orders.append(order)
        level.total += order.remaining_quantity
        level.live += 1

    def remove_level(self, level: _Level) -> None:
        del self.levels[level.price]
        index = bisect.bisect_left(self.prices, level.price)
        del self.prices[index]


class OrderBook:
    """The matching book of one symbol. See the module documentation for the rules.

    :param symbol: the symbol this book trades (carried into trades).
    :param remember_finished: how many finished orders' states are kept for duplicate detection and :meth:`get`.
    """

    def __init__(self, symbol: str, *, remember_finished: int = 100_000) -> None:
        if remember_finished < 0:
            raise ValueError(f"remember_finished must not be negative, got {remember_finished}")
        self.symbol = symbol
        self.remember_finished = remember_finished
        self._sides = {Side.BUY: _Side(Side.BUY), Side.SELL: _Side(Side.SELL)}
        self._live: dict[str, RestingOrder] = {}
        # Finished orders as flat tuples of strings, numbers and decimals: the collector stops walking them after
        # their first collection (a hundred thousand OrderState objects would be walked on every full one).
        self._finished: OrderedDict[str, _Frozen] = OrderedDict()
        self._sequence = 0
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)

    # ---------------------------------------------------------------------------------------------------------
    # Reading
    # ---------------------------------------------------------------------------------------------------------

    @property
    def sequence(self) -> int:
        """Increases with every change to the book (an accepted order, a cancel)."""
        return self._sequence

    @property
    def best_bid(self) -> Decimal | None:
        return self._sides[Side.BUY].best_price()

    @property
    def best_ask(self) -> Decimal | None:
        return self._sides[Side.SELL].best_price()

    def __len__(self) -> int:
        """The number of open orders."""
        return len(self._live)

    def __contains__(self, client_order_id: object) -> bool:
        """True if the book has seen *client_order_id* (open, or finished and still remembered)."""
        return client_order_id in self._live or client_order_id in self._finished

    def get(self, client_order_id: str) -> OrderState | None:
        """The state of an open or remembered finished order, or ``None``. (A finished order's ``payload`` is not
        remembered: it is ``None``.)"""
        order = self._live.get(client_order_id)
        if order is not None:
            return order.snapshot()
        finished = self._finished.get(client_order_id)
        return None if finished is None else _thaw(finished)

    def owner(self, client_order_id: str) -> str | None:
        """The owner of an open order, or ``None`` if it is not open: what a cancel checks, without a snapshot."""
        order = self._live.get(client_order_id)
        return None if order is None else order.owner

    def open_orders(self, prefix: str = "", *, owner: str | None = None) -> list[OrderState]:
        """Open orders whose client id starts with *prefix* (and of *owner*, if given), in arrival order."""
        return [
            o.snapshot()
            for o in self._live.values()
            if o.client_order_id.startswith(prefix) and (owner is None or o.owner == owner)
        ]

    def depth(self, limit: int | None = 20) -> tuple[Levels, Levels]:
        """``(bids, asks)``: up to *limit* levels per side (all if ``None``) as ``(price, total quantity)``,
        best first."""
        return self._levels(Side.BUY, limit), self._levels(Side.SELL, limit)

    def _levels(self, side: Side, limit: int | None) -> Levels:
        levels = self._sides[side].best_first()
        if limit is not None:
            levels = itertools.islice(levels, max(limit, 0))
        return tuple((level.price, level.total) for level in levels)

    # ---------------------------------------------------------------------------------------------------------
    # Changing
    # ---------------------------------------------------------------------------------------------------------

    def submit(
        self,
        *,
        client_order_id: str,
        owner: str,
        side: Side,
        type: OrderType,
        price: Decimal | None,
        quantity: Decimal,
        payload: Any = None,
    ) -> SubmitResult:
        """Match an incoming order against the book; rest, expire or reject what is left. Never raises for bad
        input: see the module documentation."""
        status, order, trades, resting, expired = self._enter(
            client_order_id, owner, side, type, price, quantity, payload
        )
        if isinstance(order, OrderState):
            return SubmitResult(status, order, reason="duplicate client order id")
        return SubmitResult(
            status, order.snapshot(), reason=order.reason, trades=tuple(trades), resting_quantity=resting,
            expired_quantity=expired,
        )

    def _enter(
        self,
        client_order_id: str,
        owner: str,
        side: Side,
        type: OrderType,
        price: Decimal | None,
        quantity: Decimal,
        payload: Any = None,
    ) -> tuple[SubmitStatus, RestingOrder | OrderState, list[Trade], Decimal, Decimal]:
        """:meth:`submit` without its snapshot: ``(status, order, trades, resting, expired)``, where *order* is the
        book's own record (not to be changed by the caller), or for a duplicate the existing order's state. The
        paper sink's path: one order placed costs no snapshot."""
        existing = self.get(client_order_id) if client_order_id else None
        if existing is not None:
            return SubmitStatus.DUPLICATE, existing, [], _ZERO, _ZERO

        order = RestingOrder(
            client_order_id=client_order_id,
            order_id=str(next(self._order_ids)),
            owner=owner,
            side=side,
            type=type,
            price=price,
            quantity=quantity,
            sequence=self._sequence,
            payload=payload,
        )
        reason = self._invalid(order)
        if reason is None and type is OrderType.POST_ONLY and self._crosses(order):
            reason = "post-only order would cross the book"
        if reason is not None:
            order.status = OrderStatus.REJECTED
            order.reason = reason
            if order.client_order_id:  # a rejected order's id is remembered too: a retry cannot turn into an order
                self._remember(order)
            return SubmitStatus.REJECTED, order, [], _ZERO, _ZERO

        self._sequence += 1
        order.sequence = self._sequence
        trades, stopped_by_stp = self._match(order)
        remaining = order.remaining_quantity
        resting = expired = _ZERO
        if remaining > 0 and not stopped_by_stp and type in (OrderType.LIMIT, OrderType.POST_ONLY):
            resting = remaining
            order.status = OrderStatus.PARTIALLY_FILLED if order.filled_quantity else OrderStatus.OPEN
            self._sides[side].add(order)
            self._live[client_order_id] = order
        elif remaining > 0:
            expired = remaining
            order.expired_quantity = remaining
            order.status = OrderStatus.EXPIRED
            if stopped_by_stp:
                order.reason = SELF_TRADE_PREVENTION
            elif type is OrderType.MARKET:
                order.reason = "market order: no more liquidity in the book"
            else:
                order.reason = "immediate-or-cancel: no more liquidity at the limit price"
            self._remember(order)
        else:
            order.status = OrderStatus.FILLED
            self._remember(order)
        return SubmitStatus.ACCEPTED, order, trades, resting, expired

    def cancel(self, client_order_id: str, *, reason: str = "cancelled") -> OrderState | None:
        """Take an open order off the book; its state after the cancel, or ``None`` if it is not open."""
        order = self._withdraw(client_order_id, reason)
        return None if order is None else order.snapshot()

    def amend(
        self,
        client_order_id: str,
        *,
        price: Decimal | None = None,
        quantity: Decimal | None = None,
        owner: str | None = None,
    ) -> AmendResult:
        """Change an open order's price and/or quantity in place (``None``: unchanged).

        - A smaller quantity at the same price keeps the order's place in its queue; anything else (a new price, a
          larger quantity) moves it to the back of its (new) price level.
        - The new quantity must exceed what the order has filled already; refused otherwise, and for an order that
          is not open (filled, cancelled, unknown) or is not *owner*'s.
        - An amend never takes liquidity: a new price that would trade is refused, as self-trade prevention when
          one of the owner's own orders is within reach, else as crossing the book.
        """
        accepted, order, reason, kept = self._amend(client_order_id, price, quantity, owner)
        return AmendResult(accepted, None if order is None else order.snapshot(), reason, kept)

    def _amend(
        self, client_order_id: str, price: Decimal | None, quantity: Decimal | None, owner: str | None
    ) -> tuple[bool, RestingOrder | None, str, bool]:
        """:meth:`amend` without the snapshot: ``(accepted, the book's record of the order, reason,
        kept_priority)``."""
        order = self._live.get(client_order_id)
        if order is None:
            return (False, None, "the order is not open (filled, cancelled or unknown)", False)
        if owner is not None and order.owner != owner:
            return (False, None, "the order is not open (filled, cancelled or unknown)", False)
        new_price = order.price if price is None else price
        new_quantity = order.quantity if quantity is None else quantity
        for name, value in (("price", new_price), ("quantity", new_quantity)):
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                return (False, order, f"{name} must be a positive finite decimal, got {value!r}", False)
        if new_quantity <= order.filled_quantity:
            return (False, order, f"already filled {order.filled_quantity}: the new quantity {new_quantity} must "
                                  "exceed it", False)
        assert order.price is not None and new_price is not None
        book_side = self._sides[order.side]
        level = book_side.levels[order.price]
        if new_price == order.price and new_quantity <= order.quantity:
            if new_quantity != order.quantity:
                level.total -= order.quantity - new_quantity
                order.quantity = new_quantity
                order.amends += 1
                self._sequence += 1
            return (True, order, "", True)
        probe = attrs.evolve(order, price=new_price)
        if self._crosses(probe):
            reason = "the new price would cross the book (an amend never takes liquidity)"
            for opposite in self._sides[order.side.opposite].best_first():
                if not self._reaches(probe, opposite.price):
                    break
                if any(o.is_open and o.owner == order.owner for o in opposite.orders):
                    reason = f"{SELF_TRADE_PREVENTION}: the new price would trade with the owner's own order"
                    break
            return (False, order, reason, False)
        level.orders.remove(order)
        level.total -= order.remaining_quantity
        level.live -= 1
        if level.live == 0:
            book_side.remove_level(level)
        order.price, order.quantity = new_price, new_quantity
        order.amends += 1
        self._sequence += 1
        order.sequence = self._sequence
        book_side.add(order)
        return (True, order, "", False)

    def _withdraw(self, client_order_id: str, reason: str = "cancelled") -> RestingOrder | None:
        """:meth:`cancel` without its snapshot: the book's (now finished) record of the order, or ``None``."""
        order = self._live.pop(client_order_id, None)
        if order is None:
            return None
        book_side = self._sides[order.side]
        assert order.price is not None
        level = book_side.levels[order.price]
        remaining = order.remaining_quantity
        level.total -= remaining
        level.live -= 1
        order.cancelled_quantity += remaining
        order.status = OrderStatus.CANCELLED
        order.reason = reason
        if level.live == 0:
            book_side.remove_level(level)
        else:
            level.compact()
        self._sequence += 1
        self._remember(order)
        return order

    def cancel_all(self, *, owner: str | None = None, prefix: str = "", reason: str = "cancelled") -> list[OrderState]:
        """Cancel every open order whose client id starts with *prefix* (and of *owner*, if given)."""
        return [order.snapshot() for order in self._withdraw_all(owner, prefix, reason)]

    def _withdraw_all(self, owner: str | None, prefix: str, reason: str = "cancelled") -> list[RestingOrder]:
        """:meth:`cancel_all` without snapshots: the book's (now finished) records."""
        doomed = [
            coid
            for coid, o in self._live.items()
            if coid.startswith(prefix) and (owner is None or o.owner == owner)
        ]
        cancelled = []
        for coid in doomed:
            order = self._withdraw(coid, reason)
            if order is not None:
                cancelled.append(order)
        return cancelled

    # ---------------------------------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------------------------------

    @staticmethod
    def _invalid(order: RestingOrder) -> str | None:
        if not order.client_order_id:
            return "client order id must not be empty"
        if not isinstance(order.quantity, Decimal) or not order.quantity.is_finite():
            return f"quantity must be a finite decimal, got {order.quantity!r}"
        if order.quantity <= 0:
            return f"quantity must be positive, got {order.quantity}"
        if not isinstance(order.side, Side):
            return f"unknown side {order.side!r}"
        if not isinstance(order.type, OrderType):
            return f"unknown order type {order.type!r}"
        if order.type is OrderType.MARKET:
            if order.price is not None:
                return "a market order must not have a price"
            return None
        if order.price is None:
            return f"a {order.type} order needs a price"
        if not isinstance(order.price, Decimal) or not order.price.is_finite():
            return f"price must be a finite decimal, got {order.price!r}"
        if order.price <= 0:
            return f"price must be positive, got {order.price}"
        return None

    def _crosses(self, order: RestingOrder) -> bool:
        best = self._sides[order.side.opposite].best_price()
        return best is not None and self._reaches(order, best)

    @staticmethod
    def _reaches(order: RestingOrder, price: Decimal) -> bool:
        """Whether *order* may trade at *price*."""
        if order.price is None:
            return True
        return price <= order.price if order.side is Side.BUY else price >= order.price

    def _match(self, taker: RestingOrder) -> tuple[list[Trade], bool]:
        book_side = self._sides[taker.side.opposite]
        trades: list[Trade] = []
        while taker.remaining_quantity > 0:
            best = book_side.best_price()
            if best is None or not self._reaches(taker, best):
                break
            level = book_side.levels[best]
            maker = level.front()
            if maker.owner == taker.owner:
                return trades, True
            quantity = min(taker.remaining_quantity, maker.remaining_quantity)
            notional = quantity * best
            maker.filled_quantity += quantity
            maker.filled_notional += notional
            taker.filled_quantity += quantity
            taker.filled_notional += notional
            level.total -= quantity
            maker_done = maker.remaining_quantity == 0
            if maker_done:
                maker.status = OrderStatus.FILLED
                level.orders.popleft()
                level.live -= 1
                del self._live[maker.client_order_id]
                self._remember(maker)
                if level.live == 0:
                    book_side.remove_level(level)
            else:
                maker.status = OrderStatus.PARTIALLY_FILLED
            trades.append(
                Trade(
                    trade_id=str(next(self._trade_ids)),
                    symbol=self.symbol,
                    price=best,
                    quantity=quantity,
                    maker=TradeParty(
                        maker.client_order_id, maker.order_id, maker.owner, maker.side, maker.filled_quantity
                    ),
                    taker=TradeParty(
                        taker.client_order_id, taker.order_id, taker.owner, taker.side, taker.filled_quantity
                    ),
                    maker_filled=maker_done,
                    sequence=self._sequence,
                )
            )
        return trades, False

    def _remember(self, order: RestingOrder) -> None:
        if self.remember_finished > 0:
            self._finished[order.client_order_id] = (
                order.client_order_id, order.order_id, order.owner, order.side.value, order.type.value, order.price,
                order.quantity, order.filled_quantity, order.filled_notional, order.expired_quantity,
                order.cancelled_quantity, order.status.value, order.sequence, order.reason,
            )
            while len(self._finished) > self.remember_finished:
                self._finished.popitem(last=False)


#: A finished order as the book remembers it: :class:`OrderState`'s fields but ``payload``, enums as their values.
_Frozen = tuple[str, str, str, str, str, "Decimal | None", Decimal, Decimal, Decimal, Decimal, Decimal, str, int, str]


def _thaw(frozen: _Frozen) -> OrderState:
    (coid, order_id, owner, side, type_, price, quantity, filled, notional, expired, cancelled, status, sequence,
     reason) = frozen
    return OrderState(
        client_order_id=coid, order_id=order_id, owner=owner, side=Side(side), type=OrderType(type_), price=price,
        quantity=quantity, filled_quantity=filled, filled_notional=notional, expired_quantity=expired,
        cancelled_quantity=cancelled, status=OrderStatus(status), sequence=sequence, reason=reason,
    )
