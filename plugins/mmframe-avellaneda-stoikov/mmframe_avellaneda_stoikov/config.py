"""The two strategies' configurations: the keys they share, and each one's own, in attrs classes.

Both strategies quote ``quantity`` on each side at prices from a model with risk aversion ``gamma``, volatility
``sigma`` and the order-arrival intensity ``A * exp(-k * delta)``. Each of ``sigma``, ``A`` and ``k`` is either
fixed in the config or estimated online (:mod:`mmframe_avellaneda_stoikov.estimators`) over ``sigma_window`` /
``intensity_window`` seconds, once ``min_sigma_samples`` price changes / ``min_trades`` trades were seen.

Units: prices and distances in the market's quote currency (price units), quantities and inventory in its base
asset, time in seconds of the engine's clock. So ``sigma`` is in price units per square root of a second, ``A`` in
trades per second, ``k`` per price unit, ``gamma`` per (price unit x base unit).

The core structures a mapping into the class with :func:`mmframe.structure_config`: an unknown key, a wrong type or
a value a validator refuses raises :class:`mmframe.ConfigError`, and every message names the key. What depends on
the market (a quantity at the market's precision) is checked when the strategy is built for its market.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs

from mmframe.config import config_decimal, not_negative, optional_decimal, positive, positive_seconds

__all__ = [
    "DEFAULT_INTENSITY_WINDOW",
    "DEFAULT_MIN_SIGMA_SAMPLES",
    "DEFAULT_MIN_TRADES",
    "DEFAULT_SIGMA_WINDOW",
    "HORIZON_MODES",
    "MAX_LEVELS",
    "MODES",
    "AvellanedaStoikovConfig",
    "CommonConfig",
    "GLFTConfig",
]

#: ``inventory``: the Avellaneda-Stoikov quotes around the reservation price; ``symmetric``: the paper's benchmark,
#: a constant spread centred on the mid.
MODES = ("inventory", "symmetric")
#: ``finite``: a session of ``horizon`` seconds that starts again when it ends; ``rolling``: ``T - t`` is always
#: ``horizon`` (a market that never closes).
HORIZON_MODES = ("finite", "rolling")
MAX_LEVELS = 50
DEFAULT_SIGMA_WINDOW = 300.0
DEFAULT_MIN_SIGMA_SAMPLES = 30
DEFAULT_INTENSITY_WINDOW = 600.0
DEFAULT_MIN_TRADES = 100


def _one_of(choices: tuple[str, ...]) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in choices:
            raise ValueError(f"{attribute.name} must be one of {', '.join(choices)}, got {value!r}")

    return check


def _count(low: int, high: int) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
        if not low <= value <= high:
            raise ValueError(f"{attribute.name} must be a whole number from {low} to {high}, got {value}")

    return check


def _precision(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and not 0 <= value <= 18:
        raise ValueError(f"{attribute.name} must be from 0 to 18, got {value}")


def _non_empty(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")


@attrs.frozen(kw_only=True)
class CommonConfig:
    """The keys both strategies share; see the package README for the table."""

    # ---- the model -----------------------------------------------------------------------------------------
    gamma: Decimal = attrs.field(converter=config_decimal("gamma"), validator=positive)
    quantity: Decimal = attrs.field(converter=config_decimal("quantity"), validator=positive)
    sigma: Decimal | None = attrs.field(default=None, converter=optional_decimal("sigma"), validator=positive)
    A: Decimal | None = attrs.field(default=None, converter=optional_decimal("A"), validator=positive)
    k: Decimal | None = attrs.field(default=None, converter=optional_decimal("k"), validator=positive)

    # ---- the online estimators ------------------------------------------------------------------------------
    sigma_window: float = attrs.field(default=DEFAULT_SIGMA_WINDOW, validator=positive_seconds)
    min_sigma_samples: int = attrs.field(default=DEFAULT_MIN_SIGMA_SAMPLES, validator=_count(2, 1_000_000))
    intensity_window: float = attrs.field(default=DEFAULT_INTENSITY_WINDOW, validator=positive_seconds)
    min_trades: int = attrs.field(default=DEFAULT_MIN_TRADES, validator=_count(2, 1_000_000))

    # ---- the book ------------------------------------------------------------------------------------------
    levels: int = attrs.field(default=1, validator=_count(1, MAX_LEVELS))
    level_spacing: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("level_spacing"), validator=positive
    )
    max_inventory: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("max_inventory"), validator=positive
    )
    min_spread: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("min_spread"), validator=not_negative
    )

    # ---- the market's description and the index source (read by the service, not by the strategy) ---------
    tick_size: Decimal | None = attrs.field(default=None, converter=optional_decimal("tick_size"), validator=positive)
    base_precision: int | None = attrs.field(default=None, validator=_precision)
    quote_precision: int | None = attrs.field(default=None, validator=_precision)
    external_exchange: str | None = attrs.field(default=None, validator=_non_empty)
    external_symbol: str | None = attrs.field(default=None, validator=_non_empty)


@attrs.frozen(kw_only=True)
class AvellanedaStoikovConfig(CommonConfig):
    """The ``avellaneda_stoikov`` strategy's options: the common keys, the horizon and the mode."""

    horizon: float = attrs.field(validator=positive_seconds)
    horizon_mode: str = attrs.field(default="rolling", validator=_one_of(HORIZON_MODES))
    mode: str = attrs.field(default="inventory", validator=_one_of(MODES))
    spread: Decimal | None = attrs.field(default=None, converter=optional_decimal("spread"), validator=positive)

    def __attrs_post_init__(self) -> None:
        if self.spread is not None and self.mode != "symmetric":
            raise ValueError(
                f"spread only applies with mode symmetric (a constant spread), got mode {self.mode!r}: "
                "the inventory mode's spread comes from the model"
            )


@attrs.frozen(kw_only=True)
class GLFTConfig(CommonConfig):
    """The ``glft`` strategy's options: the common keys (the model has no horizon)."""
