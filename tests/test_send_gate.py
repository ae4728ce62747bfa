"""The engine's send gate and id tag (what a cluster's lease drives, issue 16), on the paper sink and MockClock:
a market whose gate is closed sends nothing at all - no order, no cancel, not on its way out either."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from mmframe._default_plugins.paper import PaperSink
from mmframe._engine.manager import StrategyManager
from mmframe._engine.spec import MarketSpec, MarketState
from mmframe._errors import ConfigError
from mmframe._models import MarketKey
from mmframe._plugins import make_plugin_manager

from .engine_helpers import EnginePlugin, RecordingFeed, settle, spec


class Gate:
    def __init__(self) -> None:
        self.open = True
        self.asked: list[str] = []

    def __call__(self, spec: MarketSpec) -> bool:
        self.asked.append(spec.market.symbol)
        return self.open


async def _quoting(nursery: trio.Nursery, gate: Gate) -> tuple[StrategyManager, PaperSink, RecordingFeed]:
    """An engine with *gate*, one market started and quoting around 100."""
    RecordingFeed.instances.clear()
    pm = make_plugin_manager(load_entrypoints=False, plugins=(EnginePlugin(),))
    sink = PaperSink()
    manager = StrategyManager(sink, pm, instance_id="t", id_tag="abc123", gate=gate)
    await nursery.start(manager.run)
    await manager.start_market(spec())
    feed = RecordingFeed.instances[-1]
    feed.push_price("AAAUSDT", "100")
    await settle()
    return manager, sink, feed


async def test_ids_carry_the_tag_and_a_closed_gate_sends_nothing(nursery: trio.Nursery, autojump_clock: Any) -> None:
    gate = Gate()
    manager, sink, feed = await _quoting(nursery, gate)
    book = sink.book("AAA/USDT")
    resting = {o.client_order_id for o in book.open_orders()}
    assert len(resting) == 4
    assert all(coid.startswith("t-AAAUSDT1-abc123.") for coid in resting)

    gate.open = False
    status = manager.status(MarketKey("AAA/USDT"))[0]
    placed, cancelled = status.orders_placed, status.orders_cancelled
    for price in ("101", "102", "103"):  # moves that would requote every level
        feed.push_price("AAAUSDT", price)
        await trio.sleep(1.5)
    status = manager.status(MarketKey("AAA/USDT"))[0]
    assert (status.orders_placed, status.orders_cancelled) == (placed, cancelled)
    assert {o.client_order_id for o in book.open_orders()} == resting  # untouched: the next owner cancels them

    # on its way out a market whose gate is closed does not cancel either
    stopped = await manager.stop_market(MarketKey("AAA/USDT"))
    assert stopped.state is MarketState.STOPPED
    assert {o.client_order_id for o in book.open_orders()} == resting

    # a market started anew with the gate open cancels what was left (the market's prefix, any tag), then quotes
    gate.open = True
    await manager.start_market(spec())
    RecordingFeed.instances[-1].push_price("AAAUSDT", "100")
    await settle()
    now = {o.client_order_id for o in book.open_orders()}
    assert len(now) == 4 and not now & resting
    await manager.stop_market(MarketKey("AAA/USDT"))
    assert book.open_orders() == []


async def test_the_gate_closing_mid_run_stops_the_orders_but_not_the_market(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    gate = Gate()
    _, sink, feed = await _quoting(nursery, gate)
    gate.open = False
    feed.push_price("AAAUSDT", "105")
    await trio.sleep(2)
    gate.open = True  # renewed in time after all: the market catches up
    feed.push_price("AAAUSDT", "105")
    await trio.sleep(2)
    prices = sorted(o.price for o in sink.book("AAA/USDT").open_orders())
    assert [str(p) for p in prices] == ["103.00", "104.00", "106.00", "107.00"]


def test_id_tag_is_checked() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    with pytest.raises(ConfigError, match="id_tag"):
        StrategyManager(PaperSink(), pm, instance_id="t", id_tag="Bad-Tag")
