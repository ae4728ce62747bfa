"""The periodic reconciliation of a market's orders against its sink (``MarketSpec.reconcile_interval``), on the
paper sink and trio's MockClock: drift between the tracker and the book is repaired within an interval or two,
counted in the status, and never takes the market down."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
import trio

from mmframe import Order, OrderRequest, OrderType, Side
from mmframe._default_plugins.paper import PaperSink
from mmframe._engine.manager import StrategyManager
from mmframe._engine.market import MarketRunner
from mmframe._engine.spec import MarketState, MarketStatus
from mmframe._models import MarketKey
from mmframe._plugins import make_plugin_manager

from .engine_helpers import EnginePlugin, RecordingFeed, settle, spec

KEY = MarketKey("AAA/USDT")
D = Decimal


class LossySink(PaperSink):
    """A paper sink that can lose cancels (``lose_cancels``: the call returns, nothing happens) and whose
    ``open_orders`` can fail (``fail_open_orders``)."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_cancels = False
        self.lost: list[str] = []
        self.fail_open_orders = False
        self.open_orders_calls = 0

    async def cancel(self, symbol: str, client_order_ids: Sequence[str]) -> None:
        if self.lose_cancels:
            await trio.lowlevel.checkpoint()
            self.lost.extend(client_order_ids)
            return
        await super().cancel(symbol, client_order_ids)

    async def open_orders(self, symbol: str, prefix: str = "") -> list[Order]:
        self.open_orders_calls += 1
        if self.fail_open_orders:
            await trio.lowlevel.checkpoint()
            raise RuntimeError("the sink is confused")
        return await super().open_orders(symbol, prefix)


class Rig:
    def __init__(self, manager: StrategyManager, sink: LossySink) -> None:
        self.manager, self.sink = manager, sink

    @property
    def feed(self) -> RecordingFeed:
        return RecordingFeed.instances[-1]

    def prices(self) -> tuple[list[Decimal], list[Decimal]]:
        orders = self.sink.book("AAA/USDT").open_orders()
        return (sorted((o.price for o in orders if o.side is Side.BUY), reverse=True),
                sorted(o.price for o in orders if o.side is Side.SELL))

    def status(self) -> MarketStatus:
        return self.manager.status(KEY)[0]

    def runner(self) -> MarketRunner:
        runner = self.manager.runner(KEY)
        assert runner is not None
        return runner


async def start(nursery: trio.Nursery, **spec_options: Any) -> Rig:
    RecordingFeed.instances.clear()
    sink = LossySink()
    manager = StrategyManager(sink, make_plugin_manager(load_entrypoints=False, plugins=(EnginePlugin(),)),
                              instance_id="t")
    await nursery.start(manager.run)
    options: dict[str, Any] = {"reconcile_interval": 1.0, "reconcile_grace": 0.5}
    options.update(spec_options)
    status = await manager.start_market(spec(**options))
    assert status.state is MarketState.RUNNING
    rig = Rig(manager, sink)
    rig.feed.push_price("AAAUSDT", "100")
    await settle()
    assert rig.prices() == ([D("99.00"), D("98.00")], [D("101.00"), D("102.00")])
    return rig


