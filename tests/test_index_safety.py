"""The index screen on trio's MockClock: a bad source cannot move the index, a future-dated tick cannot freeze it, a
composite index drops the source that disagrees, the halt circuit stops a market on an unconfirmed move, and the risk
gate's second line (settled index, local book mid) holds even when the index itself is fooled."""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any, ClassVar

import attrs
import pytest
import trio

from mmframe import OrderRequest, OrderType, PriceTick, Side, hookimpl
from mmframe._default_plugins.paper import PaperSink
from mmframe._engine.index import IndexGuard, IndexHalt, IndexScreen, IndexSource
from mmframe._engine.manager import StrategyManager
from mmframe._engine.pricing import others_mid
from mmframe._engine.risk import RiskLimits
from mmframe._engine.spec import MarketState
from mmframe._models import DepthSnapshot, MarketKey
from mmframe._plugins import make_plugin_manager
from mmframe.feedtools import FeedHub, FeedSymbolStats
from mmframe.testing import ScriptedFeed

from .engine_helpers import EnginePlugin, settle
from .engine_helpers import spec as base_spec

D = Decimal


class TaggedFeed(ScriptedFeed):
    """A scripted feed whose config tells instances apart, so a market can follow three of them (a composite)."""

    name: ClassVar[str] = "tagged"
    instances: ClassVar[list[TaggedFeed]] = []

    @attrs.frozen
    class Config:
        which: str = "a"

    def __init__(self, config: Any = None) -> None:
        super().__init__()
        self.config = config
        TaggedFeed.instances.append(self)

    def symbol_statistics(self, symbol: str) -> FeedSymbolStats:
        last = [t.price for t in self.pushed if isinstance(t, PriceTick) and t.symbol == symbol]
        return FeedSymbolStats(self.name, symbol, last_price=last[-1] if last else None)


class TaggedPlugin:
    @hookimpl
    def register_feeds(self, register: Any) -> None:
        register(TaggedFeed)


def spec(**options: Any) -> Any:
    return base_spec(**{"feed": "tagged", "feed_config": {"which": "a"}, **options})


class Engine:
    def __init__(self, manager: StrategyManager, sink: PaperSink) -> None:
        self.manager, self.sink = manager, sink

    def feed(self, number: int = 0) -> TaggedFeed:
        return TaggedFeed.instances[number]

    def push(self, price: str, *, feed: int = 0, timestamp: float | None = None) -> None:
        self.feed(feed).push_price("AAAUSDT", price, timestamp=timestamp)

    def book_orders(self) -> list[Any]:
        return self.sink.book("AAA/USDT").open_orders()

    def prices(self) -> list[Decimal]:
        return sorted(o.price for o in self.book_orders())

    def status(self) -> Any:
        return self.manager.status(MarketKey("AAA/USDT"))[0]


async def start(nursery: trio.Nursery, **spec_options: Any) -> Engine:
    TaggedFeed.instances.clear()
    pm = make_plugin_manager(load_entrypoints=False, plugins=(EnginePlugin(), TaggedPlugin()))
    sink = PaperSink()
    manager = StrategyManager(sink, pm, instance_id="t")
    await nursery.start(manager.run)
    await manager.start_market(spec(**spec_options))
    return Engine(manager, sink)


def all_within(prices: list[Decimal], around: Decimal, fraction: Decimal) -> bool:
    return all(abs(p - around) <= around * fraction for p in prices)


# ---- reproduction 1: disagreeing ticks are not agreement ---------------------------------------------------------


