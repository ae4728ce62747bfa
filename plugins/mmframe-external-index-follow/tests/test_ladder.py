"""The strategy's decisions without an engine (mmframe.testing.FakeContext): the ladder, the anchor, the cap."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from mmframe_external_index_follow import SIZE_VARIATION, Config, ExternalIndexFollow

from mmframe import Market, OrderType, Quote, Side, structure_config
from mmframe.testing import FakeContext

from .helpers import BTC, SEED_DATABASE_CONFIG_JSON, D, expected_ladder, seed_config, seed_levels


def strategy(market: Market = BTC, **changes: Any) -> ExternalIndexFollow:
    return ExternalIndexFollow(structure_config(seed_config(**changes), Config), market)


def split(quotes: list[Quote]) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    bids = [(q.price, q.quantity) for q in quotes if q.side is Side.BUY]
    asks = [(q.price, q.quantity) for q in quotes if q.side is Side.SELL]
    return bids, asks


def test_the_seed_ladder_follows_the_formulas() -> None:
    ctx = FakeContext(market=BTC)
    ctx.set_index_price("45000.00")
    quotes = strategy().desired_orders(ctx)
    assert split(quotes) == expected_ladder("45000.00", seed_levels(), 10)
    assert all(q.type is OrderType.LIMIT and q.size_variation == SIZE_VARIATION == D("0.2") for q in quotes)
    # Written at the market's precision: what the engine sends unchanged.
    assert all(q.price.as_tuple().exponent == -4 and q.quantity.as_tuple().exponent == -2 for q in quotes)


def test_rounding_is_outward_on_an_awkward_index() -> None:
    ctx = FakeContext(market=BTC)
    ctx.set_index_price("45000.07")
    bids, asks = split(strategy().desired_orders(ctx))
    # 45000.07 * 0.9999 = 44995.570... -> 44995.5 (down); * 1.0001 = 45004.570... -> 45004.6 (up)
    assert bids[0][0] == D("44995.5000") and asks[0][0] == D("45004.6000")
    assert (bids, asks) == expected_ladder("45000.07", seed_levels(), 10)


def test_price_follow_percent_scales_the_reference() -> None:
    ctx = FakeContext(market=BTC)
    ctx.set_index_price("45000")
    bids, asks = split(strategy(price_follow_percent=50).desired_orders(ctx))
    assert (bids, asks) == expected_ladder("22500", seed_levels(), 10)


def test_no_index_no_quotes() -> None:
    s = strategy()
    assert s.desired_orders(FakeContext(market=BTC)) == []
    assert s.status()["anchor_reference"] is None


def test_small_levels_and_colliding_prices_are_dropped() -> None:
    coarse = Market("BTC/USDT", tick_size="50", price_precision=0, quantity_precision=2, min_quantity="0.05")
    ctx = FakeContext(market=coarse)
    ctx.set_index_price("45000")
    levels = [
        {"spread_percent": 0.0001, "quantity_ratio": 1},  # 44995.5 -> 44950 / 45004.5 -> 45050
        {"spread_percent": 0.0002, "quantity_ratio": 1},  # 44991 -> 44950 again, 45009 -> 45050 again: dropped
        {"spread_percent": 0.002, "quantity_ratio": 1},  # 44910 -> 44900 / 45090 -> 45100
        {"spread_percent": 0.003, "quantity_ratio": 0.004},  # 0.04 < min quantity 0.05: dropped
    ]
    quotes = strategy(coarse, depth_levels=levels).desired_orders(ctx)
    assert split(quotes) == ([(D(44950), D("10.00")), (D(44900), D("10.00"))],
                             [(D(45050), D("10.00")), (D(45100), D("10.00"))])


def test_max_order_quantity_caps_each_level() -> None:
    ctx = FakeContext(market=BTC)
    ctx.set_index_price("45000")
    bids, asks = split(strategy(max_order_quantity="7.25").desired_orders(ctx))
    assert [q for _, q in bids] == [D("7.25")] * 5 + [D("6.50"), D("5.50"), D("4.50"), D("3.50"), D("2.50")]
    assert [q for _, q in asks] == [q for _, q in bids]


def test_max_active_orders_keeps_the_nearest_levels_balanced() -> None:
    ctx = FakeContext(market=BTC)
    ctx.set_index_price("45000")
    bids, asks = split(strategy(max_active_orders=7).desired_orders(ctx))
    full_bids, full_asks = expected_ladder("45000", seed_levels(), 10)
    assert bids == full_bids[:3] and asks == full_asks[:3]


def test_levels_are_used_nearest_first_whatever_their_order_in_the_config() -> None:
    ctx = FakeContext(market=BTC)
    ctx.set_index_price("45000")
    shuffled = list(reversed(json.loads(SEED_DATABASE_CONFIG_JSON)["depth_levels"]))
    bids, asks = split(strategy(depth_levels=shuffled, max_active_orders=4).desired_orders(ctx))
    assert [p for p, _ in bids] == [D("44995.5000"), D("44991.0000")]
    assert [p for p, _ in asks] == [D("45004.5000"), D("45009.0000")]


def test_the_anchor_holds_until_the_move_or_the_maintenance_interval() -> None:
    s = strategy(maintenance_interval="5s")  # price_change_amount 1.0
    ctx = FakeContext(market=BTC, now=100.0)
    ctx.set_index_price("45000")
    first = s.desired_orders(ctx)
    ctx.now, ctx.index_price = 101.0, D("45000.9")  # moved 0.9 < 1.0: the same ladder
    assert s.desired_orders(ctx) == first
    ctx.now, ctx.index_price = 102.0, D("44999.1")  # moved 0.9 the other way: still the same
    assert s.desired_orders(ctx) == first
    ctx.now, ctx.index_price = 103.0, D("45001.0")  # moved 1.0 from the anchor: requote
    moved = s.desired_orders(ctx)
    assert split(moved) == expected_ladder("45001.0", seed_levels(), 10)
    assert s.status()["anchor_reference"] == "45001.0" and s.status()["anchored_at"] == 103.0
    ctx.now, ctx.index_price = 107.9, D("45001.5")  # 0.5 away, 4.9 s after the anchor: hold
    assert s.desired_orders(ctx) == moved
    ctx.now = 108.0  # 5 s after the anchor: the maintenance interval re-anchors on 45001.5
    assert split(s.desired_orders(ctx)) == expected_ladder("45001.5", seed_levels(), 10)
    assert s.status()["requotes"] == 3


def test_replace_all_mode_empties_the_book_each_maintenance_interval_then_rebuilds() -> None:
    s = strategy(mode="replace_all")  # maintenance 1 s
    ctx = FakeContext(market=BTC, now=0.0)
    ctx.set_index_price("45000")
    ladder = s.desired_orders(ctx)
    assert len(ladder) == 20
    ctx.now, ctx.index_price = 0.5, D("45010")  # a move does not requote in this mode
    assert s.desired_orders(ctx) == ladder
    ctx.now = 1.0
    assert s.desired_orders(ctx) == []  # cancel everything...
    assert split(s.desired_orders(ctx)) == expected_ladder("45010", seed_levels(), 10)  # ...and place afresh
    assert s.status()["replacements"] == 1


def test_status_is_json_able() -> None:
    s = strategy()
    ctx = FakeContext(market=BTC)
    ctx.set_index_price("45000")
    s.desired_orders(ctx)
    status = s.status()
    assert json.loads(json.dumps(status)) == status
    assert status["bids_quoted"] == 10 and status["asks_quoted"] == 10 and status["levels"] == 10
    assert status["anchor_reference"] == "45000" and status["mode"] == "reconcile"
