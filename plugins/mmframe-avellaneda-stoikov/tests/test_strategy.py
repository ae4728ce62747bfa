"""Both strategies with mmframe.testing.FakeContext standing in for the engine: the exact quotes (computed by hand
from the papers' formulas), the rounding direction, the skew against the inventory, the symmetric benchmark, the
inventory limits, the levels, the spread floor, never a crossed book, the same objects when nothing changed, and
waiting (quoting nothing, saying why) while an estimate is missing."""

from __future__ import annotations

import importlib.metadata
import random
from decimal import Decimal
from typing import Any

import pytest
from mmframe_avellaneda_stoikov import GLFT, AvellanedaStoikov, AvellanedaStoikovConfig, GLFTConfig, to_grid

from mmframe import ConfigError, Market, PriceTick, Side, Trade, structure_config
from mmframe.testing import load_plugins

from .helpers import MARKET, D, as_config, book, ceil, context, floor, glft_config, gueant_glft, paper_as


def make_as(**changes: Any) -> AvellanedaStoikov:
    return AvellanedaStoikov(structure_config(as_config(**changes), AvellanedaStoikovConfig), MARKET)


def make_glft(market: Market = MARKET, **changes: Any) -> GLFT:
    return GLFT(structure_config(glft_config(**changes), GLFTConfig), market)


def quotes_of(strategy: Any, **ctx: Any) -> tuple[list[Decimal], list[Decimal]]:
    return book(strategy.desired_orders(context(**ctx)))


def started(strategy: Any, now: float = 0.0) -> Any:
    strategy.on_start(context(now=now))
    return strategy


def test_the_plugin_registers_both_strategies() -> None:
    loaded = load_plugins()
    assert loaded.strategies["avellaneda_stoikov"] is AvellanedaStoikov
    assert loaded.strategies["glft"] is GLFT
    (info,) = [p for p in loaded.info if p.name == "avellaneda_stoikov"]
    assert info.distribution == "mmframe-avellaneda-stoikov"
    assert info.version == importlib.metadata.version("mmframe-avellaneda-stoikov")


# ---- avellaneda_stoikov ------------------------------------------------------------------------------------------


def test_flat_at_the_start_of_the_session_by_hand() -> None:
    """q = 0, T - t = 1: r = 100, spread = 0.1 * 4 * 1 + 20 ln(16/15) = 1.6907704: 99.1546148 and 100.8453852,
    the bid rounded down, the ask up."""
    strategy = started(make_as())
    quotes = strategy.desired_orders(context())
    assert [(q.side, q.price, q.quantity, q.tag) for q in quotes] == [
        (Side.BUY, D("99.15"), D("1"), "L1"),
        (Side.SELL, D("100.85"), D("1"), "L1"),
    ]
    assert str(quotes[0].price) == "99.15" and str(quotes[1].price) == "100.85"  # at the market's precision
    status = strategy.status()
    assert status["waiting"] is None
    assert status["reservation_price"] == pytest.approx(100.0)
    assert status["spread"] == pytest.approx(1.6907704, abs=1e-7)
    assert (status["q"], status["time_left"]) == (0.0, 1.0)
    assert (status["sigma"], status["A"], status["k"]) == (2.0, 140.0, 1.5)
    assert (status["sigma_source"], status["k_source"]) == ("config", "config")
    assert (status["bid"], status["ask"]) == (99.15, 100.85)


def test_inventory_moves_the_reservation_price_against_it() -> None:
    """q = 2: r = 100 - 2 * 0.1 * 4 * 1 = 99.2: 98.3546 -> 98.35 and 100.0454 -> 100.05. q = -2: r = 100.8."""
    strategy = started(make_as())
    assert quotes_of(strategy, position="2") == ([D("98.35")], [D("100.05")])
    assert strategy.status()["reservation_price"] == pytest.approx(99.2)
    assert quotes_of(strategy, position="-2") == ([D("99.95")], [D("101.65")])
    assert strategy.status()["reservation_price"] == pytest.approx(100.8)
    # long: both quotes below the flat ones (buy less eagerly, sell more eagerly); short: both above
    flat_bid, flat_ask = quotes_of(strategy)
    long_bid, long_ask = quotes_of(strategy, position="1")
    short_bid, short_ask = quotes_of(strategy, position="-1")
    assert long_bid < flat_bid < short_bid and long_ask < flat_ask < short_ask


