"""The grid's geometry and its slots: one slot per grid price, each with its own small state machine.

A **slot** ``k`` stands for the grid price ``anchor + k * spacing``. It buys there while it holds nothing, and sells
what it holds one spacing higher. Its state has three parts (the seed-001 design's ``InventorySlot``):

- **position**: ``empty``, or ``filled`` with the quantity bought (kept as lots of quantity and price, so what a
  sell realizes is exact even when a buy filled below the slot's price);
- **order**: the state of the slot's latest order: ``none``, ``placed``, ``partially_filled``, ``filled``,
  ``cancelled`` (a rejected or expired order counts as cancelled: it is gone without a fill);
- **lock**: ``free`` (no live order: the slot may want one), ``pending`` (an order is sent and not confirmed yet,
  or its cancel is under way: nothing else may be wanted for the slot), ``locked`` (an order rests on the book).

::

    free ──(an order of the slot appears, sent)──▶ pending ──(accepted)──▶ locked
      ▲                                              │ ▲                      │
      │                                              │ └───(cancel sent)──────┤
      └──────────(filled / cancelled / rejected)─────┴────────────────────────┘

A slot never has two live orders: the strategy wants an order for a slot only while it is ``free``. Should two be
found on one slot anyway (left by an earlier run), the slot is ``pending`` and wants nothing until all of them are
gone (the engine cancels what is not wanted).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import attrs

from mmframe import Order, OrderStatus, Side

__all__ = ["Grid", "LockStatus", "Lot", "OrderState", "PositionStatus", "Sale", "Slot", "SlotState"]

_ZERO = Decimal(0)


class PositionStatus(enum.StrEnum):
    EMPTY = "empty"
    FILLED = "filled"


class OrderState(enum.StrEnum):
    NONE = "none"
    PLACED = "placed"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"


class LockStatus(enum.StrEnum):
    FREE = "free"
    PENDING = "pending"
    LOCKED = "locked"


class SlotState(enum.StrEnum):
    """One word for a slot, as counted in the strategy's status."""

    EMPTY = "empty"  # nothing held, no live order
    BUY_PLACED = "buy_placed"  # a buy rests
    HOLDING = "holding"  # something held, no live order (its sell is outside the sell window)
    SELL_PLACED = "sell_placed"  # a sell rests
    PENDING = "pending"  # an order sent and not confirmed, or being cancelled


@attrs.frozen
class Grid:
    """Where the slots are: slot ``k`` at ``anchor + k * spacing``, ``-levels ≤ k ≤ levels`` when bounded.

    :param anchor: the price of slot 0, on the market's tick grid.
    :param spacing: the distance between two slots, a positive multiple of the tick.
    :param levels: how many slots below and above the anchor the grid has (``None``: unbounded).
    :param price_step: the market's price precision (``0.01``): every slot price is written at it.
    """

    anchor: Decimal
    spacing: Decimal
    levels: int | None = None
    price_step: Decimal = Decimal("0.01")

    def price(self, k: int) -> Decimal:
        return (self.anchor + k * self.spacing).quantize(self.price_step)

    def _steps(self, price: Decimal) -> Decimal:
        return (price - self.anchor) / self.spacing

    def at(self, price: Decimal) -> int | None:
        """The slot whose price is exactly *price*, or ``None`` when *price* is not a grid price."""
        steps = self._steps(price)
        whole = steps.to_integral_value(rounding=ROUND_FLOOR)
        return int(whole) if whole == steps else None

    def at_or_above(self, price: Decimal) -> int:
        """The lowest slot whose price is ≥ *price*."""
        return int(self._steps(price).to_integral_value(rounding=ROUND_CEILING))

    def at_or_below(self, price: Decimal) -> int:
        """The highest slot whose price is ≤ *price*."""
        return int(self._steps(price).to_integral_value(rounding=ROUND_FLOOR))

    def below(self, price: Decimal) -> int:
        """The highest slot whose price is strictly below *price*."""
        return self.at_or_above(price) - 1

    def above(self, price: Decimal) -> int:
        """The lowest slot whose price is strictly above *price*."""
        return self.at_or_below(price) + 1

    def contains(self, k: int) -> bool:
        """Whether slot *k* is part of the grid: within ``levels`` of the anchor, at a positive price."""
        if self.levels is not None and not -self.levels <= k <= self.levels:
            return False
        return self.price(k) > 0

    def buy_slot(self, price: Decimal) -> int | None:
        """The slot a buy order at *price* belongs to (``None`` off the grid)."""
        return self.at(price)

    def sell_slot(self, price: Decimal) -> int | None:
        """The slot a sell order at *price* belongs to: the one a spacing below (``None`` off the grid)."""
        k = self.at(price)
        return None if k is None else k - 1


