"""The ``grid_trading`` strategy's configuration: the seed-000 keys and the seed-001 ones, in one attrs class.

- **Spacing**, exactly one of ``price_interval`` (an absolute price step, seed 001) or ``grid_spacing_percent``
  (a fraction of the anchor, seed 000: ``0.005`` is 0.5 %; turned once into an absolute step on the tick grid).
- **Quantity**, exactly one of ``order_quantity`` (seed 001) or ``grid_quantity`` (seed 000): the size of every
  buy, in the base asset.
- ``grid_levels`` (seed 000): bounds the grid to that many slots below and above the anchor; absent, the grid is
  unbounded and slots are made as the windows slide.
- ``buy_window_size`` / ``sell_window_size`` (seed 001): how many slots below / above the index are quoted.
- ``anchor_price``: the price of slot 0; absent or ``null``, the first index price (or, after a restart, a price
  of the earlier run's grid, found in its fills and orders).
- ``tick_size``, ``base_precision``, ``quote_precision``, ``external_exchange``, ``external_symbol``: read by the
  service (the market's description when no ``mmframe_market`` row describes it, and where the index comes from);
  accepted so a ``strategy_strategy`` row can carry them, not used by the strategy.

The core structures a mapping into :class:`Config` with :func:`mmframe.structure_config`: an unknown key, a wrong
type or a value a validator refuses raises :class:`mmframe.ConfigError`, and every message names the key. What
depends on the market (a spacing on the tick grid, a quantity at the market's precision) is checked when the
strategy is built for its market (:class:`~mmframe_grid_trading.GridTrading`), with messages naming the key too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs

from mmframe.config import optional_decimal, positive

__all__ = ["DEFAULT_WINDOW", "Config"]

#: The window size when neither the window nor ``grid_levels`` is configured.
DEFAULT_WINDOW = 10


def _fraction(instance: object, attribute: attrs.Attribute[Any], value: Decimal | None) -> None:
    if value is not None and not 0 < value < 1:
        raise ValueError(f"{attribute.name} must be above 0 and below 1 (a fraction: 0.005 = 0.5 %), got {value}")


def _count(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and not value >= 1:
        raise ValueError(f"{attribute.name} must be a whole number of at least 1, got {value}")


def _precision(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and not 0 <= value <= 18:
        raise ValueError(f"{attribute.name} must be from 0 to 18, got {value}")


def _non_empty(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")


def _exactly_one(config: Config, first: str, second: str, what: str) -> None:
    given = [name for name in (first, second) if getattr(config, name) is not None]
    if not given:
        raise ValueError(f"{first} or {second} is required ({what})")
    if len(given) == 2:
        raise ValueError(f"{first} and {second} both set {what}: give only one of them")


@attrs.frozen(kw_only=True)
class Config:
    """The ``grid_trading`` strategy's options; see the package README for the table."""

    # ---- the grid's spacing: exactly one of the two ----------------------------------------------------------
    price_interval: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("price_interval"), validator=positive
    )
    grid_spacing_percent: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("grid_spacing_percent"), validator=_fraction
    )

    # ---- the quantity of every buy: exactly one of the two (aliases) ------------------------------------------
    order_quantity: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("order_quantity"), validator=positive
    )
    grid_quantity: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("grid_quantity"), validator=positive
    )

    # ---- where the grid stands and how far it reaches ---------------------------------------------------------
    grid_levels: int | None = attrs.field(default=None, validator=_count)
    buy_window_size: int | None = attrs.field(default=None, validator=_count)
    sell_window_size: int | None = attrs.field(default=None, validator=_count)
    anchor_price: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("anchor_price"), validator=positive
    )

    # ---- the market's description and the index source (read by the service, not by the strategy) ---------
    tick_size: Decimal | None = attrs.field(default=None, converter=optional_decimal("tick_size"), validator=positive)
    base_precision: int | None = attrs.field(default=None, validator=_precision)
    quote_precision: int | None = attrs.field(default=None, validator=_precision)
    external_exchange: str | None = attrs.field(default=None, validator=_non_empty)
    external_symbol: str | None = attrs.field(default=None, validator=_non_empty)

    def __attrs_post_init__(self) -> None:
        _exactly_one(self, "price_interval", "grid_spacing_percent", "the grid's spacing")
        _exactly_one(self, "order_quantity", "grid_quantity", "the quantity of every order")

    @property
    def quantity(self) -> Decimal:
        """``order_quantity``, or its alias ``grid_quantity``."""
        quantity = self.order_quantity if self.order_quantity is not None else self.grid_quantity
        assert quantity is not None  # __attrs_post_init__ made sure
        return quantity

    @property
    def quantity_key(self) -> str:
        """The name the quantity was configured under (for error messages)."""
        return "order_quantity" if self.order_quantity is not None else "grid_quantity"

    @property
    def buy_window(self) -> int:
        """``buy_window_size``, else ``grid_levels``, else :data:`DEFAULT_WINDOW`."""
        return self.buy_window_size or self.grid_levels or DEFAULT_WINDOW

    @property
    def sell_window(self) -> int:
        """``sell_window_size``, else ``grid_levels``, else :data:`DEFAULT_WINDOW`."""
        return self.sell_window_size or self.grid_levels or DEFAULT_WINDOW
