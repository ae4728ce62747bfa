"""Configuration structuring: unknown keys, wrong types and out-of-range values name the key."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest

from mmframe import ConfigError, structure_config
from mmframe.config import parse_duration


def _positive(instance: object, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


@attrs.frozen
class Level:
    spread_percent: Decimal
    quantity_ratio: Decimal = attrs.field(validator=_positive)


@attrs.frozen
class Config:
    tick_size: Decimal
    depth_levels: list[Level] = attrs.field(factory=list)
    enabled: bool = True
    count: int = 3


def test_a_seed_like_config_structures_exactly() -> None:
    config = structure_config(
        {"tick_size": 0.1, "depth_levels": [{"spread_percent": 0.0001, "quantity_ratio": 0.95}]}, Config
    )
    assert config.tick_size == Decimal("0.1")  # not 0.1000000000000000055511151231257827
    assert config.depth_levels[0].quantity_ratio == Decimal("0.95")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tick_size": 1, "tick_szie": 1}, "tick_szie"),
        ({}, "required field missing @ config.tick_size"),
        ({"tick_size": "abc"}, "config.tick_size"),
        ({"tick_size": 1, "count": "three"}, "config.count"),
        ({"tick_size": 1, "count": True}, "config.count"),
        ({"tick_size": 1, "enabled": "yes"}, "config.enabled"),
        (
            {"tick_size": 1, "depth_levels": [{"spread_percent": 1, "quantity_ratio": 0}]},
            "quantity_ratio must be positive",
        ),
        ({"tick_size": 1, "depth_levels": [{"spread_percent": 1}]}, "config.depth_levels[0].quantity_ratio"),
    ],
)
def test_errors_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        structure_config(data, Config)
    assert message in str(info.value)


def test_config_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="JSON object"):
        structure_config([1, 2], Config)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"), [("1s", 1.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), (3, 3.0), ("1.5", 1.5)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-1s", True, None, "1 day"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ConfigError):
        parse_duration(bad)


@attrs.frozen
class Lists:
    names: tuple[str, ...] = ()
    sizes: list[int] = attrs.field(factory=list)


def test_a_string_is_not_taken_for_a_list_of_its_characters() -> None:
    assert structure_config({"names": ["bookTicker", "trade"], "sizes": [1, "2"]}, Lists) == Lists(
        ("bookTicker", "trade"), [1, 2]
    )
    for bad, key in (({"names": "bookTicker"}, "config.names"), ({"sizes": "12"}, "config.sizes"),
                     ({"names": {"a": 1}}, "config.names")):
        with pytest.raises(ConfigError, match="expected a list") as info:
            structure_config(bad, Lists)
        assert key in str(info.value)