@attrs.define
class Lot:
    """A quantity a slot bought, at the price it was bought."""

    quantity: Decimal
    price: Decimal


@attrs.frozen
class Sale:
    """What one sell fill did to a slot: ``profit`` before fees (exact), the quantity the slot did not hold
    (``uncovered``, normally 0), and whether the slot is empty again after holding (a completed round trip)."""

    profit: Decimal
    uncovered: Decimal
    round_trip: bool


@attrs.define(eq=False)
class Slot:
    """One grid price: what it holds, its order, and its lock. See the module documentation."""

    index: int
    price: Decimal
    sell_price: Decimal
    lots: list[Lot] = attrs.field(factory=list)
    order_id: str | None = None
    order_side: Side | None = None
    order_state: OrderState = OrderState.NONE
    lock: LockStatus = LockStatus.FREE
    #: Client ids of further live orders found on this slot (an earlier run's duplicates): all are cancelled.
    conflict: tuple[str, ...] = ()
    round_trips: int = 0

    # ---- position -------------------------------------------------------------------------------------------

    @property
    def held(self) -> Decimal:
        return sum((lot.quantity for lot in self.lots), _ZERO)

    @property
    def position(self) -> PositionStatus:
        return PositionStatus.FILLED if self.held > 0 else PositionStatus.EMPTY

    @property
    def cost(self) -> Decimal:
        """What the held quantity cost (before fees)."""
        return sum((lot.quantity * lot.price for lot in self.lots), _ZERO)

    def bought(self, quantity: Decimal, price: Decimal) -> None:
        """A buy fill of this slot: it holds *quantity* more, bought at *price*."""
        if quantity <= 0:
            raise ValueError(f"slot {self.index}: a buy fill of {quantity}")
        self.lots.append(Lot(quantity, price))

    def sold(self, quantity: Decimal, price: Decimal) -> Sale:
        """A sell fill of this slot: the oldest lots go first; returns what it realized (see :class:`Sale`)."""
        if quantity <= 0:
            raise ValueError(f"slot {self.index}: a sell fill of {quantity}")
        held_before = self.held
        left, profit = quantity, _ZERO
        while left > 0 and self.lots:
            lot = self.lots[0]
            take = min(lot.quantity, left)
            profit += (price - lot.price) * take
            left -= take
            lot.quantity -= take
            if lot.quantity == 0:
                self.lots.pop(0)
        round_trip = held_before > 0 and not self.lots
        if round_trip:
            self.round_trips += 1
        return Sale(profit, left, round_trip)

    # ---- order and lock -------------------------------------------------------------------------------------

    def bind(self, orders: Sequence[Order]) -> None:
        """Set the slot's order and lock from its live orders now (pending, resting or being cancelled)."""
        if not orders:
            self.order_id, self.order_side, self.conflict = None, None, ()
            self.lock = LockStatus.FREE
            return
        first = orders[0]
        self.conflict = tuple(o.client_order_id for o in orders[1:])
        self._follow(first)
        if self.conflict:
            self.lock = LockStatus.PENDING

    def order_changed(self, order: Order) -> None:
        """An event changed one of this slot's orders: follow it (a finished order frees the slot)."""
        if self.order_id is not None and order.client_order_id != self.order_id:
            # Another order of this slot (a duplicate being cancelled): the slot stays as it is; the next
            # :meth:`bind` sees what is still live.
            self.conflict = tuple(c for c in self.conflict if c != order.client_order_id or order.status.is_live)
            return
        if order.status.is_terminal:
            self.order_state = OrderState.FILLED if order.status is OrderStatus.FILLED else OrderState.CANCELLED
            self.order_id, self.order_side = None, None
            self.lock = LockStatus.PENDING if self.conflict else LockStatus.FREE
            return
        self._follow(order)

    def _follow(self, order: Order) -> None:
        self.order_id, self.order_side = order.client_order_id, order.side
        self.order_state = OrderState.PARTIALLY_FILLED if order.filled_quantity > 0 else OrderState.PLACED
        unconfirmed = order.status in (OrderStatus.NEW, OrderStatus.PENDING) or order.cancel_requested
        self.lock = LockStatus.PENDING if unconfirmed else LockStatus.LOCKED

    # ---- summary --------------------------------------------------------------------------------------------

    @property
    def state(self) -> SlotState:
        if self.lock is LockStatus.PENDING:
            return SlotState.PENDING
        if self.lock is LockStatus.LOCKED:
            return SlotState.BUY_PLACED if self.order_side is Side.BUY else SlotState.SELL_PLACED
        return SlotState.HOLDING if self.held > 0 else SlotState.EMPTY

    @property
    def idle(self) -> bool:
        """Nothing held, no live order: the slot can be forgotten and made again when needed."""
        return self.lock is LockStatus.FREE and not self.lots
