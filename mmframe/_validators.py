"""The attrs validators mmframe's classes share; the ones plugins use are public in :mod:`mmframe.config`.

Each names the attribute in its message (``timeout must be a positive number of seconds, got 0``), and lets
``None`` through, for an optional key. This module imports nothing of mmframe: the data types of ``_models`` use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs

__all__ = [
    "MAX_SECONDS",
    "MIN_CONFIG_DECIMAL",
    "above_zero",
    "at_least_seconds",
    "finite",
    "not_empty",
    "not_negative",
    "not_negative_seconds",
    "positive",
    "positive_seconds",
]

#: A non-zero decimal config value must be at least this in magnitude (nothing a market quotes is smaller).
MIN_CONFIG_DECIMAL = Decimal("1e-15")
#: A number of seconds is below this (31 years): anything larger is a mistake, not a setting.
MAX_SECONDS = 1e9

Validator = Callable[[object, "attrs.Attribute[Any]", Any], None]


def above_zero(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """*value* is above zero, however small (NaN is not): a price, a tick size."""
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """*value* is above zero (NaN is not); a Decimal (an amount, a price, a fraction) is at least
    :data:`MIN_CONFIG_DECIMAL`."""
    above_zero(instance, attribute, value)
    if isinstance(value, Decimal) and value < MIN_CONFIG_DECIMAL:
        raise ValueError(f"{attribute.name} must be at least 1e-15, got {value}")


def not_negative(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """*value* is zero or more (NaN is not)."""
    if value is not None and not value >= 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value}")


def finite(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """*value* is a finite number: not NaN, not an infinity."""
    if value is not None and not (_is_number(value) and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


def positive_seconds(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """*value* is a number of seconds above zero and below :data:`MAX_SECONDS` (NaN and infinities are not)."""
    if value is not None and not (_is_number(value) and math.isfinite(value) and 0 < value < MAX_SECONDS):
        raise ValueError(f"{attribute.name} must be a positive number of seconds, got {value!r}")


def not_negative_seconds(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """*value* is a number of seconds, zero or more and below :data:`MAX_SECONDS` (NaN and infinities are not)."""
    if value is not None and not (_is_number(value) and math.isfinite(value) and 0 <= value < MAX_SECONDS):
        raise ValueError(f"{attribute.name} must be a number of seconds, at least 0, got {value!r}")


def at_least_seconds(minimum: float) -> Validator:
    """A validator: a number of seconds of at least *minimum*."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not value >= minimum:
            raise ValueError(f"{attribute.name} must be at least {minimum:g} s, got {value!r}")

    return check


def not_empty(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """*value* is a string with something besides blanks in it."""
    if value is not None and not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
