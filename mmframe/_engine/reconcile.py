"""The reconciler: from the book a strategy wants and the orders we have, the fewest cancels and places.

A live order is *kept* when a desired quote on its side has a price within ``price_ticks`` ticks of it and a
quantity within ``quantity_fraction`` of its remaining quantity: it keeps its queue priority and costs no
message. Exact matches are paired first, then the closest in price. With a sink that can amend, a live order left
over is then paired with the nearest desired quote left over on its side and *amended* to it: one message instead of
a cancel and a place (a smaller quantity at the same price even keeps its place in the queue). Every desired quote
left over is placed; every live order left over is cancelled. An unchanged target therefore yields no action at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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
    """What to send: ``cancels`` (live orders to cancel), ``amends`` (live orders to amend, each with the quote it
    becomes) and ``places`` (quotes to place); ``kept`` pairs each kept live order with the quote it stands for."""

    cancels: tuple[Order, ...] = ()
    places: tuple[Quote, ...] = ()
    kept: tuple[tuple[Order, Quote], ...] = ()
    amends: tuple[tuple[Order, Quote], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.cancels or self.places or self.amends)

    @property
    def messages(self) -> int:
        """What the plan costs on the wire: one message per cancel, amend and place."""
        return len(self.cancels) + len(self.places) + len(self.amends)


@attrs.define
class Reconciler:
    """:param amendable: whether a live order may be amended now (``None``: the sink cannot amend; every move is a
        cancel and a place)."""

    market: Market
    tolerance: Tolerance = Tolerance()
    amendable: Callable[[Order], bool] | None = None

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
        amends: list[tuple[Order, Quote]] = []
        for side in (Side.BUY, Side.SELL):
            self._side(wanted[side], have[side], cancels, places, kept, amends)
        return Plan(tuple(cancels), tuple(places), tuple(kept), tuple(amends))

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
        amends: list[tuple[Order, Quote]],
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
        if spare and unmatched and self.amendable is not None:
            spare, unmatched = self._pair_amends(spare, unmatched, amends)
        cancels.extend(spare)
        places.extend(unmatched)

    def _pair_amends(
        self, spare: list[Order], unmatched: list[Quote], amends: list[tuple[Order, Quote]]
    ) -> tuple[list[Order], list[Quote]]:
        """Pair leftover live orders with leftover quotes of their side, nearest in price first (ties: the order and
        the quote listed first), each pair one amend; an order that cannot be amended (not resting yet, an amend
        already under way, another type or tag than the quote) is left to cancel. Returns what is left over."""
        amendable = self.amendable
        assert amendable is not None
        candidates = [(i, o) for i, o in enumerate(spare) if o.price is not None and amendable(o)]
        if not candidates:
            return spare, unmatched
        pairs = []
        for i, order in candidates:
            request = order.request
            for j, quote in enumerate(unmatched):
                if quote.type is request.type and quote.tag == request.tag:
                    pairs.append((abs(quote.price - request.price), i, j))  # type: ignore[operator]
        if not pairs:
            return spare, unmatched
        pairs.sort()
        used_orders: set[int] = set()
        used_quotes: set[int] = set()
        for _, i, j in pairs:
            if i in used_orders or j in used_quotes:
                continue
            used_orders.add(i)
            used_quotes.add(j)
            amends.append((spare[i], unmatched[j]))
        return (
            [o for i, o in enumerate(spare) if i not in used_orders],
            [q for j, q in enumerate(unmatched) if j not in used_quotes],
        )
