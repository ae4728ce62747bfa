"""The one validator set (mmframe._validators; the public part re-exported by mmframe.config)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import attrs
import pytest

from mmframe import config
from mmframe._validators import (
    above_zero,
    at_least_seconds,
    finite,
    not_empty,
    not_negative,
    not_negative_seconds,
    positive,
    positive_seconds,
)


def check(validator: Any, value: Any) -> None:
    @attrs.define
    class Holder:
        x: Any = attrs.field(validator=validator)

    Holder(value)


@pytest.mark.parametrize(
    ("validator", "good", "bad", "message"),
    [
        (above_zero, [Decimal("1e-18"), 1, 0.5], [0, -1, math.nan, Decimal(0)], "x must be positive, got"),
        (positive, [Decimal("1e-15"), 1, 0.5, math.inf], [0, -1, math.nan, Decimal("1e-16")], "x must be"),
        (not_negative, [0, 1, Decimal(0)], [-1, math.nan, Decimal("-0.1")], "x must not be negative, got"),
        (finite, [0, -1.5, Decimal(3)], [math.nan, math.inf, -math.inf, "1", True], "x must be a finite number, got"),
        (positive_seconds, [0.1, 5, 1e8], [0, -1, math.nan, math.inf, 1e9, "5", True],
         "x must be a positive number of seconds, got"),
        (not_negative_seconds, [0, 0.1, 1e8], [-0.1, math.nan, math.inf, 1e9, "5"],
         "x must be a number of seconds, at least 0, got"),
        (at_least_seconds(0.5), [0.5, 2], [0.4, math.nan], "x must be at least 0.5 s, got"),
        (not_empty, ["a", " a "], ["", "   "], "x must not be empty"),
    ],
)
def test_each_validator_passes_the_good_refuses_the_bad_and_names_the_key(
    validator: Any, good: list[Any], bad: list[Any], message: str
) -> None:
    for value in [*good, None]:
        check(validator, value)
    for value in bad:
        with pytest.raises(ValueError, match=message):
            check(validator, value)


def test_mmframe_config_exports_the_same_validators() -> None:
    assert config.positive is positive and config.not_negative is not_negative and config.finite is finite
    assert config.positive_seconds is positive_seconds and config.at_least_seconds is at_least_seconds
