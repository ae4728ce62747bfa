"""One market's task: ticks in, the strategy's desired book, the reconciler, the risk gate, orders out.

A tick reads top to bottom here: the feed's listener drops it into the market's inbox
(:meth:`_Inbox.push_data`, conflated: the latest wins); :meth:`MarketRunner._step` screens it, hands it to the
strategy, asks the strategy for its desired book and diffs that against our live orders; :meth:`_execute`
sends the cancels, runs every place through the risk gate and hands the survivors to the sink. Order events
come back through the sink's listener into the same inbox and through the :class:`OrderTracker`.

Everything a market does happens on its one task, so the strategy never sees a half-applied event. On the way
out — an orderly stop, an error, a halt or a cancellation — the market cancels every order with its prefix and
checks that none is left.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs
import trio

from .._errors import MMFrameError
from .._latency import LatencyHistogram
from .._models import (
    DepthSnapshot,
    Fill,
    Market,
    MarketData,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderStatus,
    OrderType,
    PriceTick,
    Quote,
    Side,
)
from ..feedtools import FeedSymbolStats
from ..protocols import ExchangeFeed, OrderSink, Position, ReportsDegraded, ReportsSymbolStatistics, Strategy
from .index import REJECT_REASONS, IndexGuard, IndexHalt, IndexScreen, IndexSource, Rejection
from .reconcile import Plan, Reconciler, Tolerance
from .risk import RiskContext, RiskGate, RiskLimits, self_trade_reason
from .tracker import OrderTracker, best_first

__all__ = ["MarketHalted", "MarketRunner", "MarketSpec", "MarketState", "MarketStatus", "RestartPolicy"]

log = logging.getLogger("mmframe.market")


class MarketHalted(MMFrameError):
    """Raised inside a market when its kill switch trips: the market cancels everything and is not restarted."""


class MarketState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    HALTED = "halted"
    DEGRADED = "degraded"  # running, but the sink cannot take orders now: the market waits and then catches up


def _positive_float(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


@attrs.frozen
class RestartPolicy:
    """What happens when a market's strategy, feed handling or order flow raises.

    :param max_restarts: how many times the market is restarted before it stays failed (0: never).
    :param backoff: seconds before the first restart; doubled each time up to ``max_backoff``.
    """

    max_restarts: int = 0
    backoff: float = 1.0
    max_backoff: float = 60.0


SECRET_KEYS = ("password", "secret", "token", "auth", "api_key")


def _masked(config: Mapping[str, Any]) -> dict[str, Any]:
    """*config* with the values of secret-looking keys (a feed's Redis password, an API key) replaced by ``***``."""
    return {k: "***" if any(s in str(k).lower() for s in SECRET_KEYS) and v else v for k, v in config.items()}


@attrs.frozen
class MarketSpec:
    """Everything needed to run one market.

    :param market: symbol, market type, tick grid and precisions.
    :param strategy: the registered strategy name; ``strategy_config`` is structured into its ``Config``.
    :param feed: the registered feed name; ``feed_config`` is structured into its ``Config``. Markets whose feed
        name and config are equal share one feed instance.
    :param index_symbol: the symbol the feed knows the index by (default: the market symbol without ``/``).
    :param refresh_interval: the longest time between two evaluations of the desired book.
    :param stale_after: seconds without a good index tick after which the market pulls its quotes; a tick whose
        own timestamp (the exchange's or the bus publisher's) is already older than this is rejected as stale.
    :param max_tick_jump: a tick further than this fraction from the index is rejected, and accepted only once
        ``confirm_ticks`` consecutive ticks agree on the new level (within ``index_guard.confirm_band``, over at
        least ``index_guard.confirm_seconds``); see :mod:`mmframe._engine.index`.
    :param index_guard: the rest of the index screen: agreement band, clock skew, composite band, halt circuit.
    :param index_sources: more feeds to take the index from beside ``feed``: the index is then their median
        (a composite index, as exchanges build theirs), a source that disagrees or goes stale is dropped.
    :param name: the market's id in logs and statuses (the store uses the seed's ``{currency_id}_{market_type}``).
    :param seed: seeds the market's random numbers (the size variation of placed orders).
    :param leftovers: what to do at start with open orders an earlier run left (found by client-id prefix):
        ``cancel`` them (the default), or ``adopt`` them (the reconciler then keeps those that match the desired book).
        The periodic reconciliation treats an order with our prefix that we do not track the same way.
    :param reconcile_interval: seconds between two reconciliations of our orders against the sink's open orders
        (``OrderSink.open_orders`` for our prefix), 0 turns it off. An order the sink has and we do not track (or
        know as finished) is cancelled (or adopted, see ``leftovers``); an order we believe pending or resting that
        the sink does not have in two consecutive passes is marked gone (``expired``, or ``cancelled`` when we had
        asked for its cancel); a cancel not confirmed after ``reconcile_grace`` is sent again.
    :param reconcile_grace: seconds an order must have been sent (or its cancel asked) before a reconciliation
        judges it: what is still on its way to the book is never declared gone.
    """

    market: Market
    strategy: str
    strategy_config: Mapping[str, Any] = attrs.field(factory=dict)
    feed: str = "sim"
    feed_config: Mapping[str, Any] = attrs.field(factory=dict, repr=lambda config: repr(_masked(config)))
    index_symbol: str = ""
    risk: RiskLimits = RiskLimits()
    tolerance: Tolerance = Tolerance()
    refresh_interval: float = attrs.field(default=1.0, validator=_positive_float)
    stale_after: float = attrs.field(default=10.0, validator=_positive_float)
    max_tick_jump: Decimal = attrs.field(default=Decimal("0.1"), converter=Decimal)
    confirm_ticks: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    index_guard: IndexGuard = IndexGuard()
    index_sources: tuple[IndexSource, ...] = attrs.field(default=(), converter=tuple)
    restart: RestartPolicy = RestartPolicy()
    cleanup_timeout: float = 3.0
    name: str = ""
    leftovers: str = attrs.field(default="cancel", validator=attrs.validators.in_(("cancel", "adopt")))
    seed: int | None = None
    reconcile_interval: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))
    reconcile_grace: float = attrs.field(default=2.0, validator=attrs.validators.ge(0))

    @property
    def label(self) -> str:
        """How logs and statuses name the market: ``name`` (the seed's ``879_1``) or ``BTC/USDT:spot``."""
        return self.name or str(self.key)

    @property
    def key(self) -> Any:
        return self.market.key

    @property
    def feed_symbol(self) -> str:
        return self.index_symbol or re.sub(r"[^A-Za-z0-9]", "", self.market.symbol)

    def __attrs_post_init__(self) -> None:
        # Two sources are the same when they are the same feed on the same symbol and the same channel (a config's
        # ``exchange``, as on the bus) or, for a feed without channels, the same config.
        sources = [(self.feed, self.feed_config, self.feed_symbol)]
        sources += [(s.feed, s.feed_config, s.index_symbol or self.feed_symbol) for s in self.index_sources]
        identities = [
            (feed, symbol, config.get("exchange") or json.dumps(config, sort_keys=True, default=str))
            for feed, config, symbol in sources
        ]
        names = self.source_names
        repeated = sorted({names[i] for i, key in enumerate(identities) if identities.count(key) > 1})
        if repeated:
            # The same feed and symbol twice would "agree" with itself: every tick a confirmed move.
            raise ValueError(f"index_sources: {', '.join(repeated)} is named more than once (with the market's own "
                             "feed or another source); each source must be a different feed, channel or symbol")

    @property
    def source_names(self) -> list[str]:
        """How statuses and logs name the index sources: ``feed:symbol`` (``redis:BTCUSDT@okex`` on the bus)."""
        names = [_source_name(self.feed, self.feed_config, self.feed_symbol)]
        for source in self.index_sources:
            names.append(_source_name(source.feed, source.feed_config, source.index_symbol or self.feed_symbol))
        return names


