"""Tests of the fixed_spread strategy, with mmframe.testing.FakeContext standing in for the engine."""

from __future__ import annotations

import importlib.metadata
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mmframe_fixed_spread import FixedSpreadStrategy

import mmframe
from mmframe import Market, Position, Quote, Side
from mmframe.testing import FakeContext, load_plugins, make_market

D = Decimal
BTC = make_market("BTC/USDT", tick_size="0.01", price_precision=2, quantity_precision=4, min_quantity="0.0001")


def ladder(
    index: Decimal | str | None = "30000", *, inventory: Decimal | str = "0", market: Market = BTC, **config: Any
) -> tuple[list[Quote], list[Quote]]:
    """(bids best first, asks best first) for *config* at *index* with *inventory* held."""
    strategy = FixedSpreadStrategy(mmframe.structure_config(config, FixedSpreadStrategy.Config), market)
    ctx = FakeContext(market=market, position=Position(base=D(inventory)))
    if index is not None:
        ctx.set_index_price(index)
    quotes = list(strategy.desired_orders(ctx))
    bids = [q for q in quotes if q.side is Side.BUY]
    asks = [q for q in quotes if q.side is Side.SELL]
    return bids, asks


def test_default_ladder_is_symmetric_around_the_index() -> None:
    bids, asks = ladder("30000")
    # spread 0.001 -> best bid/ask at ±0.05 %; each further level 0.05 % further out; 0.01 each.
    assert [q.price for q in bids] == [D("29985.00"), D("29970.00"), D("29955.00"), D("29940.00"), D("29925.00")]
    assert [q.price for q in asks] == [D("30015.00"), D("30030.00"), D("30045.00"), D("30060.00"), D("30075.00")]
    for bid, ask in zip(bids, asks, strict=True):
        assert D(30000) - bid.price == ask.price - D(30000)
    assert all(q.quantity == D("0.0100") for q in bids + asks)
    assert all(q.type is mmframe.OrderType.LIMIT for q in bids + asks)


def test_prices_on_the_grid_bids_rounded_down_asks_up() -> None:
    bids, asks = ladder("100.003", spread="0.001", levels=1)
    # raw bid 100.003 * 0.9995 = 99.9529985 -> 99.95 (down); raw ask 100.003 * 1.0005 = 100.0530015 -> 100.06 (up)
    assert bids[0].price == D("99.95")
    assert asks[0].price == D("100.06")
    assert BTC.is_on_grid(bids[0].price) and BTC.is_on_grid(asks[0].price)


def test_coarse_tick_grid() -> None:
    market = make_market("ETH/USDT", tick_size="0.5", price_precision=1, quantity_precision=3, min_quantity="0.001")
    bids, asks = ladder("2000.3", market=market, levels=3, level_step="0.001")
    assert all(market.is_on_grid(q.price) for q in bids + asks)
    assert [q.price for q in bids] == [D("1999.0"), D("1997.0"), D("1995.0")]
    assert [q.price for q in asks] == [D("2001.5"), D("2003.5"), D("2005.5")]


def test_quantities_at_the_market_precision_and_growing() -> None:
    bids, asks = ladder(levels=3, quantity="0.012345", quantity_growth="0.5")
    # 0.012345 * (1, 1.5, 2) = 0.012345, 0.0185175, 0.02469 -> rounded down to 4 places
    assert [q.quantity for q in bids] == [D("0.0123"), D("0.0185"), D("0.0246")]
    assert [q.quantity for q in asks] == [q.quantity for q in bids]
    assert all(q.quantity == BTC.round_quantity(q.quantity) for q in bids + asks)


def test_levels_below_min_quantity_are_dropped() -> None:
    market = make_market(min_quantity="0.02")
    bids, asks = ladder(market=market, levels=4, quantity="0.01", quantity_growth="0.5")
    # quantities 0.01, 0.015, 0.02, 0.025: the first two are below the minimum
    assert [q.quantity for q in bids] == [D("0.0200"), D("0.0250")]
    assert [q.quantity for q in asks] == [D("0.0200"), D("0.0250")]


