"""The strategy on the engine (mmframe.testing's harness): a scripted index feed, the paper sink, the MockClock."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import trio

from .helpers import D, Engine, expected_ladder, messages, seed_config, seed_levels, settle, spec, start_engine


def within_variation(actual: list[tuple[Decimal, Decimal]], nominal: list[tuple[Decimal, Decimal]]) -> bool:
    """Same prices; each quantity in [nominal * 0.8, nominal] (the engine's 20 % size variation, 2 dp)."""
    if [p for p, _ in actual] != [p for p, _ in nominal]:
        return False
    return all((q * D("0.8")).quantize(D("0.01")) <= a <= q for (_, a), (_, q) in zip(actual, nominal, strict=True))


async def quoting(nursery: trio.Nursery, index: str = "45000.00", **spec_kwargs: Any) -> Engine:
    engine = await start_engine(nursery)
    await engine.start(spec(**spec_kwargs))
    engine.push_tick(index)
    await settle()
    return engine


async def test_acceptance_the_seed_config_puts_exactly_the_seed_ladder_on_the_book(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    """The seed's database row config on BTC/USDT (tick 0.1, prices to 4 dp, quantities to 2 dp), index 45000.00."""
    engine = await quoting(nursery, "45000.00")
    bids, asks = engine.ladder()
    assert len(bids) == 10 and len(asks) == 10
    # Computed independently, from the formulas: bid = 45000 * (1 - s) down to 0.1, ask = 45000 * (1 + s) up.
    want_bids, want_asks = expected_ladder("45000.00", seed_levels(), 10)
    assert [p for p, _ in bids] == [p for p, _ in want_bids] == [
        D(x) for x in ("44995.5", "44991", "44977.5", "44955", "44325", "44100", "43875", "43650", "43425", "43200")
    ]
    assert [p for p, _ in asks] == [p for p, _ in want_asks] == [
        D(x) for x in ("45004.5", "45009", "45022.5", "45045", "45675", "45900", "46125", "46350", "46575", "46800")
    ]
    assert [q for _, q in want_bids] == [D(x) for x in ("10", "9.5", "9", "8.5", "7.5", "6.5", "5.5", "4.5", "3.5",
                                                        "2.5")]
    for (price, quantity), (_, nominal) in zip(bids + asks, want_bids + want_asks, strict=True):
        assert (nominal * D("0.8")).quantize(D("0.01")) <= quantity <= nominal, (price, quantity, nominal)
        assert quantity == quantity.quantize(D("0.01"))
        assert price == price.quantize(D("0.1"))
    # The size variation is really applied (the seed's up-to-20 % random sizes): not every order is nominal.
    assert any(q < n for (_, q), (_, n) in zip(bids + asks, want_bids + want_asks, strict=True))
    status = engine.status()
    assert status.orders_placed == 20 and status.orders_cancelled == 0 and status.orders_vetoed == 0
    assert status.strategy_status["anchor_reference"] == "45000.00"
    assert status.strategy_status["bids_quoted"] == 10 and status.strategy_status["asks_quoted"] == 10


async def test_a_moving_index_moves_only_the_levels_that_moved(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await quoting(nursery, "45000.00")
    start = engine.status()
    assert (start.orders_placed, start.orders_cancelled) == (20, 0)

    # 0.05 is far below price_change_amount (1.0): nothing is sent while the maintenance interval (1 s) runs.
    engine.push_tick("45000.05")
    await trio.sleep(0.5)
    assert (engine.status().orders_placed, engine.status().orders_cancelled) == (20, 0)

    # The maintenance interval passes: the ladder is rebuilt on 45000.05. Only levels whose rounded price changed
    # are moved, each by one amend (the paper sink can amend; computed here independently).
    before = expected_ladder("45000.00", seed_levels(), 10)
    after = expected_ladder("45000.05", seed_levels(), 10)
    moved = sum(a[0] != b[0] for a, b in zip(before[0] + before[1], after[0] + after[1], strict=True))
    assert 0 < moved < 20
    await trio.sleep(1.0)
    status = engine.status()
    assert (status.orders_placed, status.orders_cancelled, status.orders_amended) == (20, 0, moved)
    assert within_variation(engine.ladder()[0], after[0]) and within_variation(engine.ladder()[1], after[1])

    # A move of at least price_change_amount requotes at once, without waiting for the maintenance interval.
    engine.push_tick("45002.05")
    await settle()
    later = expected_ladder("45002.05", seed_levels(), 10)
    moved_again = sum(a[0] != b[0] for a, b in zip(after[0] + after[1], later[0] + later[1], strict=True))
    status = engine.status()
    assert (status.orders_placed, status.orders_cancelled, status.orders_amended) == (20, 0, moved + moved_again)
    assert engine.prices() == ([p for p, _ in later[0]], [p for p, _ in later[1]])

    # An unchanged index sends nothing, however long it lasts.
    for _ in range(10):
        engine.push_tick("45002.05")
        await trio.sleep(1)
    assert messages(engine) == 20 + moved + moved_again


async def test_a_stale_index_pulls_the_ladder_until_a_fresh_tick(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await quoting(nursery, "45000", stale_after=5.0)
    assert len(engine.our_orders()) == 20
    await trio.sleep(4)
    assert len(engine.our_orders()) == 20 and not engine.status().stale
    await trio.sleep(2.5)  # no tick for more than stale_after
    assert engine.status().stale and engine.our_orders() == []
    engine.push_tick("45010")
    await settle()
    assert not engine.status().stale
    want = expected_ladder("45010", seed_levels(), 10)
    assert engine.prices() == ([p for p, _ in want[0]], [p for p, _ in want[1]])


async def test_a_bad_tick_is_not_quoted_until_confirmed(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    await engine.start(spec(confirm_ticks=3))
    t0 = time.time()
    engine.push_tick("45000", timestamp=t0)
    await settle()
    first = engine.prices()
    engine.push_tick("50000", timestamp=t0 + 0.01)  # an 11 % jump (max_tick_jump 10 %): rejected
    await trio.sleep(2)
    engine.push_tick("50000", timestamp=t0 + 0.02)  # the second agreeing tick: still rejected
    await trio.sleep(2)
    assert engine.status().ticks_rejected == 2 and engine.status().index_price == D("45000")  # in doubt: ...
    assert engine.status().index_in_doubt and engine.prices() == ([], [])  # ... nothing quoted off either price
    assert first[0] and first[1]
    engine.push_tick("50000", timestamp=t0 + 0.03)  # the third agrees: the new level is accepted, the ladder follows
    await settle()
    want = expected_ladder("50000", seed_levels(), 10)
    assert engine.prices() == ([p for p, _ in want[0]], [p for p, _ in want[1]])


async def test_max_active_orders_caps_the_ladder(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await quoting(nursery, "45000", strategy_config=seed_config(max_active_orders=9))
    bids, asks = engine.prices()
    want = expected_ladder("45000", seed_levels(), 10)
    assert bids == [p for p, _ in want[0][:4]] and asks == [p for p, _ in want[1][:4]]
    for price in ("45003", "45006", "45010"):
        engine.push_tick(price)
        await trio.sleep(1)
        assert len(engine.our_orders()) == 8 and engine.status().active_orders <= 9
    assert engine.status().orders_vetoed == 0


async def test_orders_older_than_order_timeout_are_replaced(nursery: trio.Nursery, autojump_clock: Any) -> None:
    config = seed_config(order_timeout_sec=5)
    engine = await quoting(nursery, "45000", strategy_config=config, stale_after=3600.0)
    first = {o.client_order_id for o in engine.our_orders()}
    (created,) = {o.created_at for o in engine.live_orders()}
    assert len(first) == 20
    await trio.sleep(4.5)
    assert {o.client_order_id for o in engine.our_orders()} == first  # not old enough yet
    await trio.sleep(1.0)
    second = {o.client_order_id for o in engine.our_orders()}
    assert len(second) == 20 and not first & second  # every order was replaced, the ladder is whole again
    assert all(o.created_at >= created + 5 for o in engine.live_orders())
    status = engine.status()
    assert (status.orders_placed, status.orders_cancelled) == (40, 20)
    assert status.strategy_status["timed_out_orders"] == 20
    want = expected_ladder("45000", seed_levels(), 10)
    assert engine.prices() == ([p for p, _ in want[0]], [p for p, _ in want[1]])


async def test_order_refresh_replaces_the_oldest_share_each_interval(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    config = seed_config(order_refresh_interval_sec=10, order_refresh_percent=0.1)
    engine = await quoting(nursery, "45000", strategy_config=config, stale_after=3600.0)
    original = {o.client_order_id for o in engine.our_orders()}
    rounds: list[set[str]] = []  # the ids each refresh round placed
    seen = set(original)
    await trio.sleep(0.5)
    for n in range(1, 12):
        await trio.sleep(10)
        now = {o.client_order_id for o in engine.our_orders()}
        assert len(now) == 20
        new = now - seen
        assert len(new) == 2, n  # 10 % of 20 orders replaced each interval
        rounds.append(new)
        seen |= new
        status = engine.status()
        assert (status.orders_placed, status.orders_cancelled) == (20 + 2 * n, 2 * n)
        if n <= 10:  # oldest first: the original orders go first, two per round
            assert len(original & now) == 20 - 2 * n
    # Round 11: every original is gone, so the two oldest are the ones round 1 placed.
    assert not rounds[0] & now and rounds[1] <= now
    assert engine.status().strategy_status["refreshes"] == 11
    assert engine.status().strategy_status["refreshed_orders"] == 22