def test_the_finite_horizon_counts_down_and_starts_again() -> None:
    """T - t = 0.5 at 0.5 s: spread 0.2 + 1.2907704 -> 99.25 / 100.75; a new session at 1 s; 0.75 left at 1.25 s."""
    strategy = started(make_as(), now=0.0)
    assert quotes_of(strategy, now=0.5) == ([D("99.25")], [D("100.75")])
    assert strategy.status()["time_left"] == pytest.approx(0.5)
    assert quotes_of(strategy, now=1.0) == ([D("99.15")], [D("100.85")])
    assert quotes_of(strategy, now=1.25) == ([D("99.20")], [D("100.80")])
    # with inventory the skew shrinks as the end nears: q = 2 at 0.75 s: r = 100 - 0.8 * 0.25 = 99.8
    strategy.desired_orders(context(now=0.75, position="2"))
    assert strategy.status()["reservation_price"] == pytest.approx(99.8)


def test_the_session_starts_when_the_strategy_starts() -> None:
    strategy = started(make_as(), now=1000.0)
    assert quotes_of(strategy, now=1000.5) == ([D("99.25")], [D("100.75")])


def test_the_rolling_horizon_never_runs_down() -> None:
    strategy = started(make_as(horizon_mode="rolling", horizon=1))
    for now in (0.0, 0.5, 0.99, 7.3, 1e6):
        assert quotes_of(strategy, now=now) == ([D("99.15")], [D("100.85")])
        assert strategy.status()["time_left"] == 1.0


@pytest.mark.parametrize(
    ("index", "position", "now"),
    [("100", "0", 0.0), ("100", "3", 0.2), ("123.45", "-1.5", 0.7), ("99.99", "0.3", 0.05)],
)
def test_the_quotes_are_the_papers_formula_rounded_outwards(index: str, position: str, now: float) -> None:
    strategy = started(make_as())
    bid, ask = paper_as(float(index), float(position), 0.1, 2, 1.5, 1 - now)
    assert quotes_of(strategy, index=index, position=position, now=now) == ([floor(bid)], [ceil(ask)])


def test_bids_round_down_and_asks_round_up() -> None:
    """A constant spread of 1.006 around 100: 99.497 and 100.503, where rounding to the nearest tick would give
    99.50 and 100.50 (a tighter, more aggressive book)."""
    strategy = started(make_as(mode="symmetric", spread="1.006"))
    assert quotes_of(strategy) == ([D("99.49")], [D("100.51")])


def test_float_noise_does_not_move_a_quote_off_its_grid_price() -> None:
    """100.1 - 0.2 is 99.89999999999999 in binary floating point and 100.37 + 0.37 is 100.74000000000001: they are
    99.90 and 100.74, not 99.89 and 100.75."""
    assert quotes_of(started(make_as(mode="symmetric", spread="0.4")), index="100.1") == ([D("99.90")], [D("100.30")])
    assert quotes_of(started(make_as(mode="symmetric", spread="0.74")), index="100.37") == (
        [D("100.00")], [D("100.74")]
    )
    assert to_grid(99.89999999999999, MARKET, Side.BUY) == D("99.90")
    assert to_grid(99.8999, MARKET, Side.BUY) == D("99.89")  # a real difference is kept
    assert to_grid(100.74000000000001, MARKET, Side.SELL) == D("100.74")
    assert to_grid(100.7401, MARKET, Side.SELL) == D("100.75")


def test_the_symmetric_benchmark_is_centred_on_the_mid_with_the_average_spread() -> None:
    """Finite horizon of 1: the average spread is 0.1 * 4 / 2 + 20 ln(16/15) = 1.4907704 (the paper's 1.49), centred
    on s whatever the inventory and the time: 99.2546 -> 99.25, 100.7454 -> 100.75."""
    strategy = started(make_as(mode="symmetric"))
    for position, now in (("0", 0.0), ("5", 0.3), ("-4", 0.99)):
        assert quotes_of(strategy, position=position, now=now) == ([D("99.25")], [D("100.75")])
        assert strategy.status()["reservation_price"] == 100.0
        assert strategy.status()["spread"] == pytest.approx(1.4907704, abs=1e-7)
    # rolling: the spread of T - t = horizon: 0.4 + 1.2907704 = 1.6907704
    rolling = started(make_as(mode="symmetric", horizon_mode="rolling"))
    assert quotes_of(rolling, position="5") == ([D("99.15")], [D("100.85")])
    # a configured spread: no sigma or k needed
    fixed = started(make_as(mode="symmetric", spread="2", sigma=None, k=None))
    assert quotes_of(fixed, position="3") == ([D("99.00")], [D("101.00")])


