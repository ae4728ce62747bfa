"""Structuring configuration mappings into typed attrs classes, and the types configuration classes share."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from . import _convert
from ._errors import ConfigError
from ._models import to_decimal

# The validators a Config class uses (the message names the key; ``None``, for an optional key, passes): one set for
# mmframe and its plugins, kept where the data types can use it too.
from ._validators import MIN_CONFIG_DECIMAL as MIN_CONFIG_DECIMAL
from ._validators import at_least_seconds as at_least_seconds
from ._validators import finite as finite
from ._validators import not_negative as not_negative
from ._validators import positive as positive
from ._validators import positive_seconds as positive_seconds

T = TypeVar("T")

__all__ = [
    "MAX_CONFIG_DECIMAL",
    "MAX_SIGNIFICANT_DIGITS",
    "MIN_CONFIG_DECIMAL",
    "at_least_seconds",
    "bounded_decimal",
    "config_decimal",
    "finite",
    "not_negative",
    "optional_decimal",
    "parse_duration",
    "positive",
    "positive_seconds",
    "structure_config",
]

#: A decimal config value must be below this in magnitude: the bound prices have everywhere (the feeds' ``MAX_PRICE``),
#: so that a price or quantity times another stays exact in the 28 digits of decimal arithmetic.
MAX_CONFIG_DECIMAL = Decimal("1e15")
#: At most this many significant digits in a decimal config value.
MAX_SIGNIFICANT_DIGITS = 20


def structure_config(data: Mapping[str, Any] | None, cls: type[T]) -> T:
    """Build the attrs class *cls* from a configuration mapping.

    Unknown keys, missing required keys, wrong types and values refused by a validator raise
    :class:`~mmframe.ConfigError` whose message names the key (``config.depth_levels[2].quantity_ratio``).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
    return _convert.structure(dict(data), cls)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from a duration: a number of seconds, or a string like ``"500ms"``, ``"1s"``, ``"2m"``, ``"1h"``."""
    if isinstance(value, bool):
        raise ConfigError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise ConfigError(f"not a duration: {value!r} (use a number of seconds or e.g. '500ms', '1s', '2m')")
    if seconds < 0:
        raise ConfigError(f"a duration must not be negative: {value!r}")
    return seconds


# ---- converters a Config class uses (the message names the key) ----------------------------------------------


def bounded_decimal(value: object, name: str) -> Decimal:
    """*value* as an exact Decimal the engine can compute with exactly: finite, below :data:`MAX_CONFIG_DECIMAL` in
    magnitude, zero or at least :data:`MIN_CONFIG_DECIMAL`, with at most :data:`MAX_SIGNIFICANT_DIGITS` significant
    digits. Raises :class:`ValueError` naming *name* and saying why."""
    result = to_decimal(value, name=name)
    if result == 0:
        return result
    if abs(result) >= MAX_CONFIG_DECIMAL:
        raise ValueError(
            f"{name} must be below 1e15 in magnitude (larger is no price or quantity a market can hold exactly), "
            f"got {_shown(value)}"
        )
    if abs(result) < MIN_CONFIG_DECIMAL:
        raise ValueError(f"{name} must be 0 or at least 1e-15 in magnitude, got {_shown(value)}")
    digits = result.as_tuple().digits
    significant = len(digits)
    while significant > 1 and digits[significant - 1] == 0:
        significant -= 1
    if significant > MAX_SIGNIFICANT_DIGITS:
        raise ValueError(
            f"{name} has {significant} significant digits, at most {MAX_SIGNIFICANT_DIGITS} are allowed: "
            f"{_shown(value)}"
        )
    return result


def _shown(value: object) -> str:
    return str(value) if isinstance(value, Decimal | int | float) else repr(value)


def config_decimal(name: str) -> Callable[[object], Decimal]:
    """An attrs converter: an exact Decimal within :func:`bounded_decimal`'s bounds (errors name *name*)."""

    def convert(value: object) -> Decimal:
        return bounded_decimal(value, name)

    return convert


def optional_decimal(name: str) -> Callable[[object], Decimal | None]:
    """An attrs converter: ``None`` stays ``None``, anything else becomes an exact Decimal within
    :func:`bounded_decimal`'s bounds (errors name *name*)."""

    def convert(value: object) -> Decimal | None:
        return None if value is None else bounded_decimal(value, name)

    return convert
