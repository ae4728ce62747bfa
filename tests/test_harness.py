"""mmframe.testing's engine and service harnesses: a strategy in a real engine (the paper sink, a scripted feed, the
mock clock), driven tick by tick and inspected; fills against a crossing order and against simulated takers; a
stop leaves none of our orders on the paper book; the plugins as mmframe finds them; a service on a seeded
database."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import click
import pytest
import trio
from click.testing import CliRunner

from mmframe import (
    ConfigError,
    Fill,
    Market,
    MarketKey,
    MarketSpec,
    MarketState,
    MarketStatus,
    PluginError,
    Position,
    Quote,
    RiskLimits,
    Side,
    Strategy,
    StrategyContext,
    hookimpl,
)
from mmframe.testing import (
    Harness,
    PaperSink,
    ScriptedFeed,
    describe_market,
    load_plugins,
    make_market,
    run_engine,
    run_service,
    run_strategy,
    seed_database,
    seed_sql,
    sink_metrics_text,
    split_sql,
    start_engine,
)

from .service_helpers import SeedIndexFollow

D = Decimal


class OneLevel(Strategy):
    """One bid and one ask ``step`` from the index; leans away from what it holds (``skew`` per unit held)."""

    name = "one_level"

    @attrs.frozen
    class Config:
        step: Decimal = attrs.field(default=D(1), converter=Decimal)
        quantity: Decimal = attrs.field(default=D(1), converter=Decimal)
        skew: Decimal = attrs.field(default=D(0), converter=Decimal)

    def desired_orders(self, ctx: StrategyContext) -> Iterable[Quote]:
        index = ctx.index_price
        if index is None:
            return []
        c = self.config
        mid = index - c.skew * ctx.position.base
        return [Quote(Side.BUY, mid - c.step, c.quantity), Quote(Side.SELL, mid + c.step, c.quantity)]


class OneLevelPlugin:
    @hookimpl
    def register_strategies(self, register: Any) -> None:
        register(OneLevel)


# ---------------------------------------------------------------------------------------------------------------
# run_strategy
# ---------------------------------------------------------------------------------------------------------------


async def test_a_strategy_quotes_on_the_paper_book_and_follows_the_index(autojump_clock: Any) -> None:
    async with run_strategy(OneLevel, {"step": "5"}) as engine:
        assert isinstance(engine, Harness) and isinstance(engine.sink, PaperSink)
        assert engine.markets == [MarketKey("BTC/USDT")]
        assert engine.prices() == ([], [])  # no index yet
        tick = engine.push_tick("30000")
        assert tick.symbol == "BTCUSDT" and tick.price == D(30000)
        await engine.settle()
        assert engine.ladder() == ([(D("29995"), D(1))], [(D("30005"), D(1))])
        assert engine.our_bids() == [(D("29995"), D(1))] and engine.our_asks() == [(D("30005"), D(1))]
        status = engine.status()
        assert isinstance(status, MarketStatus) and status.state is MarketState.RUNNING
        assert (status.bids, status.asks, status.orders_placed, status.index_price) == (1, 1, 2, D(30000))
        assert isinstance(engine.strategy(), OneLevel)
        prefix = engine.client_prefix()
        assert prefix == "t-BTCUSDT1-"
        assert [o.side for o in engine.live_orders()] == [Side.BUY, Side.SELL]  # best first, bids first
        assert all(o.client_order_id.startswith(prefix) for o in engine.live_orders())
        assert [o.client_order_id for o in engine.our_orders()] == [o.client_order_id for o in engine.live_orders()]
        assert engine.other_orders() == [] and engine.fills() == [] and engine.finished_orders() == []

        engine.push_tick("30100")
        await engine.settle()
        assert engine.prices() == ([D("30095")], [D("30105")])
        # The paper sink can amend: the two orders moved, each by one amend; none finished.
        assert engine.finished_orders() == [] and engine.status().orders_amended == 2
        assert engine.status().orders_cancelled == 0
    assert engine.our_orders() == []  # leaving the block stopped the market and cancelled its orders


async def test_a_crossing_order_fills_ours_and_the_strategy_sees_it(autojump_clock: Any) -> None:
    async with run_strategy(OneLevel, {"step": "5", "quantity": "2", "skew": "1"}) as engine:
        engine.push_tick("30000")
        await engine.settle()
        (bid,) = engine.our_orders()[:1]
        result = engine.take(Side.SELL, "0.5", "29990")  # crosses our bid at 29995: trades at our price
        assert [t.price for t in result.trades] == [D("29995")]
        await engine.settle()
        (fill,) = engine.fills()
        assert isinstance(fill, Fill)
        assert (fill.side, fill.price, fill.quantity, fill.client_order_id) == (
            Side.BUY, D("29995"), D("0.5"), bid.client_order_id)
        status = engine.status()
        assert status.position == D("0.5") and status.fills == 1
        # the strategy leans away from what it holds: both quotes half a unit lower
        assert engine.prices() == ([D("29994.5")], [D("30004.5")])
        assert engine.other_orders() == []  # the crossing order was filled whole, nothing of it rests

        # a resting order of another participant's shows in the book, not among ours
        engine.take(Side.BUY, "3", "29000", owner="alice")
        await engine.settle()
        assert [(o.owner, o.price) for o in engine.other_orders()] == [("alice", D("29000"))]
        assert engine.book().best_bid == D("29994.5")
        # a market order of another participant's takes our ask
        engine.take(Side.BUY, "1")
        await engine.settle()
        assert engine.status().position == D("-0.5") and len(engine.fills()) == 2
        assert engine.fills()[-1].side is Side.SELL


async def test_simulated_takers_fill_our_quotes(autojump_clock: Any) -> None:
    sink = PaperSink(PaperSink.Config(taker_flow_rate=2.0, seed=3))
    async with run_strategy(OneLevel, {"quantity": "1"}, sink=sink, stale_after=1e9) as engine:
        for _ in range(30):
            engine.push_tick("100")
            await trio.sleep(1)
        fills = engine.fills()
        assert len(fills) >= 5
        assert {f.side for f in fills} == {Side.BUY, Side.SELL}
        bought = sum((f.quantity for f in fills if f.side is Side.BUY), D(0))
        sold = sum((f.quantity for f in fills if f.side is Side.SELL), D(0))
        assert engine.status().position == bought - sold
        assert engine.status().fills == len(fills)
        assert len(engine.our_orders()) == 2  # each fill's order replaced
    assert engine.our_orders() == [] and engine.book().open_orders() == []


async def test_stop_leaves_none_of_our_orders_and_start_again_keeps_the_position(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start_engine(nursery, OneLevelPlugin())
    await engine.start(strategy="one_level", strategy_config={"step": "2"}, risk=RiskLimits(max_position="10"))
    engine.push_tick("100")
    await engine.settle()
    engine.take(Side.SELL, "1", "98")
    engine.take(Side.BUY, "4", "50", owner="bob")  # another participant's, resting
    await engine.settle()
    assert engine.status().position == D(1) and len(engine.our_orders()) == 2

    status = await engine.stop()
    assert status.state is MarketState.STOPPED and not engine.is_active()
    assert engine.our_orders() == []  # every order of ours cancelled before stop returned
    assert [o.owner for o in engine.book().open_orders()] == ["bob"]  # the other participant's is left alone

    await engine.start(engine.spec())
    assert engine.is_active() and engine.status().position == D(1)  # what it held is still held
    engine.push_tick("100")
    await engine.settle()
    assert engine.prices() == ([D(98)], [D(102)])
    assert len(engine.fills()) == 1  # across the restart

    await engine.aclose()
    assert engine.our_orders() == []


async def test_several_markets_are_named(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery, strategies=[OneLevel])
    with pytest.raises(LookupError, match="no market has been started"):
        engine.status()
    for symbol in ("AAA/USDT", "BBB/USDT"):
        await engine.start(market=make_market(symbol), strategy="one_level")
    with pytest.raises(LookupError, match="runs 2 markets"):
        engine.status()
    engine.push_tick("10", market="AAA/USDT")
    engine.push_tick("20", market=MarketKey("BBB/USDT"))
    await engine.settle()
    assert engine.prices("AAA/USDT") == ([D(9)], [D(11)])
    assert engine.prices(make_market("BBB/USDT")) == ([D(19)], [D(21)])
    assert engine.feed("AAA/USDT") is engine.feed("BBB/USDT")  # one scripted feed, shared
    assert isinstance(engine.feed("AAA/USDT"), ScriptedFeed)
    assert engine.client_prefix("BBB/USDT") == "t-BBBUSDT1-"
    await engine.stop("AAA/USDT")
    assert engine.our_orders("AAA/USDT") == [] and len(engine.our_orders("BBB/USDT")) == 2


async def test_a_depth_snapshot_reaches_the_strategy(autojump_clock: Any) -> None:
    seen: list[Any] = []

    class DepthWatcher(OneLevel):
        name = "depth_watcher"

        def on_depth(self, depth: Any, ctx: StrategyContext) -> None:
            seen.append((depth.best_bid, depth.best_ask, ctx.depth is depth))

    async with run_strategy(DepthWatcher) as engine:
        engine.push_tick("100")
        depth = engine.push_depth(bids=[("99.5", "1")], asks=[("100.5", "2")])
        assert depth.symbol == "BTCUSDT"
        await engine.settle()
        assert seen == [(D("99.5"), D("100.5"), True)]


async def test_a_market_that_fails_to_start_says_why(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery, strategies=[OneLevel])
    status = await engine.start(strategy="one_level", strategy_config={"stepp": 1})
    assert status.state is MarketState.FAILED and "stepp" in status.error
    with pytest.raises(LookupError, match="is not running"):
        engine.push_tick("1")
    with pytest.raises(RuntimeError, match=r"did not start.*stepp"):
        async with run_strategy(OneLevel, {"stepp": 1}):
            pass


    class Impostor(OneLevel):
        name = "one_level"

    with pytest.raises(PluginError, match="another strategy as 'one_level'"):
        async with run_strategy(Impostor, plugins=[OneLevelPlugin()]):
            pass
    async with run_strategy(OneLevel, plugins=[OneLevelPlugin()]) as engine:  # the plugin's own: registered once
        assert isinstance(engine.strategy(), OneLevel)


async def test_the_dry_build_checks_a_spec(nursery: trio.Nursery) -> None:
    engine = await start_engine(nursery, strategies=[OneLevel])
    spec = MarketSpec(market=make_market(), strategy="one_level", strategy_config={"quantity": "5"},
                      risk=RiskLimits(max_order_quantity="10"))
    assert len(engine.dry_build(spec).quotes) == 2
    with pytest.raises(ConfigError, match="exceeds max_order_quantity 1"):
        engine.dry_build(attrs.evolve(spec, risk=RiskLimits(max_order_quantity="1")))


async def test_a_sink_of_the_tests_own_and_a_hook(nursery: trio.Nursery, autojump_clock: Any) -> None:
    """A paper sink subclass stands in for a test's own sink; a plugin's hooks see the engine's events."""

    class CountingSink(PaperSink):
        placed = 0

        async def place(self, requests: Any) -> None:
            CountingSink.placed += len(requests)
            await super().place(requests)

    positions: list[Position] = []

    class Watcher:
        @hookimpl
        def order_filled(self, market: Market, fill: Fill, position: Position) -> None:
            positions.append(position)

    sink = CountingSink()
    async with run_engine(Watcher(), sink=sink, strategies=[OneLevel], instance_id="x") as engine:
        await engine.start(strategy="one_level")
        engine.push_tick("100")
        await engine.settle()
        assert CountingSink.placed == 2 and engine.client_prefix().startswith("x-")
        engine.take(Side.BUY, "1", "101")
        await engine.settle()
        assert [p.base for p in positions] == [D(-1)]
    assert sink.book("BTC/USDT").open_orders() == []