async def test_an_order_with_our_prefix_placed_behind_our_back_is_cancelled_within_an_interval(
    nursery: trio.Nursery, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await start(nursery)
    prefix = rig.manager.client_prefix(spec())
    stray = OrderRequest(f"{prefix}stray", "AAA/USDT", Side.BUY, OrderType.LIMIT, quantity="1", price="90")
    await rig.sink.place([stray])
    await settle()
    assert D("90.00") in rig.prices()[0]
    start_at = trio.current_time()
    while D("90.00") in rig.prices()[0] and trio.current_time() - start_at < 10:  # noqa: ASYNC110
        await trio.sleep(0.1)
    assert trio.current_time() - start_at <= 1.0 + 0.1, "not cancelled within one interval"
    assert rig.prices() == ([D("99.00"), D("98.00")], [D("101.00"), D("102.00")])  # the ladder untouched
    status = rig.status()
    assert status.reconcile_cancelled == 1 and status.reconcile_gone == 0 and status.cancel_retries == 0
    assert status.reconciliations >= 1
    assert f"cancelled 1 orders we do not track ({prefix}stray)" in caplog.text


async def test_an_order_found_open_is_adopted_when_the_spec_says_so(nursery: trio.Nursery, autojump_clock: Any) -> None:
    rig = await start(nursery, leftovers="adopt")
    prefix = rig.manager.client_prefix(spec())
    # Exactly a level the strategy wants: adopted, kept, and the ladder's own order at that level is not doubled.
    await rig.sink.place([OrderRequest(f"{prefix}x", "AAA/USDT", Side.BUY, OrderType.LIMIT, quantity="1",
                                       price="97")])
    await trio.sleep(1.5)
    assert rig.status().reconcile_adopted == 1 and rig.status().reconcile_cancelled == 0
    assert rig.runner().tracker.get(f"{prefix}x") is not None
    # The strategy does not want 97: the reconciler cancels the adopted order like any of ours.
    assert rig.prices() == ([D("99.00"), D("98.00")], [D("101.00"), D("102.00")])


async def test_an_order_removed_behind_our_back_is_marked_gone_and_the_ladder_is_whole_again(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    rig = await start(nursery)
    runner = rig.runner()
    victim = next(o for o in runner.tracker.live() if o.price == D("98.00"))
    assert rig.sink.book("AAA/USDT").cancel(victim.client_order_id) is not None  # the book only: no event
    assert rig.prices() == ([D("99.00")], [D("101.00"), D("102.00")])
    await trio.sleep(3.0)  # two passes find it missing
    gone = runner.tracker.get(victim.client_order_id)
    assert gone is not None and gone.status.value == "expired" and "reconciliation" in gone.reason
    assert rig.status().reconcile_gone == 1
    await trio.sleep(1.0)  # the next refresh places the level again
    assert rig.prices() == ([D("99.00"), D("98.00")], [D("101.00"), D("102.00")])
    status = rig.status()
    assert (status.bids, status.asks, status.cancelling, status.active_orders) == (2, 2, 0, 4)


async def test_a_cancel_the_sink_lost_is_sent_again(nursery: trio.Nursery, autojump_clock: Any) -> None:
    rig = await start(nursery, amend=False)  # the move is cancels and places: what is lost here is the cancels
    rig.sink.lose_cancels = True
    rig.feed.push_price("AAAUSDT", "100.5")
    await settle()
    rig.sink.lose_cancels = False
    assert len(rig.sink.lost) == 4
    # Both ladders rest: the old one's cancels never happened. The status says so, and adds up.
    assert rig.prices() == ([D("99.50"), D("99.00"), D("98.50"), D("98.00")],
                            [D("101.00"), D("101.50"), D("102.00"), D("102.50")])
    status = rig.status()
    assert (status.bids, status.asks, status.cancelling, status.active_orders) == (2, 2, 4, 8)
    await trio.sleep(2.0)
    assert rig.prices() == ([D("99.50"), D("98.50")], [D("101.50"), D("102.50")])
    status = rig.status()
    assert status.cancel_retries == 4 and status.reconcile_cancelled == 0 and status.reconcile_gone == 0
    assert (status.bids, status.asks, status.cancelling, status.active_orders) == (2, 2, 0, 4)


async def test_a_healthy_book_is_left_alone(nursery: trio.Nursery, autojump_clock: Any) -> None:
    rig = await start(nursery)
    for _ in range(10):
        rig.feed.push_price("AAAUSDT", "100")
        await trio.sleep(1.0)
    status = rig.status()
    assert status.reconciliations >= 9
    assert (status.orders_placed, status.orders_cancelled) == (4, 0)
    assert (status.reconcile_cancelled, status.reconcile_gone, status.cancel_retries, status.reconcile_errors) == (
        0, 0, 0, 0)


async def test_a_failing_sink_does_not_take_the_market_down(
    nursery: trio.Nursery, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    rig = await start(nursery)
    rig.sink.fail_open_orders = True
    await trio.sleep(3.5)
    status = rig.status()
    assert status.state is MarketState.RUNNING and status.reconcile_errors == 3
    assert "could not read the sink's open orders (the sink is confused)" in caplog.text
    rig.sink.fail_open_orders = False
    await trio.sleep(1.0)
    assert rig.status().reconciliations >= 1 and rig.status().state is MarketState.RUNNING


async def test_zero_turns_it_off(nursery: trio.Nursery, autojump_clock: Any) -> None:
    rig = await start(nursery, reconcile_interval=0)
    calls = rig.sink.open_orders_calls
    await trio.sleep(30)
    assert rig.sink.open_orders_calls == calls and rig.status().reconciliations == 0
