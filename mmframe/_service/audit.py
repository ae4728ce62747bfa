"""The audit trail: every order event and fill of every market, written to the store in batches."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping

import trio

from .._hookspecs import hookimpl
from .._models import Fill, Market, MarketKey, Order, OrderEvent
from .._store import FillRecord, OrderEventRecord, Store
from ..protocols import Position

__all__ = ["AuditTrail"]

log = logging.getLogger("mmframe.service")


class AuditTrail:
    """An observer plugin that queues every order event and fill; :meth:`run` writes them to the store in
    batches from a worker thread, so a market never waits for the database."""

    BATCH = 500
    #: Records held while the database is away or slower than the markets; beyond it the oldest are dropped,
    #: counted (:attr:`dropped`, ``mmframe_audit_dropped_total``) and logged at ERROR.
    MAX_PENDING = 200_000
    #: Dropping is logged at most once per this many seconds, with the count since the last line.
    DROP_LOG_INTERVAL = 10.0

    def __init__(
        self, store: Store, market_ids: Mapping[MarketKey, str], limiter: trio.CapacityLimiter | None = None
    ) -> None:
        self.store = store
        self.limiter = limiter if limiter is not None else trio.CapacityLimiter(1)
        self.market_ids = market_ids
        self.events: deque[OrderEventRecord] = deque()
        self.fills: deque[FillRecord] = deque()
        self.dropped = 0
        self.written = 0
        self._drop_logged_at: float | None = None
        self._drops_unlogged = 0
        self._wake = trio.Event()

    def _market_id(self, market: Market) -> str:
        return self.market_ids.get(market.key, str(market.key))

    @hookimpl
    def order_event(self, market: Market, event: OrderEvent, order: Order) -> None:
        record = OrderEventRecord.from_event(
            event, order, market_id=self._market_id(market), market_type=int(market.market_type)
        )
        self.events.append(record)
        self._added()

    @hookimpl
    def order_filled(self, market: Market, fill: Fill, position: Position) -> None:
        record = FillRecord.from_fill(fill, market_id=self._market_id(market), market_type=int(market.market_type))
        self.fills.append(record)
        self._added()

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self.events) + len(self.fills)

    def _added(self) -> None:
        pending = len(self.events) + len(self.fills)
        if pending > self.MAX_PENDING:  # the database away, or slower than the markets, for long: the oldest go
            (self.events if self.events else self.fills).popleft()
            self._drop()
        if pending >= self.BATCH:
            self._wake.set()

    def _drop(self) -> None:
        self.dropped += 1
        self._drops_unlogged += 1
        now = time.monotonic()
        if self._drop_logged_at is None or now - self._drop_logged_at >= self.DROP_LOG_INTERVAL:
            log.error("the audit trail has more than %d records waiting for the store: dropped %d of the oldest, "
                      "unwritten (%d in all)", self.MAX_PENDING, self._drops_unlogged, self.dropped)
            self._drop_logged_at = now
            self._drops_unlogged = 0

    async def run(
        self, *, interval: float = 0.5, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        try:
            while True:
                with trio.move_on_after(interval):
                    await self._wake.wait()
                self._wake = trio.Event()
                await self.flush()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.flush()

    async def flush(self) -> None:
        if not self.events and not self.fills:
            return
        events, fills = list(self.events), list(self.fills)
        self.events, self.fills = deque(), deque()
        try:
            await trio.to_thread.run_sync(self.store.record, events, fills, limiter=self.limiter)
            self.written += len(events) + len(fills)
        except Exception as exc:
            log.error("could not write %d audit records (will retry): %s", len(events) + len(fills), exc)
            self.events.extendleft(reversed(events))
            self.fills.extendleft(reversed(fills))
