"""The StrategyManager: every market's lifecycle, the shared feeds, and the sink.

Task tree::

    StrategyManager.run
    ├── sink.run                  (shielded: outlives the markets, so that they can cancel their orders)
    ├── feed.run                  one per distinct (feed name, feed config), restarted with backoff if it fails
    └── markets nursery
        ├── supervise BTC/USDT:spot ── MarketRunner.run
        └── supervise ETH/USDT:spot ── MarketRunner.run

A market that raises is caught by its supervisor: logged with its key, shown in its status, its orders
cancelled, and (by its :class:`RestartPolicy`) restarted or left failed. No other market notices.

The markets handed to :meth:`StrategyManager.run` start concurrently, at most :data:`START_CONCURRENCY` at a time;
until its turn comes a market is queued and shows ``starting``.
"""

from __future__ import annotations

import decimal
import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs
import pluggy
import trio

from .._errors import ConfigError, MMFrameError
from .._models import (
    Fill,
    Market,
    MarketKey,
    OrderRequest,
    OrderType,
    PriceTick,
    Quote,
    Side,
    to_decimal,
)
from .._plugins import Registry, get_feeds, get_strategies
from ..config import structure_config
from ..feedtools import FeedSymbolStats
from ..protocols import ExchangeFeed, OrderSink, Position, ReportsSymbolStatistics, Strategy
from .clientid import client_prefix
from .dry import DryBuild, DryContext, dry_depth, dry_events
from .gating import gated
from .market import MarketRunner
from .pricing import UnplaceableQuote, put_on_grid
from .risk import RiskContext, RiskGate
from .spec import MarketHalted, MarketSpec, MarketState, MarketStatus

__all__ = ["START_CONCURRENCY", "HistoryLoader", "StrategyManager", "build_strategy", "strategy_config"]

log = logging.getLogger("mmframe.engine")

#: How many of the markets handed to :meth:`StrategyManager.run` start at once (building the strategy, loading its
#: fill history, clearing leftovers through the sink, subscribing to the feed); the others wait their turn, in order,
#: as ``starting``. Each start waits for the scheduler a few times, and on a process busy with the markets already
#: quoting each wait is long: the more start together, the fewer waits in all (``bench.serve_scale``, 500 markets:
#: all quoting 9-15 s after the process starts at 32, 7-10 s at 64, 5-9 s at 128). 64 keeps what a remote sink
#: sees at start-up (two requests per market) to a burst it can take.
START_CONCURRENCY = 64


def strategy_config(strategies: Registry, name: str, config: Mapping[str, Any]) -> tuple[type[Strategy], Any]:
    """The strategy class registered as *name* and its ``Config`` built from *config*, as the engine builds them:
    an unknown name raises :class:`~mmframe.UnknownPlugin`, a key the ``Config`` refuses a
    :class:`~mmframe.ConfigError` naming it. The one place a strategy's configuration is checked."""
    cls: type[Strategy] = strategies.get_or_raise(name)
    return cls, structure_config(config, cls.Config)


def build_strategy(strategies: Registry, name: str, config: Mapping[str, Any], market: Market) -> Strategy:
    """:func:`strategy_config`, then the strategy built for *market* (whatever its constructor refuses raises)."""
    cls, structured = strategy_config(strategies, name, config)
    return cls(structured, market)


#: ``gate(spec)``: whether *spec*'s market may send to the sink now (see :attr:`StrategyManager.gate`).
SendGate = Callable[[MarketSpec], bool]

#: ``await history(spec, client_prefix)``: the fills of a market's orders that earlier processes recorded.
HistoryLoader = Callable[[MarketSpec, str], Awaitable[Sequence[Fill]]]