def test_levels_rounding_to_the_same_price_are_deduplicated() -> None:
    market = make_market(tick_size="1", price_precision=0)
    bids, asks = ladder("100", market=market, levels=5, spread="0.02", level_step="0.001")
    # raw bids 99, 98.9, 98.8, 98.7, 98.6 all round down to 98 or 99: two distinct prices
    assert [q.price for q in bids] == [D(99), D(98)]
    assert [q.price for q in asks] == [D(101), D(102)]


def test_long_inventory_skews_both_sides_down_and_short_up() -> None:
    flat_bids, flat_asks = ladder(skew_per_unit="0.001", max_skew="0.01")
    long_bids, long_asks = ladder(inventory="2", skew_per_unit="0.001", max_skew="0.01")
    short_bids, short_asks = ladder(inventory="-2", skew_per_unit="0.001", max_skew="0.01")
    # long 2 units: skew 0.002, mid 29940; short 2 units: mid 30060
    assert (long_bids[0].price, long_asks[0].price) == (D("29925.03"), D("29954.97"))
    assert (short_bids[0].price, short_asks[0].price) == (D("30044.97"), D("30075.03"))
    assert all(lo.price < flat.price < hi.price for lo, flat, hi in zip(long_bids, flat_bids, short_bids, strict=True))
    assert all(lo.price < flat.price < hi.price for lo, flat, hi in zip(long_asks, flat_asks, short_asks, strict=True))


def test_skew_is_bounded_by_max_skew() -> None:
    huge_long, _ = ladder(inventory="1000", skew_per_unit="0.001", max_skew="0.005")
    capped_long, _ = ladder(inventory="5", skew_per_unit="0.001", max_skew="0.005")
    huge_short, _ = ladder(inventory="-1000", skew_per_unit="0.001", max_skew="0.005")
    assert huge_long == capped_long  # 1000 units and 5 units both hit the 0.5 % cap
    assert huge_long[0].price == BTC.floor_price(D(30000) * D("0.995") * D("0.9995"))
    assert huge_short[0].price == BTC.floor_price(D(30000) * D("1.005") * D("0.9995"))


def test_max_inventory_drops_the_side_that_would_grow_the_position() -> None:
    bids, asks = ladder(inventory="1", max_inventory="1")
    assert bids == []
    assert len(asks) == 5
    bids, asks = ladder(inventory="-1", max_inventory="1")
    assert asks == []
    assert len(bids) == 5
    # 0.025 of room left on the bid side: two levels of 0.01 fit, the third would pass the limit
    bids, asks = ladder(inventory="0.975", max_inventory="1")
    assert len(bids) == 2
    assert len(asks) == 5


def test_no_index_price_means_no_quotes() -> None:
    strategy = FixedSpreadStrategy(FixedSpreadStrategy.Config(), BTC)
    ctx = FakeContext(market=BTC)
    assert strategy.desired_orders(ctx) == []
    assert strategy.status()["mid"] is None


