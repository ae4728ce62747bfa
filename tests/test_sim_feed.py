"""The built-in ``sim`` feed (random walk and replay) and the ``mmframe.testing`` helpers.

Every test runs on trio's MockClock (the ``autojump_clock`` fixture): virtual time jumps ahead whenever all tasks
sleep, so a minute of ticks takes milliseconds and no test sleeps for real.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import mmframe
from mmframe import DepthSnapshot, MarketData, Position, PriceTick, Quote, Side, Subscription
from mmframe._default_plugins.sim import SimFeed, round_significant
from mmframe._hookspecs import hookimpl
from mmframe._models import Order, OrderRequest, OrderStatus, OrderType
from mmframe._plugins import get_feeds, make_plugin_manager
from mmframe.protocols import ExchangeFeed, StrategyContext
from mmframe.testing import FakeContext, ScriptedFeed, make_market

D = Decimal


class Recorder:
    """A listener that records (virtual arrival time, item)."""

    def __init__(self) -> None:
        self.items: list[tuple[float, MarketData]] = []

    def __call__(self, item: MarketData) -> None:
        self.items.append((trio.current_time(), item))

    @property
    def ticks(self) -> list[PriceTick]:
        return [item for _, item in self.items if isinstance(item, PriceTick)]

    @property
    def prices(self) -> list[Decimal]:
        return [tick.price for tick in self.ticks]

    @property
    def times(self) -> list[float]:
        return [at for at, item in self.items if isinstance(item, PriceTick)]


async def run_for(feed: SimFeed, seconds: float, setup: Callable[[], Any] | None = None) -> None:
    """Run *feed* for *seconds* of virtual time (calling *setup* once it is running), then cancel it."""
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        if setup is not None:
            setup()
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


async def walk(config: SimFeed.Config, symbol: str, seconds: float) -> list[Decimal]:
    feed = SimFeed(config)
    recorder = Recorder()
    feed.subscribe(symbol, recorder)
    await run_for(feed, seconds)
    return recorder.prices


# ---------------------------------------------------------------------------------------------------------------
# Random walk
# ---------------------------------------------------------------------------------------------------------------


async def test_ticks_arrive_at_the_configured_rate(autojump_clock: trio.testing.MockClock) -> None:
    feed = SimFeed(SimFeed.Config(tick_rate=4, seed=1))
    recorder = Recorder()
    start = trio.current_time()
    feed.subscribe("BTCUSDT", recorder)
    await run_for(feed, 10.1)
    # one tick at once, then every 0.25 s: 0, 0.25, ..., 10.0
    assert len(recorder.ticks) == 41
    assert recorder.times == pytest.approx([start + i * 0.25 for i in range(41)])
    assert all(tick.symbol == "BTCUSDT" and tick.exchange == "sim" for tick in recorder.ticks)


async def test_prices_are_positive_exact_decimals(autojump_clock: trio.testing.MockClock) -> None:
    prices = await walk(SimFeed.Config(prices={"BTCUSDT": D("30000")}, volatility=0.01, seed=3), "BTCUSDT", 60)
    assert prices[0] == D("30000")  # the first tick is the start price
    assert len(set(prices)) > 100  # it moves
    for price in prices:
        assert isinstance(price, Decimal)
        assert price > 0
        assert len(price.as_tuple().digits) <= 8  # 8 significant digits, no float tail
        assert "E" not in str(price)
    assert D("20000") < min(prices) and max(prices) < D("45000")  # 1 % a tick for a minute stays plausible


def test_round_significant_builds_exact_decimals() -> None:
    assert round_significant(0.1 + 0.2) == D("0.3")
    assert str(round_significant(0.1 + 0.2)) == "0.3"
    assert str(round_significant(123456789.0)) == "123456790"
    assert str(round_significant(30000.123456789)) == "30000.123"
    assert round_significant(1.2345678912e-5) == D("0.000012345679")


async def test_unlisted_symbols_start_at_100(autojump_clock: trio.testing.MockClock) -> None:
    prices = await walk(SimFeed.Config(prices={"BTCUSDT": D("30000")}, seed=1), "ETHUSDT", 0.1)
    assert prices == [D(100)]


async def test_same_seed_same_path_other_seed_other_path(autojump_clock: trio.testing.MockClock) -> None:
    first = await walk(SimFeed.Config(seed=42, volatility=0.001), "BTCUSDT", 20.25)
    second = await walk(SimFeed.Config(seed=42, volatility=0.001), "BTCUSDT", 20.25)
    other = await walk(SimFeed.Config(seed=43, volatility=0.001), "BTCUSDT", 20.25)
    assert len(first) == 41
    assert first == second
    assert first != other


async def test_symbols_have_independent_paths_whatever_the_subscription_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = SimFeed.Config(seed=7, volatility=0.001)
    alone = await walk(config, "BTCUSDT", 10.25)

    feed = SimFeed(config)
    eth, btc = Recorder(), Recorder()
    feed.subscribe("ETHUSDT", eth)  # another symbol first: must not change BTCUSDT's path
    feed.subscribe("BTCUSDT", btc)
    await run_for(feed, 10.25)

    assert btc.prices == alone
    returns_btc = [b / a for a, b in zip(btc.prices, btc.prices[1:], strict=False)]
    returns_eth = [b / a for a, b in zip(eth.prices, eth.prices[1:], strict=False)]
    assert len(returns_eth) == len(returns_btc) == 20
    assert returns_btc != returns_eth  # both start at 100 but move differently


async def test_several_listeners_per_symbol_and_unsubscribe_stops_delivery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    feed = SimFeed(SimFeed.Config(seed=1, tick_rate=1))
    first, second = Recorder(), Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        sub_first = feed.subscribe("BTCUSDT", first)
        sub_second = feed.subscribe("BTCUSDT", second)
        await trio.sleep(2.5)  # ticks at 0, 1, 2
        sub_first.close()
        assert sub_first.closed
        await trio.sleep(2)  # ticks at 3, 4 for the second listener only
        assert feed.statistics().running_symbols == ("BTCUSDT",)
        with sub_second:
            pass  # leaving the with block closes it too
        await trio.sleep(3)
        assert feed.statistics().running_symbols == ()  # the symbol's task ended with its last listener
        assert feed.statistics().listeners == 0
        nursery.cancel_scope.cancel()
    assert len(first.ticks) == 3
    assert len(second.ticks) == 5
    assert second.prices[:3] == first.prices


async def test_a_raising_listener_is_removed_and_logged_others_carry_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    feed = SimFeed(SimFeed.Config(seed=1, tick_rate=1))
    calls = 0

    def broken(item: MarketData) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("listener bug")

    good = Recorder()
    feed.subscribe("BTCUSDT", broken)
    feed.subscribe("BTCUSDT", good)
    with caplog.at_level(logging.ERROR, logger="mmframe.sim"):
        await run_for(feed, 3.5)
    assert calls == 1  # removed after its first failure
    assert len(good.ticks) == 4
    assert feed.statistics().listener_errors == 1
    errors = [r for r in caplog.records if r.name == "mmframe.sim" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "BTCUSDT" in errors[0].getMessage()
    assert errors[0].exc_info is not None and "listener bug" in str(errors[0].exc_info[1])


async def test_subscribe_after_run_started(autojump_clock: trio.testing.MockClock) -> None:
    feed = SimFeed(SimFeed.Config(seed=1, tick_rate=2))
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        await trio.sleep(5)
        started_at = trio.current_time()
        feed.subscribe("BTCUSDT", recorder)
        await trio.sleep(1.1)
        nursery.cancel_scope.cancel()
    assert recorder.times == pytest.approx([started_at, started_at + 0.5, started_at + 1.0])


async def test_resubscribing_resumes_the_walk(autojump_clock: trio.testing.MockClock) -> None:
    config = SimFeed.Config(seed=5, tick_rate=1, volatility=0.01)
    continuous = await walk(config, "BTCUSDT", 5.5)  # 6 ticks
    feed = SimFeed(config)
    before, after = Recorder(), Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        subscription = feed.subscribe("BTCUSDT", before)
        await trio.sleep(2.5)
        subscription.close()
        await trio.sleep(10)
        feed.subscribe("BTCUSDT", after)
        await trio.sleep(2.5)
        nursery.cancel_scope.cancel()
    assert before.prices + after.prices == continuous


async def test_one_task_drives_every_symbol(autojump_clock: trio.testing.MockClock) -> None:
    """Two hundred symbols subscribed at scattered moments, some leaving and one coming back: no task per symbol,
    and every symbol ticks at the configured rate on its own seeded path while it is subscribed."""
    config = SimFeed.Config(seed=11, tick_rate=5, volatility=0.001)
    feed = SimFeed(config)
    recorders = {f"S{i}": Recorder() for i in range(200)}
    subscriptions: dict[str, Subscription] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        (run_task,) = nursery.child_tasks
        for i, (symbol, recorder) in enumerate(recorders.items()):
            subscriptions[symbol] = feed.subscribe(symbol, recorder)
            await trio.sleep(0.0037 * (i % 7))
        closed_at = trio.current_time()
        for symbol in ("S3", "S50", "S199"):
            subscriptions[symbol].close()
        await trio.sleep(2)
        assert len(feed.statistics().running_symbols) == 197
        reopened_at = trio.current_time()
        feed.subscribe("S50", recorders["S50"])  # comes back: resumes its walk
        await trio.sleep(2)
        assert run_task.child_nurseries == [] and len(nursery.child_tasks) == 1
        assert len(feed.statistics().running_symbols) == 198
        nursery.cancel_scope.cancel()
    for symbol, recorder in recorders.items():
        if symbol in ("S3", "S50", "S199"):
            assert not [t for t in recorder.times if closed_at < t < reopened_at], symbol
            times = [t for t in recorder.times if t <= closed_at]
        else:
            times = recorder.times
        assert times, symbol
        for a, b in itertools.pairwise(times):
            assert 0.2 - 0.005 - 1e-9 <= b - a <= 0.2 + 0.005 + 1e-9, symbol
    assert abs(len(recorders["S0"].times) - (1 + (closed_at + 4 - recorders["S0"].times[0]) / 0.2)) <= 1
    alone = await walk(config, "S50", 60)
    assert recorders["S50"].prices == alone[: len(recorders["S50"].prices)]  # across its pause too
    assert recorders["S7"].prices == (await walk(config, "S7", 60))[: len(recorders["S7"].prices)]


async def test_symbols_subscribed_moments_apart_are_woken_together(autojump_clock: trio.testing.MockClock) -> None:
    """A tick due within a small slack after another symbol's (2 % of the interval, at most 5 ms) is delivered with
    it: never late, at most the slack early; its path is the one it has alone. Farther apart, each on its own time."""
    config = SimFeed.Config(seed=3, tick_rate=4)  # every 0.25 s: slack 5 ms
    feed = SimFeed(config)
    first, near, far = Recorder(), Recorder(), Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        start = trio.current_time()
        feed.subscribe("AAA", first)
        await trio.sleep(0.003)
        feed.subscribe("BBB", near)
        await trio.sleep(0.007)
        feed.subscribe("CCC", far)
        await trio.sleep(2.1)
        nursery.cancel_scope.cancel()
    assert first.times == pytest.approx([start + i * 0.25 for i in range(9)])
    # BBB: its first tick when subscribed, then with AAA's (3 ms early), never on a wake-up of its own
    assert near.times == pytest.approx([start + 0.003] + [start + i * 0.25 for i in range(1, 9)])
    assert far.times == pytest.approx([start + 0.010 + i * 0.25 for i in range(9)])  # 10 ms apart: its own
    assert near.prices == await walk(config, "BBB", 2.1)


async def test_depth_snapshots_around_the_price(autojump_clock: trio.testing.MockClock) -> None:
    feed = SimFeed(SimFeed.Config(seed=2, depth=True, prices={"BTCUSDT": D("30000")}))
    recorder = Recorder()
    feed.subscribe("BTCUSDT", recorder)
    await run_for(feed, 1.1)
    items = [item for _, item in recorder.items]
    assert [type(item) for item in items] == [PriceTick, DepthSnapshot] * 3
    sequences = []
    for tick, depth in zip(items[::2], items[1::2], strict=True):
        assert isinstance(tick, PriceTick) and isinstance(depth, DepthSnapshot)
        assert depth.best_bid is not None and depth.best_ask is not None
        assert depth.best_bid < tick.price < depth.best_ask
        assert [price for price, _ in depth.bids] == sorted((price for price, _ in depth.bids), reverse=True)
        assert [price for price, _ in depth.asks] == sorted(price for price, _ in depth.asks)
        assert len(depth.bids) == len(depth.asks) == 5
        sequences.append(depth.sequence)
    assert sequences == [1, 2, 3]
    assert items[1].bids[0] == (D("29985"), D(1))  # type: ignore[union-attr]


async def test_run_is_cancellable_promptly(autojump_clock: trio.testing.MockClock) -> None:
    feed = SimFeed(SimFeed.Config(tick_rate=0.001))  # next tick in 1000 s
    feed.subscribe("BTCUSDT", lambda item: None)
    start = trio.current_time()
    with trio.move_on_after(1) as scope:
        await feed.run()
    assert scope.cancelled_caught
    assert trio.current_time() - start == pytest.approx(1)
    assert feed.statistics().running_symbols == ()


async def test_run_twice_at_once_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    feed = SimFeed(SimFeed.Config())
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        with pytest.raises(RuntimeError, match="already running"):
            await feed.run()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"tick_rate": 0}, "tick_rate"),
        ({"tick_rate": -1}, "tick_rate"),
        ({"volatility": -0.1}, "volatility"),
        ({"replay_speed": 0}, "replay_speed"),
        ({"prices": {"BTCUSDT": "-5"}}, "prices"),
        ({"prices": {"BTCUSDT": "abc"}}, "prices"),
        ({"exchange": ""}, "exchange"),
        ({"seed": "x"}, "seed"),
        ({"tickrate": 2}, "tickrate"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(mmframe.ConfigError, match=key):
        mmframe.structure_config(config, SimFeed.Config)


def test_config_from_json_like_mapping() -> None:
    config = mmframe.structure_config(
        {"prices": {"BTCUSDT": "30000.5", "ETHUSDT": 2000}, "tick_rate": "4", "seed": 9, "depth": True},
        SimFeed.Config,
    )
    assert config.prices == {"BTCUSDT": D("30000.5"), "ETHUSDT": D(2000)}
    assert config.tick_rate == 4.0
    assert (config.seed, config.depth, config.volatility, config.exchange) == (9, True, 0.0005, "sim")


# ---------------------------------------------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------------------------------------------


def write_ndjson(path: Path, lines: list[Any]) -> str:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return str(path)


@pytest.fixture
def recording(tmp_path: Path) -> str:
    return write_ndjson(
        tmp_path / "ticks.ndjson",
        [
            {"symbol": "BTCUSDT", "price": "30000.5", "timestamp": 1000.0},
            "this is not json",
            {"symbol": "ETHUSDT", "price": "2000", "timestamp": 1001.0},  # nobody subscribes to ETHUSDT
            {"symbol": "BTCUSDT", "price": "-1", "timestamp": 1001.5},  # non-positive: skipped
            {"symbol": "BTCUSDT", "price": "0", "timestamp": 1001.6},  # non-positive: skipped
            {"symbol": "BTCUSDT", "timestamp": 1001.7},  # no price: skipped
            "",
            {"symbol": "BTCUSDT", "price": 30001.25, "timestamp": 1002.0},
            {"symbol": "BTCUSDT", "price": "30002", "timestamp": 1003, "exchange": "binance"},
        ],
    )


async def test_replay_at_the_recorded_pace_skipping_bad_lines(
    autojump_clock: trio.testing.MockClock, recording: str, caplog: pytest.LogCaptureFixture
) -> None:
    feed = SimFeed(SimFeed.Config(replay_file=recording))
    recorder = Recorder()
    feed.subscribe("BTCUSDT", recorder)
    start = trio.current_time()
    with caplog.at_level(logging.WARNING, logger="mmframe.sim"):
        await run_for(feed, 100)
    assert recorder.prices == [D("30000.5"), D("30001.25"), D("30002")]
    assert [at - start for at in recorder.times] == pytest.approx([0, 2, 3])
    assert [tick.exchange for tick in recorder.ticks] == ["sim", "sim", "binance"]
    assert feed.statistics().skipped_lines == 4
    warnings = [r.getMessage() for r in caplog.records if r.name == "mmframe.sim" and r.levelno == logging.WARNING]
    assert any("skipped 4 malformed lines" in message and "line 2" in message for message in warnings)


async def test_replay_speed_scales_the_pace(autojump_clock: trio.testing.MockClock, recording: str) -> None:
    feed = SimFeed(SimFeed.Config(replay_file=recording, replay_speed=4))
    recorder = Recorder()
    feed.subscribe("BTCUSDT", recorder)
    start = trio.current_time()
    await run_for(feed, 100)
    assert [at - start for at in recorder.times] == pytest.approx([0, 0.5, 0.75])


async def test_replay_loop_starts_again(autojump_clock: trio.testing.MockClock, recording: str) -> None:
    # the recording spans 3 s; with tick_rate 1 it starts again 1 s after its last tick: a 4 s cycle
    feed = SimFeed(SimFeed.Config(replay_file=recording, replay_loop=True, tick_rate=1))
    recorder = Recorder()
    feed.subscribe("BTCUSDT", recorder)
    start = trio.current_time()
    await run_for(feed, 10.5)
    assert [at - start for at in recorder.times] == pytest.approx([0, 2, 3, 4, 6, 7, 8, 10])
    assert recorder.prices == [D("30000.5"), D("30001.25"), D("30002")] * 2 + [D("30000.5"), D("30001.25")]


async def test_replay_delivers_symbols_on_a_shared_timeline(
    autojump_clock: trio.testing.MockClock, recording: str
) -> None:
    feed = SimFeed(SimFeed.Config(replay_file=recording))
    btc, eth, sol = Recorder(), Recorder(), Recorder()
    feed.subscribe("BTCUSDT", btc)
    feed.subscribe("ETHUSDT", eth)
    feed.subscribe("SOLUSDT", sol)  # not in the file: nothing, and no error
    start = trio.current_time()
    await run_for(feed, 100)
    assert [at - start for at in eth.times] == pytest.approx([1])
    assert eth.prices == [D(2000)]
    assert len(btc.ticks) == 3
    assert sol.items == []


async def test_replay_of_a_file_that_does_not_exist_fails_loudly(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    feed = SimFeed(SimFeed.Config(replay_file=str(tmp_path / "missing.ndjson")))
    with pytest.raises(FileNotFoundError):
        await feed.run()


# ---------------------------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------------------------


def test_registered_through_the_hook() -> None:
    feeds = get_feeds(make_plugin_manager(load_entrypoints=False))
    assert feeds["sim"] is SimFeed
    assert feeds.registered_by["sim"] == "mmframe.default_plugins.sim"


def test_sim_feed_satisfies_the_protocol() -> None:
    assert isinstance(SimFeed(SimFeed.Config()), ExchangeFeed)
    assert isinstance(ScriptedFeed(), ExchangeFeed)


# ---------------------------------------------------------------------------------------------------------------
# mmframe.testing
# ---------------------------------------------------------------------------------------------------------------


def _order(cid: str, side: Side, price: str, status: OrderStatus = OrderStatus.OPEN, **kwargs: Any) -> Order:
    request = OrderRequest(cid, "BTC/USDT", side, OrderType.LIMIT, quantity=D(1), price=D(price))
    return Order(request, status=status, **kwargs)


def test_fake_context_records_and_shows_what_it_is_given() -> None:
    ctx = FakeContext(market=make_market(), position=Position(base=D("0.5")))
    assert isinstance(ctx, StrategyContext)
    assert ctx.index_price is None and ctx.last_tick is None
    tick = ctx.set_index_price("30000.5")
    assert ctx.index_price == D("30000.5") and ctx.last_tick is tick
    assert FakeContext(index_price="100").index_price == D(100)

    first = ctx.submit(Quote(Side.BUY, D("29999"), D("0.1"), OrderType.IOC))
    second = ctx.submit(Quote(Side.SELL, D("30001"), D("0.1")))
    assert (first, second) == ("fake-1", "fake-2")
    assert [q.side for q in ctx.submitted] == [Side.BUY, Side.SELL]
    ctx.cancel(first)
    assert ctx.cancelled == ["fake-1"]

    ctx.orders = [
        _order("a", Side.BUY, "99"),
        _order("b", Side.SELL, "102"),
        _order("c", Side.BUY, "100"),
        _order("d", Side.SELL, "101", status=OrderStatus.PENDING),
        _order("e", Side.BUY, "100.5", status=OrderStatus.FILLED),
        _order("f", Side.BUY, "100.4", cancel_requested=True),
    ]
    assert [o.client_order_id for o in ctx.live_orders()] == ["c", "a", "d", "b"]
    assert [o.client_order_id for o in ctx.live_orders(Side.BUY)] == ["c", "a"]
    assert [o.client_order_id for o in ctx.live_orders(Side.SELL)] == ["d", "b"]


async def test_scripted_feed_delivers_synchronously() -> None:
    feed = ScriptedFeed()
    got: list[MarketData] = []
    other: list[MarketData] = []
    subscription = feed.subscribe("BTCUSDT", got.append)
    feed.subscribe("ETHUSDT", other.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        assert feed.started
        tick = feed.push_price("BTCUSDT", "30000.5", timestamp=1.0)
        assert got == [tick]  # delivered before push returned
        assert tick.price == D("30000.5") and tick.exchange == "scripted"
        depth = DepthSnapshot("scripted", "BTCUSDT", bids=[("29999", "1")], asks=[("30001", "2")])
        assert feed.push(depth) == 1
        assert got == [tick, depth]
        assert other == []
        assert isinstance(subscription, Subscription)
        subscription.close()
        assert feed.listener_count("BTCUSDT") == 0
        assert feed.push_price("BTCUSDT", "30001") is not None
        assert got == [tick, depth]
        assert len(feed.pushed) == 3
        nursery.cancel_scope.cancel()


def test_scripted_feed_can_be_registered_by_hand() -> None:
    class TestPlugin:
        @hookimpl
        def register_feeds(self, register: Callable[..., None]) -> None:
            register(ScriptedFeed)

    feeds = get_feeds(make_plugin_manager(load_entrypoints=False, plugins=(TestPlugin(),)))
    assert feeds["scripted"] is ScriptedFeed
    assert feeds["sim"] is SimFeed
    # nothing in mmframe.testing registers itself
    assert "scripted" not in get_feeds(make_plugin_manager(load_entrypoints=False))


def test_split_sql_keeps_semicolons_inside_strings_and_drops_comments() -> None:
    from mmframe._store import seed_sql
    from mmframe.testing import mysql_to_sqlite, split_sql

    statements = split_sql("INSERT INTO t VALUES ('a;b'); -- only a comment\n;SELECT 1;")
    assert statements == ["INSERT INTO t VALUES ('a;b')", "SELECT 1"]
    seed = split_sql(seed_sql())
    assert [s.split()[0] for s in seed] == ["CREATE", "CREATE", "INSERT", "INSERT"]
    sqlite = mysql_to_sqlite(seed[0])
    assert "AUTOINCREMENT" in sqlite and "COMMENT" not in sqlite and "`" not in sqlite


@pytest.mark.parametrize("spread", [False, True])
async def test_spread_phases_keeps_symbols_subscribed_together_out_of_lockstep(
    autojump_clock: Any, spread: bool
) -> None:
    feed = SimFeed(SimFeed.Config(tick_rate=5, seed=1, spread_phases=spread))
    arrivals: dict[str, list[float]] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        start = trio.current_time()
        symbols = [f"S{i}USDT" for i in range(20)]
        for symbol in symbols:  # all at the same moment, as markets started together subscribe
            feed.subscribe(symbol, lambda item, s=symbol: arrivals.setdefault(s, []).append(trio.current_time()))
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    firsts = sorted(arrivals[s][0] - start for s in symbols)
    if spread:
        # Within one interval, spread over it (the feed delivers what is due within a few ms together: groups).
        assert all(0 <= t < 0.2 for t in firsts) and firsts[-1] - firsts[0] > 0.1
        assert len({round(t, 6) for t in firsts}) >= 8
        # Then every interval, on its own phase (a tick may come up to the feed's coalescing slack early).
        assert all(abs((later - earlier) - 0.2) <= 0.005 for s in symbols
                   for earlier, later in itertools.pairwise(arrivals[s]))
    else:
        assert firsts == [0.0] * len(symbols)  # at once, all in lockstep
    assert all(4 <= len(arrivals[s]) <= 6 for s in symbols)
