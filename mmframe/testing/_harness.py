"""A real engine for a plugin's tests: the markets of a strategy on the paper sink (or a sink of the test's), fed by
a :class:`~mmframe.testing.ScriptedFeed`, driven tick by tick and inspected order by order.

Everything here is core code on the private engine; what a test sees is :class:`Harness` and the public models.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import attrs
import trio

from .._book import OrderBook, OrderState, SubmitResult
from .._default_plugins.paper import PaperSink
from .._engine.manager import StrategyManager
from .._engine.spec import MarketSpec, MarketStatus
from .._engine.tracker import best_first
from .._errors import PluginError, unwrapped
from .._hookspecs import hookimpl
from .._models import DepthSnapshot, Fill, Market, MarketKey, Order, OrderType, PriceTick, Side, Trade, to_decimal
from .._plugins import PluginInfo, get_feeds, get_sinks, get_strategies, list_plugins, make_plugin_manager
from ..protocols import ExchangeFeed, KeepsLocalBooks, OrderSink, Position, Strategy
from ._fakes import ScriptedFeed, make_market

__all__ = [
    "Harness",
    "LoadedPlugins",
    "PaperSink",
    "load_plugins",
    "run_engine",
    "run_strategy",
    "sink_metrics_text",
    "start_engine",
]

#: ``await history(spec, client_prefix)``: the fills of a market's orders that earlier runs recorded (what the store's
#: fill audit answers in the service), oldest first.
HistoryLoader = Callable[[MarketSpec, str], Awaitable[Sequence[Fill]]]

MarketRef = str | MarketKey | Market | None


# ---------------------------------------------------------------------------------------------------------------
# The plugins the harness registers for a test
# ---------------------------------------------------------------------------------------------------------------


class _Components:
    """Registers the strategy and feed classes a test hands the harness directly."""

    def __init__(self, strategies: Iterable[type], feeds: Iterable[type]) -> None:
        self.strategies = tuple(strategies)
        self.feeds = tuple(feeds)

    @hookimpl
    def register_strategies(self, register: Callable[..., None]) -> None:
        for cls in self.strategies:
            register(cls)

    @hookimpl
    def register_feeds(self, register: Callable[..., None]) -> None:
        for cls in self.feeds:
            register(cls)


class _FillRecorder:
    """Keeps every fill of ours the engine applied, per market, across stops, restarts and reloads."""

    def __init__(self) -> None:
        self.fills: defaultdict[MarketKey, list[Fill]] = defaultdict(list)

    @hookimpl
    def order_filled(self, market: Market, fill: Fill, position: Position) -> None:
        self.fills[market.key].append(fill)


def _plugin_manager(
    plugins: Sequence[object], strategies: Sequence[type], feeds: Sequence[type], recorder: _FillRecorder,
    load_entrypoints: bool,
) -> Any:
    extra: list[object] = list(plugins)
    if strategies or feeds:
        extra.append(_Components(strategies, feeds))
    extra.append(recorder)
    return make_plugin_manager(load_entrypoints=load_entrypoints, plugins=tuple(extra))


# ---------------------------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------------------------


class Harness:
    """A running engine and its markets, as a test drives and inspects them.

    Made by :func:`start_engine`, :func:`run_engine` or :func:`run_strategy` (or, inside a whole service, by
    :func:`~mmframe.testing.run_service` as ``service.engine``). Every method that is about one market takes
    ``market=``: its symbol (``"BTC/USDT"``, a spot market), a :class:`~mmframe.MarketKey` or a
    :class:`~mmframe.Market`; left out, it is the engine's only market.

    Driving: :meth:`start`, :meth:`stop`, :meth:`reload` and :meth:`aclose` run markets as the service does;
    :meth:`push_tick` and :meth:`push_depth` deliver index prices through the market's scripted feed;
    :meth:`take` puts another participant's order on the paper book; :meth:`settle` lets the engine process
    everything. On trio's ``MockClock(autojump_threshold=0)`` (pytest-trio's ``autojump_clock`` fixture),
    ``await trio.sleep(seconds)`` lets that much of the engine's time pass at once.

    Inspecting: :meth:`status` (a :class:`~mmframe.MarketStatus`), :meth:`strategy` (the running strategy object),
    :meth:`live_orders` and :meth:`finished_orders` (the orders as the engine tracks them, :class:`~mmframe.Order`),
    :meth:`fills`; on the paper sink, its book: :meth:`book`, :meth:`our_orders`, :meth:`other_orders`,
    :meth:`our_bids`, :meth:`our_asks`, :meth:`ladder`, :meth:`prices`.
    """

    def __init__(self, manager: StrategyManager, sink: OrderSink, recorder: _FillRecorder) -> None:
        self._manager = manager
        self._recorder = recorder
        #: The order sink every market sends to (a :class:`PaperSink` unless the test gave another).
        self.sink = sink

    # ---- which market ------------------------------------------------------------------------------------------

    @property
    def markets(self) -> list[MarketKey]:
        """Every market the engine has started (running or not), in the order they were first started."""
        return list(self._manager.markets)

    @property
    def instance_id(self) -> str:
        """The first part of every client order id the engine makes."""
        return self._manager.instance_id

    def _key(self, market: MarketRef) -> MarketKey:
        if market is None:
            keys = self.markets
            if len(keys) == 1:
                return keys[0]
            if not keys:
                raise LookupError("no market has been started: start one first (Harness.start)")
            raise LookupError(f"the engine runs {len(keys)} markets ({', '.join(map(str, keys))}): say which one")
        if isinstance(market, MarketKey):
            return market
        if isinstance(market, Market):
            return market.key
        return MarketKey(market)

    def _runner(self, market: MarketRef) -> Any:
        key = self._key(market)
        runner = self._manager.runner(key)
        if runner is None:
            status = self._manager.status(key)[0] if key in self._manager.markets else None
            why = f" ({status.state}: {status.error})" if status is not None and status.error else ""
            raise LookupError(f"market {key} is not running{why}")
        return runner

    # ---- running markets ---------------------------------------------------------------------------------------

    async def start(self, spec: MarketSpec | None = None, /, **fields: Any) -> MarketStatus:
        """Start a market and return its status once it quotes (or failed to start: the status says why).

        Pass a :class:`~mmframe.MarketSpec`, or its fields (``strategy=``, ``strategy_config=``, ...; ``market``
        defaults to :func:`~mmframe.testing.make_market`'s and ``feed`` to ``"scripted"``). A market stopped
        earlier starts again with what it held (its position, its fills).
        """
        if spec is None:
            fields.setdefault("market", make_market())
            fields.setdefault("feed", ScriptedFeed.name)
            spec = MarketSpec(**fields)
        elif fields:
            spec = attrs.evolve(spec, **fields)
        return await self._manager.start_market(spec)

    async def stop(self, market: MarketRef = None) -> MarketStatus:
        """Stop a market: its orders are cancelled (and confirmed gone) before this returns."""
        return await self._manager.stop_market(self._key(market))

    async def reload(self, market: MarketRef = None, spec: MarketSpec | None = None) -> MarketStatus:
        """Stop a market and start it again, with *spec* (same market) if given."""
        key = spec.key if spec is not None and market is None else self._key(market)
        return await self._manager.reload_market(key, spec)

    async def aclose(self) -> None:
        """Stop every market (each cancels its orders), then the engine; as on SIGTERM."""
        await self._manager.aclose()

    def is_active(self, market: MarketRef = None) -> bool:
        """Whether the market is starting, running, or failed and waiting to be restarted."""
        return self._manager.is_active(self._key(market))

    def dry_build(self, spec: MarketSpec) -> Any:
        """What the service checks before it stores a config: build *spec*'s strategy, hand it one tick at the
        reference price and check every quote as the engine would place it. Returns the build (``.reference``,
        ``.source``, ``.quotes``); raises :class:`~mmframe.ConfigError` naming what would fail at run time."""
        return self._manager.dry_build(spec)

    # ---- one market's figures ----------------------------------------------------------------------------------

    def status(self, market: MarketRef = None) -> MarketStatus:
        """The market's state and figures now (what ``GET /api/v1/strategy/status`` reports)."""
        key = self._key(market)
        return self._manager.status(key)[0]

    def spec(self, market: MarketRef = None) -> MarketSpec:
        """The spec the market runs (or last ran) with."""
        return self._manager.markets[self._key(market)]

    def strategy(self, market: MarketRef = None) -> Strategy:
        """The market's strategy object (a new one after each start, restart or reload)."""
        return self._runner(market).strategy  # type: ignore[no-any-return]

    def feed(self, market: MarketRef = None) -> ExchangeFeed:
        """The feed instance the market takes its index from (shared by markets with equal feed and config)."""
        return self._runner(market).feed  # type: ignore[no-any-return]

    def client_prefix(self, market: MarketRef = None) -> str:
        """The prefix of every client order id of the market: ``"{instance_id}-{symbol}{market_type}-"``."""
        key = self._key(market)
        return self._manager.client_prefix(self._manager.markets[key])

    def live_orders(
        self, side: Side | None = None, *, include_cancelling: bool = False, market: MarketRef = None
    ) -> list[Order]:
        """Our live orders as the engine tracks them, best price first, as the strategy sees them
        (:meth:`~mmframe.StrategyContext.live_orders`): resting or sent and not being cancelled; with
        *include_cancelling*, every live order (new, pending, resting, cancel asked)."""
        tracker = self._runner(market).tracker
        if not include_cancelling:
            return list(tracker.quoting(side))
        return sorted((o for o in tracker.live() if side is None or o.side is side), key=best_first)

    def finished_orders(self, market: MarketRef = None) -> list[Order]:
        """Our finished orders of the current run (filled, cancelled, expired, rejected), oldest first."""
        return list(self._runner(market).tracker.finished())

    def fills(self, market: MarketRef = None) -> list[Fill]:
        """Every fill of ours the engine applied on the market since the harness started, across restarts."""
        return list(self._recorder.fills.get(self._key(market), ()))

    # ---- driving the feed --------------------------------------------------------------------------------------

    def _scripted(self, market: MarketRef) -> tuple[Any, str]:
        runner = self._runner(market)
        feed = runner.feed
        if not isinstance(feed, ScriptedFeed):
            raise TypeError(f"market {runner.spec.label}'s feed {type(feed).__name__} cannot be pushed to: "
                            "run it on a ScriptedFeed (feed='scripted')")
        return feed, runner.spec.feed_symbol

    def push_tick(
        self,
        price: Decimal | str | int,
        *,
        market: MarketRef = None,
        timestamp: float | None = None,
        exchange: str = "scripted",
    ) -> PriceTick:
        """Deliver an index tick of *price* to the market now, through its scripted feed, on the market's feed
        symbol; returns the tick. The engine acts on it at its next step: ``await harness.settle()``."""
        feed, symbol = self._scripted(market)
        tick = PriceTick(
            exchange=exchange,
            symbol=symbol,
            price=to_decimal(price, name="price"),
            **({} if timestamp is None else {"timestamp": timestamp}),
        )
        # push_price, which a feed keeping figures of what it pushes overrides
        return feed.push_price(symbol, tick.price, exchange=exchange, timestamp=tick.timestamp)

    def push_depth(
        self,
        bids: Iterable[tuple[Any, Any]] = (),
        asks: Iterable[tuple[Any, Any]] = (),
        *,
        market: MarketRef = None,
        exchange: str = "scripted",
    ) -> DepthSnapshot:
        """Deliver an external depth snapshot (``(price, quantity)`` levels, best first) to the market now."""
        feed, symbol = self._scripted(market)
        depth = DepthSnapshot(exchange, symbol, bids=tuple(bids), asks=tuple(asks))
        feed.push(depth)
        return depth

    def push_trade(
        self,
        side: Side | str,
        quantity: Decimal | str | int,
        price: Decimal | str | int,
        *,
        market: MarketRef = None,
        exchange: str = "scripted",
    ) -> Trade:
        """Deliver a public trade (*side* is the aggressor's) to the market now, through its scripted feed: the
        strategy's ``on_trade`` sees it at the market's next step. It touches no order of ours (use :meth:`take`)."""
        feed, symbol = self._scripted(market)
        return feed.push_trade(symbol, side, quantity, price, exchange=exchange)  # type: ignore[no-any-return]

    async def settle(self, cushion: float = 0.0) -> None:
        """Let every task run until all are blocked: the engine has processed everything pushed so far. With a real
        clock and real sockets, give a *cushion* (seconds every task must stay blocked)."""
        import trio.testing  # here: trio.testing imports pytest when it is installed

        await trio.testing.wait_all_tasks_blocked(cushion)

    # ---- the paper book ----------------------------------------------------------------------------------------

    def _paper(self) -> Any:
        if not isinstance(self.sink, KeepsLocalBooks):
            raise TypeError(f"the sink {type(self.sink).__name__} has no paper book; ask the exchange behind it")
        return self.sink

    def _symbol(self, market: MarketRef) -> str:
        if isinstance(market, str):
            return market
        if isinstance(market, Market):
            return market.symbol
        return self._key(market).symbol

    def book(self, market: MarketRef = None) -> OrderBook:
        """The paper sink's matching book of the market's symbol: everyone's orders (``open_orders()``,
        ``depth()``, ``best_bid``, ...); see :class:`mmframe.book.OrderBook`."""
        return self._paper().book(self._symbol(market))  # type: ignore[no-any-return]

    def _owner(self) -> str:
        return self._paper().config.owner  # type: ignore[no-any-return]

    def our_orders(self, market: MarketRef = None) -> list[OrderState]:
        """Our orders resting on the paper book, in arrival order."""
        owner = self._owner()
        return [o for o in self.book(market).open_orders() if o.owner == owner]

    def other_orders(self, market: MarketRef = None) -> list[OrderState]:
        """Other participants' orders resting on the paper book, in arrival order."""
        owner = self._owner()
        return [o for o in self.book(market).open_orders() if o.owner != owner]

    def our_bids(self, market: MarketRef = None) -> list[tuple[Decimal, Decimal]]:
        """Our resting bids on the paper book as ``(price, remaining quantity)``, best (highest) first."""
        orders = self.our_orders(market)
        return sorted(((o.price, o.remaining_quantity) for o in orders if o.side is Side.BUY and o.price is not None),
                      key=lambda level: -level[0])

    def our_asks(self, market: MarketRef = None) -> list[tuple[Decimal, Decimal]]:
        """Our resting asks on the paper book as ``(price, remaining quantity)``, best (lowest) first."""
        orders = self.our_orders(market)
        return sorted(((o.price, o.remaining_quantity) for o in orders if o.side is Side.SELL and o.price is not None),
                      key=lambda level: level[0])

    def ladder(
        self, market: MarketRef = None
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """``(our_bids(), our_asks())``."""
        return self.our_bids(market), self.our_asks(market)

    def prices(self, market: MarketRef = None) -> tuple[list[Decimal], list[Decimal]]:
        """The prices of :meth:`ladder`: ``(bid prices best first, ask prices best first)``."""
        bids, asks = self.ladder(market)
        return [p for p, _ in bids], [p for p, _ in asks]

    def take(
        self,
        side: Side,
        quantity: Decimal | str | int,
        price: Decimal | str | int | None = None,
        *,
        type: OrderType | None = None,
        owner: str | None = None,
        market: MarketRef = None,
    ) -> SubmitResult:
        """Another participant's order on the paper book now: a limit order at *price* (one that crosses ours
        trades with them, the rest rests), or a market order without a price; *type* overrides (``OrderType.IOC``).
        Our orders it trades with get their fills at once; ``await settle()`` lets the engine process them."""
        order_type = type if type is not None else (OrderType.MARKET if price is None else OrderType.LIMIT)
        return self._paper().submit_external(  # type: ignore[no-any-return]
            self._symbol(market),
            side=side,
            type=order_type,
            quantity=to_decimal(quantity, name="quantity"),
            price=None if price is None else to_decimal(price, name="price"),
            owner=owner,
        )


# ---------------------------------------------------------------------------------------------------------------
# Starting an engine
# ---------------------------------------------------------------------------------------------------------------


async def start_engine(
    nursery: trio.Nursery,
    *plugins: object,
    sink: OrderSink | None = None,
    strategies: Sequence[type] = (),
    feeds: Sequence[type] = (ScriptedFeed,),
    instance_id: str = "t",
    history: HistoryLoader | None = None,
    load_entrypoints: bool = False,
) -> Harness:
    """Start an engine in *nursery* and return its :class:`Harness` (no market yet: :meth:`Harness.start`).

    :param plugins: plugin objects or modules to register: a strategy plugin's module (as its entry point names it),
        a test's own plugin with hooks (``order_filled``, ``pre_trade_check``, ...).
    :param sink: the order sink (default: a new :class:`PaperSink`). A test's own sink (the match engine's, a
        paper sink subclass that delays events) is run by the engine like any other.
    :param strategies: strategy classes to register directly.
    :param feeds: feed classes to register directly; by default :class:`~mmframe.testing.ScriptedFeed` as
        ``scripted`` (pass ``()``, or your own subclass, when a plugin registers a feed of that name).
    :param instance_id: the first part of every client order id (``t-BTCUSDT1-...``).
    :param history: ``await history(spec, client_prefix)`` returns the fills of earlier runs (a restarted process
        finds what it holds); default: none before the first start.
    :param load_entrypoints: also load the installed plugins' entry points (off: a test states its plugins).

    The engine runs until :meth:`Harness.aclose` or the nursery is cancelled::

        async def test_quotes(nursery, autojump_clock):
            engine = await start_engine(nursery, my_plugin_module)
            await engine.start(strategy="my_strategy", strategy_config={"spread": "0.001"})
            engine.push_tick("30000")
            await engine.settle()
            assert engine.prices() == ([Decimal("29985.00")], [Decimal("30015.00")])
    """
    recorder = _FillRecorder()
    pm = _plugin_manager(plugins, strategies, feeds, recorder, load_entrypoints)
    sink = sink if sink is not None else PaperSink()
    manager = StrategyManager(sink, pm, instance_id=instance_id, history=history)
    await nursery.start(manager.run)
    return Harness(manager, sink, recorder)


@asynccontextmanager
async def run_engine(
    *plugins: object,
    sink: OrderSink | None = None,
    strategies: Sequence[type] = (),
    feeds: Sequence[type] = (ScriptedFeed,),
    instance_id: str = "t",
    history: HistoryLoader | None = None,
    load_entrypoints: bool = False,
) -> AsyncIterator[Harness]:
    """:func:`start_engine` as an ``async with``: on the way out every market is stopped (its orders cancelled)
    and the engine with it."""
    with unwrapped():
        async with trio.open_nursery() as nursery:
            harness = await start_engine(
                nursery, *plugins, sink=sink, strategies=strategies, feeds=feeds, instance_id=instance_id,
                history=history, load_entrypoints=load_entrypoints,
            )
            try:
                yield harness
            finally:
                with trio.CancelScope(shield=True):
                    await harness.aclose()
                nursery.cancel_scope.cancel()


@asynccontextmanager
async def run_strategy(
    strategy: type | str,
    config: Mapping[str, Any] | None = None,
    *,
    market: Market | None = None,
    plugins: Sequence[object] = (),
    sink: OrderSink | None = None,
    feeds: Sequence[type] = (ScriptedFeed,),
    feed: str = ScriptedFeed.name,
    instance_id: str = "t",
    **spec_fields: Any,
) -> AsyncIterator[Harness]:
    """One market of *strategy* on a real engine: the paper sink (or *sink*), a scripted feed, the test's clock.

    :param strategy: a :class:`~mmframe.Strategy` subclass (registered for the run unless one of *plugins*
        registers it), or the name a plugin of *plugins* registers.
    :param config: the strategy's config as the database would hold it (structured into its ``Config``).
    :param market: the market (default: :func:`~mmframe.testing.make_market`'s BTC/USDT, tick 0.01).
    :param spec_fields: more :class:`~mmframe.MarketSpec` fields: ``risk=RiskLimits(...)``, ``stale_after=``,
        ``refresh_interval=``, ``index_symbol=``, ``seed=``, ...

    ::

        async def test_a_fill_skews_the_quotes(autojump_clock):
            async with run_strategy(FixedSpreadStrategy, {"spread": "0.002"}) as engine:
                engine.push_tick("30000")
                await engine.settle()
                best_bid = engine.our_bids()[0][0]
                engine.take(Side.SELL, "0.01", best_bid)  # another participant hits our best bid
                await engine.settle()
                assert engine.status().position == Decimal("0.01") and len(engine.fills()) == 1
            # leaving the block stopped the market: none of our orders is left on the paper book
    """
    strategies: list[type] = []
    if isinstance(strategy, str):
        name = strategy
    else:
        name = strategy.name
        registered = get_strategies(make_plugin_manager(load_entrypoints=False, plugins=tuple(plugins)))
        if name not in registered:
            strategies.append(strategy)
        elif registered[name] is not strategy:
            raise PluginError(f"a plugin registers another strategy as {name!r}: {registered[name].__qualname__}")
    async with run_engine(*plugins, sink=sink, strategies=strategies, feeds=feeds, instance_id=instance_id) as harness:
        status = await harness.start(
            market=market if market is not None else make_market(),
            strategy=name,
            strategy_config=dict(config or {}),
            feed=feed,
            **spec_fields,
        )
        if status.error:
            raise RuntimeError(f"the market did not start: {status.error}")
        yield harness


# ---------------------------------------------------------------------------------------------------------------
# The plugins as mmframe finds them
# ---------------------------------------------------------------------------------------------------------------


@attrs.frozen
class LoadedPlugins:
    """What mmframe's plugin manager found: every registered strategy, feed and sink class by name (each a dict
    with ``registered_by``: name -> the plugin that registered it), and every plugin with its distribution, version
    and hooks (``info``: objects with ``name``, ``version``, ``hooks``, ``distribution``, ``builtin``)."""

    _pm: Any = attrs.field(repr=False)
    strategies: Mapping[str, Any]
    feeds: Mapping[str, Any]
    sinks: Mapping[str, Any]
    info: list[PluginInfo]

    def plugin(self, name: str) -> object | None:
        """The plugin object (module) registered under *name* (its entry point's name), or ``None``."""
        return self._pm.get_plugin(name)  # type: ignore[no-any-return]

    def register_commands(self, group: Any) -> None:
        """Let every plugin add its commands to the click *group* (the ``register_commands`` hook), as the
        ``mmframe`` command does at start."""
        self._pm.hook.register_commands(cli=group)


def load_plugins(*plugins: object, load_entrypoints: bool = True) -> LoadedPlugins:
    """Load plugins as ``mmframe`` does: the installed distributions' entry points (group ``mmframe``, filtered by
    ``MMFRAME_LOAD_PLUGINS`` when it is set), the built-in plugins, then *plugins*. Raises
    :class:`~mmframe.PluginError` for a plugin that implements a hook that does not exist.

    ::

        loaded = load_plugins()
        assert loaded.strategies["my_strategy"] is MyStrategy
        assert loaded.strategies.registered_by["my_strategy"] == "my_strategy"  # the entry point's name
    """
    pm = make_plugin_manager(load_entrypoints=load_entrypoints, plugins=tuple(plugins))
    return LoadedPlugins(pm, get_strategies(pm), get_feeds(pm), get_sinks(pm), list_plugins(pm))


def sink_metrics_text(sink: OrderSink) -> str:
    """The Prometheus text mmframe's ``/metrics`` serves about *sink*: its health (degraded, circuit open), request
    latency and statistics, from the optional abilities it implements (:mod:`mmframe.protocols`)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from .._control.metrics import sink_metrics

    class Collector:
        def collect(self) -> Any:
            return sink_metrics(sink)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())  # type: ignore[arg-type]
    return generate_latest(registry).decode()