def test_status_reports_levels_and_mid() -> None:
    strategy = FixedSpreadStrategy(FixedSpreadStrategy.Config(levels=3), BTC)
    ctx = FakeContext(market=BTC, index_price="30000")
    assert len(strategy.desired_orders(ctx)) == 6
    status = strategy.status()
    assert status["levels"] == 3
    assert (status["bids"], status["asks"]) == (3, 3)
    assert D(status["mid"]) == D(30000)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"spread": "0"}, "spread"),
        ({"spread": "1.5"}, "spread"),
        ({"levels": 0}, "levels"),
        ({"levels": 51}, "levels"),
        ({"level_step": "-0.1"}, "level_step"),
        ({"quantity": "0"}, "quantity"),
        ({"quantity": "abc"}, "quantity"),
        ({"quantity_growth": "-1"}, "quantity_growth"),
        ({"skew_per_unit": "-0.001"}, "skew_per_unit"),
        ({"max_skew": "1"}, "max_skew"),
        ({"max_inventory": "0"}, "max_inventory"),
        ({"sprad": "0.001"}, "sprad"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(mmframe.ConfigError) as excinfo:
        mmframe.structure_config(config, FixedSpreadStrategy.Config)
    assert key in str(excinfo.value)


def test_config_defaults() -> None:
    config = mmframe.structure_config({}, FixedSpreadStrategy.Config)
    assert config == FixedSpreadStrategy.Config(
        spread=D("0.001"),
        levels=5,
        level_step=D("0.0005"),
        quantity=D("0.01"),
        quantity_growth=D(0),
        skew_per_unit=D(0),
        max_skew=D("0.005"),
        max_inventory=None,
    )
    assert mmframe.structure_config({"quantity": 0.1}, FixedSpreadStrategy.Config).quantity == D("0.1")


markets = st.sampled_from(
    [
        BTC,
        make_market("ETH/USDT", tick_size="0.05", price_precision=2, quantity_precision=3, min_quantity="0.001"),
        make_market("DOGE/USDT", tick_size="0.00001", price_precision=5, quantity_precision=0, min_quantity="1"),
        make_market("XYZ/USDT", tick_size="5", price_precision=0, quantity_precision=2, min_quantity="0.01"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    market=markets,
    index=st.decimals(min_value="0.0001", max_value="1000000", places=6),
    inventory=st.decimals(min_value="-100", max_value="100", places=4),
    spread=st.decimals(min_value="0.00001", max_value="0.2", places=5),
    level_step=st.decimals(min_value="0", max_value="0.1", places=5),
    levels=st.integers(min_value=1, max_value=50),
    skew_per_unit=st.decimals(min_value="0", max_value="0.01", places=5),
    quantity=st.decimals(min_value="0.0001", max_value="100", places=4),
)
def test_ladder_is_never_crossed_and_always_on_the_grid(
    market: Market,
    index: Decimal,
    inventory: Decimal,
    spread: Decimal,
    level_step: Decimal,
    levels: int,
    skew_per_unit: Decimal,
    quantity: Decimal,
) -> None:
    config = FixedSpreadStrategy.Config(
        spread=spread,
        level_step=level_step,
        levels=levels,
        skew_per_unit=skew_per_unit,
        quantity=quantity,
        quantity_growth=D("0.1"),
        max_inventory=D(50),
    )
    strategy = FixedSpreadStrategy(config, market)
    ctx = FakeContext(market=market, index_price=index, position=Position(base=inventory))
    quotes = list(strategy.desired_orders(ctx))
    bids = [q for q in quotes if q.side is Side.BUY]
    asks = [q for q in quotes if q.side is Side.SELL]
    if bids and asks:
        assert max(q.price for q in bids) < min(q.price for q in asks)
    for q in quotes:
        assert q.price > 0
        assert market.is_on_grid(q.price)
        assert market.is_valid_quantity(q.quantity)
    for side in (bids, asks):
        assert len({q.price for q in side}) == len(side)  # no two levels at one price
    # a side never quotes more than would take the position beyond ±max_inventory
    assert sum((q.quantity for q in bids), D(0)) <= max(D(0), 50 - inventory)
    assert sum((q.quantity for q in asks), D(0)) <= max(D(0), 50 + inventory)


def test_entry_point_registers_the_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        importlib.metadata.distribution("mmframe-fixed-spread")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("mmframe-fixed-spread is not installed (pip install -e examples/mmframe-fixed-spread)")
    entry_points = importlib.metadata.entry_points(group="mmframe", name="fixed_spread")
    assert [ep.value for ep in entry_points] == ["mmframe_fixed_spread"]
    monkeypatch.delenv("MMFRAME_LOAD_PLUGINS", raising=False)
    strategies = load_plugins().strategies  # a fresh plugin manager, loading entry points as mmframe does
    assert strategies["fixed_spread"] is FixedSpreadStrategy
    assert strategies.registered_by["fixed_spread"] == "fixed_spread"
