"""The ``external_index_follow`` strategy's configuration: one attrs class that reads both of the seed's forms.

The seed documents two shapes of this strategy's JSON config, and both load unchanged:

- the **database form** (the seed's ``strategy_strategy`` row): ``price_change_amount``, ``tick_size``,
  ``base_quantity``, ``price_follow_percent``, ``base_precision``, ``quote_precision``, ``max_active_orders``,
  ``maintenance_interval`` (a duration: ``"1s"``, ``"500ms"``) and ``depth_levels`` as a list of
  ``{"spread_percent", "quantity_ratio"}``;
- the **flat form** (the seed's documentation): ``external_exchange``, ``external_symbol``, ``spread_percent``,
  ``base_quantity``, ``max_order_quantity``, ``depth_levels`` as a *count* (level ``i`` = 1..N at
  ``spread_percent * i``, quantity ratio 1), ``refresh_interval_ms``, ``order_refresh_interval_sec``,
  ``order_refresh_percent``, ``opponent_detection_enabled``, ``max_sweep_price_deviation``,
  ``max_sweep_quantity``, ``sweep_cooldown_ms``, ``order_timeout_sec``, ``max_active_orders``.

The seed's market-activity keys (``market_order_interval_ms``, ``market_order_size``,
``synthetic_trade_interval_ms``, ``synthetic_trade_size``) are accepted so the seed's config loads, and ignored:
mmframe never injects market orders or trades with itself (see :attr:`Config.ignored_keys`).

The core structures a mapping into :class:`Config` with :func:`mmframe.structure_config`: an unknown key, a wrong
type or a value a validator refuses raises :class:`mmframe.ConfigError`, and every message names the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from mmframe import ConfigError
from mmframe.config import at_least_seconds, bounded_decimal, not_negative, optional_decimal, parse_duration, positive

__all__ = ["IGNORED_KEYS", "MAX_LEVELS", "MIN_UPKEEP_SECONDS", "MODES", "Config", "Level"]

#: The seed's market-activity keys: accepted, never acted on.
IGNORED_KEYS = ("market_order_interval_ms", "market_order_size", "synthetic_trade_interval_ms", "synthetic_trade_size")
#: ``reconcile``: the desired ladder, diffed by the engine; ``replace_all``: the seed's cancel-all-and-re-place loop.
MODES = ("reconcile", "replace_all")
MAX_LEVELS = 100
#: The shortest ``order_timeout_sec`` and ``order_refresh_interval_sec``: a shorter one replaces orders on (nearly)
#: every evaluation, thousands of messages a second for nothing.
MIN_UPKEEP_SECONDS = 1.0


@attrs.frozen
class Level:
    """One rung of the ladder: a bid at ``reference * (1 - spread_percent)`` and an ask at
    ``reference * (1 + spread_percent)``, each for ``base_quantity * quantity_ratio``."""

    spread_percent: Decimal
    quantity_ratio: Decimal


# ---------------------------------------------------------------------------------------------------------------
# Converters and validators. Each error message names the key; the core reports it as is.
# ---------------------------------------------------------------------------------------------------------------

Validator = Callable[[object, "attrs.Attribute[Any]", Any], None]


def _decimal(name: str) -> Callable[[object], Decimal]:
    """An exact Decimal within the bounds of :func:`mmframe.config.bounded_decimal` (below 1e15, at most 20
    significant digits): a value the engine can compute with exactly."""

    def convert(value: object) -> Decimal:
        return bounded_decimal(value, name)

    return convert


def _fraction(instance: object, attribute: attrs.Attribute[Any], value: Decimal | None) -> None:
    """``0 < value < 1``: a fraction of the price (0.001 = 0.1 %)."""
    if value is not None and not 0 < value < 1:
        raise ValueError(f"{attribute.name} must be above 0 and below 1 (a fraction: 0.001 = 0.1 %), got {value}")


def _share(instance: object, attribute: attrs.Attribute[Any], value: Decimal) -> None:
    """``0 <= value <= 1``: a share of our orders."""
    if not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be from 0 to 1 (0.1 = 10 %), got {value}")


def _precision(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and not 0 <= value <= 18:
        raise ValueError(f"{attribute.name} must be from 0 to 18, got {value}")


def _max_active_orders(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 2:
        raise ValueError(f"{attribute.name} must be at least 2 (one bid and one ask), got {value}")


def _mode(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in MODES:
        raise ValueError(f"{attribute.name} must be one of {', '.join(MODES)}, got {value!r}")


def _non_empty(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")


def _duration(value: object) -> float | None:
    """``maintenance_interval``: ``None``, a number of seconds, or a duration string (``"1s"``, ``"500ms"``)."""
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ConfigError as exc:
        raise ValueError(f"maintenance_interval: {exc}") from None
    if seconds <= 0:
        raise ValueError(f"maintenance_interval must be positive, got {value!r}")
    return seconds


def _level_number(item: Mapping[str, Any], index: int, key: str) -> Decimal:
    name = f"depth_levels[{index}].{key}"
    if key not in item:
        raise ValueError(f"{name} is required")
    return bounded_decimal(item[key], name)


def _depth_levels(value: Any, config: Config) -> tuple[Level, ...]:
    """``depth_levels``: a count N (levels 1..N at ``spread_percent * i``, quantity ratio 1), or a list of
    ``{"spread_percent", "quantity_ratio"}`` objects. Either becomes a tuple of :class:`Level`."""
    if isinstance(value, bool):
        raise ValueError("depth_levels must be a count of levels or a list of levels, not a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        if not 1 <= value <= MAX_LEVELS:
            raise ValueError(f"depth_levels must be a count from 1 to {MAX_LEVELS}, got {value}")
        spread = config.spread_percent
        if spread is None:
            raise ValueError(f"depth_levels is a count ({value}): spread_percent (the spread of level 1) is required")
        if spread * value >= 1:
            raise ValueError(
                f"depth_levels {value} * spread_percent {spread} must stay below 1 (the farthest bid would be ≤ 0)"
            )
        return tuple(Level(spread * i, Decimal(1)) for i in range(1, value + 1))
    if isinstance(value, list | tuple):
        if config.spread_percent is not None:
            raise ValueError(
                "spread_percent only applies when depth_levels is a count; "
                "depth_levels is a list, so each level sets its own spread_percent"
            )
        if not value:
            raise ValueError("depth_levels must not be empty")
        if len(value) > MAX_LEVELS:
            raise ValueError(f"depth_levels has {len(value)} levels, at most {MAX_LEVELS} are allowed")
        levels = []
        for i, item in enumerate(value):
            if isinstance(item, Level):
                spread, ratio = item.spread_percent, item.quantity_ratio
            elif isinstance(item, Mapping):
                unknown = sorted(set(item) - {"spread_percent", "quantity_ratio"})
                if unknown:
                    raise ValueError(
                        f"depth_levels[{i}].{unknown[0]} is not a known key (a level has spread_percent and "
                        "quantity_ratio)"
                    )
                spread = _level_number(item, i, "spread_percent")
                ratio = _level_number(item, i, "quantity_ratio")
            else:
                raise ValueError(
                    f"depth_levels[{i}] must be an object with spread_percent and quantity_ratio, "
                    f"got {type(item).__name__}"
                )
            if not 0 < spread < 1:
                raise ValueError(
                    f"depth_levels[{i}].spread_percent must be above 0 and below 1 (0.001 = 0.1 %), got {spread}"
                )
            if not ratio > 0:
                raise ValueError(f"depth_levels[{i}].quantity_ratio must be positive, got {ratio}")
            levels.append(Level(spread, ratio))
        return tuple(levels)
    raise ValueError(
        f"depth_levels must be a count of levels or a list of {{spread_percent, quantity_ratio}}, "
        f"got {type(value).__name__}"
    )


# ---------------------------------------------------------------------------------------------------------------
# The configuration
# ---------------------------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Config:
    """The ``external_index_follow`` strategy's options. Every key but ``base_quantity`` and ``depth_levels``
    is optional; see the package README for the table. Fractions are fractions (``0.001`` = 0.1 %)."""

    # ---- how the ladder is built -----------------------------------------------------------------------------
    base_quantity: Decimal = attrs.field(converter=_decimal("base_quantity"), validator=positive)
    price_follow_percent: Decimal = attrs.field(
        default=Decimal(100), converter=_decimal("price_follow_percent"), validator=positive
    )
    max_order_quantity: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("max_order_quantity"), validator=positive
    )
    # spread_percent is declared before depth_levels: the count form of depth_levels reads it.
    spread_percent: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("spread_percent"), validator=_fraction
    )
    # Any: a count or a list of objects in the config; always a tuple of Level once built.
    depth_levels: Any = attrs.field(converter=attrs.Converter(_depth_levels, takes_self=True))
    max_active_orders: int | None = attrs.field(default=None, validator=_max_active_orders)
    mode: str = attrs.field(default="reconcile", validator=_mode)

    # ---- when the ladder moves ---------------------------------------------------------------------------
    price_change_amount: Decimal = attrs.field(
        default=Decimal(0), converter=_decimal("price_change_amount"), validator=not_negative
    )
    # Any: a duration string or a number of seconds in the config; always float seconds (or None) once built.
    maintenance_interval: Any = attrs.field(default=None, converter=_duration)
    refresh_interval_ms: int | None = attrs.field(default=None, validator=positive)

    # ---- upkeep ------------------------------------------------------------------------------------------
    order_refresh_interval_sec: float | None = attrs.field(
        default=None, validator=at_least_seconds(MIN_UPKEEP_SECONDS)
    )
    order_refresh_percent: Decimal = attrs.field(
        default=Decimal("0.1"), converter=_decimal("order_refresh_percent"), validator=_share
    )
    order_timeout_sec: float | None = attrs.field(default=None, validator=at_least_seconds(MIN_UPKEEP_SECONDS))

    # ---- sweeping other participants' mispriced orders -------------------------------------------------------
    opponent_detection_enabled: bool = False
    max_sweep_price_deviation: Decimal = attrs.field(
        default=Decimal("0.02"), converter=_decimal("max_sweep_price_deviation"), validator=_fraction
    )
    max_sweep_quantity: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("max_sweep_quantity"), validator=positive
    )
    sweep_cooldown_ms: int = attrs.field(default=1000, validator=not_negative)

    # ---- the market's description and the index source (read by the service, not by the strategy) ---------
    tick_size: Decimal | None = attrs.field(default=None, converter=optional_decimal("tick_size"), validator=positive)
    base_precision: int | None = attrs.field(default=None, validator=_precision)
    quote_precision: int | None = attrs.field(default=None, validator=_precision)
    external_exchange: str | None = attrs.field(default=None, validator=_non_empty)
    external_symbol: str | None = attrs.field(default=None, validator=_non_empty)

    # ---- the seed's market-activity keys: accepted, ignored, reported once ---------------------------------
    market_order_interval_ms: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("market_order_interval_ms")
    )
    market_order_size: Decimal | None = attrs.field(default=None, converter=optional_decimal("market_order_size"))
    synthetic_trade_interval_ms: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("synthetic_trade_interval_ms")
    )
    synthetic_trade_size: Decimal | None = attrs.field(
        default=None, converter=optional_decimal("synthetic_trade_size")
    )

    def __attrs_post_init__(self) -> None:
        if self.opponent_detection_enabled and self.max_sweep_quantity is None:
            raise ValueError("max_sweep_quantity is required when opponent_detection_enabled is true")

    @property
    def levels(self) -> tuple[Level, ...]:
        """The ladder's levels, nearest (smallest spread) first."""
        return tuple(sorted(self.depth_levels, key=lambda level: level.spread_percent))

    @property
    def maintenance_seconds(self) -> float:
        """``maintenance_interval``, else ``refresh_interval_ms`` (the flat form's depth refresh), else 1 s."""
        if self.maintenance_interval is not None:
            return float(self.maintenance_interval)
        if self.refresh_interval_ms is not None:
            return self.refresh_interval_ms / 1000
        return 1.0

    @property
    def depth_check_seconds(self) -> float:
        """How often the local book is checked for mispriced orders: ``refresh_interval_ms``, else 0.5 s."""
        return self.refresh_interval_ms / 1000 if self.refresh_interval_ms is not None else 0.5

    @property
    def ignored_keys(self) -> tuple[str, ...]:
        """The seed's market-activity keys this config sets: accepted, never acted on."""
        return tuple(key for key in IGNORED_KEYS if getattr(self, key) is not None)
