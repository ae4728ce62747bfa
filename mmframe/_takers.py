"""Simulated other participants: taker orders against a :class:`~mmframe.book.OrderBook`, for demos and tests.

Both the ``paper`` sink and the reference match engine use :class:`TakerFlow`, so a demo shows real fills on
either. Nothing here ever trades for mmframe itself: the simulated orders belong to their own owner/account.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from decimal import ROUND_FLOOR, Decimal

import attrs
import trio

from ._book import OrderBook
from ._models import OrderType, Side, to_decimal

__all__ = ["TakerFlow", "TakerOrder"]

_MAX_DECIMALS = 8  # simulated taker quantities never have more decimal places than this
_FRACTION_STEPS = 10_000  # the resolution of a simulated taker's random size fraction


@attrs.frozen
class TakerOrder:
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None  # the best price for an IOC, None for a market order


class TakerFlow:
    """Poisson arrivals of taker orders, each a market order or an IOC at the best price, of a random side that has
    resting orders, for a random part (up to ``size_fraction``) of the best level. Seeded: reproducible."""

    def __init__(self, rate: float, size_fraction: float = 0.3, seed: int | None = None) -> None:
        if not 0 < size_fraction <= 1:
            raise ValueError(f"size_fraction must be in (0, 1], got {size_fraction!r}")
        self.rate = rate
        self.size_fraction = to_decimal(size_fraction)
        self.rng = random.Random(seed)

    def order_for(self, book: OrderBook) -> TakerOrder | None:
        """The next simulated taker order against *book*, or ``None`` if it has no resting order."""
        bids, asks = book.depth(1)
        sides = [side for side, levels in ((Side.SELL, bids), (Side.BUY, asks)) if levels]
        if not sides:
            return None
        side = self.rng.choice(sides)
        best_price, level_quantity = (bids if side is Side.SELL else asks)[0]
        order_type = self.rng.choice((OrderType.MARKET, OrderType.IOC))
        return TakerOrder(side, order_type, self.quantity(level_quantity),
                          best_price if order_type is OrderType.IOC else None)

    def quantity(self, level_quantity: Decimal) -> Decimal:
        """A random part of *level_quantity*, rounded down to its precision (at most 8 decimals), never zero."""
        exponent = level_quantity.as_tuple().exponent
        assert isinstance(exponent, int)
        step = Decimal(1).scaleb(min(max(exponent, -_MAX_DECIMALS), 0))
        fraction = self.size_fraction * self.rng.randint(1, _FRACTION_STEPS) / _FRACTION_STEPS
        quantity = (level_quantity * fraction).quantize(step, rounding=ROUND_FLOOR)
        return min(max(quantity, step), level_quantity)

    async def run(self, books: Callable[[], Iterable[OrderBook]], take: Callable[[str], object]) -> None:
        """Until cancelled: each book with resting orders gets a Poisson flow at ``rate``; together one flow at
        ``rate * n`` whose arrivals pick a book uniformly. ``take(symbol)`` sends one order (``order_for``)."""
        while True:
            active = [book for book in books() if len(book)]
            await trio.sleep(self.rng.expovariate(self.rate * max(len(active), 1)))
            active = [book for book in books() if len(book)]
            if active:
                take(self.rng.choice(active).symbol)