def _source_name(feed: str, config: Mapping[str, Any], symbol: str) -> str:
    exchange = config.get("exchange")
    return f"{feed}:{symbol}" + (f"@{exchange}" if exchange and exchange != feed else "")


@attrs.frozen
class MarketStatus:
    """A market's state and figures at one moment (JSON-able through the converter)."""

    market: str
    symbol: str
    market_type: int
    strategy: str
    state: MarketState
    error: str = ""
    restarts: int = 0
    index_price: Decimal | None = None
    stale: bool = False
    index_in_doubt: bool = False
    bids: int = 0
    asks: int = 0
    cancelling: int = 0
    active_orders: int = 0
    ticks: int = 0
    ticks_rejected: int = 0
    ticks_rejected_by_reason: Mapping[str, int] = attrs.field(factory=dict)
    index_sources: Sequence[Mapping[str, Any]] = ()
    orders_placed: int = 0
    orders_cancelled: int = 0
    orders_rejected: int = 0
    orders_vetoed: int = 0
    orders_deferred: int = 0
    reconciliations: int = 0
    reconcile_cancelled: int = 0
    reconcile_adopted: int = 0
    reconcile_gone: int = 0
    cancel_retries: int = 0
    reconcile_errors: int = 0
    fills: int = 0
    volume: Decimal = Decimal(0)
    position: Decimal = Decimal(0)
    pnl: Decimal = Decimal(0)
    last_veto: str = ""
    uptime_seconds: float = 0.0
    index_age: float | None = None
    feed: FeedSymbolStats | None = None
    strategy_status: Mapping[str, Any] = attrs.field(factory=dict)


class _Inbox:
    """Where a market's inputs wait: every order event in order, and the latest tick and depth (conflated)."""

    __slots__ = ("_wake", "conflated", "depth", "events", "extra_ticks", "tick", "tick_at")

    def __init__(self) -> None:
        self.events: deque[OrderEvent] = deque()
        self.tick: PriceTick | None = None
        self.extra_ticks: dict[int, PriceTick] = {}  # the latest tick of each extra index source (a composite)
        self.tick_at = 0.0  # perf_counter() when the latest tick arrived: where quote latency starts
        self.depth: DepthSnapshot | None = None
        self.conflated = 0
        self._wake = trio.Event()

    def push_event(self, event: OrderEvent) -> None:
        self.events.append(event)
        self._wake.set()

    def push_data(self, item: MarketData) -> None:
        if isinstance(item, PriceTick):
            if self.tick is not None:
                self.conflated += 1
            else:
                self.tick_at = time.perf_counter()
            self.tick = item
        elif isinstance(item, DepthSnapshot):
            self.depth = item
        else:
            return
        self._wake.set()

    def push_source(self, source: int, item: MarketData) -> None:
        """A tick of extra index source number *source* (1, 2, ...); its depth is not the market's."""
        if not isinstance(item, PriceTick):
            return
        if self.tick is None and not self.extra_ticks:
            self.tick_at = time.perf_counter()
        if source in self.extra_ticks:
            self.conflated += 1
        self.extra_ticks[source] = item
        self._wake.set()

    async def wait(self) -> None:
        await self._wake.wait()

    def clear_wake(self) -> None:
        if self._wake.is_set():
            self._wake = trio.Event()


class MarketContext:
    """The :class:`~mmframe.StrategyContext` a market shows its strategy."""

    def __init__(self, runner: MarketRunner) -> None:
        self._runner = runner
        self.submitted: list[tuple[str, Quote]] = []
        self.cancel_requests: list[str] = []

    @property
    def market(self) -> Market:
        return self._runner.market

    @property
    def now(self) -> float:
        return trio.current_time()

    @property
    def index_price(self) -> Decimal | None:
        r = self._runner
        return None if r.stale or r.doubt or r.last_tick is None else r.last_tick.price

    @property
    def last_tick(self) -> PriceTick | None:
        return self._runner.last_tick

    @property
    def depth(self) -> DepthSnapshot | None:
        return self._runner.last_depth

    @property
    def position(self) -> Position:
        return self._runner.position

    def live_orders(self, side: Side | None = None, *, include_cancelling: bool = False) -> Sequence[Order]:
        if not include_cancelling:
            return self._runner.tracker.quoting(side)
        orders = [o for o in self._runner.tracker.live() if side is None or o.side is side]
        orders.sort(key=best_first)
        return orders

    @property
    def fill_history(self) -> Sequence[Fill]:
        return self._runner.history

    def submit(self, quote: Quote) -> str:
        client_order_id = self._runner.next_client_order_id()
        self.submitted.append((client_order_id, quote))
        return client_order_id

    def cancel(self, client_order_id: str) -> None:
        self.cancel_requests.append(client_order_id)


