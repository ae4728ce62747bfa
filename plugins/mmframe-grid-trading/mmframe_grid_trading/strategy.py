"""The ``grid_trading`` strategy: a slot per grid price, a buy window and a sell window that slide with the price.

The grid is arithmetic: slot ``k`` stands at ``anchor + k * spacing``. What the strategy wants on every evaluation
(the engine calls :meth:`GridTrading.desired_orders` after every tick, order event and refresh interval; the core's
reconciler and risk gate turn it into cancels and places):

1. **Sells.** A slot that holds something wants a sell of exactly what it holds one spacing above its price, when
   that sell price is at most ``sell_window_size`` grid prices above the index (the windows' slots are counted from
   the first grid price strictly above the index). A slot whose sell would be further away keeps its position and
   gets its sell when the price comes back near. A held slot whose sell price is at or below the index (the price
   ran past it while the slot could not sell) still wants its sell: it is the slot's profit.
2. **Buys.** An empty slot strictly below the index and within ``buy_window_size`` slots of it wants a buy of
   ``order_quantity`` at its price, when the slot is part of the grid (``grid_levels``) and its price is below every
   sell we want or have (the book is never crossed by our own orders).
3. **One order per slot, ever.** A slot wants a new order only while it has no live order at all, counting the
   orders whose cancel is under way (``ctx.live_orders(include_cancelling=True)``). A slot's live order that is
   still wanted is restated exactly (its price and *remaining* quantity), so the reconciler keeps it; one that is
   no longer wanted (a buy that left the window or partially filled, a sell whose quantity no longer matches) is
   simply not restated, and the reconciler cancels it. Only when the cancel is confirmed is the slot free again.

Fills move the position (:meth:`on_order_event`): a buy fill adds to its slot's holding; a sell fill takes from the
slot a spacing below and realizes ``(sell price - buy price) * quantity``; every fill's fee is taken off the
realized PnL when it happens. A slot whose holding returns to zero completes one round trip.

On start (:meth:`on_start`) the slots are rebuilt from the fills of earlier runs (``ctx.fill_history``) and the
orders still live (adopted with ``leftovers: adopt``), so a restart neither duplicates an order nor forgets a held
position.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar

from mmframe import (
    ConfigError,
    Fill,
    Liquidity,
    Market,
    Order,
    OrderEvent,
    Quote,
    Side,
    Strategy,
    StrategyContext,
)

from .config import Config
from .slots import Grid, LockStatus, Slot, SlotState

__all__ = ["GridTrading"]

log = logging.getLogger("mmframe.strategy.grid_trading")

_ZERO = Decimal(0)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


class GridTrading(Strategy):
    """Grid trading with a slot per grid price; see the module documentation."""

    name: ClassVar[str] = "grid_trading"
    Config: ClassVar[type[Config]] = Config

    def __init__(self, config: Config, market: Market) -> None:
        super().__init__(config, market)
        self.config: Config = config
        key = config.quantity_key
        try:
            self.quantity = self._checked_quantity(config, market)
            #: The absolute spacing: ``price_interval``, or ``grid_spacing_percent`` of the anchor once it is known.
            self.spacing: Decimal | None = None
            if config.price_interval is not None:
                key = "price_interval"
                self.spacing = self._checked_step(config.price_interval, "price_interval", market)
            self.grid: Grid | None = None
            #: Where the anchor came from: ``config``, ``first_price`` or ``history`` (an earlier run's grid price).
            self.anchor_source = ""
            if config.anchor_price is not None:
                key = "anchor_price"
                anchor = config.anchor_price
                if not market.is_on_grid(anchor):
                    raise ConfigError(
                        f"anchor_price {anchor} is not on the market's tick grid (tick {market.tick_size}, "
                        f"{market.price_precision} decimal places)"
                    )
                self._set_grid(anchor.quantize(market.price_step), "config")
        except ArithmeticError as exc:  # a value the market's precision cannot hold within exact decimal arithmetic
            raise ConfigError(
                f"{key} {getattr(config, key)} cannot be written at the market's precision (tick {market.tick_size}, "
                f"{market.price_precision} price and {market.quantity_precision} quantity decimals): "
                f"{type(exc).__name__}"
            ) from None
        self.slots: dict[int, Slot] = {}
        self._order_slot: dict[str, int] = {}  # client order id → slot, for orders seen live
        self._live: dict[int, list[Order]] = {}  # slot → its live orders (as of the last evaluation)
        self._sell_floor: Decimal | None = None  # the lowest price of a live sell of ours
        self._window: tuple[int, int, int, int] | None = None  # buy low, buy high, sell low, sell high (slots)
        # The ledger, exact.
        self.realized_pnl = _ZERO
        self.fees = _ZERO
        self.round_trips = 0
        self.bought = _ZERO
        self.sold = _ZERO
        self.uncovered = _ZERO  # sold while the slot held less: never expected, reported if it happens
        self.unrecorded = _ZERO  # fills of adopted orders the fill history did not have
        self.off_grid_orders = 0
        self.recovered_fills = 0
        self.recovered_orders = 0
        self._duplicates: set[str] = set()

    # ---- configuration checks that need the market ----------------------------------------------------------

    @staticmethod
    def _checked_quantity(config: Config, market: Market) -> Decimal:
        key, quantity = config.quantity_key, config.quantity
        rounded = market.round_quantity(quantity)
        if rounded != quantity:
            raise ConfigError(
                f"{key} {quantity} has more decimal places than the market's quantity precision "
                f"({market.quantity_precision})"
            )
        if rounded < market.min_quantity:
            raise ConfigError(f"{key} {quantity} is below the market's minimum quantity {market.min_quantity}")
        return rounded

    @staticmethod
    def _checked_step(step: Decimal, key: str, market: Market) -> Decimal:
        ticks = step / market.tick_size
        if ticks != ticks.to_integral_value() or ticks < 1:
            raise ConfigError(f"{key} {step} must be a positive multiple of the market's tick size {market.tick_size}")
        return step.quantize(market.price_step)

    def _set_grid(self, anchor: Decimal, source: str) -> Grid:
        spacing = self.spacing
        if spacing is None:
            percent = self.config.grid_spacing_percent
            assert percent is not None
            tick = self.market.tick_size
            ticks = (anchor * percent / tick).to_integral_value(rounding=ROUND_HALF_UP)
            if ticks < 1:
                raise ConfigError(
                    f"grid_spacing_percent {percent} of the anchor {anchor} is {anchor * percent}, "
                    f"less than one tick ({tick})"
                )
            spacing = self.spacing = (ticks * tick).quantize(self.market.price_step)
        self.grid = Grid(anchor, spacing, self.config.grid_levels, self.market.price_step)
        self.anchor_source = source
        log.info("[%s] grid anchored at %s (%s), spacing %s", self.market.symbol, anchor, source, spacing)
        return self.grid

    # ---- slots -------------------------------------------------------------------------------------------------

    def _slot(self, k: int) -> Slot:
        slot = self.slots.get(k)
        if slot is None:
            assert self.grid is not None
            slot = self.slots[k] = Slot(k, self.grid.price(k), self.grid.price(k + 1))
        return slot

    def _slot_of(self, order: Order) -> int | None:
        """The slot an order belongs to: by its client id once seen, else by its side and price (``None``: an
        order at no grid price, which the strategy never wants)."""
        k = self._order_slot.get(order.client_order_id)
        if k is None and self.grid is not None and order.price is not None:
            k = self.grid.buy_slot(order.price) if order.side is Side.BUY else self.grid.sell_slot(order.price)
            if k is not None:
                self._order_slot[order.client_order_id] = k
        return k

    def _bind(self, live: Sequence[Order]) -> None:
        """Attach every live order (pending, resting, being cancelled) to its slot and set each slot's lock."""
        by_slot: dict[int, list[Order]] = {}
        off_grid = 0
        sell_floor: Decimal | None = None
        for order in live:
            if order.side is Side.SELL and order.price is not None:
                sell_floor = order.price if sell_floor is None else min(sell_floor, order.price)
            k = self._slot_of(order)
            if k is None:
                off_grid += 1
                continue
            by_slot.setdefault(k, []).append(order)
        for k in set(self.slots) | set(by_slot):
            orders = by_slot.get(k, [])
            if len(orders) > 1:
                self._duplicates.update(o.client_order_id for o in orders[1:])
            self._slot(k).bind(orders)
        if off_grid and off_grid != self.off_grid_orders:
            log.warning("[%s] %d live orders at no grid price: not wanted, cancelled", self.market.symbol, off_grid)
        self.off_grid_orders = off_grid
        self._live = by_slot
        self._sell_floor = sell_floor

    # ---- the desired book ------------------------------------------------------------------------------------

    def desired_orders(self, ctx: StrategyContext) -> list[Quote]:
        index = ctx.index_price
        if index is None:
            return []
        grid = self.grid if self.grid is not None else self._set_grid(ctx.market.floor_price(index), "first_price")
        self._bind(ctx.live_orders(include_cancelling=True))
        return self._quotes(grid, index)

    def _quotes(self, grid: Grid, index: Decimal) -> list[Quote]:
        config = self.config
        buy_high = grid.below(index)
        buy_low = buy_high - config.buy_window + 1
        sell_low = grid.above(index)
        sell_high = sell_low + config.sell_window - 1
        self._window = (buy_low, buy_high, sell_low, sell_high)
        for k in range(buy_low, buy_high + 1):
            if grid.contains(k):
                self._slot(k)

        wanted: dict[int, Quote] = {}
        floor = self._sell_floor
        for slot in self.slots.values():
            held = slot.held
            if held <= 0 or slot.index + 1 > sell_high:
                continue  # nothing to sell, or its sell is beyond the sell window: it waits for the price
            quote = Quote(Side.SELL, slot.sell_price, held, tag=f"slot{slot.index}")
            if self._keeps(slot, quote):
                wanted[slot.index] = quote
                floor = quote.price if floor is None else min(floor, quote.price)
        for k in range(buy_high, buy_low - 1, -1):
            slot = self.slots.get(k)
            if slot is None or slot.held > 0 or not grid.contains(k):
                continue
            if floor is not None and slot.price >= floor:
                continue  # one of our sells is at or below it: a buy there would cross our own book
            quote = Quote(Side.BUY, slot.price, self.quantity, tag=f"slot{k}")
            if self._keeps(slot, quote):
                wanted[k] = quote
        for k in self._live:
            if k not in wanted:
                self.slots[k].lock = LockStatus.PENDING  # not restated: the engine cancels it now
        for k in [k for k, slot in self.slots.items() if slot.idle and not buy_low <= k <= buy_high]:
            del self.slots[k]
        return list(wanted.values())

    def _keeps(self, slot: Slot, quote: Quote) -> bool:
        """Whether *slot* may have *quote* now: it is free, or its one live order is exactly *quote* (kept)."""
        live = self._live.get(slot.index, ())
        if not live:
            return True
        if len(live) > 1:
            return False  # duplicates from an earlier run: none is wanted until all are gone
        order = live[0]
        return (
            not order.cancel_requested
            and order.side is quote.side
            and order.price == quote.price
            and order.remaining_quantity == quote.quantity
        )

    # ---- fills and order events ------------------------------------------------------------------------------

    def on_order_event(self, event: OrderEvent, order: Order, ctx: StrategyContext) -> None:
        k = self._slot_of(order)
        if event.fill is not None:
            self._account(event.fill, k)
        if k is not None:
            self._slot(k).order_changed(order)
        if order.status.is_terminal:
            self._order_slot.pop(order.client_order_id, None)

    def _account(self, fill: Fill, k: int | None = None) -> None:
        """Book one fill on its slot: *k*, else the slot its price belongs to (a buy fills at or below its slot's
        price, a sell at or above its slot's sell price)."""
        grid = self.grid
        if grid is None:  # cannot happen: there is a grid before there is an order
            raise RuntimeError(f"a fill before the grid was anchored: {fill}")
        if k is None:
            k = grid.at_or_above(fill.price) if fill.side is Side.BUY else grid.at_or_below(fill.price) - 1
        slot = self._slot(k)
        self.fees += fill.fee
        self.realized_pnl -= fill.fee
        if fill.side is Side.BUY:
            slot.bought(fill.quantity, fill.price)
            self.bought += fill.quantity
            return
        sale = slot.sold(fill.quantity, fill.price)
        self.sold += fill.quantity
        self.realized_pnl += sale.profit
        if sale.round_trip:
            self.round_trips += 1
        if sale.uncovered:
            self.uncovered += sale.uncovered
            log.error(
                "[%s] sell fill %s of %s at %s: slot %s held %s less than that; counted as uncovered",
                self.market.symbol, fill.trade_id, fill.quantity, fill.price, k, sale.uncovered,
            )

    # ---- recovery ----------------------------------------------------------------------------------------------

    def on_start(self, ctx: StrategyContext) -> None:
        history = list(ctx.fill_history)
        live = list(ctx.live_orders(include_cancelling=True))
        if self.grid is None:
            anchor = _recovered_anchor(history, live)
            if anchor is None:
                return  # nothing from before: the first index price anchors the grid
            self._set_grid(anchor, "history")
        recorded: dict[str, Decimal] = {}
        for fill in history:
            self._account(fill)
            recorded[fill.client_order_id] = recorded.get(fill.client_order_id, _ZERO) + fill.quantity
        self.recovered_fills = len(history)
        for order in live:
            k = self._slot_of(order)
            missing = order.filled_quantity - recorded.get(order.client_order_id, _ZERO)
            if missing > 0 and order.price is not None:
                # The book says this order filled more than the recorded fills show (recorded elsewhere, or lost):
                # the slot holds (or sold) that too.
                log.warning("[%s] order %s filled %s more than its recorded fills; counted at its price %s",
                            self.market.symbol, order.client_order_id, missing, order.price)
                self._account(
                    Fill("unrecorded", order.client_order_id, order.request.symbol, order.side, order.price, missing), k
                )
                self.unrecorded += missing
        self.recovered_orders = len(live)
        self._bind(live)
        log.info(
            "[%s] rebuilt %d slots from %d earlier fills and %d live orders: %s held, %d round trips",
            self.market.symbol, sum(1 for s in self.slots.values() if s.held > 0), len(history), len(live),
            self.held_quantity, self.round_trips,
        )

    # ---- figures ------------------------------------------------------------------------------------------------

    @property
    def held_quantity(self) -> Decimal:
        """What the grid holds: its filled buys less its filled sells."""
        return sum((slot.held for slot in self.slots.values()), _ZERO) - self.uncovered

    def slot_counts(self) -> dict[str, int]:
        counts = Counter(slot.state for slot in self.slots.values())
        return {state.value: counts.get(state, 0) for state in SlotState}

    def status(self) -> Mapping[str, Any]:
        grid = self.grid
        window: dict[str, str | None] = dict.fromkeys(
            ("buy_window_low", "buy_window_high", "sell_window_low", "sell_window_high")
        )
        if grid is not None and self._window is not None:
            buy_low, buy_high, sell_low, sell_high = self._window
            window = {
                "buy_window_low": _text(grid.price(buy_low)),
                "buy_window_high": _text(grid.price(buy_high)),
                "sell_window_low": _text(grid.price(sell_low)),
                "sell_window_high": _text(grid.price(sell_high)),
            }
        exact = {
            "held_quantity": self.held_quantity,
            "realized_pnl": self.realized_pnl,
            "fees": self.fees,
            "bought_quantity": self.bought,
            "sold_quantity": self.sold,
        }
        return {
            "anchor": _text(grid.anchor) if grid is not None else None,
            "anchor_source": self.anchor_source or None,
            "spacing": _text(grid.spacing) if grid is not None else None,
            "grid_levels": self.config.grid_levels,
            "order_quantity": _text(self.quantity),
            "buy_window_size": self.config.buy_window,
            "sell_window_size": self.config.sell_window,
            **window,
            "slots": {**self.slot_counts(), "total": len(self.slots)},
            # numbers (Prometheus exports them); their exact decimals are under "exact"
            **{key: float(value) for key, value in exact.items()},
            "round_trips": self.round_trips,
            "uncovered_quantity": float(self.uncovered),
            "unrecorded_fill_quantity": float(self.unrecorded),
            "duplicate_orders": len(self._duplicates),
            "off_grid_orders": self.off_grid_orders,
            "recovered_fills": self.recovered_fills,
            "recovered_orders": self.recovered_orders,
            "exact": {key: _text(value) for key, value in exact.items()},
        }

    def held_slots(self) -> dict[Decimal, Decimal]:
        """``{slot price: quantity held}`` of every slot that holds something."""
        slots = sorted(self.slots.values(), key=lambda slot: slot.index)
        return {slot.price: slot.held for slot in slots if slot.held > 0}


def _recovered_anchor(history: Iterable[Fill], live: Iterable[Order]) -> Decimal | None:
    """A price of the earlier run's grid, the surest first: a live order's limit price; else the earliest maker fill
    (a maker fills at its order's price: a buy at its slot's price, a sell at its slot's sell price), buys first;
    else the earliest fill at all (a taker buy may have filled below its slot's price)."""
    for order in live:
        if order.price is not None:
            return order.price
    fills = list(history)
    for maker_only in (True, False):
        for side in (Side.BUY, Side.SELL):
            for fill in fills:
                if fill.side is side and (fill.liquidity is Liquidity.MAKER or not maker_only):
                    return fill.price
    return None
