"""The periodic reconciliation of a market's orders against the sink's open orders (``MarketSpec.reconcile_interval``).

Every interval, on the market's own task between two steps, our orders are compared with what the sink has open
with our client-id prefix: an order the sink has and we do not track (or know as finished) is cancelled, or
adopted (``MarketSpec.leftovers``); one we believe pending or resting that the sink has not had in two consecutive
passes is marked gone (``expired``, or ``cancelled`` when we had asked for its cancel); a cancel not confirmed after
``reconcile_grace`` is sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import trio

from .._models import Order, OrderEvent, OrderEventKind, OrderStatus
from ..protocols import OrderSink
from .spec import MarketSpec
from .tracker import OrderTracker

__all__ = ["RECONCILE_MIN_BUDGET", "RECONCILE_MISSES", "OrderAudit"]

#: The least time a reconciliation pass may take before it is abandoned (it may take up to its interval).
RECONCILE_MIN_BUDGET = 2.0
#: Consecutive reconciliation passes an order must be missing from the sink before it is marked gone.
RECONCILE_MISSES = 2


class OrderAudit:
    """One market's reconciliation against the sink (see the module docstring).

    :param sink_degraded: whether the sink can answer now (a degraded sink is not asked).
    :param drain: applies the order events that arrived.
    :param apply: applies one order event (the end of an order found gone).
    """

    def __init__(
        self,
        spec: MarketSpec,
        sink: OrderSink,
        tracker: OrderTracker,
        client_prefix: str,
        *,
        log: logging.LoggerAdapter,  # type: ignore[type-arg]
        sink_degraded: Callable[[], bool],
        drain: Callable[[], None],
        apply: Callable[[OrderEvent], None],
        may_send: Callable[[], bool] | None = None,
        spend: Callable[[int], None] | None = None,
    ) -> None:
        self.spec = spec
        # The market's message budget: the cancels of a reconciliation count in it, but are never held (an order we
        # do not track, or a cancel the sink lost, takes risk off the book).
        self._spend = spend
        self._may_send = may_send  # asked again right before the cancels (a cluster's lease may end meanwhile)
        self.sink = sink
        self.tracker = tracker
        self.client_prefix = client_prefix
        self.log = log
        self._sink_degraded = sink_degraded
        self._drain_events = drain
        self._apply = apply
        #: The figures of the market status (see MarketStatus).
        self.counts: dict[str, int] = dict.fromkeys(
            ("reconciliations", "reconcile_cancelled", "reconcile_adopted", "reconcile_gone", "cancel_retries",
             "reconcile_errors"), 0
        )
        #: When the next pass is due (trio time); ``None``: off, or not started.
        self.next_at: float | None = None
        self._missing: dict[str, int] = {}  # client id -> consecutive reconciliations the sink did not have it

    def start(self, now: float) -> None:
        """The first pass is due one interval from *now* (none if the interval is 0)."""
        if self.spec.reconcile_interval > 0:
            self.next_at = now + self.spec.reconcile_interval

    def due(self, now: float) -> bool:
        return self.next_at is not None and now >= self.next_at

    async def run(self, now: float) -> None:
        """One reconciliation pass (``MarketSpec.reconcile_interval``), on the market's own task between two steps:
        our orders against the sink's open orders with our prefix. What the sink has and we do not track (or know
        as finished) is cancelled, or adopted; what we believe pending or resting and the sink has not had in two
        consecutive passes is marked gone; a cancel not confirmed within ``reconcile_grace`` is sent again.

        Bounded in time; a sink error is logged and counted, and the pass is tried again one interval later."""
        interval = self.spec.reconcile_interval
        self.next_at = now + interval
        if self._sink_degraded():
            return  # the sink cannot answer now; a degraded market holds its orders anyway
        symbol, prefix = self.spec.market.symbol, self.client_prefix
        with trio.move_on_after(max(interval, RECONCILE_MIN_BUDGET)) as scope:
            asked_at = trio.current_time()
            try:
                found = await self.sink.open_orders(symbol, prefix)
            except Exception as exc:  # whatever a sink raises, the market goes on
                self.counts["reconcile_errors"] += 1
                self.log.warning("reconciliation: could not read the sink's open orders (%s); next try in %ss",
                                 exc or type(exc).__name__, interval)
                return
            self._drain_events()  # what arrived while we asked: the tracker as of the answer (or later)
            self.counts["reconciliations"] += 1
            now = trio.current_time()
            to_cancel, adopted, retried, gone = self.compare(found, asked_at, now)
            for order in gone:
                kind = OrderEventKind.CANCELLED if order.cancel_requested else OrderEventKind.EXPIRED
                self._apply(OrderEvent(kind, order.client_order_id, symbol, filled_quantity=order.filled_quantity,
                                       order_id=order.order_id,
                                       reason="gone: the order sink no longer has this order (reconciliation)"))
            self.counts["reconcile_gone"] += len(gone)
            self.counts["reconcile_adopted"] += len(adopted)
            self.counts["reconcile_cancelled"] += len(to_cancel)
            self.counts["cancel_retries"] += len(retried)
            if to_cancel or adopted or retried or gone:
                self.log.warning(
                    "reconciliation against the sink: cancelled %d orders we do not track%s, adopted %d, marked %d "
                    "gone%s, sent %d unconfirmed cancels again%s",
                    len(to_cancel), _some(to_cancel), len(adopted), len(gone),
                    _some(o.client_order_id for o in gone), len(retried), _some(retried),
                )
            for coid in retried:
                self.tracker.mark_cancel_requested(coid, now)  # the grace starts again
            if (to_cancel or retried) and (self._may_send is None or self._may_send()):
                if self._spend is not None:
                    self._spend(len(to_cancel) + len(retried))
                try:
                    await self.sink.cancel(symbol, to_cancel + retried)
                except Exception as exc:
                    self.counts["reconcile_errors"] += 1
                    self.log.warning("reconciliation: the sink refused the cancels (%s); next try in %ss",
                                     exc or type(exc).__name__, interval)
            self._drain_events()
        if scope.cancelled_caught:
            self.counts["reconcile_errors"] += 1
            self.log.warning("reconciliation: no answer from the sink within %ss; next try in %ss",
                             max(interval, RECONCILE_MIN_BUDGET), interval)

    def compare(
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


def _some(ids: Iterable[str], limit: int = 5) -> str:
    """`` (a, b, c, ...)`` for a log line: the first few of *ids*."""
    listed = list(ids)
    if not listed:
        return ""
    return f" ({', '.join(listed[:limit])}{', ...' if len(listed) > limit else ''})"