class MarketRunner:
    """Runs one market until cancelled; see the module docstring for the path of a tick."""

    def __init__(
        self,
        spec: MarketSpec,
        strategy: Strategy,
        feed: ExchangeFeed,
        sink: OrderSink,
        *,
        client_prefix: str,
        hook: Any = None,
        history: Sequence[Fill] = (),
        index_feeds: Sequence[ExchangeFeed] = (),
    ) -> None:
        if len(index_feeds) != len(spec.index_sources):
            raise MMFrameError(f"{len(spec.index_sources)} index sources but {len(index_feeds)} feeds for them")
        self.spec = spec
        self.market = spec.market
        self.strategy = strategy
        self.feed = feed
        self.index_feeds = tuple(index_feeds)
        self.index = IndexScreen(
            spec.source_names,
            symbol=spec.feed_symbol,
            max_tick_jump=spec.max_tick_jump,
            confirm_ticks=spec.confirm_ticks,
            stale_after=spec.stale_after,
            guard=spec.index_guard,
        )
        if spec.risk.settled_band is not None:
            self.index.history_seconds = spec.risk.settled_after
        self.rejected_by_reason: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        self._reject_logged: dict[str, tuple[float, int]] = {}  # reason -> (last logged at, rejected since)
        self.book_mid: Decimal | None = None  # the local book's mid without our orders (risk.book_band)
        self.sink = sink
        # Optional abilities, checked once: a component's class does not change under it.
        self._sink_health: ReportsDegraded | None = sink if isinstance(sink, ReportsDegraded) else None
        self._feed_figures: ReportsSymbolStatistics | None = feed if isinstance(feed, ReportsSymbolStatistics) else None
        self.client_prefix = client_prefix
        self.hook = hook
        self.tracker = OrderTracker()
        self.reconciler = Reconciler(spec.market, spec.tolerance)
        self.gate = RiskGate(spec.market, spec.risk, hook.pre_trade_check if hook is not None else None)
        self.ctx = MarketContext(self)
        self.inbox = _Inbox()
        self.position = Position()
        self.history: tuple[Fill, ...] = tuple(history)  # fills before this run (see StrategyContext.fill_history)
        self.fills: list[Fill] = []  # fills of this run, kept (keep_fills) when no store will hand them back
        self.keep_fills = False
        self.last_tick: PriceTick | None = None
        self.last_tick_at: float | None = None
        self.last_depth: DepthSnapshot | None = None
        self.stale = False
        self.doubt = False  # the index screen has the index in doubt: quote nothing (see IndexScreen.in_doubt)
        self.degraded = False
        self.log = _MarketLog(log, {"market": spec.label})
        self._seq = int(time.time() * 1_000_000)
        self.counters: dict[str, int] = dict.fromkeys(
            ("ticks", "ticks_rejected", "placed", "cancelled", "rejected", "vetoed", "deferred"), 0
        )
        self.last_veto = ""
        self._veto_logged: dict[str, float] = {}
        self._interrupted: set[str] = set()  # client ids of batches whose place() call was interrupted
        #: The periodic reconciliation's figures (see MarketSpec.reconcile_interval) and its state.
        self.reconcile_counts: dict[str, int] = dict.fromkeys(
            ("reconciliations", "reconcile_cancelled", "reconcile_adopted", "reconcile_gone", "cancel_retries",
             "reconcile_errors"), 0
        )
        self._next_reconcile: float | None = None
        self._missing: dict[str, int] = {}  # client id -> consecutive reconciliations the sink did not have it
        self._rejects_logged: tuple[float, int] = (-1e18, 0)  # (last "order rejected" line at, rejections since)
        self.quote_latency = LatencyHistogram()
        self.rng = random.Random(spec.seed)
        self._local_depth: DepthSnapshot | None = None
        self._next_local_depth = 0.0
        self.started_at = time.monotonic()
        self._latency_from: float | None = None
        self._grid_memo: tuple[list[Quote], list[Quote]] = ([], [])  # _on_grid's last input and output

    # ---- identity ---------------------------------------------------------------------------------------------

    def next_client_order_id(self) -> str:
        """A client order id no run of this market has used: the market's prefix and a microsecond counter."""
        self._seq += 1
        return f"{self.client_prefix}{_base36(self._seq)}"

    # ---- the task ---------------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        symbol, prefix = self.market.symbol, self.client_prefix
        sink_sub = self.sink.subscribe(symbol, prefix, self.inbox.push_event)
        feed_sub = None
        extra_subs: list[Any] = []
        started = False
        try:
            # Follow the index at once (the latest tick waits in the inbox): a market waiting for its sink below
            # must not miss the ticks sent meanwhile.
            feed_sub = self.feed.subscribe(self.spec.feed_symbol, self.inbox.push_data)
            for number, (source, feed) in enumerate(zip(self.spec.index_sources, self.index_feeds, strict=True), 1):
                extra_subs.append(feed.subscribe(source.index_symbol or self.spec.feed_symbol,
                                                 functools.partial(self.inbox.push_source, number)))
            with trio.move_on_after(SINK_WAIT_AT_START):
                await self._wait_for_sink()  # a sink connecting as the service starts: a moment
            if self._sink_degraded():
                # The sink still cannot take orders (the engine is unreachable): the market reports started, shown
                # degraded, and waits for it here, so that it holds up neither the service's start (its control API)
                # nor a stop.
                task_status.started()
                started = True
                await self._wait_for_sink()
            await self._handle_leftovers()
            self.strategy.on_start(self.ctx)
            if self.hook is not None:
                self.hook.market_started(market=self.market, strategy=self.spec.strategy)
            if not started:
                task_status.started()
            next_refresh = trio.current_time()
            if self.spec.reconcile_interval > 0:
                self._next_reconcile = next_refresh + self.spec.reconcile_interval
            depth_every = min(
                (every for every in (self.strategy.local_depth_interval,
                                     self.spec.risk.book_interval if self.spec.risk.book_band is not None else None)
                 if every), default=None,
            )
            while True:
                wake_at = min(next_refresh, self._next_local_depth) if depth_every else next_refresh
                if self._next_reconcile is not None:
                    wake_at = min(wake_at, self._next_reconcile)
                with trio.move_on_at(wake_at):
                    await self.inbox.wait()
                now = trio.current_time()
                if now >= next_refresh:
                    next_refresh = now + self.spec.refresh_interval
                if depth_every and now >= self._next_local_depth:
                    self._next_local_depth = now + depth_every
                    await self._fetch_local_depth()
                if self._next_reconcile is not None and now >= self._next_reconcile:
                    await self._reconcile_orders(now)
                plan = self._step(now)
                if self._sink_degraded():
                    # The sink cannot take orders: decide again once it can (within a refresh interval). An
                    # immediate order (a sweep) was meant for this moment's book: it is dropped, not sent late.
                    if self.ctx.submitted:
                        self.log.warning("dropped %d immediate orders: the sink is degraded", len(self.ctx.submitted))
                        self.ctx.submitted.clear()
                    continue
                await self._execute(plan)
                if self._latency_from is not None:
                    self.quote_latency.observe(time.perf_counter() - self._latency_from)
                    self._latency_from = None
        finally:
            if feed_sub is not None:
                feed_sub.close()
            for sub in extra_subs:
                sub.close()
            try:
                self.strategy.on_stop(self.ctx)
            finally:
                await self._cleanup(sink_sub)

    def _forget_interrupted(self, orders: Sequence[Order]) -> None:
        """Orders whose placing was interrupted and that several cancel-all rounds never found on the book: they did
        not reach it (an in-process sink) or, for a remote one, did not land in time; either way they are not ours
        to wait for. One that lands later still carries our prefix, so the market's next start cancels it."""
        now = trio.current_time()
        for order in orders:
            self.tracker.transition(order.client_order_id, OrderStatus.EXPIRED, now,
                                    reason="its placing was interrupted and it never reached the book")
        self.log.info("%d orders interrupted while being sent never reached the book", len(orders))

    async def _fetch_local_depth(self) -> None:
        if self._sink_degraded():
            return
        try:
            depth = await self.sink.depth(self.market.symbol, 50)
        except MMFrameError as exc:  # the sink could not answer now: the strategy sees the book next time
            self.log.warning("could not read the local book: %s", exc)
            self.book_mid = None
            return
        if self.strategy.local_depth_interval:
            self._local_depth = depth
        if self.spec.risk.book_band is not None:
            self.book_mid = others_mid(depth, self.tracker.live(), self.spec.risk.book_quantity)

    def _sink_degraded(self) -> bool:
        degraded = self._sink_health is not None and bool(self._sink_health.degraded)
        if degraded != self.degraded:
            self.degraded = degraded
            if degraded:
                self.log.warning("the order sink is degraded: holding orders until it recovers")
            else:
                self.log.info("the order sink recovered: quoting")
        return degraded

    async def _wait_for_sink(self) -> None:
        # ``degraded`` is a plain property of the sink, not an event: poll it at the market's own pace.
        while self._sink_degraded():  # noqa: ASYNC110
            await trio.sleep(self.spec.refresh_interval)

    async def _handle_leftovers(self) -> None:
        """Orders an earlier run of this market left on the book: cancel them, or adopt them, by the spec."""
        symbol, prefix = self.market.symbol, self.client_prefix
        leftovers = await self.sink.open_orders(symbol, prefix)
        if not leftovers:
            return
        if self.spec.leftovers == "adopt":
            now = trio.current_time()
            for order in leftovers:
                self.tracker.adopt(order, now)
            self.log.warning("adopted %d orders left by an earlier run (prefix %s)", len(leftovers), prefix)
        else:
            cancelled = await self.sink.cancel_all(symbol, prefix)
            self.log.warning("cancelled %d orders left by an earlier run (prefix %s)", cancelled, prefix)

    async def _cleanup(self, sink_sub: Any) -> None:
        """Cancel every order with our prefix and check none is left; shielded and bounded in time."""
        symbol, prefix = self.market.symbol, self.client_prefix
        left: list[Order] = []
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.spec.cleanup_timeout) as scope:
                try:
                    # Repeat until the book holds none of ours and nothing we sent is still unconfirmed: a batch
                    # already on its way when we cancelled may land after the cancel-all.
                    rounds = 0
                    while True:
                        await self.sink.cancel_all(symbol, prefix)
                        left = await self.sink.open_orders(symbol, prefix)
                        self._drain_events()
                        rounds += 1
                        in_flight = [o for o in self.tracker.live() if o.status is OrderStatus.PENDING]
                        if not left and in_flight and rounds >= INTERRUPTED_ROUNDS and all(
                            o.client_order_id in self._interrupted for o in in_flight
                        ):
                            self._forget_interrupted(in_flight)
                            in_flight = []
                        if not left and not in_flight:
                            break
                        await trio.sleep(0.05)
                except MMFrameError as exc:
                    # The sink cannot answer (the engine is down): the orders stay there until this market's next
                    # start finds them by prefix and cancels them.
                    self.log.error("could not cancel our orders on the way out: %s", exc)
            try:
                self._drain_events()
            except MMFrameError:
                self.log.exception("while applying the final order events")
            sink_sub.close()
            if scope.cancelled_caught:
                self.log.error("could not confirm the cancellation of our orders within %ss", self.spec.cleanup_timeout)
            elif left:
                ids = [o.client_order_id for o in left]
                self.log.error("%d orders still open after cancel-all: %s", len(ids), ids)

    # ---- one step: inputs → desired book → plan ---------------------------------------------------------------

    def _step(self, now: float) -> Plan:
        self.inbox.clear_wake()
        self._drain_events()
        depth, self.inbox.depth = self.inbox.depth, None
        if depth is not None:
            self.last_depth = depth
            self.strategy.on_depth(depth, self.ctx)
        local, self._local_depth = self._local_depth, None
        if local is not None:
            self.strategy.on_local_depth(local, self.ctx)
        tick = self._screen_index(now)
        if tick is not None:
            self._latency_from = self.inbox.tick_at
            self.strategy.on_tick(tick, self.ctx)
            self._check_kill_switch()
        self._check_stale(now)
        self._check_doubt()
        if self.last_tick is None:
            return Plan()  # no index yet: nothing to decide (and adopted orders wait for the first price)
        desired = [] if self.stale or self.doubt else self.strategy.desired_orders(self.ctx)
        if desired is None:
            return Plan()
        return self.reconciler.plan(self._on_grid(desired), self.tracker.quoting())

    def _screen_index(self, now: float) -> PriceTick | None:
        """Hand the ticks that arrived to the index screen (:mod:`mmframe._engine.index`); the new index, if any."""
        inbox = self.inbox
        tick, inbox.tick = inbox.tick, None
        extra = inbox.extra_ticks
        if tick is None and not extra:
            return None
        wall = time.time()
        offered = False
        if tick is not None:
            offered |= self._offer(0, tick, now, wall)
        if extra:
            for number, item in sorted(extra.items()):
                offered |= self._offer(number, item, now, wall)
            extra.clear()
        if not offered:
            return None
        try:
            verdict = self.index.update(now, wall)
        except IndexHalt as exc:
            self.counters["ticks_rejected"] += 1
            raise MarketHalted(str(exc)) from None
        for rejection in verdict.rejections:
            self._rejected(rejection, now)
        if verdict.tick is None:
            return None
        if verdict.note:
            self.log.warning("%s", verdict.note)
        self.counters["ticks"] += 1
        self.last_tick = verdict.tick
        self.last_tick_at = now
        return verdict.tick

    def _offer(self, source: int, tick: PriceTick, now: float, wall: float) -> bool:
        rejection = self.index.offer(source, tick, now, wall)
        if rejection is None:
            return True
        self._rejected(rejection, now)
        return False

    def _rejected(self, rejection: Rejection, now: float) -> None:
        """Count a rejected tick by reason and log it at WARNING: the first of each reason, then at most one line
        per reason every ten seconds, saying how many more there were."""
        self.counters["ticks_rejected"] += 1
        self.rejected_by_reason[rejection.reason] = self.rejected_by_reason.get(rejection.reason, 0) + 1
        logged_at, since = self._reject_logged.get(rejection.reason, (-1e18, 0))
        if now - logged_at < REJECT_LOG_INTERVAL:
            self._reject_logged[rejection.reason] = (logged_at, since + 1)
            return
        self._reject_logged[rejection.reason] = (now, 0)
        more = f" ({since} more {rejection.reason} rejections since the last report)" if since else ""
        self.log.warning("rejected an index tick from %s: %s%s", rejection.source, rejection.message, more)

    def _check_doubt(self) -> None:
        doubt = self.index.in_doubt
        if doubt != self.doubt:
            self.doubt = doubt
            if doubt:
                self.log.warning("index in doubt (a move not confirmed yet, or sources that disagree): pulling quotes")
            else:
                self.log.info("index settled again: quoting")

    def _check_stale(self, now: float) -> None:
        stale = self.last_tick_at is not None and now - self.last_tick_at > self.spec.stale_after
        if stale != self.stale:
            self.stale = stale
            if stale:
                self.log.warning("index price stale for more than %ss: pulling quotes", self.spec.stale_after)
            else:
                self.log.info("index price fresh again: quoting")

    def _on_grid(self, desired: Iterable[Quote]) -> list[Quote]:
        """Put every quote on the grid (never more aggressively), written at the market's precision (``99`` is sent
        as ``99.00``), and drop those below the minimum quantity."""
        quotes = list(desired)
        # A strategy usually hands back the very same quotes step after step (an unchanged ladder): quotes are
        # immutable, so the same objects give the same answer as last time.
        last_in, last_out = self._grid_memo
        if len(quotes) == len(last_in) and all(q is p for q, p in zip(quotes, last_in, strict=True)):
            return list(last_out)
        market = self.market
        price_exp, qty_exp = -market.price_precision, -market.quantity_precision
        out = []
        for q in quotes:
            price, qty = q.price, q.quantity
            if (
                price.as_tuple().exponent != price_exp
                or qty.as_tuple().exponent != qty_exp
                or not _on_grid_safely(market, price)
            ):
                try:
                    q = put_on_grid(market, q)
                except UnplaceableQuote as exc:
                    if exc.unrepresentable:  # a decimal overflow: dropped and counted, never a market failure
                        self._unplaceable(q, str(exc))
                    continue
                price, qty = q.price, q.quantity
            if qty > 0 and qty >= market.min_quantity and price > 0:
                out.append(q)
        self._grid_memo = (quotes, out)
        return list(out)

    def _unplaceable(self, quote: Quote, reason: str) -> None:
        """A desired quote that cannot be written at the market's precision: counted as vetoed, logged (rate
        limited like the risk gate's refusals)."""
        self.counters["vetoed"] += 1
        self.last_veto = reason
        now = trio.current_time()
        key = "unplaceable"
        if now - self._veto_logged.get(key, -1e18) >= 60.0:
            self._veto_logged[key] = now
            self.log.warning("dropped a desired %s quote: %s", quote.side, reason)

    def _drain_events(self) -> None:
        events = self.inbox.events
        while events:
            self._apply(events.popleft())

    def _apply(self, event: OrderEvent) -> None:
        tracked = self.tracker.get(event.client_order_id)
        if tracked is None:
            self.log.debug("event for an order we do not track: %s %s", event.kind, event.client_order_id)
            return
        if tracked.status.is_terminal and event.fill is None:
            # An acknowledgement or an end for an order that has already ended for us: one the reconciliation
            # marked gone, or the cancel it sent for an order it found open. Nothing changes (a fill still fails
            # the market below: money moved on an order we no longer understand).
            self.log.debug("%s for order %s, already %s", event.kind, event.client_order_id, tracked.status)
            return
        now = trio.current_time()
        order = self.tracker.apply(event, now)
        if event.kind is OrderEventKind.REJECTED:
            self.counters["rejected"] += 1
            self._log_rejection(order.client_order_id, event.reason, now)
        if self.hook is not None:
            self.hook.order_event(market=self.market, event=event, order=order)
        fill = event.fill
        if fill is not None:
            self.position = self.position.after(fill.side, fill.price, fill.quantity, fill.fee)
            if self.keep_fills:
                self.fills.append(fill)
            if self.hook is not None:
                self.hook.order_filled(market=self.market, fill=fill, position=self.position)
        self.strategy.on_order_event(event, order, self.ctx)
        if fill is not None:
            self._check_kill_switch()

    def _check_kill_switch(self) -> None:
        max_loss = self.spec.risk.max_loss
        if max_loss is None or self.position.fills == 0:
            return
        mark = self.last_tick.price if self.last_tick is not None else None
        pnl = self.position.pnl(mark)
        if pnl < -max_loss:
            raise MarketHalted(f"kill switch: PnL {pnl} is below -max_loss ({max_loss}); market halted")

    # ---- sending ----------------------------------------------------------------------------------------------

    async def _execute(self, plan: Plan) -> None:
        ctx = self.ctx
        immediate, ctx.submitted = ctx.submitted, []
        extra_cancels, ctx.cancel_requests = ctx.cancel_requests, []
        now = trio.current_time()
        cancel_ids = [o.client_order_id for o in plan.cancels]
        for coid in extra_cancels:
            order = self.tracker.get(coid)
            if order is not None and order.status.is_live and not order.cancel_requested and coid not in cancel_ids:
                cancel_ids.append(coid)
        if cancel_ids:
            for coid in cancel_ids:
                self.tracker.mark_cancel_requested(coid, now)
            self.counters["cancelled"] += len(cancel_ids)
            await self.sink.cancel(self.market.symbol, cancel_ids)
            self._drain_events()  # an in-process sink confirms at once; its room is free for the places below
        if not plan.places and not immediate:
            return
        live = list(self.tracker.live())
        batch: list[OrderRequest] = []
        ref = self.last_tick.price if self.last_tick is not None and not self.stale and not self.doubt else None
        risk = self.spec.risk
        settled = self.index.settled_price(now, risk.settled_after) if risk.settled_band is not None else None
        for coid, quote, from_plan in self._requests(plan.places, immediate):
            quantity = quote.quantity
            if quote.size_variation:
                cut = quote.size_variation * self.rng.randint(0, 10_000) / 10_000
                varied = self.market.round_quantity(quantity * (1 - cut))
                quantity = varied if varied > 0 and varied >= self.market.min_quantity else quantity
            request = OrderRequest(
                client_order_id=coid,
                symbol=self.market.symbol,
                side=quote.side,
                type=quote.type,
                quantity=quantity,
                price=None if quote.type is OrderType.MARKET else quote.price,
                market_type=self.market.market_type,
                tag=quote.tag,
            )
            if from_plan and self_trade_reason(request, live) is not None:
                # Our own opposite order is still being cancelled: place this one on a later step.
                self.counters["deferred"] += 1
                continue
            reason = self.gate.check(request, RiskContext(ref, live, self.position, settled, self.book_mid))
            if reason is not None:
                self._vetoed(request, reason, now)
                continue
            live.append(self.tracker.add(request, now))
            self.tracker.mark_sent(coid, now)
            batch.append(request)
        if batch:
            self.counters["placed"] += len(batch)
            try:
                await self.sink.place(batch)
            except BaseException:
                # Cancelled (or failed) while handing the batch over: whether the sink took it is unknown.
                self._interrupted.update(r.client_order_id for r in batch)
                raise

    def _requests(
        self, places: Sequence[Quote], immediate: Sequence[tuple[str, Quote]]
    ) -> Iterable[tuple[str, Quote, bool]]:
        for coid, quote in immediate:
            yield coid, quote, False
        for quote in places:
            yield self.next_client_order_id(), quote, True

    def _vetoed(self, request: OrderRequest, reason: str, now: float) -> None:
        self.counters["vetoed"] += 1
        self.last_veto = reason
        # One log line per distinct reason a minute: a strategy asking for the same refused order every second
        # must not flood the log.
        key = reason.split(" at ")[0][:60]
        if now - self._veto_logged.get(key, -1e18) >= 60.0:
            self._veto_logged[key] = now
            self.log.warning("risk gate refused %s %s %s @ %s: %s", request.side, request.quantity,
                             request.type, request.price, reason)

    def _log_rejection(self, client_order_id: str, reason: str, now: float) -> None:
        """A rejected order at WARNING: the first, then at most one line every ten seconds with the count since."""
        logged_at, since = self._rejects_logged
        if now - logged_at < ORDER_REJECT_LOG_INTERVAL:
            self._rejects_logged = (logged_at, since + 1)
            return
        self._rejects_logged = (now, 0)
        more = f" ({since} more orders rejected since the last report)" if since else ""
        self.log.warning("order %s rejected: %s%s", client_order_id, reason, more)

    # ---- periodic reconciliation against the sink ---------------------------------------------------------------

    async def _reconcile_orders(self, now: float) -> None:
        """One reconciliation pass (``MarketSpec.reconcile_interval``), on the market's own task between two steps:
        our orders against the sink's open orders with our prefix. What the sink has and we do not track (or know
        as finished) is cancelled, or adopted; what we believe pending or resting and the sink has not had in two
        consecutive passes is marked gone; a cancel not confirmed within ``reconcile_grace`` is sent again.

        Bounded in time; a sink error is logged and counted, and the pass is tried again one interval later."""
        interval = self.spec.reconcile_interval
        self._next_reconcile = now + interval
        if self._sink_degraded():
            return  # the sink cannot answer now; a degraded market holds its orders anyway
        symbol, prefix = self.market.symbol, self.client_prefix
        with trio.move_on_after(max(interval, RECONCILE_MIN_BUDGET)) as scope:
            asked_at = trio.current_time()
            try:
                found = await self.sink.open_orders(symbol, prefix)
            except Exception as exc:  # whatever a sink raises, the market goes on
                self.reconcile_counts["reconcile_errors"] += 1
                self.log.warning("reconciliation: could not read the sink's open orders (%s); next try in %ss",
                                 exc or type(exc).__name__, interval)
                return
            self._drain_events()  # what arrived while we asked: the tracker as of the answer (or later)
            self.reconcile_counts["reconciliations"] += 1
            now = trio.current_time()
            to_cancel, adopted, retried, gone = self._compare(found, asked_at, now)
            for order in gone:
                kind = OrderEventKind.CANCELLED if order.cancel_requested else OrderEventKind.EXPIRED
                self._apply(OrderEvent(kind, order.client_order_id, symbol, filled_quantity=order.filled_quantity,
                                       order_id=order.order_id,
                                       reason="gone: the order sink no longer has this order (reconciliation)"))
            self.reconcile_counts["reconcile_gone"] += len(gone)
            self.reconcile_counts["reconcile_adopted"] += len(adopted)
            self.reconcile_counts["reconcile_cancelled"] += len(to_cancel)
            self.reconcile_counts["cancel_retries"] += len(retried)
            if to_cancel or adopted or retried or gone:
                self.log.warning(
                    "reconciliation against the sink: cancelled %d orders we do not track%s, adopted %d, marked %d "
                    "gone%s, sent %d unconfirmed cancels again%s",
                    len(to_cancel), _some(to_cancel), len(adopted), len(gone),
                    _some(o.client_order_id for o in gone), len(retried), _some(retried),
                )
            for coid in retried:
                self.tracker.mark_cancel_requested(coid, now)  # the grace starts again
            if to_cancel or retried:
                try:
                    await self.sink.cancel(symbol, to_cancel + retried)
                except Exception as exc:
                    self.reconcile_counts["reconcile_errors"] += 1
                    self.log.warning("reconciliation: the sink refused the cancels (%s); next try in %ss",
                                     exc or type(exc).__name__, interval)
            self._drain_events()
        if scope.cancelled_caught:
            self.reconcile_counts["reconcile_errors"] += 1
            self.log.warning("reconciliation: no answer from the sink within %ss; next try in %ss",
                             max(interval, RECONCILE_MIN_BUDGET), interval)

    def _compare(
        self, found: Sequence[Order], asked_at: float, now: float
    ) -> tuple[list[str], list[Order], list[str], list[Order]]:
        """``(to cancel, adopted, cancels to send again, gone)`` from the sink's open orders *found* (asked for at
        *asked_at*) and the tracker. Adopts what it adopts; changes nothing else."""
        grace = self.spec.reconcile_grace
        on_sink = {o.client_order_id: o for o in found if o.client_order_id.startswith(self.client_prefix)}
        to_cancel: list[str] = []
        adopted: list[Order] = []
        for coid, order in on_sink.items():
            tracked = self.tracker.get(coid)
            if tracked is None:
                if self.spec.leftovers == "adopt" and order.status.is_live and order.status is not OrderStatus.PENDING:
                    adopted.append(self.tracker.adopt(order, now))
                else:
                    to_cancel.append(coid)
            elif tracked.status.is_terminal and tracked.updated_at <= asked_at:
                to_cancel.append(coid)  # it ended for us before we asked, yet the sink has it open
        retried: list[str] = []
        gone: list[Order] = []
        missing: dict[str, int] = {}
        for order in self.tracker.live():
            coid = order.client_order_id
            if coid in on_sink:
                if order.cancel_requested and now - order.updated_at >= grace:
                    retried.append(coid)
                continue
            if order.status is OrderStatus.NEW or asked_at - order.created_at < grace:
                continue  # still on its way to the book
            misses = self._missing.get(coid, 0) + 1
            if misses >= RECONCILE_MISSES:
                gone.append(order)
            else:
                missing[coid] = misses
        self._missing = missing
        return to_cancel, adopted, retried, gone

    # ---- status -----------------------------------------------------------------------------------------------

    def _feed_statistics(self) -> FeedSymbolStats | None:
        """The feed's figures for our index symbol, if the feed reports them (:class:`ReportsSymbolStatistics`)."""
        if self._feed_figures is None:
            return None
        try:
            result = self._feed_figures.symbol_statistics(self.spec.feed_symbol)
        except Exception:  # a status read must never take the market down
            self.log.exception("the feed's symbol_statistics raised")
            return None
        return result if isinstance(result, FeedSymbolStats) else None

    def status(self, state: MarketState, *, error: str = "", restarts: int = 0) -> MarketStatus:
        if state is MarketState.RUNNING and self.degraded:
            state = MarketState.DEGRADED
        # One pass over the live orders: bids + asks + cancelling == active_orders, always.
        bids = asks = cancelling = 0
        for order in self.tracker.live():
            if order.cancel_requested:
                cancelling += 1
            elif order.side is Side.BUY:
                bids += 1
            else:
                asks += 1
        mark = self.last_tick.price if self.last_tick is not None else None
        c = self.counters
        return MarketStatus(
            market=self.spec.label,
            symbol=self.market.symbol,
            market_type=int(self.market.market_type),
            strategy=self.spec.strategy,
            state=state,
            error=error,
            restarts=restarts,
            index_price=mark,
            stale=self.stale,
            index_in_doubt=self.doubt,
            bids=bids,
            asks=asks,
            cancelling=cancelling,
            active_orders=bids + asks + cancelling,
            ticks=c["ticks"],
            ticks_rejected=c["ticks_rejected"],
            ticks_rejected_by_reason={k: v for k, v in self.rejected_by_reason.items() if v},
            index_sources=self.index.status(trio.current_time()) if self.index.composite else (),
            orders_placed=c["placed"],
            orders_cancelled=c["cancelled"],
            orders_rejected=c["rejected"],
            orders_vetoed=c["vetoed"],
            orders_deferred=c["deferred"],
            **self.reconcile_counts,
            fills=self.position.fills,
            volume=self.position.volume,
            position=self.position.base,
            pnl=self.position.pnl(mark),
            last_veto=self.last_veto,
            uptime_seconds=time.monotonic() - self.started_at,
            index_age=None if self.last_tick_at is None else trio.current_time() - self.last_tick_at,
            feed=self._feed_statistics(),
            strategy_status=dict(self.strategy.status()),
        )