def test_max_inventory_drops_a_side() -> None:
    strategy = started(make_as(max_inventory=3, horizon_mode="rolling"))
    bids, asks = quotes_of(strategy, position="3")
    assert bids == [] and len(asks) == 1
    assert strategy.status()["inventory_limit"] == "bids" and strategy.status()["bids_quoted"] == 0
    bids, asks = quotes_of(strategy, position="-3.5")
    assert len(bids) == 1 and asks == []
    assert strategy.status()["inventory_limit"] == "asks"
    bids, asks = quotes_of(strategy, position="2.9999")
    assert len(bids) == 1 and len(asks) == 1 and strategy.status()["inventory_limit"] is None


def test_levels_stand_level_spacing_further_out() -> None:
    strategy = started(make_as(levels=3, level_spacing="0.05"))
    quotes = strategy.desired_orders(context())
    assert book(quotes) == ([D("99.15"), D("99.10"), D("99.05")], [D("100.85"), D("100.90"), D("100.95")])
    assert [q.tag for q in quotes] == ["L1", "L2", "L3", "L1", "L2", "L3"]
    assert {q.quantity for q in quotes} == {D("1")}
    # without level_spacing, a tick apart
    assert quotes_of(started(make_as(levels=3))) == (
        [D("99.15"), D("99.14"), D("99.13")], [D("100.85"), D("100.86"), D("100.87")]
    )
    # a spacing below the tick never puts two levels on one price
    assert quotes_of(started(make_as(levels=3, level_spacing="0.001"))) == (
        [D("99.15"), D("99.14"), D("99.13")], [D("100.85"), D("100.86"), D("100.87")]
    )


def test_levels_with_an_inventory_limit_drop_the_whole_side() -> None:
    strategy = started(make_as(levels=2, max_inventory=1))
    assert quotes_of(strategy, position="1") == ([], [D("100.45"), D("100.46")])  # r = 99.6


def test_min_spread_widens_around_the_same_centre() -> None:
    strategy = started(make_as(min_spread=3))
    assert quotes_of(strategy) == ([D("98.50")], [D("101.50")])
    assert strategy.status()["spread"] == pytest.approx(3.0)
    assert strategy.status()["model_spread"] == pytest.approx(1.6907704, abs=1e-7)
    # around the reservation price 99.2 with q = 2
    assert quotes_of(strategy, position="2") == ([D("97.70")], [D("100.70")])
    # a floor below the model's spread changes nothing
    assert quotes_of(started(make_as(min_spread=1))) == ([D("99.15")], [D("100.85")])


def test_a_bid_at_or_below_zero_is_not_quoted() -> None:
    strategy = started(make_as(horizon_mode="rolling"))
    bids, asks = quotes_of(strategy, index="0.5")  # 0.5 - 0.845 < 0
    assert bids == [] and asks == [D("1.35")]


def test_the_same_quote_objects_come_back_when_nothing_changed() -> None:
    strategy = started(make_as(horizon_mode="rolling", levels=2))
    first = strategy.desired_orders(context())
    again = strategy.desired_orders(context())
    assert again is first and all(a is b for a, b in zip(again, first, strict=True))
    # the index moved, the rounded prices did not (100.001: 99.1556 -> 99.15, 100.8464 -> 100.85)
    moved = strategy.desired_orders(context(index="100.001"))
    assert all(a is b for a, b in zip(moved, first, strict=True))
    # only the asks moved (100.005: bids 99.1596 -> 99.15 and 99.1496 -> 99.14 as before, asks 100.8504 -> 100.86
    # and 100.8604 -> 100.87): the bids are the same objects, the asks new ones
    changed = strategy.desired_orders(context(index="100.005"))
    assert book(changed) == ([D("99.15"), D("99.14")], [D("100.86"), D("100.87")])
    assert changed[0] is first[0] and changed[1] is first[1]
    assert changed[2] is not first[2] and changed[3] is not first[3]
    # and back: the prices of before, new objects (only the last evaluation's quotes are kept)
    back = strategy.desired_orders(context())
    assert back == first and back[0] is first[0] and back[2] is not first[2]