async def test_five_disagreeing_ticks_do_not_move_the_index(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start(nursery, strategy_config={"step": "1"})
    for _ in range(32):  # good ticks at 45000, 4 Hz for 8 s
        engine.push("45000")
        await trio.sleep(0.25)
    assert len(engine.book_orders()) == 4
    for price in ("1000000", "2", "300000", "7", "600000"):  # five ticks 80 ms apart that agree on nothing
        engine.push(price)
        await settle()
        assert engine.status().index_price == D("45000")
        assert all_within(engine.prices(), D("45000"), D("0.001")), engine.prices()
        await trio.sleep(0.08)
    status = engine.status()
    assert status.ticks_rejected_by_reason == {"jump": 5}
    assert status.ticks_rejected == 5
    engine.push("45001")
    await settle()
    assert engine.status().index_price == D("45001")


async def test_agreeing_ticks_move_the_index_only_when_they_agree_over_time(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start(nursery, index_guard=IndexGuard(halt_move=None))
    engine.push("100")
    await settle()
    # a burst of five identical ticks within 0.2 s: they agree, but a burst is not a market moving
    for _ in range(5):
        engine.push("150")
        await trio.sleep(0.04)
    await settle()
    assert engine.status().index_price == D("100")
    # the same level held for over a second (confirm_seconds) with no good tick between: a real move
    for _ in range(6):
        await trio.sleep(0.25)
        engine.push("150")
        await settle()
    assert engine.status().index_price == D("150")
    assert all_within(engine.prices(), D("150"), D("0.02"))


async def test_a_good_tick_between_candidates_starts_the_count_again(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start(nursery, index_guard=IndexGuard(halt_move=None, confirm_seconds=0.5))
    engine.push("100")
    await settle()
    for _ in range(10):  # a wild level, always interrupted by the real one: never confirmed
        for _ in range(4):
            engine.push("300")
            await trio.sleep(0.2)
        engine.push("100.1")
        await trio.sleep(0.2)
    assert engine.status().index_price == D("100.1")
    assert engine.status().ticks_rejected_by_reason["jump"] == 40


# ---- reproduction 2: a future-dated tick -------------------------------------------------------------------------


async def test_a_future_dated_tick_is_rejected_and_does_not_freeze_the_market(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start(nursery, stale_after=5.0)
    engine.push("100")
    await settle()
    engine.push("100.5", timestamp=time.time() + 86400)  # one day ahead
    await settle()
    status = engine.status()
    assert status.index_price == D("100") and status.ticks_rejected_by_reason == {"future": 1}
    for i in range(40):  # ten seconds of good ticks after it: every one is taken, the market never goes stale
        await trio.sleep(0.25)
        engine.push(str(D("100") + D(i) / 100))
        await settle()
        assert not engine.status().stale
    assert engine.status().index_price == D("100.39")
    assert engine.status().ticks == 41 and engine.status().ticks_rejected == 1
    assert len(engine.book_orders()) == 4


def test_the_feed_hub_rejects_and_counts_a_future_dated_tick() -> None:
    hub = FeedHub("bus", clock=lambda: 0.0)
    got: list[Any] = []
    hub.subscribe("BTCUSDT", got.append)
    hub.deliver(PriceTick("binance", "BTCUSDT", D("60600.00"), timestamp=time.time() + 86400))
    hub.deliver(PriceTick("binance", "BTCUSDT", D("45000.00"), timestamp=time.time() + 1))  # within the skew: fine
    assert [t.price for t in got] == [D("45000.00")]
    stats = hub.statistics("BTCUSDT")
    assert stats.rejected == 1 and stats.messages == 1


def test_a_wild_tick_stamped_a_little_ahead_does_not_make_good_ticks_look_old() -> None:
    screen = IndexScreen(["a"], symbol="X", max_tick_jump=D("0.1"), confirm_ticks=3, stale_after=10, guard=IndexGuard())
    wall = time.time()
    assert screen.offer(0, PriceTick("a", "X", D("100"), timestamp=wall), 0.0, wall) is None
    assert screen.update(0.0, wall).tick is not None
    # a x10 price stamped 1.9 s ahead (inside max_clock_skew) passes the source's own checks, then the index
    # refuses it as a jump ...
    assert screen.offer(0, PriceTick("a", "X", D("1000"), timestamp=wall + 1.9), 0.1, wall) is None
    assert screen.update(0.1, wall).tick is None
    # ... and the good tick stamped after the first, but before the wild one, is still taken
    assert screen.offer(0, PriceTick("a", "X", D("100.2"), timestamp=wall + 0.2), 0.2, wall) is None
    verdict = screen.update(0.2, wall)
    assert verdict.tick is not None and verdict.tick.price == D("100.2")


async def test_rejections_are_logged_at_warning_and_rate_limited(
    nursery: trio.Nursery, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mmframe.market")
    engine = await start(nursery)
    engine.push("100")
    await settle()
    for _ in range(200):  # 20 s of a wild price at 10 Hz between good ticks
        engine.push("1000")
        await trio.sleep(0.1)
        engine.push("100")
    lines = [r.getMessage() for r in caplog.records if "rejected an index tick" in r.getMessage()]
    assert 2 <= len(lines) <= 3, lines  # the first, then one per 10 s saying how many more
    assert "more jump rejections since the last report" in lines[1]
    assert engine.status().ticks_rejected_by_reason["jump"] == 200


# ---- the halt circuit --------------------------------------------------------------------------------------------


async def test_an_unconfirmed_move_beyond_halt_move_halts_the_market(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start(nursery, index_guard=IndexGuard(halt_move="0.2", halt_window=60))
    engine.push("100")
    await settle()
    assert len(engine.book_orders()) == 4
    for price in ("108", "116", "124"):  # each step within max_tick_jump; together 24 % within a minute
        await trio.sleep(5)
        engine.push(price)
        await settle()
    status = engine.status()
    assert status.state is MarketState.HALTED
    assert "index moved from 100 to 124" in status.error and "halted" in status.error
    assert engine.book_orders() == []  # cancelled on the way out; nothing quoted at 124
    # an operator looks and starts it again: it quotes off what the feed says now
    await engine.manager.start_market(spec())
    engine.push("124")
    await settle()
    assert engine.status().state is MarketState.RUNNING and len(engine.book_orders()) == 4


async def test_a_slow_move_does_not_halt(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start(nursery, index_guard=IndexGuard(halt_move="0.2", halt_window=60), stale_after=120)
    engine.push("100")
    for price in ("110", "119", "128"):  # 28 % over three minutes: each window of 60 s holds less than 20 %
        await trio.sleep(61)
        engine.push(price)
        await settle()
    assert engine.status().state is MarketState.RUNNING and engine.status().index_price == D("128")


def test_the_screen_raises_index_halt_itself() -> None:
    screen = IndexScreen(["a"], symbol="X", max_tick_jump=D("0.5"), confirm_ticks=1, stale_after=10,
                         guard=IndexGuard(halt_move="0.1"))
    wall = time.time()
    screen.offer(0, PriceTick("a", "X", D("100"), timestamp=wall), 0.0, wall)
    screen.update(0.0, wall)
    screen.offer(0, PriceTick("a", "X", D("111"), timestamp=wall), 1.0, wall)
    with pytest.raises(IndexHalt):
        screen.update(1.0, wall)


# ---- a composite index -------------------------------------------------------------------------------------------


def composite(**options: Any) -> dict[str, Any]:
    return {"index_sources": (IndexSource("tagged", {"which": "b"}), IndexSource("tagged", {"which": "c"})),
            **options}


async def test_a_composite_index_is_the_median_and_drops_a_source_that_disagrees(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start(nursery, **composite())
    assert len(TaggedFeed.instances) == 3
    engine.push("100", feed=0)
    engine.push("100.2", feed=1)
    engine.push("100.4", feed=2)
    await settle()
    assert engine.status().index_price == D("100.2")
    engine.push("150", feed=2)  # one source goes wild: dropped, the other two hold the index
    engine.push("100.1", feed=0)
    await settle()
    status = engine.status()
    assert status.index_price == D("100.15")  # the median of the two that agree
    assert status.ticks_rejected_by_reason.get("disagrees", 0) >= 1
    assert [s["price"] for s in status.index_sources] == ["100.1", "100.2", "150"]
    assert all_within(engine.prices(), D("100.15"), D("0.03"))


async def test_a_move_the_sources_agree_on_is_taken_at_once_and_does_not_halt(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start(nursery, **composite(index_guard=IndexGuard(halt_move="0.1")))
    for feed in range(3):
        engine.push("100", feed=feed)
    await settle()
    for feed in range(3):  # a 30 % move every source agrees on
        engine.push("130", feed=feed)
    await settle()
    assert engine.status().state is MarketState.RUNNING
    assert engine.status().index_price == D("130")
    assert all_within(engine.prices(), D("130"), D("0.03"))


async def test_a_stale_source_leaves_the_composite(nursery: trio.Nursery, autojump_clock: Any) -> None:
        engine = await start(nursery, stale_after=3.0, **composite())
        for feed in range(3):
            engine.push("100", feed=feed)
        await settle()
        for i in range(1, 20):  # source 2 falls silent; the two others carry on (and agree)
            await trio.sleep(0.5)
            engine.push(str(100 + i), feed=0)
            engine.push(str(100 + i), feed=1)
            await settle()
        assert engine.status().index_price == D("119") and not engine.status().stale
        # the silent source speaks again, far away: it is one against two, dropped
        engine.push("50", feed=2)
        await settle()
        assert engine.status().index_price == D("119")


# ---- the risk gate's second line ---------------------------------------------------------------------------------


async def test_settled_band_keeps_orders_near_the_index_that_held(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start(nursery, risk=RiskLimits(price_band="0.5", settled_band="0.02", settled_after=5))
    for _ in range(30):
        engine.push("100")
        await trio.sleep(0.25)
    assert len(engine.book_orders()) == 4
    engine.push("108")  # within max_tick_jump: the index takes it at once ...
    await settle()
    assert engine.status().index_price == D("108")
    assert all_within(engine.prices(), D("100"), D("0.021"))  # ... the book does not follow: nothing near 108
    assert engine.status().orders_vetoed > 0 and "settled_band" in engine.status().last_veto
    for _ in range(30):  # once 108 has held for settled_after, it is quoted
        await trio.sleep(0.25)
        engine.push("108")
    await settle()
    assert len(engine.book_orders()) == 4 and all_within(engine.prices(), D("108"), D("0.02"))


async def test_book_band_refuses_orders_far_from_the_local_books_mid(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start(nursery, risk=RiskLimits(price_band="0.5", book_band="0.05", book_interval=0.5))
    # other participants make a market around 100 on the local book
    await engine.sink.place([
        OrderRequest("other-b", "AAA/USDT", Side.BUY, OrderType.LIMIT, quantity="5", price="99.5"),
        OrderRequest("other-a", "AAA/USDT", Side.SELL, OrderType.LIMIT, quantity="5", price="100.5"),
    ])
    engine.push("100")
    await trio.sleep(1)
    assert len([o for o in engine.book_orders() if o.client_order_id.startswith("t-")]) == 4
    engine.push("109")  # our index says 109; the local book says 100: no order more than 5 % from 100
    await trio.sleep(1)
    ours = [o.price for o in engine.book_orders() if o.client_order_id.startswith("t-")]
    assert all_within(ours, D("100"), D("0.05")), ours
    assert "book_band" in engine.status().last_veto


def test_others_mid_leaves_our_orders_out() -> None:
    from mmframe._models import Order, OrderStatus

    def ours(side: Side, price: str, qty: str) -> Order:
        request = OrderRequest(f"t-{side}{price}", "AAA/USDT", side, OrderType.LIMIT, quantity=qty, price=price)
        return Order(request=request, status=OrderStatus.OPEN)

    depth = DepthSnapshot("paper", "AAA/USDT", bids=[("101", "1"), ("99", "3")], asks=[("102", "2"), ("104", "1")])
    # the best bid (101) is all ours, and 1 of the 3 at 99; the best ask is someone else's
    assert others_mid(depth, [ours(Side.BUY, "101", "1"), ours(Side.BUY, "99", "1")]) == D("100.5")
    assert others_mid(depth, []) == D("101.5")
    assert others_mid(depth, [ours(Side.SELL, "102", "2"), ours(Side.SELL, "104", "1")]) is None


async def test_two_sources_that_disagree_move_nothing_and_the_market_pulls_its_quotes(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start(nursery, stale_after=3.0,
                         index_sources=(IndexSource("tagged", {"which": "b"}),))
    engine.push("45000", feed=0)
    engine.push("45000", feed=1)
    await settle()
    assert len(engine.book_orders()) == 4
    for _ in range(40):  # ten seconds: one source says 45000, the other 52000 (fast); nobody can tell who is right
        engine.push("45000", feed=0)
        for _ in range(5):
            engine.push("52000", feed=1)
            await trio.sleep(0.05)
    status = engine.status()
    assert status.index_price == D("45000")  # the last index both agreed on, never 52000 nor the mean
    assert status.stale and engine.book_orders() == []
    assert status.ticks_rejected_by_reason["disagrees"] > 100


async def test_a_restarted_market_screens_its_first_tick_against_its_last_index(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start(nursery)
    engine.push("45000")
    await settle()
    await engine.manager.stop_market(MarketKey("AAA/USDT"))
    await engine.manager.start_market(spec())
    for _ in range(3):  # a wild burst right after the start: jumps against the last index, never quoted
        engine.push("90000")
        await trio.sleep(0.05)
    assert engine.book_orders() == [] and engine.status().index_price is None
    assert engine.status().ticks_rejected_by_reason == {"jump": 3}
    engine.push("45010")
    await settle()
    assert engine.status().index_price == D("45010") and len(engine.book_orders()) == 4


async def test_a_market_restarted_after_a_real_move_confirms_it_and_does_not_halt(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start(nursery, stale_after=30.0)
    engine.push("100")
    await settle()
    await engine.manager.stop_market(MarketKey("AAA/USDT"))
    await trio.sleep(3600)  # stopped for an hour; the price has moved 30 %
    await engine.manager.start_market(spec(stale_after=30.0))
    for _ in range(6):
        engine.push("130")
        await trio.sleep(0.25)
    status = engine.status()
    assert status.state is MarketState.RUNNING and status.index_price == D("130")
    assert all_within(engine.prices(), D("130"), D("0.02"))


def test_a_source_named_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="more than once"):
        spec(feed="redis", feed_config={"exchange": "binance", "depth": False},
             index_sources=(IndexSource("redis", {"exchange": "binance"}),))
    with pytest.raises(ValueError, match="more than once"):
        spec(index_sources=(IndexSource("tagged", {"which": "a"}),))
    spec(index_sources=(IndexSource("tagged", {"which": "b"}),))  # another channel is fine


def test_a_redis_source_must_name_its_channels() -> None:
    from mmframe._service import spec_from_row
    from mmframe._settings import Settings
    from mmframe._store import MarketDescription, MarketRow
    from mmframe.config import ConfigError

    def row(options: dict[str, Any]) -> MarketRow:
        description = MarketDescription("BTC/USDT", tick_size="0.01", price_precision=2, quantity_precision=2,
                                        options=options)
        return MarketRow(id="879_1", currency_id=879, market_type=1, index_symbol="BTCUSDT", index_source=1,
                         market_status=1, strategy_id=1, strategy_name="external_index_follow", strategy_config={},
                         overrides={}, description=description)

    with pytest.raises(ConfigError, match=r"index_sources\[0\]: a redis source needs feed_config.exchange"):
        spec_from_row(row({"feed": "redis", "index_sources": [{"feed": "redis"}]}), Settings())
    built = spec_from_row(row({"feed": "redis", "feed_config": {"exchange": "binance"},
                               "index_sources": [{"feed": "redis", "feed_config": {"exchange": "okex"}}]}), Settings())
    assert built.source_names == ["redis:BTCUSDT@binance", "redis:BTCUSDT@okex"]


def test_a_few_lots_far_away_do_not_move_the_books_mid_when_book_quantity_is_set() -> None:
    depth = DepthSnapshot("paper", "AAA/USDT", bids=[("99.5", "5"), ("1", "0.01")], asks=[("100.5", "5")])
    spoofed = DepthSnapshot("paper", "AAA/USDT", bids=[("99.9", "0.01"), ("99.5", "5")],
                            asks=[("99.95", "0.01"), ("100.5", "5")])
    assert others_mid(depth, [], D("1")) == D("100")
    assert others_mid(spoofed, [], None) == D("99.925")  # the top of the book, however small
    assert others_mid(spoofed, [], D("1")) == D("100")  # the price where 1 lot is there to trade
    assert others_mid(DepthSnapshot("paper", "AAA/USDT", bids=[("99", "0.5")], asks=[("101", "5")]), [], D("1")) is None


async def test_sources_that_disagree_pull_the_quotes_at_once(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start(nursery, stale_after=30.0, **composite())
    for feed in range(3):
        engine.push("100", feed=feed)
    await settle()
    assert len(engine.book_orders()) == 4
    engine.push("130", feed=1)  # one of three disagrees: dropped, the other two still hold the index
    await settle()
    assert len(engine.book_orders()) == 4 and not engine.status().index_in_doubt
    engine.push("160", feed=2)  # now all three disagree: nobody can say which is right
    await settle()
    status = engine.status()
    assert status.index_in_doubt and engine.book_orders() == [], "quotes stay up while the sources disagree"
    engine.push("100.1", feed=1)
    engine.push("100.2", feed=2)
    await settle()
    assert not engine.status().index_in_doubt and len(engine.book_orders()) == 4


async def test_a_composite_takes_its_first_index_from_a_majority_only(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start(nursery, **composite())
    for _ in range(8):  # one source alone at start-up (the one that ticks first may be the wrong one)
        engine.push("90000", feed=2)
        await trio.sleep(0.25)
    assert engine.status().index_price is None and engine.book_orders() == []
    engine.push("45000", feed=0)
    engine.push("45001", feed=1)
    await settle()
    assert engine.status().index_price == D("45000.5") and all_within(engine.prices(), D("45000"), D("0.001"))


async def test_a_reload_onto_sources_far_from_the_index_is_refused(nursery: trio.Nursery, autojump_clock: Any) -> None:
    from mmframe._errors import ConfigError

    engine = await start(nursery, **composite())
    for feed in range(3):
        engine.push("100", feed=feed)
        engine.feed(feed).push_price("BBBUSDT", "3000")  # the same feeds also carry another instrument
    await settle()
    # The market's own feed unchanged, its two other sources moved to the other instrument: they would outvote it.
    moved = spec(index_sources=(IndexSource("tagged", {"which": "b"}, "BBBUSDT"),
                                IndexSource("tagged", {"which": "c"}, "BBBUSDT")))
    with pytest.raises(ConfigError, match=r"sources including tagged:BBBUSDT at 3000, .* more than .*max_tick_jump"):
        engine.manager.dry_build(moved)
    near = spec(index_sources=(IndexSource("tagged", {"which": "b"}), IndexSource("tagged", {"which": "c"}),
                               IndexSource("tagged", {"which": "d"})))
    with pytest.raises(ConfigError, match="whose price is not known here"):
        engine.manager.dry_build(near)  # a feed not running yet cannot be checked
    engine.manager.dry_build(spec(index_sources=(IndexSource("tagged", {"which": "c"}),)))  # dropping one is fine