def others_mid(depth: DepthSnapshot, ours: Iterable[Order], quantity: Decimal | None = None) -> Decimal | None:
    """The mid of the local book without our own orders (their unfilled quantity taken off their levels), or ``None``
    when other participants do not have *quantity* (any, by default) on both sides. Each side's price is where the
    others' quantity, best price first, adds up to *quantity*: a few lots far away cannot move it."""
    mine: dict[tuple[Side, Decimal], Decimal] = {}
    for order in ours:
        if order.price is not None:
            key = (order.side, order.price)
            mine[key] = mine.get(key, Decimal(0)) + order.quantity - order.filled_quantity
    wanted = quantity if quantity is not None and quantity > 0 else Decimal(0)
    best = []
    for side, levels in ((Side.BUY, depth.bids), (Side.SELL, depth.asks)):
        others = sorted(((Decimal(price), Decimal(qty) - mine.get((side, Decimal(price)), 0)) for price, qty in levels),
                        key=lambda level: level[0], reverse=side is Side.BUY)
        total, reached = Decimal(0), None
        for price, qty in others:
            if qty <= 0:
                continue
            total += qty
            if total >= wanted:
                reached = price
                break
        if reached is None:
            return None
        best.append(reached)
    bid, ask = best
    return (bid + ask) / 2 if bid < ask else None


