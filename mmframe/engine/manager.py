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
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import pluggy
import trio

from ..config import structure_config
from ..errors import ConfigError, MMFrameError
from ..models import Fill, MarketKey
from ..plugins import Registry, get_feeds, get_strategies
from ..protocols import ExchangeFeed, OrderSink, Position
from .market import MarketHalted, MarketRunner, MarketSpec, MarketState, MarketStatus

__all__ = ["HistoryLoader", "StrategyManager"]

log = logging.getLogger("mmframe.engine")

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
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9]{1,12}", instance_id):
            raise ConfigError(f"instance_id must be 1 to 12 letters or digits, got {instance_id!r}")
        self.sink = sink
        self.pm = pm
        self.instance_id = instance_id
        self.history = history
        self.strategies: Registry = get_strategies(pm)
        self.feeds: Registry = get_feeds(pm)
        self._handles: dict[MarketKey, _Handle] = {}
        self._feed_instances: dict[tuple[str, str], ExchangeFeed] = {}
        self._feed_lock = trio.Lock()
        self._infra: trio.Nursery | None = None
        self._markets: trio.Nursery | None = None
        self._sink_scope = trio.CancelScope(shield=True)
        self._stopping = False

    # ---- running ----------------------------------------------------------------------------------------------

    async def run(
        self,
        specs: Sequence[MarketSpec] = (),
        *,
        task_status: trio.TaskStatus[StrategyManager] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the sink, the feeds and *specs*' markets until cancelled or :meth:`aclose` d."""
        async with trio.open_nursery() as infra:
            self._infra = infra
            await infra.start(self._run_sink)
            try:
                async with trio.open_nursery() as markets:
                    self._markets = markets
                    for spec in specs:
                        await self.start_market(spec)
                    self._notify("engine_started", manager=self)
                    task_status.started(self)
                    await trio.sleep_forever()
            finally:
                # Every market has stopped and cancelled its orders; only now may the sink go.
                self._markets = None
                self._sink_scope.cancel()
                infra.cancel_scope.cancel()

    async def _run_sink(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._sink_scope:
            await self.sink.run(task_status=task_status)

    async def aclose(self) -> None:
        """Stop every market (each cancels its orders), then the engine. Bounded by the markets' cleanup time."""
        if self._stopping:
            return
        self._stopping = True
        self._notify("engine_stopping", manager=self)
        async with trio.open_nursery() as nursery:
            for key in list(self._handles):
                nursery.start_soon(self.stop_market, key)
        if self._infra is not None:
            self._infra.cancel_scope.cancel()

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook outside any market: a plugin that raises is logged, and the engine goes on."""
        try:
            getattr(self.pm.hook, hook_name)(**kwargs)
        except Exception:
            log.exception("a %s hook implementation raised", hook_name)

    # ---- markets ----------------------------------------------------------------------------------------------

    async def start_market(self, spec: MarketSpec) -> MarketStatus:
        """Start a market and return once it quotes (or has failed to start; its status says why)."""
        if self._markets is None:
            raise MMFrameError("the engine is not running")
        handle = self._handles.get(spec.key)
        if handle is not None and not handle.stopped.is_set():
            raise MMFrameError(f"market {spec.key} is already running")
        previous = handle
        handle = _Handle(spec)
        if previous is not None:  # a stopped market started again (or reloaded) keeps what it holds
            handle.position = previous.runner.position if previous.runner is not None else previous.position
            handle.history = previous.history
            if previous.runner is not None and self.history is None:
                handle.history = (*(previous.history or ()), *previous.runner.fills)
        self._handles[spec.key] = handle
        await self._markets.start(self._supervise, handle)
        return self._status(handle)

    async def stop_market(self, key: MarketKey) -> MarketStatus:
        """Stop a market: its orders are cancelled before this returns."""
        handle = self._require(key)
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

    def status(self, key: MarketKey | None = None) -> list[MarketStatus]:
        handles = [self._require(key)] if key is not None else list(self._handles.values())
        return [self._status(h) for h in handles]

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
        compact = re.sub(r"[^A-Za-z0-9]", "", spec.market.symbol)
        return f"{self.instance_id}-{compact}{int(spec.market.market_type)}-"

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
            self._notify("market_stopped", market=spec.market, error=error)
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
        cls = self.strategies.get_or_raise(spec.strategy)
        config = structure_config(spec.strategy_config, cls.Config)
        strategy = cls(config, spec.market)
        feed = await self._feed(spec)
        runner = MarketRunner(
            spec, strategy, feed, self.sink, client_prefix=self.client_prefix(spec), hook=self.pm.hook
        )
        log.info("Strategy [%s] initialized successfully (%s, %s)", spec.label, spec.strategy, spec.key)
        return runner

    # ---- feeds ------------------------------------------------------------------------------------------------

    async def _feed(self, spec: MarketSpec) -> ExchangeFeed:
        key = (spec.feed, json.dumps(spec.feed_config, sort_keys=True, default=str))
        async with self._feed_lock:
            feed = self._feed_instances.get(key)
            if feed is None:
                cls = self.feeds.get_or_raise(spec.feed)
                feed = cls(structure_config(spec.feed_config, cls.Config))
                assert self._infra is not None
                await self._infra.start(self._run_feed, spec.feed, feed)
                self._feed_instances[key] = feed
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


class _Started:
    """What a runner's ``task_status`` is: marks the market running and reports the supervisor started."""

    def __init__(self, handle: _Handle, report: Any) -> None:
        self._handle, self._report = handle, report

    def started(self, value: Any = None) -> None:
        self._handle.state = MarketState.RUNNING
        log.info("[%s] quoting", self._handle.spec.label)
        self._report()


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"
