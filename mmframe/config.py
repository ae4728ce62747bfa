"""Structuring configuration mappings into typed attrs classes, and the types configuration classes share."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import attrs

from . import _convert
from .errors import ConfigError
from .models import to_decimal

T = TypeVar("T")

__all__ = ["not_negative", "optional_decimal", "parse_duration", "positive", "structure_config"]


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


# ---- validators and converters a Config class uses (the message names the key) --------------------------------


def positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An attrs validator: *value* is above zero (``None``, for an optional key, passes; NaN does not)."""
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def not_negative(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An attrs validator: *value* is zero or more (``None``, for an optional key, passes; NaN does not)."""
    if value is not None and not value >= 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value}")


def optional_decimal(name: str) -> Callable[[object], Decimal | None]:
    """An attrs converter: ``None`` stays ``None``, anything else becomes an exact Decimal (errors name *name*)."""

    def convert(value: object) -> Decimal | None:
        return None if value is None else to_decimal(value, name=name)

    return convert