class UnplaceableQuote(ValueError):
    """A quote that cannot be placed: ``unrepresentable`` when its price or quantity cannot be written at the market's
    precision at all (a decimal overflow), else it is below the minimum quantity or not at a positive price."""

    def __init__(self, message: str, *, unrepresentable: bool) -> None:
        super().__init__(message)
        self.unrepresentable = unrepresentable


def _on_grid_safely(market: Market, price: Decimal) -> bool:
    try:
        return market.is_on_grid(price)
    except ArithmeticError:  # too many digits for the decimal context: certainly not a price we can send
        return False


def put_on_grid(market: Market, quote: Quote) -> Quote:
    """*quote* on *market*'s tick grid (never more aggressively: a bid rounds down, an ask up) and at its quantity
    precision, as the engine sends it; raises :class:`UnplaceableQuote` saying why it cannot be placed."""
    try:
        price, qty = market.round_price(quote.price, quote.side), market.round_quantity(quote.quantity)
        on_grid = market.is_on_grid(price)
    except (ArithmeticError, ValueError):
        raise UnplaceableQuote(
            f"{quote.side} {quote.quantity} @ {quote.price} cannot be written with {market.price_precision} price "
            f"and {market.quantity_precision} quantity decimals",
            unrepresentable=True,
        ) from None
    if not on_grid:
        raise UnplaceableQuote(f"price {quote.price} does not round onto the tick grid", unrepresentable=True)
    if not price > 0:
        raise UnplaceableQuote(
            f"{quote.side} price {quote.price} rounds to {price}, not positive", unrepresentable=False
        )
    if not (qty > 0 and qty >= market.min_quantity):
        raise UnplaceableQuote(
            f"{quote.side} quantity {quote.quantity} rounds to {qty}, below the minimum {market.min_quantity}",
            unrepresentable=False,
        )
    return attrs.evolve(quote, price=price, quantity=qty)