async def test_the_fixed_spread_example_on_the_engine(autojump_clock: Any) -> None:
    if importlib.util.find_spec("mmframe_fixed_spread") is None:
        pytest.skip("the fixed_spread example is not installed")
    import mmframe_fixed_spread

    config = {"spread": "0.002", "levels": 2, "quantity": "0.01", "level_step": "0.001"}
    async with run_strategy("fixed_spread", config, plugins=[mmframe_fixed_spread]) as engine:
        engine.push_tick("30000")
        await engine.settle()
        bids, asks = engine.prices()
        assert len(bids) == 2 and len(asks) == 2 and bids[0] < D(30000) < asks[0]
        engine.take(Side.SELL, "0.01", bids[0])
        await engine.settle()
        assert engine.status().position == D("0.01")
    assert engine.our_orders() == []


# ---------------------------------------------------------------------------------------------------------------
# Plugins
# ---------------------------------------------------------------------------------------------------------------


def test_load_plugins_finds_the_built_ins_and_what_it_is_given() -> None:
    loaded = load_plugins(OneLevelPlugin(), load_entrypoints=False)
    assert loaded.strategies["one_level"] is OneLevel
    assert loaded.sinks["paper"] is PaperSink and "sim" in loaded.feeds
    assert loaded.strategies.registered_by["one_level"]  # type: ignore[attr-defined]
    info = {i.name: i for i in loaded.info}
    paper = info["mmframe.default_plugins.paper"]
    assert paper.builtin and "register_sinks" in paper.hooks and paper.distribution == "mmframe"
    assert loaded.plugin("mmframe.default_plugins.paper") is not None and loaded.plugin("nothing") is None

    class BadPlugin:
        @hookimpl
        def register_nothing(self) -> None:
            pass

    with pytest.raises(PluginError):
        load_plugins(BadPlugin(), load_entrypoints=False)


