"""The engine end to end in one process: markets on a scripted feed and the paper sink, on trio's MockClock."""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any, ClassVar

import attrs
import pytest
import trio

from mmframe import Fill, Market, OrderRequest, OrderType, Side, hookimpl
from mmframe._default_plugins.paper import PaperSink
from mmframe._engine.index import IndexGuard
from mmframe._engine.manager import StrategyManager
from mmframe._engine.reconcile import Tolerance
from mmframe._engine.risk import RiskLimits
from mmframe._engine.spec import MarketState, RestartPolicy
from mmframe._models import MarketKey
from mmframe._plugins import make_plugin_manager

from .engine_helpers import EnginePlugin, Ladder, RecordingFeed, settle, spec


class Engine:
    def __init__(self, manager: StrategyManager, sink: PaperSink) -> None:
        self.manager = manager
        self.sink = sink

    @property
    def feed(self) -> RecordingFeed:
        return RecordingFeed.instances[-1]

    def book_orders(self, symbol: str = "AAA/USDT") -> list[Any]:
        return self.sink.book(symbol).open_orders()

    def prices(self, symbol: str = "AAA/USDT") -> tuple[list[Decimal], list[Decimal]]:
        orders = self.book_orders(symbol)
        bids = sorted((o.price for o in orders if o.side is Side.BUY), reverse=True)
        asks = sorted(o.price for o in orders if o.side is Side.SELL)
        return bids, asks

    def status(self, symbol: str = "AAA/USDT") -> Any:
        return self.manager.status(MarketKey(symbol))[0]


async def start_engine(nursery: trio.Nursery, *plugins: object, sink: PaperSink | None = None) -> Engine:
    RecordingFeed.instances.clear()
    pm = make_plugin_manager(load_entrypoints=False, plugins=(EnginePlugin(), *plugins))
    sink = sink or PaperSink()
    manager = StrategyManager(sink, pm, instance_id="t")
    await nursery.start(manager.run)
    return Engine(manager, sink)


