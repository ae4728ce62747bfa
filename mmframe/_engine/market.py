"""One market's task: ticks in, the strategy's desired book, the reconciler, the risk gate, orders out.

A tick reads top to bottom here: the feed's listener drops it into the market's :class:`~.inbox.Inbox`
(conflated: the latest wins); :meth:`MarketRunner._step` screens it, hands it to the strategy, asks the strategy for
its desired book and diffs that against our live orders; :meth:`MarketRunner._execute` hands the plan to the
:class:`~.pipeline.OrderPipeline`, which sends the cancels, runs every place through the risk gate once and hands the
survivors to the sink. Order events come back through the sink's listener into the same inbox and through the
:class:`~.tracker.OrderTracker`. Between two steps the :class:`~.audit.OrderAudit` reconciles our orders against the
sink's.

Everything a market does happens on its one task, so the strategy never sees a half-applied event. On the way
out — an orderly stop, an error, a halt or a cancellation — the market cancels every order with its prefix and
checks that none is left.

The rest of a market lives next door: its configuration and status types in :mod:`.spec`, the strategy's context
in :mod:`.context`, grid and book prices in :mod:`.pricing`, client order ids in :mod:`.clientid`.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import trio

from .._errors import MMFrameError
from .._latency import LatencyHistogram
from .._models import (
    DepthSnapshot,
    Fill,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    PriceTick,
    Quote,
    Side,
)
from ..feedtools import FeedSymbolStats
from ..protocols import (
    AmendsOrders,
    ExchangeFeed,
    GatesRequests,
    OrderSink,
    Position,
    ReportsDegraded,
    ReportsSymbolStatistics,
    Strategy,
)
from .audit import OrderAudit
from .budget import MessageBudget, ranked
from .clientid import ClientIds
from .context import MarketContext
from .gating import closed, gated
from .inbox import Inbox
from .index import REJECT_REASONS, IndexHalt, IndexScreen, Rejection
from .pipeline import OrderPipeline
from .pricing import UnplaceableQuote, on_grid_safely, others_mid, put_on_grid
from .reconcile import Plan, Reconciler
from .risk import RiskGate
from .spec import MarketHalted, MarketSpec, MarketState, MarketStatus
from .tracker import OrderTracker

__all__ = ["MarketRunner"]

log = logging.getLogger("mmframe.market")

#: Seconds a starting market waits for its sink before it reports started (degraded) and goes on waiting.
SINK_WAIT_AT_START = 3.0

#: A market logs a rejected index tick at most once per this many seconds per reason (with a count in between).
REJECT_LOG_INTERVAL = 10.0

#: A market logs a rejected order at most once per this many seconds (with a count of those in between).
ORDER_REJECT_LOG_INTERVAL = 10.0

#: Cancel-all rounds (0.05 s apart) after which orders whose placing was interrupted and that are on no book are
#: given up as never placed.
INTERRUPTED_ROUNDS = 3


#: Seconds after which a cancel or an amend the message budget keeps holding back goes before anything else.
OVERDUE_AFTER = 1.0
_AGING = frozenset({"cancel", "amend"})

#: Events that alone do not make a market decide again (see MarketRunner._settle): acknowledgements of what it sent,
#: and a rejection (deciding again would send the same order).
_NOT_NEWS = frozenset({OrderEventKind.ACCEPTED, OrderEventKind.AMENDED, OrderEventKind.REJECTED})


def _order_id(action: tuple[str, Any]) -> str:
    """The client id of the order a held-back cancel or amend is for."""
    kind, value = action
    return value.client_order_id if kind == "cancel" else value[0].client_order_id  # type: ignore[no-any-return]


class _MarketLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with the market, the seed's "[879_1]" style: ``[BTC/USDT:spot] ...``."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {}).update(self.extra or {})
        return f"[{(self.extra or {}).get('market')}] {msg}", kwargs


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
        id_tag: str = "",
        may_send: Callable[[], bool] | None = None,
        wall: Callable[[], float] = time.time,
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
        # Moves are amends when the spec allows it and the sink can (AmendsOrders), else cancels and places.
        amends = spec.amend and isinstance(sink, AmendsOrders)
        self.reconciler = Reconciler(spec.market, spec.tolerance,
                                     amendable=self.tracker.amendable if amends else None)
        self.budget = MessageBudget(spec.max_messages_per_second) if spec.max_messages_per_second else None
        self.messages_held = 0  # what the last step's budget left for later (0: caught up)
        self.behind_since: float | None = None  # since when the budget has held something back
        self._held_since: dict[str, float] = {}  # client id -> since when its cancel or amend has been held back
        self._budget_wake_at: float | None = None  # when the budget has room for what it held back
        self.gate = RiskGate(spec.market, spec.risk, hook.pre_trade_check if hook is not None else None)
        self.ctx = MarketContext(self)
        self.inbox = Inbox()
        self.inbox.wake_on_depth = bool(strategy.wake_on_depth)
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
        self.wall = wall  # epoch seconds now: time.time, or a backtest's virtual clock
        self.ids = ClientIds(f"{client_prefix}{id_tag}." if id_tag else client_prefix, start=wall())
        #: What this run's own orders start with: the market's prefix, and in a cluster this instance's tag. The
        #: cancels on the way out name it (an earlier owner's orders are cancelled by the market's start, whose
        #: prefix is the market's alone; a late cancel of ours must never reach the next owner's orders).
        self.own_prefix = self.ids.prefix
        #: Whether the market may send to the sink now (a cluster's lease, see StrategyManager.gate); checked before
        #: every step's orders, the reconciliation, and the cancels on the way in and out.
        self.may_send = may_send
        self.fenced = False  # the gate was closed at the last look (logged once per change)
        self.counters: dict[str, int] = dict.fromkeys(
            ("ticks", "ticks_rejected", "placed", "cancelled", "amended", "amend_rejected", "rejected", "vetoed",
             "deferred", "events"), 0,
        )
        self._rejects_logged: tuple[float, int] = (-1e18, 0)  # (last "order rejected" line at, rejections since)
        self.quote_latency = LatencyHistogram()
        self.rng = random.Random(spec.seed)
        #: The way out: cancels, the risk gate, the sink (see mmframe._engine.pipeline).
        self.pipeline = OrderPipeline(
            spec.market, sink, self.tracker, self.gate, self.ids,
            counters=self.counters, log=self.log, rng=self.rng, drain=self._drain_events,
            spend=self._spend if self.budget is not None else None,
        )
        #: The periodic reconciliation against the sink (see MarketSpec.reconcile_interval).
        self.audit = OrderAudit(
            spec, sink, self.tracker, client_prefix,
            log=self.log, sink_degraded=self._sink_degraded, drain=self._drain_events, apply=self._apply,
            may_send=may_send, spend=self._spend if self.budget is not None else None,
        )
        self._local_depth: DepthSnapshot | None = None
        self._next_local_depth = 0.0
        self.started_at = time.monotonic()
        self._latency_from: float | None = None
        self._grid_memo: tuple[list[Quote], list[Quote]] = ([], [])  # _on_grid's last input and output
        self._grid_hit = False  # whether the last _on_grid was handed the very quotes of the time before
        self._settled_version = -1  # the tracker's version when a plan last found nothing to do (see _step)
        self._decide_again = False  # an event since the step's decision that may change it (see _settle)

    # ---- identity and figures ---------------------------------------------------------------------------------

    def next_client_order_id(self) -> str:
        """A client order id no run of this market has used: the market's prefix and a microsecond counter."""
        return self.ids.next()

    @property
    def reconcile_counts(self) -> dict[str, int]:
        """The periodic reconciliation's figures (see :class:`~.audit.OrderAudit`)."""
        return self.audit.counts

    # ---- the task ---------------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        symbol, prefix = self.market.symbol, self.client_prefix
        sink_sub = self.sink.subscribe(symbol, prefix, self.inbox.push_event)
        gated = self.may_send is not None and isinstance(self.sink, GatesRequests)
        if gated:
            # The sink asks the gate too, before every attempt of what it queued or retries for us.
            self.sink.set_gate(self.own_prefix, self.may_send)  # type: ignore[union-attr]
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
            self.audit.start(next_refresh)
            depth_every = min(
                (every for every in (self.strategy.local_depth_interval,
                                     self.spec.risk.book_interval if self.spec.risk.book_band is not None else None)
                 if every), default=None,
            )
            while True:
                wake_at = min(next_refresh, self._next_local_depth) if depth_every else next_refresh
                if self.audit.next_at is not None:
                    wake_at = min(wake_at, self.audit.next_at)
                if self._budget_wake_at is not None:
                    wake_at = min(wake_at, self._budget_wake_at)
                with trio.move_on_at(wake_at):
                    await self.inbox.wait()
                now = trio.current_time()
                # The budget's wake-up is for one step: a step that sends nothing (the sink degraded, no right to
                # send) must not leave it in the past, where it would wake the market again at once.
                self._budget_wake_at = None
                # Every step decides again: the refresh is due a full interval after the latest one, so a market
                # whose ticks come more often than that never wakes for it.
                next_refresh = now + self.spec.refresh_interval
                if depth_every and now >= self._next_local_depth:
                    self._next_local_depth = now + depth_every
                    await self._fetch_local_depth()
                if self.audit.due(now) and self._may_send():
                    await self.audit.run(now)
                plan = self._step(now)
                if not self._may_send():
                    # No right to send (a cluster's lease is gone or about to go): nothing goes out, not even a
                    # cancel; whoever owns the market next cancels what we left.
                    self.ctx.submitted.clear()
                    self.ctx.cancel_requests.clear()
                    continue
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
                self._settle()
        finally:
            if feed_sub is not None:
                feed_sub.close()
            for sub in extra_subs:
                sub.close()
            try:
                self.strategy.on_stop(self.ctx)
            finally:
                try:
                    await self._cleanup(sink_sub)
                finally:
                    if gated:
                        # Closed for good, not removed: what the sink still queues or retries for this run is
                        # never sent now (a later run of the market installs its own gate).
                        self.sink.set_gate(self.own_prefix, closed)  # type: ignore[union-attr]

    def _spend(self, messages: int) -> None:
        """Messages handed to the sink now: counted in the budget at this moment (after the step's earlier round
        trips, not at the step's start). Handed to the pipeline and the audit only when there is a budget."""
        assert self.budget is not None
        self.budget.spend(trio.current_time(), messages)

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

    def _may_send(self) -> bool:
        allowed = self.may_send is None or self.may_send()
        if allowed == self.fenced:
            self.fenced = not allowed
            if allowed:
                self.log.info("may send again")
            else:
                self.log.warning("may not send (the market's lease is lost or ending): sending nothing")
        return allowed

    async def _wait_for_sink(self) -> None:
        # ``degraded`` is a plain property of the sink, not an event: poll it at the market's own pace.
        while self._sink_degraded():  # noqa: ASYNC110
            await trio.sleep(self.spec.refresh_interval)

    async def _handle_leftovers(self) -> None:
        """Orders an earlier run of this market left on the book: cancel them, or adopt them, by the spec."""
        symbol, prefix = self.market.symbol, self.client_prefix
        leftovers = await self.sink.open_orders(symbol, prefix)
        if not leftovers or not self._may_send():
            return
        if self.spec.leftovers == "adopt":
            now = trio.current_time()
            for order in leftovers:
                self.tracker.adopt(order, now)
            self.log.warning("adopted %d orders left by an earlier run (prefix %s)", len(leftovers), prefix)
        else:
            with gated(self.sink, prefix, self.may_send):  # the market's whole prefix
                cancelled = await self.sink.cancel_all(symbol, prefix)
            self.log.warning("cancelled %d orders left by an earlier run (prefix %s)", cancelled, prefix)

    async def _cleanup(self, sink_sub: Any) -> None:
        """Cancel every order of this run (:attr:`own_prefix`) and check none is left; shielded and bounded in
        time."""
        symbol, prefix = self.market.symbol, self.own_prefix
        left: list[Order] = []
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.spec.cleanup_timeout) as scope:
                try:
                    # Repeat until the book holds none of ours and nothing we sent is still unconfirmed: a batch
                    # already on its way when we cancelled may land after the cancel-all.
                    rounds = 0
                    while True:
                        if not self._may_send():
                            self.log.warning("stopping without cancelling: the market's lease is gone, so its next "
                                             "owner cancels what we left")
                            left = []
                            break
                        await self.sink.cancel_all(symbol, prefix)
                        left = await self.sink.open_orders(symbol, prefix)
                        self._drain_events()
                        rounds += 1
                        in_flight = [o for o in self.tracker.live() if o.status is OrderStatus.PENDING]
                        if not left and in_flight and rounds >= INTERRUPTED_ROUNDS and all(
                            o.client_order_id in self.pipeline.interrupted for o in in_flight
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
        self._decide_again = False  # what this step's decision has not seen yet (see _settle)
        trades = self.inbox.trades
        if trades:
            self.inbox.trades = []
            on_trade = self.strategy.on_trade
            ctx = self.ctx
            for trade in trades:
                on_trade(trade, ctx)
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
        quotes = self._on_grid(desired)
        # The plan is a function of the quotes and of our orders alone: the very same quotes (an unchanged ladder)
        # against orders unchanged since a plan found nothing to do need no diff (most ticks move nothing).
        version = self.tracker.version
        if self._grid_hit and version == self._settled_version:
            return Plan()
        plan = self.reconciler.plan(quotes, self.tracker.quoting())
        self._settled_version = -1 if plan else version
        return plan

    def _screen_index(self, now: float) -> PriceTick | None:
        """Hand the ticks that arrived to the index screen (:mod:`mmframe._engine.index`); the new index, if any."""
        inbox = self.inbox
        tick, inbox.tick = inbox.tick, None
        extra = inbox.extra_ticks
        if tick is None and not extra:
            return None
        wall = self.wall()
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
        self._grid_hit = len(quotes) == len(last_in) and all(q is p for q, p in zip(quotes, last_in, strict=True))
        if self._grid_hit:
            return list(last_out)
        market = self.market
        price_exp, qty_exp = -market.price_precision, -market.quantity_precision
        out = []
        for q in quotes:
            price, qty = q.price, q.quantity
            if (
                price.as_tuple().exponent != price_exp
                or qty.as_tuple().exponent != qty_exp
                or not on_grid_safely(market, price)
            ):
                try:
                    q = put_on_grid(market, q)
                except UnplaceableQuote as exc:
                    if exc.unrepresentable:  # a decimal overflow: dropped and counted, never a market failure
                        self.pipeline.unplaceable(q, str(exc), trio.current_time())
                    continue
                price, qty = q.price, q.quantity
            if qty > 0 and qty >= market.min_quantity and price > 0:
                out.append(q)
        self._grid_memo = (quotes, out)
        return list(out)

    def _drain_events(self) -> None:
        events = self.inbox.events
        if events:
            now = trio.current_time()
            while events:
                self._apply(events.popleft(), now)

    def _settle(self) -> None:
        """After a step has sent its orders: apply the events that came back meanwhile (an in-process sink answers
        at once) and, when every one of them only acknowledged an order the market sent (``accepted``), the step
        held nothing back and nothing else arrived, go back to waiting without deciding again: the desired book
        cannot have changed. An order the sink *rejected* does not make it decide again at once either: deciding
        again would place the same order, and a sink that refuses it every time (a post-only quote the book has
        moved through) would be sent it as fast as it answers; the market waits for its next tick or refresh. Any
        other event — a fill, a cancel confirmed (room freed, a deferred order placeable, a strategy waiting for its
        cancels), an expiry, a refused amend — an order the risk gate deferred or refused this step, or an order or
        cancel the strategy asked for makes the market decide again at once, as before."""
        self._drain_events()
        ctx = self.ctx
        # The strategy's own requests the message budget held back wait for its wake-up, not for the next step.
        waiting = (ctx.submitted or ctx.cancel_requests) and self._budget_wake_at is None
        if not self._decide_again and self.inbox.idle and not waiting:
            self.inbox.clear_wake()

    def _apply(self, event: OrderEvent, now: float | None = None) -> None:
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
        kind = event.kind
        if kind not in _NOT_NEWS:
            self._decide_again = True  # more than what we sent acknowledged: see _settle
        if now is None:
            now = trio.current_time()
        order = self.tracker.apply(event, now)
        self.counters["events"] += 1  # every event applied: what observers (the audit trail) are handed
        if kind is OrderEventKind.REJECTED:
            self.counters["rejected"] += 1
            self._log_rejection(order.client_order_id, event.reason, now)
        elif kind is OrderEventKind.AMEND_REJECTED:
            self.counters["amend_rejected"] += 1
            self.log.debug("amend of %s refused: %s", order.client_order_id, event.reason)
        hook = self.hook
        # A hook nobody implements is not called: a call costs more than applying the event.
        if hook is not None and hook.order_event.get_hookimpls():
            hook.order_event(market=self.market, event=event, order=order)
        fill = event.fill
        if fill is not None:
            self.position = self.position.after(fill.side, fill.price, fill.quantity, fill.fee)
            if self.keep_fills:
                self.fills.append(fill)
            if hook is not None:
                hook.order_filled(market=self.market, fill=fill, position=self.position)
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
        """Send *plan* and what the strategy submitted or cancelled meanwhile, through the pipeline (within the
        market's message budget, if it has one)."""
        ctx = self.ctx
        immediate, ctx.submitted = ctx.submitted, []
        extra_cancels, ctx.cancel_requests = ctx.cancel_requests, []
        if extra_cancels:
            # The strategy's own cancels: the plan still counted those orders, so once they are gone the market must
            # decide again (and put the levels back).
            self._decide_again = True
        now = trio.current_time()
        if self.budget is None:
            await self._send(plan, extra_cancels, immediate, now)
        else:
            await self._send_within_budget(self.budget, plan, extra_cancels, immediate, now)

    async def _send_within_budget(self, budget: MessageBudget, plan: Plan, extra_cancels: list[str],
                                  immediate: list[tuple[str, Quote]], now: float) -> None:
        """Spend the budget's room on the step's actions in :func:`~.budget.ranked` order, a share at a time: what the
        gate refuses costs nothing, so the next share goes on down the ranking until the room is spent. What is left
        waits: the strategy's own cancels for the next step, the plan by deciding again as soon as the window has
        room; the strategy's immediate orders are dropped (they were meant for this moment's book)."""
        reference = self.last_tick.price if self.last_tick is not None else None
        queue = ranked(plan, extra_cancels, immediate, reference)
        waited = self._held_since
        if waited:
            # A cancel or an amend held back for a second already goes first: whatever keeps winning the room nearer
            # the touch (a place the sink rejects every time), an order the strategy no longer wants does go.
            late = [a[0] in _AGING and now - waited.get(_order_id(a), now) >= OVERDUE_AFTER for a in queue]
            if any(late):
                queue = (
                    [a for a in queue if a[0] == "own_cancel"]
                    + [a for a, overdue in zip(queue, late, strict=True) if overdue]
                    + [a for a, overdue in zip(queue, late, strict=True) if not overdue and a[0] != "own_cancel"]
                )
        start = 0
        while start < len(queue):
            room = budget.room(trio.current_time())
            if room <= 0:
                break
            chunk = queue[start:start + room]
            start += room
            own = [coid for kind, coid in chunk if kind == "own_cancel"]
            cancels = tuple(o for kind, o in chunk if kind == "cancel")  # the pipeline skips those ended meanwhile
            amends = tuple(pair for kind, pair in chunk if kind == "amend")
            places = tuple(q for kind, q in chunk if kind == "place")
            sweeps = [pair for kind, pair in chunk if kind == "immediate"]
            before = budget.room(trio.current_time())
            await self._send(Plan(cancels, places, plan.kept, amends), own, sweeps, now)
            if budget.room(trio.current_time()) >= before:
                await trio.lowlevel.checkpoint()  # a share the gate refused entirely: let the other tasks run
        queue = queue[start:]
        held = [action for action in queue if action[0] != "immediate"]
        self._held_since = {
            key: waited.get(key, now) for key in (_order_id(a) for a in held if a[0] in _AGING)
        }
        dropped = len(queue) - len(held)
        if dropped:
            self.counters["vetoed"] += dropped
            self.pipeline.last_veto = "message budget (max_messages_per_second) spent: immediate order dropped"
            self.log.warning("dropped %d immediate orders: the message budget of %d a second is spent", dropped,
                             budget.rate)
        ctx = self.ctx
        ctx.cancel_requests[:0] = [coid for kind, coid in held if kind == "own_cancel"]
        later = trio.current_time()
        self.messages_held = len(held)
        if held:
            if self.behind_since is None:
                self.behind_since = now
            # Decide again once the window has room; never sooner than a message's share of the second.
            self._budget_wake_at = max(budget.next_room_at(later), later + 1.0 / budget.rate)
        else:
            self.behind_since = None
            self._budget_wake_at = None

    async def _send(self, plan: Plan, extra_cancels: list[str], immediate: list[tuple[str, Quote]],
                    now: float) -> None:
        cancels = plan.cancels
        places = plan.places
        counters = self.counters
        risk = self.spec.risk
        fresh = self.last_tick is not None and not self.stale and not self.doubt
        reference = self.last_tick.price if fresh and self.last_tick is not None else None
        settled = self.index.settled_price(now, risk.settled_after) if risk.settled_band is not None else None
        refused = counters["vetoed"] + counters["deferred"]
        await self.pipeline.cancel(cancels, extra_cancels, now)
        try:
            if plan.amends:
                if not self._may_send():  # the cancels took a while, and the right to send ended meanwhile
                    return
                # An order whose amend the gate refused is cancelled instead (its quote comes back next step).
                not_amended = await self.pipeline.amend(
                    plan.amends, now, reference=reference, position=self.position, settled=settled,
                    book_mid=self.book_mid,
                )
                if not_amended:
                    await self.pipeline.cancel(not_amended, (), now)
            if not places and not immediate:
                return
            if not self._may_send():  # the cancels took a while, and the right to send ended meanwhile
                return
            await self.pipeline.place(
                places, immediate, now, reference=reference, position=self.position, settled=settled,
                book_mid=self.book_mid,
            )
        finally:
            if counters["vetoed"] + counters["deferred"] != refused:
                # Something was held back (a deferral, a limit on orders in flight, a plugin's veto): what the
                # acknowledgements change may let it through, so they are news this time.
                self._decide_again = True

    def _log_rejection(self, client_order_id: str, reason: str, now: float) -> None:
        """A rejected order at WARNING: the first, then at most one line every ten seconds with the count since."""
        logged_at, since = self._rejects_logged
        if now - logged_at < ORDER_REJECT_LOG_INTERVAL:
            self._rejects_logged = (logged_at, since + 1)
            return
        self._rejects_logged = (now, 0)
        more = f" ({since} more orders rejected since the last report)" if since else ""
        self.log.warning("order %s rejected: %s%s", client_order_id, reason, more)

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
            orders_amended=c["amended"],
            amends_rejected=c["amend_rejected"],
            messages_held=self.messages_held,
            behind_seconds=0.0 if self.behind_since is None else trio.current_time() - self.behind_since,
            orders_rejected=c["rejected"],
            orders_vetoed=c["vetoed"],
            orders_deferred=c["deferred"],
            order_events=c["events"],
            **self.reconcile_counts,
            fills=self.position.fills,
            volume=self.position.volume,
            position=self.position.base,
            pnl=self.position.pnl(mark),
            last_veto=self.pipeline.last_veto,
            uptime_seconds=time.monotonic() - self.started_at,
            index_age=None if self.last_tick_at is None else trio.current_time() - self.last_tick_at,
            feed=self._feed_statistics(),
            strategy_status=dict(self.strategy.status()),
        )
