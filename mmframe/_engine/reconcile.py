"""The reconciler: from the book a strategy wants and the orders we have, the fewest cancels and places.

A live order is *kept* when a desired quote on its side has a price within ``price_ticks`` ticks of it and a
quantity within ``quantity_fraction`` of its remaining quantity: it keeps its queue priority and costs no
message. Exact matches are paired first, then the closest in price. Every desired quote left over is placed;
every live order left over is cancelled. An unchanged target therefore yields no action at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import attrs

from .._models import Market, Order, OrderType, Quote, Side
from .._validators import not_negative

__all__ = ["Plan", "Reconciler", "Tolerance"]

RESTING_TYPES = frozenset({OrderType.LIMIT, OrderType.POST_ONLY})
_ZERO = Decimal(0)


@attrs.frozen
class Tolerance:
    """How far a live order may be from a desired quote and still be kept.

    :param price_ticks: the largest price difference, in ticks (0: the price must match exactly).
    :param price_fraction: the largest price difference as a fraction of the desired price; the larger of the
        two allowances applies.
    :param quantity_fraction: the largest difference between the live order's remaining quantity and the desired
        quantity, as a fraction of the desired quantity (0: exactly).
    """

    price_ticks: int = attrs.field(default=0, validator=not_negative)
    price_fraction: Decimal = attrs.field(default=Decimal(0), converter=Decimal, validator=not_negative)
    quantity_fraction: Decimal = attrs.field(default=Decimal(0), converter=Decimal, validator=not_negative)


@attrs.frozen
class Plan:
    """What to send: ``cancels`` (live orders to cancel) and ``places`` (quotes to place); ``kept`` pairs each
    kept live order with the quote it stands for."""

    cancels: tuple[Order, ...] = ()
    places: tuple[Quote, ...] = ()
    kept: tuple[tuple[Order, Quote], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.cancels or self.places)


@attrs.define
class Reconciler:
    market: Market
    tolerance: Tolerance = Tolerance()

    def plan(self, desired: Iterable[Quote], live: Sequence[Order]) -> Plan:
        """Diff *desired* against *live* (our resting or pending orders, none of them being cancelled)."""
        wanted: dict[Side, list[Quote]] = {Side.BUY: [], Side.SELL: []}
        for quote in desired:
            if quote.type not in RESTING_TYPES:
                raise ValueError(f"a desired quote must rest on the book (limit or post_only), got {quote.type}")
            wanted[quote.side].append(quote)
        have: dict[Side, list[Order]] = {Side.BUY: [], Side.SELL: []}
        for order in live:
            have[order.side].append(order)
        cancels: list[Order] = []
        places: list[Quote] = []
        kept: list[tuple[Order, Quote]] = []
        for side in (Side.BUY, Side.SELL):
            self._side(wanted[side], have[side], cancels, places, kept)
        return Plan(tuple(cancels), tuple(places), tuple(kept))

    def within(self, order: Order, quote: Quote) -> bool:
        """True when *order* may stand for *quote*."""
        if order.side is not quote.side or order.price is None:
            return False
        tol = self.tolerance
        distance = abs(order.price - quote.price)
        if distance and distance > max(tol.price_ticks * self.market.tick_size, tol.price_fraction * quote.price):
            return False
        fraction = max(tol.quantity_fraction, quote.size_variation)
        return abs(order.remaining_quantity - quote.quantity) <= quote.quantity * fraction

    def _side(
        self,
        wanted: list[Quote],
        have: list[Order],
        cancels: list[Order],
        places: list[Quote],
        kept: list[tuple[Order, Quote]],
    ) -> None:
        if not wanted:
            cancels.extend(have)
            return
        # Pass 1: exact matches (the common case when nothing moved), by (price, remaining quantity).
        exact: dict[tuple[Decimal | None, Decimal], list[Order]] = {}
        for order in have:
            exact.setdefault((order.price, order.remaining_quantity), []).append(order)
        unmatched: list[Quote] = []
        for quote in wanted:
            bucket = exact.get((quote.price, quote.quantity))
            if bucket:
                kept.append((bucket.pop(0), quote))
            else:
                unmatched.append(quote)
        spare = [order for bucket in exact.values() for order in bucket]
        # Pass 2: within tolerance, closest price first (the first of equally close ones).
        if spare and unmatched:
            # With no price allowance (the default tolerance) only an order at the quote's very price can be within
            # it: look those up by price instead of trying every spare order against every quote (in spare order,
            # so the same order wins). Orders taken are skipped by identity (an Order compares by value, slowly).
            by_price: dict[Decimal | None, list[Order]] | None = None
            if self.tolerance.price_ticks == 0 and self.tolerance.price_fraction == 0:
                by_price = {}
                for order in spare:
                    by_price.setdefault(order.price, []).append(order)
            taken: set[int] = set()
            still: list[Quote] = []
            within = self.within
            for quote in unmatched:
                best: Order | None = None
                best_distance = _ZERO
                price = quote.price
                for order in spare if by_price is None else by_price.get(price, ()):
                    if id(order) in taken or not within(order, quote):
                        continue
                    distance = abs(order.price - price)  # type: ignore[operator]
                    if best is None or distance < best_distance:
                        best, best_distance = order, distance
                if best is None:
                    still.append(quote)
                else:
                    taken.add(id(best))
                    kept.append((best, quote))
            unmatched = still
            if taken:
                spare = [order for order in spare if id(order) not in taken]
        cancels.extend(spare)
        places.extend(unmatched)