@pytest.mark.parametrize("seed", range(5))
def test_never_a_bid_at_or_above_an_ask(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        tick = rng.choice(["1", "0.5", "0.01", "0.0001"])
        precision = max(0, -D(tick).as_tuple().exponent)
        market = Market("X/Y", tick_size=tick, price_precision=precision, quantity_precision=4)
        index = D(str(round(rng.uniform(0.5, 5000), precision))).quantize(D(tick)) or D(tick) * 100
        gamma = rng.choice([1e-4, 0.01, 0.1, 1, 10])
        sigma = rng.choice([1e-4, 0.01, 0.5, 2, 50])
        k = rng.choice([1e-3, 0.1, 1.5, 30, 1000])
        position = D(rng.randint(-50, 50)) / 10
        common = {"gamma": gamma, "quantity": "0.1", "sigma": sigma, "k": k, "A": rng.choice([0.5, 140, 1e4]),
                  "levels": rng.randint(1, 3), "level_spacing": rng.choice([None, "0.001", tick, "7"])}
        strategies = [
            AvellanedaStoikov(structure_config({**common, "horizon": rng.choice([1, 60, 86400]),
                                                "horizon_mode": rng.choice(["finite", "rolling"]),
                                                "mode": rng.choice(["inventory", "symmetric"])},
                                               AvellanedaStoikovConfig), market),
            GLFT(structure_config(common, GLFTConfig), market),
        ]
        for strategy in strategies:
            strategy.on_start(context(market=market))
            ctx = context(str(index), now=rng.uniform(0, 100), position=str(position), market=market)
            bids, asks = book(strategy.desired_orders(ctx))
            assert bids == sorted(set(bids), reverse=True) and asks == sorted(set(asks))
            assert all(p > 0 and market.is_on_grid(p) for p in bids + asks)
            if bids and asks:
                assert bids[0] < asks[0], (strategy.name, strategy.status())


# ---- glft -----------------------------------------------------------------------------------------------------------


def test_glft_flat_by_hand() -> None:
    """q = 0, Delta = 1: both depths c1 + sigma c2 / 2 = 0.6712438: 99.3287562 -> 99.32 and 100.6712438 -> 100.68."""
    strategy = started(make_glft())
    assert quotes_of(strategy) == ([D("99.32")], [D("100.68")])
    status = strategy.status()
    assert status["c1"] == pytest.approx(0.6453852, abs=1e-7) and status["c2"] == pytest.approx(0.0258586, abs=1e-7)
    assert status["bid_depth"] == pytest.approx(0.6712438, abs=1e-7) == status["ask_depth"]
    assert status["reservation_price"] == pytest.approx(100.0) and status["time_left"] is None


def test_glft_long_three_orders_by_hand() -> None:
    """q = 3: bid depth c1 + 3.5 sigma c2 = 0.8263955, ask depth c1 - 2.5 sigma c2 = 0.5160922:
    99.1736045 -> 99.17 and 100.5160922 -> 100.52."""
    strategy = started(make_glft())
    assert quotes_of(strategy, position="3") == ([D("99.17")], [D("100.52")])
    assert strategy.status()["q_orders"] == 3.0


@pytest.mark.parametrize("position", ["0", "0.5", "1.5", "-2", "4.5"])
def test_glft_counts_the_inventory_in_orders_of_quantity(position: str) -> None:
    """quantity 0.5: the quotes are Guéant's formula with Delta = 0.5 and q in base units."""
    strategy = started(make_glft(quantity="0.5"))
    bid_depth, ask_depth = gueant_glft(float(position), 0.5, 0.1, 2, 140, 1.5)
    assert quotes_of(strategy, position=position) == ([floor(100 - bid_depth)], [ceil(100 + ask_depth)])
    assert strategy.status()["q_orders"] == pytest.approx(float(position) / 0.5)


def test_glft_inventory_bounds() -> None:
    strategy = started(make_glft(max_inventory=2))
    assert quotes_of(strategy, position="2")[0] == []
    assert quotes_of(strategy, position="-2")[1] == []
    assert all(quotes_of(strategy, position="1.9"))


def test_glft_a_large_inventory_may_put_the_ask_below_the_mid_never_below_the_bid() -> None:
    strategy = started(make_glft())
    bids, asks = quotes_of(strategy, position="20")  # ask depth c1 - 19.5 sigma c2 < 0
    assert strategy.status()["ask_depth"] < 0 and asks[0] < D(100)
    assert bids[0] < asks[0]


# ---- waiting for estimates ----------------------------------------------------------------------------------------


def tick(ctx: Any, strategy: Any, price: str) -> None:
    ctx.index_price = price
    strategy.on_tick(PriceTick("x", "SIM/USD", D(price), timestamp=ctx.now), ctx)


def trade(ctx: Any, strategy: Any, price: str, side: Side = Side.BUY) -> None:
    strategy.on_trade(Trade("x", "SIM/USD", D(price), D("1"), side, timestamp=ctx.now), ctx)


def test_nothing_is_quoted_until_sigma_is_estimated() -> None:
    strategy = started(make_as(sigma=None, min_sigma_samples=4, sigma_window=60, horizon_mode="rolling"))
    ctx = context()
    for i, price in enumerate(["100", "100.5", "100", "100", "100.5"]):
        ctx.now = float(i)
        tick(ctx, strategy, price)
    assert strategy.desired_orders(ctx) == []
    status = strategy.status()
    assert status["waiting"] == "sigma: 3 of the 4 index price changes needed in the last 60 s"
    assert status["sigma"] is None and status["sigma_source"] == "estimate" and status["sigma_samples"] == 3
    ctx.now = 5.0
    tick(ctx, strategy, "101")
    # 4 changes of 0.5 over the 5 s since the first price: sigma^2 = 4 * 0.25 / 5 = 0.2
    bids, asks = book(strategy.desired_orders(ctx))
    assert strategy.status()["waiting"] is None
    assert strategy.status()["sigma"] == pytest.approx(0.2**0.5)
    bid, ask = paper_as(101, 0, 0.1, 0.2**0.5, 1.5, 1)
    assert (bids, asks) == ([floor(bid)], [ceil(ask)])


def test_glft_waits_for_a_and_k_from_trades() -> None:
    strategy = started(make_glft(A=None, k=None, min_trades=20, intensity_window=100))
    ctx = context()
    tick(ctx, strategy, "100")
    assert strategy.desired_orders(ctx) == []
    assert strategy.status()["waiting"] == "A and k: 0 of the 20 trades needed in the last 100 s"
    # trades at distances 0, 0.01, ..., spread over 10 s: the counts thin out with the distance
    rng = random.Random(3)
    for i in range(400):
        ctx.now = i / 40
        distance = round(rng.expovariate(1.5), 2)
        trade(ctx, strategy, str(D("100") + D(str(distance))), Side.BUY)
    ctx.now = 10.0
    bids, asks = book(strategy.desired_orders(ctx))
    status = strategy.status()
    assert status["waiting"] is None and status["A_source"] == status["k_source"] == "estimate"
    assert status["trades_in_window"] == 400
    assert 25 < status["A"] < 60 and 1.0 < status["k"] < 2.2  # 40 trades a second, k = 1.5 (a small sample)
    bid_depth, ask_depth = gueant_glft(0, 1, 0.1, 2, status["A"], status["k"])
    assert (bids, asks) == ([floor(100 - bid_depth)], [ceil(100 + ask_depth)])


def test_a_fixed_k_is_used_even_while_a_is_estimated() -> None:
    strategy = started(make_as(A=None, k="3", horizon_mode="rolling"))  # avellaneda_stoikov needs no A
    assert quotes_of(strategy) != ([], [])
    assert strategy.status()["k"] == 3.0 and strategy.status()["A"] is None


def test_trades_before_any_index_price_are_not_measured() -> None:
    strategy = started(make_glft(A=None, k=None))
    trade(context(index=None), strategy, "100")
    assert strategy.intensity.trades == 0


def test_a_quantity_the_market_cannot_hold_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^quantity 0\.00001 has more decimal places"):
        make_glft(quantity="0.00001")
    small = Market("S/USD", tick_size="0.01", price_precision=2, quantity_precision=4, min_quantity="0.01")
    with pytest.raises(ConfigError, match=r"^quantity 0\.001 is below the market's minimum quantity 0\.01"):
        make_glft(small, quantity="0.001")
