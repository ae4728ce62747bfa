"""mmframe.feedtools: the hub every network feed counts and delivers through, exact parsing, backoff."""

from __future__ import annotations

import logging
import random
from decimal import Decimal
from typing import Any

import pytest
import trio
import trio.testing

from mmframe._models import DepthSnapshot, MarketData, PriceTick
from mmframe.feedtools import (
    Backoff,
    BadMessage,
    FeedHub,
    depth_snapshot,
    finite_timestamp,
    parse_levels,
    parse_price,
    parse_quantity,
)

D = Decimal


@pytest.mark.parametrize("raw", ["30000.10", " 30000.10 ", 30000, D("30000.10")])
def test_prices_parse_exactly(raw: Any) -> None:
    assert parse_price(raw) == D("30000.10") if raw != 30000 else parse_price(raw) == D(30000)
    assert str(parse_price("0.00000001")) == "1E-8" and parse_price("0.00000001") == D("0.00000001")


@pytest.mark.parametrize("raw", [30000.1, True, None, "abc", "", "-1", "0", "NaN", "Infinity", "1e16", [1], {}])
def test_bad_prices_are_refused_naming_the_field(raw: Any) -> None:
    with pytest.raises(BadMessage, match="bid"):
        parse_price(raw, "bid")


def test_quantities_may_be_zero_but_not_negative() -> None:
    assert parse_quantity("0") == 0
    with pytest.raises(BadMessage):
        parse_quantity("-0.1")


def test_levels_parse_and_ignore_extra_items() -> None:
    assert parse_levels([["100.5", "2", "0", "4"], ["100", "1"]], "bids") == [(D("100.5"), D("2")), (D("100"), D("1"))]
    for bad in ("x", [["100"]], [[1.5, "1"]], [None], [["1", "1"]] * 1001):
        with pytest.raises(BadMessage, match="bids"):
            parse_levels(bad, "bids")


def test_depth_snapshot_sorts_drops_empty_levels_and_refuses_a_crossed_book() -> None:
    snap = depth_snapshot("x", "BTCUSDT", [(D(99), D(1)), (D(100), D(0)), (D(98), D(2))], [(D(102), D(1)),
                                                                                        (D(101), D(3))])
    assert snap.bids == ((D(99), D(1)), (D(98), D(2))) and snap.asks == ((D(101), D(3)), (D(102), D(1)))
    with pytest.raises(BadMessage, match="crossed"):
        depth_snapshot("x", "BTCUSDT", [(D(101), D(1))], [(D(100), D(1))])


def test_timestamps_in_milliseconds_or_seconds() -> None:
    assert finite_timestamp(1699999999999) == pytest.approx(1699999999.999)
    assert finite_timestamp(1699999999.5) == 1699999999.5
    for bad in ("1", None, True, float("nan"), -1):
        with pytest.raises(BadMessage):
            finite_timestamp(bad)


def test_backoff_grows_exponentially_with_jitter_and_resets() -> None:
    backoff = Backoff(initial=0.5, maximum=8.0, factor=2.0, jitter=0.5, rng=random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    ceilings = [0.5, 1, 2, 4, 8, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered: no two clients in step
    backoff.reset()
    assert backoff.next() <= 0.5
    with pytest.raises(ValueError):
        Backoff(initial=0)


async def test_the_hub_delivers_counts_and_reports_per_symbol(autojump_clock: trio.testing.MockClock) -> None:
    hub = FeedHub("test")
    btc: list[MarketData] = []
    eth: list[MarketData] = []
    hub.subscribe("BTCUSDT", btc.append)
    hub.subscribe("ETHUSDT", eth.append)
    hub.connected()
    hub.deliver(PriceTick("x", "BTCUSDT", "100"))
    hub.deliver(DepthSnapshot("x", "BTCUSDT", bids=[("99", "1")], asks=[("101", "1")]))
    hub.deliver(PriceTick("x", "SOLUSDT", "5"))  # nobody listens: counted, dropped
    hub.reject("price is not a number", "BTCUSDT")
    hub.reject("not JSON")
    await trio.sleep(3)
    stats = hub.statistics("BTCUSDT")
    assert (stats.messages, stats.rejected, stats.unattributed_rejected) == (2, 1, 1)
    assert stats.last_price == D("100") and stats.last_update_age == pytest.approx(3.0) and stats.connected
    assert len(btc) == 2 and eth == []
    assert hub.statistics("ETHUSDT").last_update_age is None
    hub.disconnected()
    assert hub.statistics("ETHUSDT").reconnects == 1 and not hub.statistics("ETHUSDT").connected
    assert hub.totals() == {"messages": 3, "rejected": 2, "reconnects": 1}


async def test_the_hub_signals_when_the_symbols_change() -> None:
    hub = FeedHub("test")
    changes = 0

    async def watch() -> None:
        nonlocal changes
        while True:
            await hub.wait_changed()
            changes += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await trio.testing.wait_all_tasks_blocked()
        first = hub.subscribe("BTCUSDT", lambda item: None)
        await trio.testing.wait_all_tasks_blocked()
        second = hub.subscribe("BTCUSDT", lambda item: None)  # not the first listener: no change
        await trio.testing.wait_all_tasks_blocked()
        assert changes == 1 and hub.symbols() == {"BTCUSDT"}
        first.close()
        await trio.testing.wait_all_tasks_blocked()
        assert changes == 1
        second.close()
        second.close()  # closing twice is harmless
        await trio.testing.wait_all_tasks_blocked()
        assert changes == 2 and hub.symbols() == frozenset()
        nursery.cancel_scope.cancel()


async def test_a_raising_listener_is_removed_and_the_others_still_get_data(caplog: pytest.LogCaptureFixture) -> None:
    hub = FeedHub("test")
    good: list[MarketData] = []

    def broken(item: MarketData) -> None:
        raise RuntimeError("bug")

    hub.subscribe("BTCUSDT", broken)
    hub.subscribe("BTCUSDT", good.append)
    with caplog.at_level(logging.ERROR, logger="mmframe.feed.test"):
        hub.deliver(PriceTick("x", "BTCUSDT", "1"))
        hub.deliver(PriceTick("x", "BTCUSDT", "2"))
    assert len(good) == 2 and hub.listener_errors == 1 and hub.listener_count() == 1
    assert "BTCUSDT" in caplog.records[0].getMessage()


def test_subscribing_needs_a_symbol() -> None:
    with pytest.raises(ValueError):
        FeedHub("test").subscribe("", lambda item: None)