def test_load_plugins_lets_plugins_add_commands() -> None:
    class CommandPlugin:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            @cli.command("hello")
            def hello() -> None:
                click.echo("hello from a plugin")

    group = click.Group("mmframe")
    load_plugins(CommandPlugin(), load_entrypoints=False).register_commands(group)
    result = CliRunner().invoke(group, ["hello"])
    assert result.exit_code == 0 and result.output == "hello from a plugin\n"


def test_the_sink_metrics_text_describes_a_paper_sink() -> None:
    text = sink_metrics_text(PaperSink())
    assert isinstance(text, str)


# ---------------------------------------------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------------------------------------------


def test_seed_sql_is_the_seed() -> None:
    assert [s.split()[0] for s in split_sql(seed_sql())] == ["CREATE", "CREATE", "INSERT", "INSERT"]


async def test_a_service_runs_the_seed_markets_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mm.sqlite'}"
    # the seed's rows, one more market (not enabled), and mmframe's tables
    seed_database(url, "INSERT INTO strategy_currency (currency_id, index_symbol, index_source, market_status, "
                       "market_type, default_strategy) VALUES (881, 'SOLUSDT', 1, 0, 1, 1);")
    describe_market(url, 880, 1, symbol="ETH/USDT", tick_size="0.01", price_precision=2, quantity_precision=3,
                    options={"refresh_interval": 0.5})
    async with run_service(url, strategies=[SeedIndexFollow]) as service:
        assert service.url.startswith("http://127.0.0.1:")
        rows = {r["id"]: r for r in (await service.get("/api/v1/strategies")).json()}
        assert set(rows) == {"879_1", "880_1", "881_1"}
        assert rows["879_1"]["is_running"] and rows["880_1"]["is_running"] and not rows["881_1"]["is_running"]
        service.engine.push_tick("45000", market="BTC/USDT")
        service.engine.push_tick("3000", market="ETH/USDT")
        await service.settle()
        assert service.engine.ladder("BTC/USDT") == ([(D("44995.5"), D(10))], [(D("45004.5"), D(10))])
        assert service.engine.prices("ETH/USDT") == ([D("2999.70")], [D("3000.30")])  # its own tick, 0.01
        assert service.engine.spec("ETH/USDT").refresh_interval == 0.5

        body = {"symbol": "BTC/USDT", "market_type": 1}
        assert (await service.post("/api/v1/strategy/stop", body, token="wrong")).status_code == 401
        assert (await service.post("/api/v1/strategy/stop", body)).status_code == 200
        assert service.engine.our_orders("BTC/USDT") == []

        await service.save_override(879, 1, {"base_quantity": 3})
        assert (await service.post("/api/v1/strategy/reload", body)).status_code == 200
        service.engine.push_tick("45000", market="BTC/USDT")
        await service.settle()
        assert service.engine.our_bids("BTC/USDT") == [(D("44995.5"), D(3))]
        status = (await service.get("/api/v1/strategy/status", symbol="BTC/USDT")).json()["data"]
        assert status["status"] == "running" and status["metrics"]["active_orders"] == 2

        # a new local description for ETH/USDT, straight into the running service's database: taken on reload
        await service.describe_market(880, symbol="ETH/USDT", tick_size="0.1", price_precision=1,
                                      quantity_precision=3, options={"refresh_interval": 0.25})
        eth = {"symbol": "ETH/USDT", "market_type": 1}
        assert (await service.post("/api/v1/strategy/reload", eth)).status_code == 200
        assert service.engine.spec("ETH/USDT").refresh_interval == 0.25
        assert service.engine.spec("ETH/USDT").market.tick_size == D("0.1")
    assert service.sink.book("BTC/USDT").open_orders() == []  # stopping the service cancelled everything
