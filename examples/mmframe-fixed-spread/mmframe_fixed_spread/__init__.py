"""``fixed_spread``: a symmetric fixed-spread ladder around the index price, skewed by inventory.

An example mmframe strategy plugin, packaged the way an outside author would package one (see ``README.md``).
It is the seed's "BasicMarketMaking": quote ``levels`` bids and asks around a mid derived from the index price,
``spread`` apart at the top and ``level_step`` further apart per level, and lean the mid against the inventory so
fills tend to bring the position back to flat.

The plugin is this module: the distribution's entry point ``fixed_spread`` in the group ``mmframe`` names it, and
mmframe calls its :func:`register_strategies` hook implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar

import attrs

from mmframe import Market, OrderType, Quote, Side, Strategy, StrategyContext, hookimpl
from mmframe.config import config_decimal, not_negative, optional_decimal, positive

__all__ = ["FixedSpreadStrategy", "register_strategies"]

__version__ = "0.1.0"


# ---------------------------------------------------------------------------------------------------------------
# Configuration validators: each message names the key, and mmframe's ConfigError reports it as is. The common
# ones (positive, not_negative, config_decimal, optional_decimal) come from mmframe.config: a decimal is refused
# unless the engine can compute with it exactly (below 1e15, at most 20 significant digits, 0 or at least 1e-15).
# These are this strategy's own.
# ---------------------------------------------------------------------------------------------------------------


def _fraction(*, zero_ok: bool) -> Callable[[object, attrs.Attribute[Any], Decimal], None]:
    """A validator for a fraction of the price: ``0 < value < 1`` (or ``0 <= value < 1`` with *zero_ok*)."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: Decimal) -> None:
        low_ok = value >= 0 if zero_ok else value > 0
        if not (low_ok and value < 1):
            low = "at least 0" if zero_ok else "above 0"
            raise ValueError(f"{attribute.name} must be {low} and below 1 (a fraction of the price), got {value}")

    return check


def _levels(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 50:
        raise ValueError(f"{attribute.name} must be a whole number from 1 to 50, got {value!r}")


# ---------------------------------------------------------------------------------------------------------------
# The strategy
# ---------------------------------------------------------------------------------------------------------------


class FixedSpreadStrategy(Strategy):
    """Quote a symmetric ladder around ``index * (1 - skew)``; see :class:`FixedSpreadStrategy.Config`.

    Level *i* (0 = best) sits ``d = spread/2 + i * level_step`` from the mid: the bid at ``mid * (1 - d)`` rounded
    down to the tick grid, the ask at ``mid * (1 + d)`` rounded up, each for ``quantity * (1 + i * quantity_growth)``
    rounded down to the market's precision. Levels that round to a price already quoted, or to a quantity below
    the market's minimum, are left out, and no bid is ever at or above an ask.
    """

    name: ClassVar[str] = "fixed_spread"

    @attrs.frozen
    class Config:
        """The ``fixed_spread`` strategy's options (fractions are of the index price).

        :param spread: the distance between the best bid and the best ask (``0 < spread < 1``).
        :param levels: orders per side, 1 to 50.
        :param level_step: the extra distance of each further level (``0 <= level_step < 1``).
        :param quantity: the best level's quantity, in the base asset (> 0).
        :param quantity_growth: how much larger each further level is, as a fraction of ``quantity`` (>= 0).
        :param skew_per_unit: how far the mid moves against one unit of base inventory held (>= 0):
            ``mid = index * (1 - skew_per_unit * inventory)``, so a long position lowers both sides.
        :param max_skew: the largest skew either way (``0 <= max_skew < 1``).
        :param max_inventory: if set, a side only quotes as much as can fill without taking the position beyond
            ``±max_inventory``: levels are dropped from the far end first (> 0).
        """

        spread: Decimal = attrs.field(
            default=Decimal("0.001"), converter=config_decimal("spread"), validator=_fraction(zero_ok=False)
        )
        levels: int = attrs.field(default=5, validator=_levels)
        level_step: Decimal = attrs.field(
            default=Decimal("0.0005"), converter=config_decimal("level_step"), validator=_fraction(zero_ok=True)
        )
        quantity: Decimal = attrs.field(
            default=Decimal("0.01"), converter=config_decimal("quantity"), validator=positive
        )
        quantity_growth: Decimal = attrs.field(
            default=Decimal(0), converter=config_decimal("quantity_growth"), validator=not_negative
        )
        skew_per_unit: Decimal = attrs.field(
            default=Decimal(0), converter=config_decimal("skew_per_unit"), validator=not_negative
        )
        max_skew: Decimal = attrs.field(
            default=Decimal("0.005"), converter=config_decimal("max_skew"), validator=_fraction(zero_ok=True)
        )
        max_inventory: Decimal | None = attrs.field(
            default=None, converter=optional_decimal("max_inventory"), validator=positive
        )

    def __init__(self, config: FixedSpreadStrategy.Config, market: Market) -> None:
        super().__init__(config, market)
        self.config: FixedSpreadStrategy.Config = config
        self._last_mid: Decimal | None = None
        self._last_skew = Decimal(0)
        self._quoted = (0, 0)

    def desired_orders(self, ctx: StrategyContext) -> list[Quote]:
        """The ladder for the current index price and position; ``[]`` (pull every quote) without a price."""
        index = ctx.index_price
        if index is None:
            self._last_mid = None
            self._quoted = (0, 0)
            return []
        inventory = ctx.position.base
        skew = self.skew(inventory)
        mid = index * (1 - skew)
        bids = self._side(ctx.market, Side.BUY, mid, inventory)
        asks = self._side(ctx.market, Side.SELL, mid, inventory)
        if bids and asks:  # cannot happen with spread > 0 and outward rounding; a ladder is never crossed anyway
            bids = [bid for bid in bids if bid.price < asks[0].price]
        self._last_mid, self._last_skew, self._quoted = mid, skew, (len(bids), len(asks))
        return bids + asks

    def skew(self, inventory: Decimal) -> Decimal:
        """The fraction of the index price the mid is moved down by for *inventory* (negative: moved up)."""
        cap = self.config.max_skew
        return max(-cap, min(cap, self.config.skew_per_unit * inventory))

    def status(self) -> Mapping[str, Any]:
        return {
            "levels": self.config.levels,
            "bids": self._quoted[0],
            "asks": self._quoted[1],
            "mid": None if self._last_mid is None else str(self._last_mid),
            "skew": str(self._last_skew),
        }

    def _side(self, market: Market, side: Side, mid: Decimal, inventory: Decimal) -> list[Quote]:
        config = self.config
        # How much this side may still fill before the position passes ±max_inventory (None: no limit).
        room: Decimal | None = None
        if config.max_inventory is not None:
            room = config.max_inventory - side.sign * inventory
        quotes: list[Quote] = []
        prices: set[Decimal] = set()
        for level in range(config.levels):
            distance = config.spread / 2 + level * config.level_step
            price = market.round_price(mid * (1 - side.sign * distance), side)
            quantity = market.round_quantity(config.quantity * (1 + level * config.quantity_growth))
            if price <= 0 or price in prices or quantity <= 0 or quantity < market.min_quantity:
                continue
            if room is not None:
                if quantity > room:
                    break  # further levels are at least as large
                room -= quantity
            prices.add(price)
            quotes.append(Quote(side, price, quantity, OrderType.LIMIT, tag=f"level{level}"))
        return quotes


@hookimpl
def register_strategies(register: Callable[..., None]) -> None:
    register(FixedSpreadStrategy)