@attrs.define
class _Handle:
    spec: MarketSpec
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    stopped: trio.Event = attrs.field(factory=trio.Event)
    runner: MarketRunner | None = None
    state: MarketState = MarketState.STARTING
    error: str = ""
    restarts: int = 0
    position: Position = Position()
    history: tuple[Fill, ...] | None = None  # fills before the current run; None until loaded
    # Waiting for its turn in run's start-up (no supervisor yet): a stop only marks it stopped.
    queued: bool = False
    # Set once this start has been answered: the market quotes, or failed to start, or stopped first.
    reported: trio.Event = attrs.field(factory=trio.Event)
    # The index the market's last run ended with: a new run screens its first tick against it (IndexScreen.seed),
    # so a wild tick right after a start or reload is not the index; a deliberate switch to another instrument is a
    # big move, taken once confirmed.
    last_index: PriceTick | None = None
    # Whether a runner of this start reached its run: from then on its own start and stop clean the book.
    ran: bool = False
    # Stopped before its turn to start: what an earlier run left on the book is still to be cancelled.
    unchecked: bool = False


class StrategyManager:
    """Runs markets: start, stop and reload them at run time, and report their status.

    :param sink: the order sink every market sends to.
    :param pm: the plugin manager (hooks and the strategy and feed registries).
    :param instance_id: the first part of every client order id; two processes on one engine need two ids.
    """

    def __init__(
        self,
        sink: OrderSink,
        pm: pluggy.PluginManager,
        *,
        instance_id: str = "mmf",
        history: HistoryLoader | None = None,
        start_concurrency: int = START_CONCURRENCY,
        id_tag: str = "",
        gate: SendGate | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9]{1,12}", instance_id):
            raise ConfigError(f"instance_id must be 1 to 12 letters or digits, got {instance_id!r}")
        if id_tag and not re.fullmatch(r"[a-z0-9]{1,12}", id_tag):
            raise ConfigError(f"id_tag must be 1 to 12 lower-case letters or digits, got {id_tag!r}")
        if start_concurrency < 1:
            raise ConfigError(f"start_concurrency must be at least 1, got {start_concurrency}")
        self.sink = sink
        self.pm = pm
        self.instance_id = instance_id
        self.history = history
        self.start_concurrency = start_concurrency
        #: Written into every client order id after the market's prefix (``mmf-BTCUSDT1-{tag}.…``): which of a
        #: cluster's instances sent an order. Empty outside a cluster.
        self.id_tag = id_tag
        #: ``gate(spec)`` says whether the market may send to the sink now (a cluster: while this instance holds
        #: the market's lease); ``None``: always.
        self.gate = gate
        #: The wall clock the markets check tick timestamps against (a backtest's runs on its virtual clock).
        self.wall = wall
        self.strategies: Registry = get_strategies(pm)
        self.feeds: Registry = get_feeds(pm)
        self._handles: dict[MarketKey, _Handle] = {}
        self._feed_instances: dict[tuple[str, str], ExchangeFeed] = {}
        self._feeds_starting: dict[tuple[str, str], trio.Event] = {}  # set once that feed's start is over
        self._infra: trio.Nursery | None = None
        self._markets: trio.Nursery | None = None
        self._sink_scope = trio.CancelScope(shield=True)
        self._stopping = False
        #: Set once every market handed to :meth:`run` has been started (each quoting, or failed to start, or
        #: stopped before its turn) and the ``engine_started`` hook called; set too if the engine stops first.
        self.autostarted = trio.Event()

    # ---- running ----------------------------------------------------------------------------------------------

    async def run(
        self,
        specs: Sequence[MarketSpec] = (),
        *,
        background: bool = False,
        task_status: trio.TaskStatus[StrategyManager] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the sink, the feeds and *specs*' markets until cancelled or :meth:`aclose` d.

        *specs* are queued at once (each shows ``starting``) and start concurrently, at most
        :attr:`start_concurrency` at a time, in order; one failing to start fails alone. Then the ``engine_started``
        hook is called (not if the engine was told to stop meanwhile) and :attr:`autostarted` is set. ``run``
        reports started after that, or, with *background*, as soon as the sink runs and *specs* are queued: the
        commands work from then on (a stop of a queued market leaves it stopped before it starts).
        """
        try:
            async with trio.open_nursery() as infra:
                self._infra = infra
                await infra.start(self._run_sink)
                try:
                    async with trio.open_nursery() as markets:
                        self._markets = markets
                        queued = [self._queue(spec) for spec in specs]
                        if background:
                            task_status.started(self)
                        await self._start_queued(queued)
                        if not self._stopping:
                            self._notify(self.pm.hook.engine_started, manager=self)
                        self.autostarted.set()
                        if not background:
                            task_status.started(self)
                        await trio.sleep_forever()
                finally:
                    # Every market has stopped and cancelled its orders; only now may the sink go.
                    self._markets = None
                    self._sink_scope.cancel()
                    infra.cancel_scope.cancel()
        finally:
            self.autostarted.set()  # stopped (or failed) before start-up was over: nobody waits for it any more

    def _queue(self, spec: MarketSpec) -> _Handle:
        """A handle for *spec*, waiting for its turn to start (state ``starting``)."""
        handle = self._handles.get(spec.key)
        if handle is not None and not handle.stopped.is_set():
            raise MMFrameError(f"market {spec.key} is already running")
        handle = _Handle(spec, queued=True)
        self._handles[spec.key] = handle
        return handle

    async def _start_queued(self, handles: Sequence[_Handle]) -> None:
        """Start the queued *handles* in order, at most :attr:`start_concurrency` at a time; returns once every one
        has started, failed to start, or been stopped. Once :meth:`aclose` has begun, none starts any more."""
        turns = iter(handles)  # shared: each starter takes the next market in line as soon as it is free

        async def starter() -> None:
            for handle in turns:
                if not handle.queued:
                    continue  # stopped (or stopped and started again by a command) while it waited
                if self._stopping:  # asked to stop while starting: start no more
                    self._unqueue(handle)
                    continue
                handle.queued = False
                assert self._markets is not None
                await self._markets.start(self._supervise, handle)

        async with trio.open_nursery() as starting:
            for _ in range(min(self.start_concurrency, len(handles))):
                starting.start_soon(starter)

    def _unqueue(self, handle: _Handle) -> None:
        """A queued market that will not start now: stopped. It placed nothing, but an earlier run (a process that
        died) may have left orders with its prefix, which its start would have cancelled: :meth:`_cancel_leftovers`
        does that next (:meth:`stop_market`, or :meth:`aclose` for those start-up dropped)."""
        handle.queued = False
        handle.unchecked = True
        handle.state = MarketState.STOPPED
        handle.reported.set()
        handle.stopped.set()

    async def _cancel_leftovers(self, handle: _Handle) -> None:
        """A market stopped before it ran: cancel what an earlier run left on the book under its prefix, as its own
        start would have (shielded, within its ``cleanup_timeout``). Nothing is left that no market tracks."""
        handle.unchecked = False
        spec = handle.spec
        symbol, prefix = spec.market.symbol, self.client_prefix(spec)
        if self.gate is not None and not self.gate(spec):
            log.info("[%s] stopped before it started, without the right to send: its next owner cancels what an "
                     "earlier run left", spec.label)
            return
        may_send = functools.partial(self.gate, spec) if self.gate is not None else None
        with (
            gated(self.sink, prefix, may_send),
            trio.CancelScope(shield=True),
            trio.move_on_after(spec.cleanup_timeout) as scope,
        ):
            try:
                cancelled = await self.sink.cancel_all(symbol, prefix)
            except MMFrameError as exc:
                log.error("[%s] stopped before it started; could not cancel what an earlier run left: %s",
                          spec.label, exc)
                return
            if cancelled:
                log.warning("[%s] stopped before it started: cancelled %d orders left by an earlier run "
                            "(prefix %s)", spec.label, cancelled, prefix)
        if scope.cancelled_caught:
            log.error("[%s] stopped before it started; cancelling what an earlier run left took over %ss",
                      spec.label, spec.cleanup_timeout)

    async def _run_sink(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._sink_scope:
            await self.sink.run(task_status=task_status)

    @property
    def stopping(self) -> bool:
        """Whether :meth:`aclose` has begun: no market starts any more."""
        return self._stopping

    async def aclose(self) -> None:
        """Stop every market (each cancels its orders), then the engine. Bounded by the markets' cleanup time."""
        if self._stopping:
            return
        self._stopping = True
        self._notify(self.pm.hook.engine_stopping, manager=self)
        async with trio.open_nursery() as nursery:
            for key in list(self._handles):
                nursery.start_soon(self.stop_market, key)
        async with trio.open_nursery() as nursery:  # those start-up dropped before their turn
            for handle in list(self._handles.values()):
                if handle.unchecked:
                    nursery.start_soon(self._cancel_leftovers, handle)
        if self._infra is not None:
            self._infra.cancel_scope.cancel()

    def _notify(self, hook: pluggy.HookCaller, **kwargs: Any) -> None:
        """Call a lifecycle hook outside any market: a plugin that raises is logged, and the engine goes on."""
        try:
            hook(**kwargs)
        except Exception:
            log.exception("a %s hook implementation raised", hook.name)

    # ---- markets ----------------------------------------------------------------------------------------------

    async def start_market(self, spec: MarketSpec) -> MarketStatus:
        """Start a market and return once it quotes (or has failed to start; its status says why)."""
        if self._markets is None:
            raise MMFrameError("the engine is not running")
        if self._stopping:
            raise MMFrameError("the engine is stopping: no market starts now")
        handle = self._handles.get(spec.key)
        if handle is not None and not handle.stopped.is_set():
            raise MMFrameError(f"market {spec.key} is already running")
        previous = handle
        handle = _Handle(spec)
        if previous is not None:  # a stopped market started again (or reloaded) keeps what it holds
            handle.position = previous.runner.position if previous.runner is not None else previous.position
            handle.history = previous.history
            handle.last_index = _last_index(previous)
            if previous.runner is not None and self.history is None:
                handle.history = (*(previous.history or ()), *previous.runner.fills)
        self._handles[spec.key] = handle
        await self._markets.start(self._supervise, handle)
        return self._status(handle)

    async def stop_market(self, key: MarketKey) -> MarketStatus:
        """Stop a market: its orders are cancelled before this returns."""
        handle = self._require(key)
        if handle.queued:  # its turn to start has not come: it never will
            self._unqueue(handle)
        if handle.unchecked:
            await self._cancel_leftovers(handle)
        if not handle.stopped.is_set():
            handle.state = MarketState.STOPPING
            handle.scope.cancel()
            await handle.stopped.wait()
        return self._status(handle)

    async def reload_market(self, key: MarketKey, spec: MarketSpec | None = None) -> MarketStatus:
        """Stop a market and start it again, with *spec* if given (same key) or its current spec."""
        handle = self._require(key)
        if spec is not None and spec.key != key:
            raise MMFrameError(f"cannot reload {key} with the spec of {spec.key}")
        await self.stop_market(key)
        return await self.start_market(spec or handle.spec)

    async def wait_started(self, key: MarketKey) -> MarketStatus:
        """Wait until the market's current start has been answered (it quotes, failed to start, or was stopped
        first; at once for a market already past that), and return its status."""
        handle = self._require(key)
        await handle.reported.wait()
        return self._status(handle)

    def status(self, key: MarketKey | None = None) -> list[MarketStatus]:
        handles = [self._require(key)] if key is not None else list(self._handles.values())
        return [self._status(h) for h in handles]

    def is_active(self, key: MarketKey) -> bool:
        """Whether the market is supervised now: starting, running, or failed and waiting to be restarted."""
        handle = self._handles.get(key)
        return handle is not None and not handle.stopped.is_set()

    def runner(self, key: MarketKey) -> MarketRunner | None:
        """The market's current runner (for its figures), or ``None`` before it was built."""
        handle = self._handles.get(key)
        return handle.runner if handle is not None else None

    @property
    def markets(self) -> dict[MarketKey, MarketSpec]:
        return {key: h.spec for key, h in self._handles.items()}

    def _require(self, key: MarketKey) -> _Handle:
        try:
            return self._handles[key]
        except KeyError:
            raise MMFrameError(f"no market {key}") from None

    def _status(self, handle: _Handle) -> MarketStatus:
        if handle.runner is not None:
            return handle.runner.status(handle.state, error=handle.error, restarts=handle.restarts)
        spec = handle.spec
        return MarketStatus(
            market=spec.label,
            symbol=spec.market.symbol,
            market_type=int(spec.market.market_type),
            strategy=spec.strategy,
            state=handle.state,
            error=handle.error,
            restarts=handle.restarts,
        )

    def client_prefix(self, spec: MarketSpec) -> str:
        """The client-id prefix of *spec*'s orders: ``{instance_id}-{SYMBOL}{market type}-``."""
        return client_prefix(self.instance_id, spec.market)

    async def _supervise(
        self, handle: _Handle, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        spec = handle.spec
        backoff = spec.restart.backoff
        reported = False

        def report() -> None:
            nonlocal reported
            if not reported:
                reported = True
                handle.reported.set()
                task_status.started()

        try:
            with handle.scope:
                while True:
                    error = await self._run_once(handle, report)
                    if error is None or handle.restarts >= spec.restart.max_restarts:
                        return
                    handle.restarts += 1
                    log.warning("[%s] restarting in %.1fs (restart %d of %d)", spec.label, backoff, handle.restarts,
                                spec.restart.max_restarts)
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, spec.restart.max_backoff)
        finally:
            if not handle.ran:  # stopped or failed before its runner ran: nobody cleaned the book for it
                await self._cancel_leftovers(handle)
            if handle.state not in (MarketState.FAILED, MarketState.HALTED):
                handle.state = MarketState.STOPPED
            report()
            handle.stopped.set()

    async def _run_once(self, handle: _Handle, report: Any) -> BaseException | None:
        """Build and run the market once. Returns the error to restart after, or ``None`` for no restart."""
        spec = handle.spec
        handle.state, handle.error = MarketState.STARTING, ""
        try:
            runner = await self._build(spec)
        except Exception as exc:  # configuration, unknown plugin, a feed that cannot start: not restarted
            handle.state, handle.error = MarketState.FAILED, _describe(exc)
            log.error("[%s] failed to load: %s", spec.label, handle.error)
            return None
        if handle.runner is not None:
            handle.position = handle.runner.position
            handle.last_index = _last_index(handle)
        if handle.last_index is not None:
            runner.index.seed(handle.last_index)
        if handle.history is None:
            handle.history = await self._load_history(spec)
            for fill in handle.history:  # what earlier processes bought and sold is still held
                handle.position = handle.position.after(fill.side, fill.price, fill.quantity, fill.fee)
        elif self.history is not None:
            # Started again in this process: the loader (the store, and what the audit has not written yet) has
            # every fill so far; the market's position is carried over, not rebuilt.
            handle.history = await self._load_history(spec)
        elif handle.runner is not None:
            handle.history = (*handle.history, *handle.runner.fills)  # no loader: what this process saw
        runner.history = handle.history or ()
        runner.keep_fills = self.history is None  # with a loader the store keeps them, not the market's memory
        runner.position = handle.position  # a restart or reload must not forget what the market holds
        handle.runner = runner
        handle.ran = True  # from here the runner cancels (or adopts) what an earlier run left, and cleans up on stop
        error: BaseException | None = None
        try:
            await runner.run(task_status=_Started(handle, report))
        except MarketHalted as exc:
            handle.state, handle.error = MarketState.HALTED, str(exc)
            log.error("[%s] %s", spec.label, exc)
            error = exc
            return None
        except Exception as exc:
            handle.state, handle.error = MarketState.FAILED, _describe(exc)
            log.exception("[%s] market failed: %s", spec.label, handle.error)
            error = exc
            return exc
        finally:
            self._notify(self.pm.hook.market_stopped, market=spec.market, error=error)
        return None

    async def _load_history(self, spec: MarketSpec) -> tuple[Fill, ...]:
        """The fills earlier processes recorded for this market (our prefix), oldest first; none without a loader.

        A loader that fails is logged and the market starts without history (its position starts at zero).
        """
        if self.history is None:
            return ()
        try:
            fills = tuple(await self.history(spec, self.client_prefix(spec)))
        except Exception as exc:
            log.error("[%s] could not load its fill history: %s; starting without it", spec.label, _describe(exc))
            return ()
        if fills:
            log.info("[%s] %d earlier fills of ours loaded", spec.label, len(fills))
        return fills

    async def _build(self, spec: MarketSpec) -> MarketRunner:
        strategy = build_strategy(self.strategies, spec.strategy, spec.strategy_config, spec.market)
        feed = await self._feed(spec.feed, spec.feed_config)
        index_feeds = [await self._feed(source.feed, source.feed_config) for source in spec.index_sources]
        runner = MarketRunner(
            spec, strategy, feed, self.sink, client_prefix=self.client_prefix(spec), hook=self.pm.hook,
            index_feeds=index_feeds, id_tag=self.id_tag, wall=self.wall,
            may_send=functools.partial(self.gate, spec) if self.gate is not None else None,
        )
        log.info("Strategy [%s] initialized successfully (%s, %s)", spec.label, spec.strategy, spec.key)
        return runner

    # ---- dry builds -------------------------------------------------------------------------------------------

    def reference_price(self, spec: MarketSpec) -> tuple[Decimal, str]:
        """The price a dry build of *spec* puts its ladder at, and where it comes from, in this order: the market's
        index (``index``: its last good tick, running or from its last run in this process, when *spec* takes its
        index from the same source); the feed's last price for *spec*'s index symbol (``feed``); the config's
        ``anchor_price`` (``anchor_price``); else a nominal price of 100,000 ticks (``nominal``). The risk gate's price
        bands are checked only against a price from the market or its feed."""
        runner = self.runner(spec.key)
        if runner is not None and runner.last_tick is not None and _index_source(runner.spec) == _index_source(spec):
            return runner.last_tick.price, "index"
        last = self._feed_price(spec)
        if last is not None:
            return last, "feed"
        anchor = spec.strategy_config.get("anchor_price")
        if anchor is not None:
            try:
                price = to_decimal(anchor, name="anchor_price")
            except ValueError:
                price = Decimal(0)
            if price > 0:
                return price, "anchor_price"
        return spec.market.tick_size * 100_000, "nominal"

    def _feed_price(self, spec: MarketSpec) -> Decimal | None:
        """The last price *spec*'s own feed (if it runs in this process) has for *spec*'s index symbol, or ``None``."""
        return self._source_price(spec.feed, spec.feed_config, spec.feed_symbol)

    def _source_price(self, feed: str, config: Mapping[str, Any], symbol: str) -> Decimal | None:
        """The last price the running feed *feed* with *config* has for *symbol*, or ``None``."""
        key = (feed, json.dumps(config, sort_keys=True, default=str))
        feed = self._feed_instances.get(key)
        if not isinstance(feed, ReportsSymbolStatistics):
            return None
        try:
            figures = feed.symbol_statistics(symbol)
        except Exception:  # a figure we can do without
            return None
        last = figures.last_price if isinstance(figures, FeedSymbolStats) else None
        if isinstance(last, Decimal) and last.is_finite() and last > 0:
            return last
        return None

    def _check_index_switch(self, spec: MarketSpec) -> None:
        """Refuse *spec* if it would move a quoting market's index to another source (another feed, feed config or
        index symbol) whose price is further than the market's ``max_tick_jump`` from the market's index, or unknown:
        the new index would be taken at its first tick, with no screen to say that this is another instrument."""
        runner = self.runner(spec.key)
        if runner is None or runner.last_tick is None or not self.is_active(spec.key):
            return  # not running, or no index yet: the next start takes its first index from the new source
        if _index_source(runner.spec) == _index_source(spec):
            return
        current = runner.last_tick.price
        before = ", ".join(runner.spec.source_names)
        how = "a deliberate switch needs a stop, then a reload (which starts the market on the new source)"
        limit = runner.spec.max_tick_jump
        # Every source of the new index (the market's own feed and each index source) must be there and near the
        # index: two sources on another instrument would otherwise outvote the right one as a "confirmed" move.
        sources = [(spec.feed, spec.feed_config, spec.feed_symbol)]
        sources += [(s.feed, s.feed_config, s.index_symbol or spec.feed_symbol) for s in spec.index_sources]
        for name, (feed, config, symbol) in zip(spec.source_names, sources, strict=True):
            price = self._source_price(feed, config, symbol)
            if price is None:
                raise ConfigError(
                    f"the index would switch from {before} to sources including {name}, whose price is not known "
                    f"here, so it cannot be checked against the market's index {current}; {how}"
                )
            jump = abs(price - current) / current
            if jump > limit:
                raise ConfigError(
                    f"the index would switch from {before} at {current} to sources including {name} at {price}, "
                    f"{jump:.1%} away, more than the market's max_tick_jump {limit}; {how}"
                )

    def dry_build(self, spec: MarketSpec) -> DryBuild:
        """Build *spec*'s strategy, hand it one tick at :meth:`reference_price` through a throwaway context, and
        check every quote it wants as the engine would place it: representable at the market's precision, on the
        tick grid, at least the minimum quantity, within the market's risk limits from a flat position, and bids
        below asks (the self-trade check against live orders and plugins' ``pre_trade_check`` hooks are not run).
        Nothing is sent anywhere.

        Raises :class:`~mmframe.ConfigError` saying what would fail at run time.
        """
        market = spec.market
        try:
            cls, config = strategy_config(self.strategies, spec.strategy, spec.strategy_config)
        except ConfigError:
            raise
        except MMFrameError as exc:
            raise ConfigError(str(exc)) from None
        try:
            strategy = cls(config, market)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"the strategy refuses the config: {_describe(exc)}") from None
        self._check_index_switch(spec)
        reference, source = self.reference_price(spec)
        ctx = DryContext(market, reference)
        where = f"at the {source} price {reference}"
        hook = "build its book"
        try:
            strategy.on_start(ctx)
            strategy.on_tick(ctx.tick, ctx)
            desired = strategy.desired_orders(ctx)
            quotes = [*(desired or ()), *ctx.submitted]
            ctx.submitted.clear()
            # The other hooks that run with the config's values: a snapshot of the local book with another
            # participant's mispriced orders on both sides (what a sweep takes), then one order's events.
            if strategy.local_depth_interval:
                hook = "handle a snapshot of the local book"
                strategy.on_local_depth(dry_depth(market, reference), ctx)
            immediate = list(ctx.submitted)
            hook = "handle an order's events"
            for event, order in dry_events(market, quotes):
                strategy.on_order_event(event, order, ctx)
        except decimal.DecimalException as exc:
            raise ConfigError(
                f"the strategy cannot {hook} {where}: {type(exc).__name__}: a value too large or too precise "
                f"for exact decimal arithmetic ({decimal.getcontext().prec} significant digits)"
            ) from None
        except Exception as exc:
            raise ConfigError(f"the strategy cannot {hook} {where}: {_describe(exc)}") from None
        real = source in ("index", "feed")
        limits = spec.risk if real else attrs.evolve(spec.risk, price_band=None, settled_band=None, book_band=None)
        gate = RiskGate(market, limits)
        # The index has held at the reference (the settled price); the local book's mid is unknown here.
        context = RiskContext(reference, (), Position(), settled_price=reference, book_mid=None)
        problems = []
        if len(quotes) > limits.max_active_orders:
            problems.append(f"{len(quotes)} orders wanted, more than max_active_orders {limits.max_active_orders}")
        placed = []
        for quote, sweep in [*((q, False) for q in quotes), *((q, True) for q in immediate)]:
            if not isinstance(quote, Quote):
                problems.append(f"the strategy wants {type(quote).__name__} {quote!r}, not a Quote")
                continue
            try:
                quote = put_on_grid(market, quote)
            except UnplaceableQuote as exc:
                problems.append(f"{'an immediate order (a sweep): ' if sweep else ''}{exc}")
                continue
            request = OrderRequest(
                client_order_id="dry-build",
                symbol=market.symbol,
                side=quote.side,
                type=quote.type,
                quantity=quote.quantity,
                price=None if quote.type is OrderType.MARKET else quote.price,
                market_type=market.market_type,
            )
            try:
                reason = gate.check(request, context)
            except ArithmeticError as exc:
                reason = f"cannot be checked: {_describe(exc)}"
            if reason is not None:
                what = f"{quote.side} {quote.type} {quote.quantity} @ {quote.price}" if sweep else (
                    f"{quote.side} {quote.quantity} @ {quote.price}")
                problems.append(f"{what}: {reason}")
            if not sweep:
                placed.append(quote)
        bids = [q.price for q in placed if q.side is Side.BUY and q.type is not OrderType.MARKET]
        asks = [q.price for q in placed if q.side is Side.SELL and q.type is not OrderType.MARKET]
        if bids and asks and max(bids) >= min(asks):
            # The engine never lets our own orders cross: one side would wait for the other forever.
            problems.append(f"its bids and asks cross (best bid {max(bids)}, best ask {min(asks)})")
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise ConfigError(f"its book {where} would fail: {'; '.join(problems[:3])}{more}")
        return DryBuild(reference=reference, source=source, quotes=tuple(placed))

    # ---- feeds ------------------------------------------------------------------------------------------------

    async def _feed(self, name: str, config: Mapping[str, Any]) -> ExchangeFeed:
        """The running feed *name* with *config*: markets (and index sources) with equal ones share one instance.

        The first market to need it starts it; the others that need it meanwhile wait for that start, all woken at
        once (in line for a lock, hundreds of markets starting together would each wait a turn of the scheduler). If
        the start fails, the next market to need the feed tries again."""
        key = (name, json.dumps(config, sort_keys=True, default=str))
        while True:
            feed = self._feed_instances.get(key)
            if feed is not None:
                return feed
            starting = self._feeds_starting.get(key)
            if starting is None:
                break
            await starting.wait()
        cls = self.feeds.get_or_raise(name)
        feed = cls(structure_config(config, cls.Config))
        done = self._feeds_starting[key] = trio.Event()
        try:
            assert self._infra is not None
            await self._infra.start(self._run_feed, name, feed)
            self._feed_instances[key] = feed
        finally:
            del self._feeds_starting[key]
            done.set()
        return feed

    async def _run_feed(
        self, name: str, feed: ExchangeFeed, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run a shared feed; if it fails after starting, log it and restart it with backoff. Its markets see no
        ticks meanwhile and pull their quotes when the index goes stale."""
        started = False
        backoff = 1.0
        while True:
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(feed.run)
                    if not started:
                        task_status.started()
                        started = True
                    backoff = 1.0
                return
            except Exception as exc:
                if not started:
                    raise
                log.error("feed %s failed: %s; restarting in %.0fs", name, _describe(exc), backoff)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)


def _index_source(spec: MarketSpec) -> tuple[Any, ...]:
    """Where *spec*'s index comes from: its feed, feed config and index symbol, and those of its extra sources."""

    def config(value: Mapping[str, Any]) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    return (
        spec.feed, config(spec.feed_config), spec.feed_symbol,
        tuple((s.feed, config(s.feed_config), s.index_symbol or spec.feed_symbol) for s in spec.index_sources),
    )


class _Started:
    """What a runner's ``task_status`` is: marks the market running and reports the supervisor started."""

    def __init__(self, handle: _Handle, report: Any) -> None:
        self._handle, self._report = handle, report

    def started(self, value: Any = None) -> None:
        self._handle.state = MarketState.RUNNING
        log.info("[%s] quoting", self._handle.spec.label)
        self._report()


def _last_index(handle: _Handle) -> PriceTick | None:
    """The index the handle's last run ended with (or what an earlier run left)."""
    runner = handle.runner
    if runner is not None and runner.index.index is not None:
        return runner.index.index
    return handle.last_index


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, decimal.DecimalException) and str(exc).startswith("[<class"):
        # decimal's own message is the list of its signals: say what it means
        return (f"{type(exc).__name__}: a value too large or too precise for exact decimal arithmetic "
                f"({decimal.getcontext().prec} significant digits)")
    return f"{type(exc).__name__}: {exc}"
