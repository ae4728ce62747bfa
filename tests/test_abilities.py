"""Optional abilities (:mod:`mmframe.protocols`): the real components have them, and a component without one is
handled: no figure, no crash."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest
import trio
from prometheus_client.core import Metric

from mmframe import DepthSnapshot, MarketData, Order, OrderEvent, OrderRequest, Subscription
from mmframe._bus.feed import RedisFeed
from mmframe._bus.publisher import BusPublisher, _report
from mmframe._control.metrics import sink_metrics
from mmframe._default_plugins.paper import PaperSink
from mmframe._default_plugins.sim import SimFeed
from mmframe._engine.market import MarketRunner
from mmframe._engine.spec import MarketState
from mmframe._settings import RedisSettings
from mmframe.feedtools import FeedHub, FeedSymbolStats
from mmframe.protocols import (
    ExchangeFeed,
    Named,
    OrderSink,
    ReportsCircuit,
    ReportsDegraded,
    ReportsRequestLatency,
    ReportsSinkStatistics,
    ReportsSymbolStatistics,
)
from mmframe.testing import ScriptedFeed

from .engine_helpers import Ladder, market, spec

SINK_ABILITIES = (Named, ReportsDegraded, ReportsCircuit, ReportsRequestLatency, ReportsSinkStatistics)


def test_the_match_engine_sink_has_every_sink_ability() -> None:
    from mmframe_match_engine.sink import MatchEngineSink

    sink = MatchEngineSink(MatchEngineSink.Config(endpoint="http://127.0.0.1:1"))
    assert isinstance(sink, OrderSink)
    for ability in SINK_ABILITIES:
        assert isinstance(sink, ability), ability.__name__


def test_the_paper_sink_is_named_and_never_degraded() -> None:
    sink = PaperSink()
    assert isinstance(sink, OrderSink) and isinstance(sink, Named)
    for ability in (ReportsDegraded, ReportsCircuit, ReportsRequestLatency, ReportsSinkStatistics):
        assert not isinstance(sink, ability), ability.__name__


def _feeds() -> list[Any]:
    from mmframe_binance.feed import BinanceFeed
    from mmframe_okex.feed import OkexFeed

    return [SimFeed(), RedisFeed(), BinanceFeed(), OkexFeed()]


@pytest.mark.parametrize("feed", _feeds(), ids=lambda feed: type(feed).__name__)
def test_the_feeds_report_per_symbol_figures(feed: Any) -> None:
    assert isinstance(feed, ExchangeFeed)
    assert isinstance(feed, Named) and feed.name
    assert isinstance(feed, ReportsSymbolStatistics)
    figures = feed.symbol_statistics("BTCUSDT")
    assert isinstance(figures, FeedSymbolStats) and figures.messages == 0


# ---- components without an ability ----------------------------------------------------------------------------


class _BareSink:
    """An order sink with nothing optional: no name, no health, no figures. ``statistics`` is a method, not the
    mapping of counters :class:`ReportsSinkStatistics` means (it is not taken for one)."""

    def __init__(self) -> None:
        self.placed: list[OrderRequest] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    def subscribe(self, symbol: str, prefix: str, listener: Callable[[OrderEvent], None]) -> Subscription:
        return Subscription(lambda: None)

    async def place(self, requests: Sequence[OrderRequest]) -> None:
        await trio.lowlevel.checkpoint()
        self.placed.extend(requests)

    async def cancel(self, symbol: str, client_order_ids: Sequence[str]) -> None:
        await trio.lowlevel.checkpoint()

    async def cancel_all(self, symbol: str, prefix: str = "") -> int:
        await trio.lowlevel.checkpoint()
        return 0

    async def open_orders(self, symbol: str, prefix: str = "") -> list[Order]:
        await trio.lowlevel.checkpoint()
        return []

    async def depth(self, symbol: str, limit: int = 20) -> DepthSnapshot:
        await trio.lowlevel.checkpoint()
        return DepthSnapshot(exchange="bare", symbol=symbol)

    def statistics(self) -> dict[str, int]:
        return {"requests": 1}


def _samples(metrics: list[Metric]) -> dict[str, list[Any]]:
    return {metric.name: list(metric.samples) for metric in metrics}


def test_a_sink_without_abilities_reports_its_class_name_and_no_figures() -> None:
    sink = _BareSink()
    assert isinstance(sink, OrderSink)
    for ability in (Named, ReportsDegraded, ReportsCircuit, ReportsRequestLatency):
        assert not isinstance(sink, ability), ability.__name__
    samples = _samples(list(sink_metrics(sink)))
    assert [(s.labels, s.value) for s in samples["mmframe_sink_degraded"]] == [({"sink": "_BareSink"}, 0.0)]
    assert [(s.labels, s.value) for s in samples["mmframe_sink_circuit_open"]] == [({"sink": "_BareSink"}, 0.0)]
    assert samples["mmframe_sink_request_seconds"] == []
    assert samples["mmframe_sink_operations"] == []


def test_a_sink_with_every_ability_reports_them() -> None:
    from mmframe_match_engine.sink import MatchEngineSink

    sink = MatchEngineSink(MatchEngineSink.Config(endpoint="http://127.0.0.1:1"))
    sink.statistics["requests"] = 3
    sink.request_latency.observe(0.01)
    samples = _samples(list(sink_metrics(sink)))
    assert [(s.labels, s.value) for s in samples["mmframe_sink_degraded"]] == [({"sink": "match-engine"}, 1.0)]
    assert [(s.labels, s.value) for s in samples["mmframe_sink_circuit_open"]] == [({"sink": "match-engine"}, 0.0)]
    assert any(s.name == "mmframe_sink_request_seconds_count" and s.value == 1
               for s in samples["mmframe_sink_request_seconds"])
    assert ({"sink": "match-engine", "kind": "requests"}, 3.0) in [
        (s.labels, s.value) for s in samples["mmframe_sink_operations"]
    ]


async def test_a_market_on_a_sink_and_feed_without_abilities_quotes_and_reports_no_feed_figures(
    autojump_clock: Any,
) -> None:
    sink, feed = _BareSink(), ScriptedFeed()
    assert not isinstance(feed, ReportsSymbolStatistics)
    the_spec = spec(feed="scripted", refresh_interval=0.5)
    runner = MarketRunner(the_spec, Ladder(Ladder.Config(levels=1), market()), feed, sink, client_prefix="t-A1-")
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        feed.push_price("AAAUSDT", "100")
        await trio.sleep(1)
        status = runner.status(MarketState.RUNNING)
        assert status.state is MarketState.RUNNING  # never degraded: the sink cannot say so
        assert status.feed is None  # the feed reports no figures
        assert sorted(r.price for r in sink.placed) == [Decimal("99.00"), Decimal("101.00")]
        nursery.cancel_scope.cancel()


def test_the_publisher_report_names_only_the_symbols_of_a_feed_without_figures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = BusPublisher(RedisSettings())
    with caplog.at_level(logging.INFO, logger="mmframe.bus.publisher"):
        _report(ScriptedFeed(), ["BTCUSDT"], publisher)
        hub = FeedHub("sim", clock=lambda: 0.0)
        _report(_FeedWithFigures(hub), ["BTCUSDT"], publisher)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].endswith("| BTCUSDT")
    assert "BTCUSDT - (age -, 0 msgs, 0 rejected)" in lines[1]


class _FeedWithFigures:
    def __init__(self, hub: FeedHub) -> None:
        self.hub = hub

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    def subscribe(self, symbol: str, listener: Callable[[MarketData], None]) -> Subscription:
        return self.hub.subscribe(symbol, listener)

    def symbol_statistics(self, symbol: str) -> FeedSymbolStats:
        return self.hub.statistics(symbol)