async def test_market_quotes_the_ladder_and_follows_the_index(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    status = await engine.manager.start_market(spec())
    assert status.state is MarketState.RUNNING
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    assert engine.prices() == ([Decimal("99.00"), Decimal("98.00")], [Decimal("101.00"), Decimal("102.00")])
    engine.feed.push_price("AAAUSDT", "110")
    await settle()
    assert engine.prices() == ([Decimal("109.00"), Decimal("108.00")], [Decimal("111.00"), Decimal("112.00")])
    assert engine.status().bids == 2 and engine.status().asks == 2


async def test_unchanged_target_sends_nothing(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    await engine.manager.start_market(spec())
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    placed, cancelled = engine.status().orders_placed, engine.status().orders_cancelled
    for _ in range(5):
        engine.feed.push_price("AAAUSDT", "100")
        await trio.sleep(1.5)  # several refresh intervals, in virtual time
    assert (engine.status().orders_placed, engine.status().orders_cancelled) == (placed, cancelled) == (4, 0)


async def test_tolerance_keeps_orders_that_moved_a_little(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    await engine.manager.start_market(spec(tolerance=Tolerance(price_ticks=5)))
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    engine.feed.push_price("AAAUSDT", "100.03")  # 3 ticks: within tolerance, nothing moves
    await settle()
    assert engine.status().orders_placed == 4 and engine.status().orders_cancelled == 0
    engine.feed.push_price("AAAUSDT", "100.10")  # 10 ticks: requote, each level by one amend
    await settle()
    assert engine.status().orders_amended == 4 and engine.status().orders_cancelled == 0
    assert engine.prices() == ([Decimal("99.10"), Decimal("98.10")], [Decimal("101.10"), Decimal("102.10")])


async def test_one_failing_market_does_not_disturb_another(nursery: trio.Nursery, autojump_clock: Any) -> None:
    stopped: list[tuple[str, BaseException | None]] = []

    class Observer:
        @hookimpl
        def market_stopped(self, market: Market, error: BaseException | None) -> None:
            stopped.append((market.symbol, error))

    engine = await start_engine(nursery, Observer())
    # The index screen lets a burst confirm a big move here (no confirm_seconds, no halt): this test is about a
    # strategy that raises, not about the screen.
    loose = IndexGuard(confirm_seconds=0, halt_move=None)
    await engine.manager.start_market(spec("AAA/USDT", strategy_config={"fail_at": "200"}, index_guard=loose))
    await engine.manager.start_market(spec("BBB/USDT"))
    engine.feed.push_price("AAAUSDT", "100")
    engine.feed.push_price("BBBUSDT", "50")
    await settle()
    assert len(engine.book_orders("AAA/USDT")) == 4 and len(engine.book_orders("BBB/USDT")) == 4

    engine.feed.push_price("AAAUSDT", "199.99")  # rejected as a jump, then...
    for _ in range(5):
        engine.feed.push_price("AAAUSDT", "200")  # ...confirmed: the strategy raises
        await settle()
    failed = engine.status("AAA/USDT")
    assert failed.state is MarketState.FAILED
    assert "RuntimeError: boom at 200" in failed.error
    assert engine.book_orders("AAA/USDT") == []  # its orders were cancelled on the way out
    assert stopped and stopped[0][0] == "AAA/USDT" and isinstance(stopped[0][1], RuntimeError)

    engine.feed.push_price("BBBUSDT", "51")
    await settle()
    assert engine.status("BBB/USDT").state is MarketState.RUNNING
    assert engine.prices("BBB/USDT") == ([Decimal("50.00"), Decimal("49.00")], [Decimal("52.00"), Decimal("53.00")])


async def test_restart_policy_restarts_a_failed_market(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    await engine.manager.start_market(
        spec(strategy_config={"fail_at": "100"}, restart=RestartPolicy(max_restarts=2, backoff=1.0))
    )
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    assert engine.status().state is MarketState.FAILED
    await trio.sleep(1.5)
    assert engine.status().state is MarketState.RUNNING and engine.status().restarts == 1
    engine.feed.push_price("AAAUSDT", "100")  # fails again, restarted again after 2 s
    await trio.sleep(2.5)
    engine.feed.push_price("AAAUSDT", "100")
    await trio.sleep(10)
    final = engine.status()
    assert final.state is MarketState.FAILED and final.restarts == 2
    assert engine.book_orders() == []


async def test_stop_cancels_orders_and_reload_applies_new_config(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    key = MarketKey("AAA/USDT")
    await engine.manager.start_market(spec())
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    status = await engine.manager.stop_market(key)
    assert status.state is MarketState.STOPPED and engine.book_orders() == []
    assert engine.feed.listener_count("AAAUSDT") == 0
    status = await engine.manager.reload_market(key, spec(strategy_config={"levels": 1, "step": "2"}))
    assert status.state is MarketState.RUNNING
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    assert engine.prices() == ([Decimal("98.00")], [Decimal("102.00")])


async def test_a_bad_config_fails_only_that_market_with_the_key_named(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start_engine(nursery)
    status = await engine.manager.start_market(spec(strategy_config={"levles": 3}))
    assert status.state is MarketState.FAILED and "levles" in status.error
    status = await engine.manager.start_market(spec("BBB/USDT", strategy_config={"levels": "many"}))
    assert status.state is MarketState.FAILED and "config.levels" in status.error
    unknown = await engine.manager.start_market(spec("CCC/USDT", strategy="nope"))
    assert unknown.state is MarketState.FAILED and "no strategy named 'nope'" in unknown.error
    ok = await engine.manager.start_market(spec("DDD/USDT"))
    assert ok.state is MarketState.RUNNING


async def test_stale_index_pulls_quotes_until_fresh(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    await engine.manager.start_market(spec(stale_after=5.0))
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    assert len(engine.book_orders()) == 4
    await trio.sleep(7)
    assert engine.status().stale and engine.book_orders() == []
    engine.feed.push_price("AAAUSDT", "100.5")
    await settle()
    assert not engine.status().stale and len(engine.book_orders()) == 4


async def test_a_tick_stamped_longer_ago_than_stale_after_is_rejected(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start_engine(nursery)
    await engine.manager.start_market(spec(stale_after=10.0))
    engine.feed.push_price("AAAUSDT", "100", timestamp=time.time() - 11)  # e.g. a publisher that lagged
    await settle()
    assert engine.status().ticks_rejected == 1 and engine.status().index_price is None
    assert engine.book_orders() == []
    engine.feed.push_price("AAAUSDT", "100", timestamp=time.time() - 9)  # late, but within stale_after
    await settle()
    assert engine.status().ticks == 1 and engine.status().index_price == Decimal("100")
    assert len(engine.book_orders()) == 4


async def test_the_market_status_carries_the_feed_figures_for_its_symbol(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start_engine(nursery)
    await engine.manager.start_market(spec(feed="sim", feed_config={"prices": {"AAAUSDT": "100"}, "tick_rate": 2}))
    await trio.sleep(2.2)
    feed = engine.status().feed
    assert feed is not None and feed.feed == "sim" and feed.symbol == "AAAUSDT"
    assert feed.messages == 5 and feed.connected and feed.rejected == 0
    assert feed.last_price == engine.status().index_price
    await trio.sleep(0.2)  # 0.4 s after the last tick (at 2.0), on trio's clock
    feed = engine.status().feed
    assert feed is not None and feed.last_update_age == pytest.approx(0.4)
    # a feed without symbol_statistics reports nothing rather than something made up
    await engine.manager.start_market(spec("BBB/USDT"))
    assert engine.status("BBB/USDT").feed is None


async def test_bad_ticks_are_rejected_and_counted(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    await engine.manager.start_market(spec(confirm_ticks=3, index_guard=IndexGuard(halt_move=None)))
    t0 = time.time()
    engine.feed.push_price("AAAUSDT", "100", timestamp=t0)
    await settle()
    engine.feed.push_price("AAAUSDT", "101", timestamp=t0 - 1)  # older than the last good tick
    await settle()
    engine.feed.push_price("AAAUSDT", "150", timestamp=t0 + 0.01)  # a 50 % jump
    await settle()
    assert engine.status().ticks_rejected == 2 and engine.status().index_price == Decimal("100")
    assert engine.status().ticks_rejected_by_reason == {"older": 1, "jump": 1}
    await trio.sleep(0.5)
    engine.feed.push_price("AAAUSDT", "150", timestamp=t0 + 0.02)
    await settle()
    await trio.sleep(0.5)
    engine.feed.push_price("AAAUSDT", "150", timestamp=t0 + 0.03)  # the third agreeing tick, 1 s on: accepted
    await settle()
    assert engine.status().index_price == Decimal("150")
    assert engine.prices()[0][0] == Decimal("149.00")


async def test_orders_left_by_an_earlier_run_are_cancelled_on_start(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    prefix = engine.manager.client_prefix(spec())
    await engine.sink.place(
        [OrderRequest(f"{prefix}old1", "AAA/USDT", Side.BUY, OrderType.LIMIT, quantity="1", price="90")]
    )
    await engine.sink.place(
        [OrderRequest("someone-else-1", "AAA/USDT", Side.BUY, OrderType.LIMIT, quantity="1", price="90")]
    )
    assert len(engine.book_orders()) == 2
    await engine.manager.start_market(spec())
    remaining = [o.client_order_id for o in engine.book_orders()]
    assert remaining == ["someone-else-1"]  # ours went; another client's stayed


async def test_pre_trade_hook_can_veto(nursery: trio.Nursery, autojump_clock: Any) -> None:
    seen: list[OrderRequest] = []

    class NoSells:
        @hookimpl
        def pre_trade_check(self, market: Market, request: OrderRequest, context: Any) -> str | None:
            seen.append(request)
            assert context.reference_price == Decimal("100")
            return "no selling today" if request.side is Side.SELL else None

    engine = await start_engine(nursery, NoSells())
    await engine.manager.start_market(spec())
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    assert engine.prices() == ([Decimal("99.00"), Decimal("98.00")], [])
    status = engine.status()
    assert status.orders_vetoed >= 2 and status.last_veto == "no selling today"
    assert {r.side for r in seen} == {Side.BUY, Side.SELL}


async def test_builtin_risk_limits(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    await engine.manager.start_market(
        spec(strategy_config={"levels": 3, "quantity": "2"}, risk=RiskLimits(max_order_quantity="1.5"))
    )
    await engine.manager.start_market(
        spec("BBB/USDT", strategy_config={"levels": 3}, risk=RiskLimits(max_active_orders=4))
    )
    await engine.manager.start_market(
        spec("CCC/USDT", strategy_config={"levels": 3, "step": "10"}, risk=RiskLimits(price_band="0.15"))
    )
    for symbol in ("AAAUSDT", "BBBUSDT", "CCCUSDT"):
        engine.feed.push_price(symbol, "100")
    await settle()
    assert engine.book_orders("AAA/USDT") == [] and "max_order_quantity" in engine.status("AAA/USDT").last_veto
    assert len(engine.book_orders("BBB/USDT")) == 4 and "max_active_orders" in engine.status("BBB/USDT").last_veto
    assert engine.prices("CCC/USDT") == ([Decimal("90.00")], [Decimal("110.00")])
    assert "price band" in engine.status("CCC/USDT").last_veto


async def test_fills_update_position_and_reach_observers(nursery: trio.Nursery, autojump_clock: Any) -> None:
    events: list[Any] = []
    fills: list[Any] = []

    class Observer:
        @hookimpl
        def order_event(self, market: Market, event: Any, order: Any) -> None:
            events.append((event.kind, order.status))

        @hookimpl
        def order_filled(self, market: Market, fill: Any, position: Any) -> None:
            fills.append((fill, position))

    engine = await start_engine(nursery, Observer())
    await engine.manager.start_market(spec(strategy_config={"levels": 1}))
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    # Another participant sells 0.4 into our bid at 99.
    engine.sink.submit_external("AAA/USDT", side=Side.SELL, type=OrderType.MARKET, quantity=Decimal("0.4"))
    await settle()
    assert fills and fills[0][0].price == Decimal("99.00") and fills[0][0].quantity == Decimal("0.4")
    assert fills[0][1].base == Decimal("0.4")
    status = engine.status()
    assert status.position == Decimal("0.4") and status.fills == 1
    assert status.pnl == Decimal("0.4")  # bought 0.4 at 99, marked at 100
    assert ("accepted", "open") in [(k.value, s.value) for k, s in events]
    assert ("partially_filled", "partially_filled") in [(k.value, s.value) for k, s in events]


async def test_kill_switch_halts_the_market(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    await engine.manager.start_market(
        spec(strategy_config={"levels": 1}, risk=RiskLimits(max_loss="5", price_band="0.5"))
    )
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    engine.sink.submit_external("AAA/USDT", side=Side.SELL, type=OrderType.MARKET, quantity=Decimal("1"))
    await settle()
    assert engine.status().state is MarketState.RUNNING
    engine.feed.push_price("AAAUSDT", "92")  # long 1 bought at 99, marked at 92: -7 < -5
    await settle()
    status = engine.status()
    assert status.state is MarketState.HALTED and "kill switch" in status.error
    assert engine.book_orders() == []


async def test_immediate_ioc_passes_self_trade_prevention(nursery: trio.Nursery, autojump_clock: Any) -> None:
    """A strategy's immediate order that would cross our own resting order is refused by the risk gate."""
    from .engine_helpers import Ladder

    class Sweeper(Ladder):
        name = "test_sweeper"
        ticks = 0

        def on_tick(self, tick: Any, ctx: Any) -> None:
            self.ticks += 1
            if self.ticks == 2:
                from mmframe import Quote

                ctx.submit(Quote(Side.BUY, Decimal("101.00"), Decimal("1"), OrderType.IOC))  # our own ask is 101.00

    class Plugin:
        @hookimpl
        def register_strategies(self, register: Any) -> None:
            register(Sweeper)

    engine = await start_engine(nursery, Plugin())
    await engine.manager.start_market(spec(strategy="test_sweeper", strategy_config={"levels": 1, "step": "1"}))
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    status = engine.status()
    assert "self-trade prevention" in status.last_veto and status.orders_vetoed == 1
    assert status.fills == 0


async def test_engine_close_cancels_everything(autojump_clock: Any) -> None:
    async with trio.open_nursery() as nursery:
        engine = await start_engine(nursery)
        await engine.manager.start_market(spec())
        await engine.manager.start_market(spec("BBB/USDT"))
        engine.feed.push_price("AAAUSDT", "100")
        engine.feed.push_price("BBBUSDT", "100")
        await settle()
        assert len(engine.book_orders()) == 4
        await engine.manager.aclose()
    assert engine.book_orders() == [] and engine.book_orders("BBB/USDT") == []
    assert {s.state for s in engine.manager.status()} == {MarketState.STOPPED}


async def test_cancellation_from_outside_still_cancels_orders(autojump_clock: Any) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            engine = await start_engine(nursery)
            await engine.manager.start_market(spec())
            engine.feed.push_price("AAAUSDT", "100")
            await settle()
            assert len(engine.book_orders()) == 4
            scope.cancel()
    assert engine.book_orders() == []


@pytest.mark.parametrize("instance_id", ["", "has-dash", "x" * 13])
def test_instance_id_is_validated(instance_id: str) -> None:
    from mmframe import ConfigError

    with pytest.raises(ConfigError, match="instance_id"):
        StrategyManager(PaperSink(), make_plugin_manager(load_entrypoints=False), instance_id=instance_id)


async def test_lifecycle_hooks_are_called_in_order(autojump_clock: Any) -> None:
    calls: list[str] = []

    class Lifecycle:
        @hookimpl
        def engine_started(self, manager: StrategyManager) -> None:
            calls.append(f"engine_started {sorted(str(k) for k in manager.markets)}")

        @hookimpl
        def market_started(self, market: Market, strategy: str) -> None:
            calls.append(f"market_started {market.symbol} {strategy}")

        @hookimpl
        def engine_stopping(self, manager: StrategyManager) -> None:
            calls.append("engine_stopping")

        @hookimpl
        def market_stopped(self, market: Market, error: BaseException | None) -> None:
            calls.append(f"market_stopped {market.symbol} {error}")

    RecordingFeed.instances.clear()
    pm = make_plugin_manager(load_entrypoints=False, plugins=(EnginePlugin(), Lifecycle()))
    manager = StrategyManager(PaperSink(), pm, instance_id="t")
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run, [spec()])
        await manager.aclose()
    assert calls == [
        "market_started AAA/USDT test_ladder",
        "engine_started ['AAA/USDT:spot']",
        "engine_stopping",
        "market_stopped AAA/USDT None",
    ]


async def test_a_raising_lifecycle_hook_is_logged_and_the_engine_goes_on(
    nursery: trio.Nursery, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        @hookimpl
        def market_stopped(self, market: Market, error: BaseException | None) -> None:
            raise ValueError("observer bug")

    engine = await start_engine(nursery, Broken())
    await engine.manager.start_market(spec())
    await engine.manager.start_market(spec("BBB/USDT"))
    await engine.manager.stop_market(MarketKey("AAA/USDT"))
    assert "a market_stopped hook implementation raised" in caplog.text
    engine.feed.push_price("BBBUSDT", "100")
    await settle()
    assert engine.status("BBB/USDT").state is MarketState.RUNNING and len(engine.book_orders("BBB/USDT")) == 4


async def test_leftovers_can_be_adopted_instead_of_cancelled(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    prefix = engine.manager.client_prefix(spec())
    await engine.sink.place(
        [
            OrderRequest(f"{prefix}old-bid", "AAA/USDT", Side.BUY, OrderType.LIMIT, quantity="1", price="99"),
            OrderRequest(f"{prefix}old-far", "AAA/USDT", Side.SELL, OrderType.LIMIT, quantity="1", price="150"),
        ]
    )
    await engine.manager.start_market(spec(leftovers="adopt", strategy_config={"levels": 1}))
    assert {o.client_order_id for o in engine.book_orders()} == {f"{prefix}old-bid", f"{prefix}old-far"}
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    # The adopted bid at 99 is exactly the desired bid: kept. The far ask is not wanted there: amended to the
    # desired ask (one message; an adopted order is ours like any other).
    orders = {o.client_order_id: o.price for o in engine.book_orders()}
    assert orders == {f"{prefix}old-bid": Decimal("99.00"), f"{prefix}old-far": Decimal("101.00")}
    assert (engine.status().orders_placed, engine.status().orders_amended) == (0, 1)


async def test_a_degraded_sink_holds_orders_and_the_market_catches_up(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    class FlakySink(PaperSink):
        degraded = False

    sink = FlakySink()
    engine = await start_engine(nursery, sink=sink)
    await engine.manager.start_market(spec())
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    sink.degraded = True
    engine.feed.push_price("AAAUSDT", "110")
    await settle()
    assert engine.status().state is MarketState.DEGRADED
    assert engine.prices()[0][0] == Decimal("99.00")  # nothing was sent while degraded
    sink.degraded = False
    await trio.sleep(1.5)  # the next refresh
    assert engine.status().state is MarketState.RUNNING
    assert engine.prices() == ([Decimal("109.00"), Decimal("108.00")], [Decimal("111.00"), Decimal("112.00")])


async def test_a_market_whose_sink_is_down_at_start_does_not_hold_up_the_start(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    """An engine unreachable when the service starts: the start answers (degraded) instead of waiting for it, so
    the service's API comes up and a stop is heard; the market quotes once the sink is back."""

    class DownSink(PaperSink):
        degraded = True

    sink = DownSink()
    engine = await start_engine(nursery, sink=sink)
    with trio.fail_after(5):
        status = await engine.manager.start_market(spec())
    assert status.state is MarketState.DEGRADED
    engine.feed.push_price("AAAUSDT", "100")
    await trio.sleep(2)
    assert engine.book_orders() == []
    sink.degraded = False
    await trio.sleep(1.5)
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    assert engine.status().state is MarketState.RUNNING and len(engine.book_orders()) == 4
    sink.degraded = True  # and a stop while it waits again is prompt
    with trio.fail_after(5):
        await engine.manager.stop_market(MarketKey("AAA/USDT"))


async def test_size_variation_applies_on_placement_only(nursery: trio.Nursery, autojump_clock: Any) -> None:
    from mmframe import Quote

    from .engine_helpers import Ladder

    class Varied(Ladder):
        name = "test_varied"

        def desired_orders(self, ctx: Any) -> Any:
            return [
                attrs.evolve(q, quantity=Decimal("10"), size_variation=Decimal("0.2"))
                for q in super().desired_orders(ctx)
            ]

    class Plugin:
        @hookimpl
        def register_strategies(self, register: Any) -> None:
            register(Varied)

    engine = await start_engine(nursery, Plugin())
    await engine.manager.start_market(spec(strategy="test_varied", seed=3))
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    quantities = [o.quantity for o in engine.book_orders()]
    assert len(quantities) == 4 and all(Decimal("8") <= q <= Decimal("10") for q in quantities)
    assert len(set(quantities)) > 1  # they were varied
    for _ in range(3):
        engine.feed.push_price("AAAUSDT", "100")
        await trio.sleep(1.5)
    assert engine.status().orders_placed == 4 and engine.status().orders_cancelled == 0  # never a reason to replace
    assert Quote(Side.BUY, Decimal("1"), Decimal("1")).size_variation == 0


async def test_local_depth_reaches_a_strategy_that_asks_for_it(nursery: trio.Nursery, autojump_clock: Any) -> None:
    from .engine_helpers import Ladder

    seen: list[Any] = []

    class Watcher(Ladder):
        name = "test_watcher"
        local_depth_interval = 0.5

        def on_local_depth(self, depth: Any, ctx: Any) -> None:
            seen.append(depth)

    class Plugin:
        @hookimpl
        def register_strategies(self, register: Any) -> None:
            register(Watcher)

    engine = await start_engine(nursery, Plugin())
    engine.sink.submit_external(
        "AAA/USDT", side=Side.SELL, type=OrderType.LIMIT, quantity=Decimal("2"), price=Decimal("120")
    )
    await engine.manager.start_market(spec(strategy="test_watcher"))
    engine.feed.push_price("AAAUSDT", "100")
    await trio.sleep(2.2)
    assert 3 <= len(seen) <= 6
    assert seen[-1].asks[-1] == (Decimal("120"), Decimal("2")) and seen[-1].bids[0][0] == Decimal("99.00")


class HistoryWatcher(Ladder):
    """A Ladder that keeps what ``on_start`` saw of the fill history and the position."""

    name = "history_watcher"
    seen: ClassVar[list[tuple[tuple[Any, ...], Decimal]]] = []

    def on_start(self, ctx: Any) -> None:
        HistoryWatcher.seen.append((tuple(ctx.fill_history), ctx.position.base))


class HistoryPlugin:
    @hookimpl
    def register_strategies(self, register: Any) -> None:
        register(HistoryWatcher)


async def test_a_market_starts_with_its_fill_history_and_the_position_it_implies(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    earlier: list[Fill] = [
        Fill("T1", "t-AAAUSDT1-a", "AAA/USDT", Side.BUY, Decimal("99"), Decimal("1.0")),
        Fill("T2", "t-AAAUSDT1-b", "AAA/USDT", Side.SELL, Decimal("101"), Decimal("0.4")),
    ]
    asked: list[tuple[str, str]] = []

    async def loader(market_spec: Any, prefix: str) -> list[Fill]:
        asked.append((market_spec.market.symbol, prefix))
        return earlier

    HistoryWatcher.seen.clear()
    RecordingFeed.instances.clear()
    pm = make_plugin_manager(load_entrypoints=False, plugins=(EnginePlugin(), HistoryPlugin()))
    sink = PaperSink()
    manager = StrategyManager(sink, pm, instance_id="t", history=loader)
    await nursery.start(manager.run)
    engine = Engine(manager, sink)
    await manager.start_market(spec(strategy="history_watcher", strategy_config={"levels": 1},
                                    restart=RestartPolicy(max_restarts=1, backoff=1.0)))
    assert asked == [("AAA/USDT", "t-AAAUSDT1-")]  # asked with the market's own prefix
    assert HistoryWatcher.seen == [(tuple(earlier), Decimal("0.6"))]
    assert engine.status().position == Decimal("0.6")
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    sink.submit_external("AAA/USDT", side=Side.SELL, type=OrderType.MARKET, quantity=Decimal("0.5"))
    await settle()
    assert engine.status().position == Decimal("1.1")
    # Stopped and started again in this process: the loader is asked again (the store and the audit trail have
    # every fill so far; the market keeps none in memory), and the position is carried over, not rebuilt.
    earlier.append(Fill("T3", "t-AAAUSDT1-c", "AAA/USDT", Side.BUY, Decimal("99"), Decimal("0.5")))
    await manager.stop_market(MarketKey("AAA/USDT"))
    await manager.start_market(spec(strategy="history_watcher", strategy_config={"levels": 1}))
    history, base = HistoryWatcher.seen[-1]
    assert len(asked) == 2 and base == Decimal("1.1")
    assert history == tuple(earlier)
    runner = manager.runner(MarketKey("AAA/USDT"))
    assert runner is not None and runner.fills == [] and not runner.keep_fills


async def test_without_a_loader_a_market_remembers_its_fills_across_restarts(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    HistoryWatcher.seen.clear()
    engine = await start_engine(nursery, HistoryPlugin())
    await engine.manager.start_market(spec(strategy="history_watcher", strategy_config={"levels": 1}))
    assert HistoryWatcher.seen == [((), Decimal(0))]
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    engine.sink.submit_external("AAA/USDT", side=Side.SELL, type=OrderType.MARKET, quantity=Decimal("0.5"))
    await settle()
    await engine.manager.stop_market(MarketKey("AAA/USDT"))
    await engine.manager.start_market(spec(strategy="history_watcher", strategy_config={"levels": 1}))
    history, base = HistoryWatcher.seen[-1]
    assert [(f.side, f.quantity) for f in history] == [(Side.BUY, Decimal("0.5"))] and base == Decimal("0.5")


async def test_a_failing_history_loader_starts_the_market_without_history(
    nursery: trio.Nursery, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def loader(market_spec: Any, prefix: str) -> list[Fill]:
        raise OSError("the database is away")

    pm = make_plugin_manager(load_entrypoints=False, plugins=(EnginePlugin(),))
    manager = StrategyManager(PaperSink(), pm, instance_id="t", history=loader)
    await nursery.start(manager.run)
    status = await manager.start_market(spec())
    assert status.state is MarketState.RUNNING and status.position == 0
    assert "could not load its fill history: OSError: the database is away" in caplog.text


async def test_live_orders_can_include_those_being_cancelled(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    await engine.manager.start_market(spec(strategy_config={"levels": 1}))
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    runner = engine.manager.runner(MarketKey("AAA/USDT"))
    assert runner is not None
    bid = runner.ctx.live_orders(Side.BUY)[0]
    runner.tracker.mark_cancel_requested(bid.client_order_id, trio.current_time())
    assert runner.ctx.live_orders(Side.BUY) == []
    assert [o.client_order_id for o in runner.ctx.live_orders(Side.BUY, include_cancelling=True)] == [
        bid.client_order_id
    ]
    assert len(runner.ctx.live_orders(include_cancelling=True)) == 2


class StalledPlaceSink(PaperSink):
    """A paper sink whose place() waits for ``gate`` before the orders reach the book."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()
        self.placing = trio.Event()

    async def place(self, requests: Any) -> None:
        self.placing.set()
        await self.gate.wait()
        await super().place(requests)


async def test_stopping_a_market_while_it_hands_orders_over_does_not_wait_for_them(
    nursery: trio.Nursery, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sink = StalledPlaceSink()
    engine = await start_engine(nursery, sink=sink)
    await engine.manager.start_market(spec(strategy_config={"levels": 1}))
    engine.feed.push_price("AAAUSDT", "100")
    await sink.placing.wait()  # the market is inside place(): its two orders are pending, not on the book
    stopped_at = trio.current_time()
    status = await engine.manager.stop_market(MarketKey("AAA/USDT"))
    assert trio.current_time() - stopped_at < 1.0  # not the 3 s cleanup timeout
    assert status.state is MarketState.STOPPED and status.active_orders == 0
    assert engine.book_orders() == []
    assert "could not confirm" not in caplog.text and "still open" not in caplog.text
    assert "2 orders interrupted while being sent never reached the book" in caplog.text