#: Seconds a starting market waits for its sink before it reports started (degraded) and goes on waiting.
SINK_WAIT_AT_START = 3.0

#: A market logs a rejected index tick at most once per this many seconds per reason (with a count in between).
REJECT_LOG_INTERVAL = 10.0

#: A market logs a rejected order at most once per this many seconds (with a count of those in between).
ORDER_REJECT_LOG_INTERVAL = 10.0
#: The least time a reconciliation pass may take before it is abandoned (it may take up to its interval).
RECONCILE_MIN_BUDGET = 2.0
#: Consecutive reconciliation passes an order must be missing from the sink before it is marked gone.
RECONCILE_MISSES = 2


def _some(ids: Iterable[str], limit: int = 5) -> str:
    """`` (a, b, c, ...)`` for a log line: the first few of *ids*."""
    listed = list(ids)
    if not listed:
        return ""
    return f" ({', '.join(listed[:limit])}{', ...' if len(listed) > limit else ''})"


#: Cancel-all rounds (0.05 s apart) after which orders whose placing was interrupted and that are on no book are
#: given up as never placed.
INTERRUPTED_ROUNDS = 3


class _MarketLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with the market, the seed's "[879_1]" style: ``[BTC/USDT:spot] ...``."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {}).update(self.extra or {})
        return f"[{(self.extra or {}).get('market')}] {msg}", kwargs


_DIGITS36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_PAIRS36 = [a + b for a in _DIGITS36 for b in _DIGITS36]  # "00" to "zz": two digits per division


def _base36(n: int) -> str:
    if n < 36:
        return _DIGITS36[n]
    out = []
    while n:
        n, r = divmod(n, 1296)
        out.append(_PAIRS36[r])
    return "".join(reversed(out)).lstrip("0")
