"""The audit trail: every order event and fill of every market, written to the store off the markets' steps.

**On a market's step** the trail costs one ``deque.append`` per order event or fill: its ``order_event`` and
``order_filled`` hooks queue the objects they are handed as they are — the market, the event (immutable), the
order's request (immutable) with its status and engine id as they stand after the event (an ``Order`` is updated in
place, so those two are taken now), the fill (immutable). Nothing is converted, formatted or counted there.

**One writer**, :meth:`AuditTrail.run`, wakes every half second, or as soon as a batch is waiting, and hands the
queue to a worker thread, which takes what waits in batches of up to :attr:`AuditTrail.MAX_BATCH`, turns each into rows
and writes it in one transaction (:func:`mmframe._store.order_event_row`, :meth:`mmframe._store.Store.record_rows`),
batch after batch until nothing waits (or for at most :attr:`AuditTrail.DRAIN_SECONDS`): the writes do not wait for
a busy event loop to schedule the next one. A write that fails leaves its records at the head of the queue, in
order, and is tried again (at most every :attr:`AuditTrail.RETRY_MAX` seconds while the database is away).

**Back-pressure, not loss.** When :attr:`AuditTrail.HIGH_WATER` records wait (the database away, or slower than the
markets), the trail holds new orders back: it registers a ``pre_trade_check`` plugin, ``mmframe.audit.hold``, that
refuses every order a market is about to place with ``audit trail behind, new orders held until its records are
written: N waiting`` (each market counts them as vetoed, its ``last_veto`` says why). Cancels never pass the risk
gate, so they are never held. Once fewer than :attr:`AuditTrail.LOW_WATER` wait, the plugin is unregistered and the
markets quote again. While it holds, what still comes is bounded by the orders already live (a cancel and the fills
of each), so the backlog stops growing; a held market asks again at each step (each refusal counted, each costing
it a pass through the risk gate). Nothing is registered while the trail keeps up: the risk gate's hook call costs
exactly what it costs without the trail.

Only past :attr:`AuditTrail.MAX_PENDING` records — possible only if orders reached a sink without the risk gate, or
a sink sent events for orders by the hundred thousand while the database was away — are the oldest dropped (order
events before fills), counted (``mmframe_audit_dropped_total``) and logged at ERROR at most every
:attr:`AuditTrail.LOG_INTERVAL` seconds: a memory bound, never reached in normal operation.

Figures (:meth:`AuditTrail.status`, ``/api/v1/health`` and ``/metrics``): records pending, the age of the oldest,
received, written, dropped, write errors, whether orders are held, how many times the high-water mark was reached and
how many orders were held.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy
import trio

from .._hookspecs import hookimpl
from .._models import Fill, Market, MarketKey, Order, OrderEvent, OrderRequest, OrderStatus
from .._store import FillRecord, Store, fill_row, order_event_row
from ..protocols import Position

if TYPE_CHECKING:
    from .._engine.risk import RiskContext

__all__ = ["HOLD_PLUGIN", "HOLD_REASON", "AuditTrail"]

log = logging.getLogger("mmframe.service")

#: The name of the ``pre_trade_check`` plugin registered while the trail holds new orders.
HOLD_PLUGIN = "mmframe.audit.hold"
#: The start of the reason a held order is refused with (the number of records waiting follows). The risk gate's
#: veto log tells reasons apart by their first 60 characters: the changing count comes after them.
HOLD_REASON = "audit trail behind, new orders held until its records are written: "

_Event = tuple[Market, OrderEvent, OrderRequest, OrderStatus, str | None]
_Filled = tuple[Market, Fill]


class _Hold:
    """The ``pre_trade_check`` implementation the trail registers while it is behind."""

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail

    @hookimpl
    def pre_trade_check(self, market: Market, request: OrderRequest, context: RiskContext) -> str | None:
        trail = self.trail
        trail.held += 1
        return trail.hold_reason


class AuditTrail:
    """An observer plugin that queues every order event and fill; :meth:`run` writes them to the store in batches
    from a worker thread, so a market never waits for the database, and holds new orders back while the store is
    far behind (see the module docstring).

    :param market_ids: the market id (``879_1``) of each market key, read when a batch is written.
    :param limiter: the worker-thread limiter every store call of the service shares (one at a time).
    :param pm: the plugin manager to register the hold with; without one the trail counts holds but cannot hold.
    """

    #: Records waiting that wake the writer before its interval is up.
    BATCH = 1_000
    #: The most records written in one transaction (a backlog is written in few of them: each commit costs a sync).
    MAX_BATCH = 10_000
    #: The longest the worker thread writes batch after batch before it returns to the writer's task.
    DRAIN_SECONDS = 1.0
    #: Records waiting at which new orders are held back ...
    HIGH_WATER = 50_000
    #: ... until fewer than this many wait.
    LOW_WATER = 10_000
    #: The memory bound: beyond it the oldest records are dropped, counted and logged (see the module docstring).
    MAX_PENDING = 1_000_000
    #: Drops are logged at most once per this many seconds, with the count since the last line.
    LOG_INTERVAL = 10.0
    #: The longest wait between two tries of a failing write (the waits double from the writer's interval).
    RETRY_MAX = 5.0
    #: How long the final flush on the way out may take.
    FINAL_FLUSH = 5.0
    #: How often the writer notes how many records have arrived, for the age of the oldest one waiting.
    TICK = 0.25

    def __init__(
        self,
        store: Store,
        market_ids: Mapping[MarketKey, str],
        limiter: trio.CapacityLimiter | None = None,
        *,
        pm: pluggy.PluginManager | None = None,
    ) -> None:
        self.store = store
        self.market_ids = market_ids
        self.limiter = limiter if limiter is not None else trio.CapacityLimiter(1)
        self.pm = pm
        self._events: deque[_Event] = deque()
        self._fills: deque[_Filled] = deque()
        self._writing: tuple[list[_Event], list[_Filled]] = ([], [])  # the batch being written
        self._draining = threading.Lock()  # one drain at a time, whoever writes (the writer, a flush on the way out)
        # Records move between the queue, the batch being written and the written counts under this lock, and the
        # figures are read under it: a record is always in exactly one of them (a counter never goes back, a fill
        # being written is always found by a market starting).
        self._moving = threading.Lock()
        self._token: trio.lowlevel.TrioToken | None = None
        self._wake = trio.Event()
        self._threshold = 0  # the queued count at which a hook looks at the backlog (the first one sets it)
        #: (order events, fills) received up to a moment, and that moment: the age of the oldest record waiting.
        self._marks: deque[tuple[int, int, float]] = deque()
        self.written_events = 0
        self.written_fills = 0
        self.dropped_events = 0
        self.dropped_fills = 0
        self.write_errors = 0
        #: Whether new orders are held now; how many times the backlog reached HIGH_WATER; orders held in all.
        self.holding = False
        self.holds = 0
        self.held = 0
        #: What a held order is refused with.
        self.hold_reason = ""
        self._hold = _Hold(self)
        self._hold_started = (0.0, 0)  # (when, held then)
        self._drop_logged_at: float | None = None
        self._drops_unlogged = 0

    # ---- the hooks: a market's step ---------------------------------------------------------------------------

    @hookimpl
    def order_event(self, market: Market, event: OrderEvent, order: Order) -> None:
        self._events.append((market, event, order.request, order.status, order.order_id))
        if len(self._events) + len(self._fills) >= self._threshold:
            self._crossed()

    @hookimpl
    def order_filled(self, market: Market, fill: Fill, position: Position) -> None:
        self._fills.append((market, fill))
        if len(self._events) + len(self._fills) >= self._threshold:
            self._crossed()

    def _crossed(self) -> None:
        """The queue reached the threshold: a batch waits (wake the writer), or the backlog is at high water (hold
        new orders), or past the memory bound (drop the oldest)."""
        queued = len(self._events) + len(self._fills)
        if queued >= self.BATCH:
            self._wake.set()
        pending = queued + self._in_flight()
        if pending >= self.HIGH_WATER and not self.holding:
            self._start_holding(pending)
        if pending > self.MAX_PENDING:
            self._drop(pending - self.MAX_PENDING)
        self._retarget()

    def _retarget(self) -> None:
        """The next queued count at which a hook calls :meth:`_crossed`: the batch size (while less waits), high water
        (while not holding), the memory bound."""
        queued = len(self._events) + len(self._fills)
        in_flight = self._in_flight()
        points = [self.MAX_PENDING + 1 - in_flight]
        if queued < self.BATCH:
            points.append(self.BATCH)
        if not self.holding:
            points.append(self.HIGH_WATER - in_flight)
        self._threshold = max(queued + 1, min(points))

    # ---- figures ----------------------------------------------------------------------------------------------

    def _in_flight(self) -> int:
        return len(self._writing[0]) + len(self._writing[1])

    @property
    def pending(self) -> int:
        """Records waiting to be written (the batch being written included)."""
        with self._moving:
            return len(self._events) + len(self._fills) + self._in_flight()

    @property
    def written(self) -> int:
        """Records written to the store."""
        return self.written_events + self.written_fills

    @property
    def dropped(self) -> int:
        """Records dropped unwritten (past :attr:`MAX_PENDING`)."""
        return self.dropped_events + self.dropped_fills

    def _received(self) -> tuple[int, int]:
        """Order events and fills handed to the trail so far: written, dropped or waiting."""
        with self._moving:
            return self._received_now()

    def _received_now(self) -> tuple[int, int]:
        events, fills = self._writing
        return (
            self.written_events + self.dropped_events + len(self._events) + len(events),
            self.written_fills + self.dropped_fills + len(self._fills) + len(fills),
        )

    @property
    def received(self) -> int:
        """Records the markets handed to the trail (written + dropped + pending)."""
        return sum(self._received())

    def pending_fills(self, symbol: str, market_type: int, client_prefix: str = "") -> list[FillRecord]:
        """The fills of one market's orders (*client_prefix*) not written yet (the batch being written first), oldest
        first, as records: a market starting now finds them here, as they are not in the store yet."""
        with self._moving:
            waiting = (*self._writing[1], *self._fills)
        return [
            FillRecord.from_fill(fill, market_id=self._market_id(market), market_type=market_type)
            for market, fill in waiting
            if fill.symbol == symbol and int(market.market_type) == market_type
            and fill.client_order_id.startswith(client_prefix)
        ]

    def _market_id(self, market: Market) -> str:
        return self.market_ids.get(market.key, str(market.key))

    def _mark(self, now: float) -> None:
        """Note how many records have arrived by *now* (when that changed), and forget notes about written ones."""
        received = self._received()
        if not self._marks or self._marks[-1][:2] != received:
            self._marks.append((*received, now))
        done_events, done_fills = self.written_events + self.dropped_events, self.written_fills + self.dropped_fills
        while len(self._marks) > 1 and self._marks[0][0] <= done_events and self._marks[0][1] <= done_fills:
            self._marks.popleft()

    def oldest_pending_age(self, now: float | None = None) -> float:
        """Seconds the oldest record waiting has waited (at least; measured to within :attr:`TICK` while the writer
        runs), 0 when none waits."""
        now = time.monotonic() if now is None else now
        received = self._received()
        done = (self.written_events + self.dropped_events, self.written_fills + self.dropped_fills)
        oldest = now
        for kind in (0, 1):  # order events, fills
            if received[kind] > done[kind]:
                # The first note that counted the oldest waiting record: it had arrived by then.
                first = next((mark for mark in self._marks if mark[kind] > done[kind]), None)
                if first is not None:
                    oldest = min(oldest, first[2])
        return max(0.0, now - oldest)

    def status(self) -> dict[str, Any]:
        """The trail's figures, as ``/api/v1/health`` shows them under ``audit``."""
        received_events, received_fills = self._received()
        return {
            "pending": self.pending,
            "oldest_pending_seconds": round(self.oldest_pending_age(), 3),
            "received": self.received,
            "received_order_events": received_events,
            "received_fills": received_fills,
            "written": self.written,
            "dropped": self.dropped,
            "write_errors": self.write_errors,
            "holding": self.holding,
            "holds": self.holds,
            "held_orders": self.held,
            "high_water": self.HIGH_WATER,
            "low_water": self.LOW_WATER,
        }

    # ---- holding new orders -----------------------------------------------------------------------------------

    def _start_holding(self, pending: int) -> None:
        self.holding = True
        self.holds += 1
        self._hold_started = (time.monotonic(), self.held)
        self.hold_reason = f"{HOLD_REASON}{pending}"
        if self.pm is not None and self.pm.get_plugin(HOLD_PLUGIN) is None:
            self.pm.register(self._hold, name=HOLD_PLUGIN)
        log.warning("the audit trail is behind: %d records wait for the store; new orders are held until fewer than "
                    "%d wait", pending, self.LOW_WATER)

    def _stop_holding(self) -> None:
        if not self.holding:
            return
        self.holding = False
        if self.pm is not None and self.pm.is_registered(self._hold):
            self.pm.unregister(self._hold)
        since, held_before = self._hold_started
        log.warning("the audit trail caught up (%d records wait): new orders released after %.1f s, %d held",
                    self.pending, time.monotonic() - since, self.held - held_before)

    def _after_write(self) -> None:
        self._retarget()
        if not self.holding:
            return
        pending = self.pending
        if pending < self.LOW_WATER:
            self._stop_holding()
            self._retarget()
        else:
            self.hold_reason = f"{HOLD_REASON}{pending}"

    def _after_write_soon(self) -> None:
        """:meth:`_after_write`, as the worker thread has the event loop call it between two batches."""
        try:
            self._after_write()
        except Exception:  # a callback of the event loop's must not raise
            log.exception("the audit trail could not update its hold")

    def _drop(self, count: int) -> None:
        """Past the memory bound: drop the *count* oldest queued records, order events before fills (unless the
        writer is taking records off the queue right now: then at a next crossing)."""
        if not self._draining.acquire(blocking=False):
            return
        try:
            self._drop_oldest(count)
        finally:
            self._draining.release()

    def _drop_oldest(self, count: int) -> None:
        dropped = 0
        for _ in range(count):
            if self._events:
                self._events.popleft()
                self.dropped_events += 1
            elif self._fills:
                self._fills.popleft()
                self.dropped_fills += 1
            else:  # everything waiting is being written
                break
            dropped += 1
        self._drops_unlogged += dropped
        now = time.monotonic()
        if dropped and (self._drop_logged_at is None or now - self._drop_logged_at >= self.LOG_INTERVAL):
            log.error("the audit trail has more than %d records waiting for the store: dropped %d of the oldest, "
                      "unwritten (%d in all)", self.MAX_PENDING, self._drops_unlogged, self.dropped)
            self._drop_logged_at = now
            self._drops_unlogged = 0

    # ---- the writer -------------------------------------------------------------------------------------------

    async def run(
        self, *, interval: float = 0.5, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Write what waits every *interval* seconds, or as soon as a batch waits, until cancelled; then write the
        rest (for at most :attr:`FINAL_FLUSH` seconds) and log what was written and what was not."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._note_arrivals)
                task_status.started()
                wait = interval
                while True:
                    if wait == interval:
                        with trio.move_on_after(interval):
                            await self._wake.wait()
                    else:  # the last write failed: try again later, whatever arrives meanwhile
                        await trio.sleep(wait)
                    self._wake = trio.Event()
                    wait = interval if await self.flush() else min(wait * 2, self.RETRY_MAX)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self.FINAL_FLUSH):
                await self.flush()
            if self.holding:
                self._stop_holding()
            self._report()

    async def _note_arrivals(self) -> None:
        while True:
            self._mark(time.monotonic())
            await trio.sleep(self.TICK)

    async def flush(self) -> bool:
        """Write everything waiting, a batch at a time, and wait for a batch another task is writing; ``False`` if a
        write failed (its records wait, in order, for the next try)."""
        while self.pending:
            if not await self._write_some():
                return False
        return True

    async def _write_some(self) -> bool:
        """One worker-thread call of :meth:`_drain` (after one that is under way: the store's limiter lets one through
        at a time), then what follows from it on this side; ``False`` if a write failed."""
        self._mark(time.monotonic())
        self._token = trio.lowlevel.current_trio_token()
        try:
            return await trio.to_thread.run_sync(self._drain, limiter=self.limiter)
        finally:
            self._after_write()

    def _drain(self) -> bool:
        """In the worker thread: write what waits, a batch (one transaction) at a time, until nothing waits or
        :attr:`DRAIN_SECONDS` have passed — a busy event loop, slow to schedule the writer's next call, does not slow
        the writes down, and the writer still hears of a stop every so often. After each batch the event loop is asked
        to look at the hold (:meth:`_after_write`). A batch the store refuses goes back to the head of the queue, in
        order; ``False`` then."""
        with self._draining:
            deadline = time.monotonic() + self.DRAIN_SECONDS
            while True:
                # Taken off the queue's head (only here, while draining) into the batch being written, one by one: the
                # figures never count a record twice (a counter must not go back).
                events: list[_Event] = []
                fills: list[_Filled] = []
                with self._moving:
                    self._writing = (events, fills)
                    for _ in range(min(self.MAX_BATCH, len(self._events))):
                        events.append(self._events.popleft())
                    for _ in range(min(self.MAX_BATCH, len(self._fills))):
                        fills.append(self._fills.popleft())
                if not events and not fills:
                    return True
                try:
                    self._write(events, fills)
                except Exception as exc:
                    with self._moving:
                        self._writing = ([], [])
                        self._events.extendleft(reversed(events))
                        self._fills.extendleft(reversed(fills))
                    self.write_errors += 1
                    log.error("could not write %d audit records (will retry): %s", len(events) + len(fills), exc)
                    return False
                with self._moving:
                    self._writing = ([], [])
                    self.written_events += len(events)
                    self.written_fills += len(fills)
                if self.holding and self._token is not None:
                    with contextlib.suppress(trio.RunFinishedError):
                        self._token.run_sync_soon(self._after_write_soon)
                if time.monotonic() >= deadline:
                    return True

    def _write(self, events: list[_Event], fills: list[_Filled]) -> None:
        """In the worker thread: the batch as rows, in one transaction."""
        where: dict[int, tuple[str, int]] = {}  # id(market) -> (market id, market type), once per market and batch

        def place(market: Market) -> tuple[str, int]:
            found = where.get(id(market))
            if found is None:
                found = where[id(market)] = (self._market_id(market), int(market.market_type))
            return found

        event_rows = [
            order_event_row(event, request, status, order_id, *place(market))
            for market, event, request, status, order_id in events
        ]
        fill_rows = [fill_row(fill, *place(market)) for market, fill in fills]
        self.store.record_rows(event_rows, fill_rows)

    def _report(self) -> None:
        """On the way out: what the markets handed over, and what of it is in the store."""
        events, fills = self._received()
        unwritten = self.pending + self.dropped
        if unwritten:
            log.error("audit trail: %d order events and %d fills received, %d and %d written; %d records NOT written "
                      "(%d dropped, %d still waiting at exit)", events, fills, self.written_events, self.written_fills,
                      unwritten, self.dropped, self.pending)
        else:
            log.info("audit trail: all %d order events and %d fills received were written", events, fills)
