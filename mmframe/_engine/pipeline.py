"""The way out of a market: its cancels, then each order through the risk gate — once — and the survivors to the sink.

One step's plan is sent in two moves. :meth:`OrderPipeline.cancel` cancels what the plan (and the strategy) no longer
wants; then :meth:`OrderPipeline.place` builds each order the plan and the strategy's immediate orders ask for
(sized, with its client order id), runs it through the risk gate exactly once — every built-in check, self-trade
prevention included, then the ``pre_trade_check`` hook — and hands every order that passed to the sink in one
batch. An order of the desired book is checked for self-trade first, and one the check refuses is *deferred* (our
own opposite order is still being cancelled: it is placed on a later step); every other refusal is a veto, counted
and logged.

With a sink that can amend, :meth:`OrderPipeline.amend` goes between the two: each amend is the order as it will
be (its new price and quantity) through the same gate, once; those that pass go to the sink in one request, orders
moving away from the other side first, so that none crosses one of ours on its way; an order whose amend the gate
refuses is cancelled instead (its quote is placed, deferred or vetoed as a new order would be on a later step).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal

import attrs

from .._models import AmendRequest, Market, Order, OrderRequest, OrderStatus, OrderType, Quote, Side
from ..protocols import AmendsOrders, OrderSink, Position
from .clientid import ClientIds
from .risk import Refusal, RiskContext, RiskGate, self_trade_reason
from .tracker import OrderTracker

__all__ = ["OrderPipeline"]

PENDING = OrderStatus.PENDING

#: A refused order is logged at most once per this many seconds per reason.
VETO_LOG_INTERVAL = 60.0


class OrderPipeline:
    """One market's sending path (see the module docstring).

    :param counters: the market's counters; this adds to ``cancelled``, ``placed``, ``amended``, ``vetoed`` and
        ``deferred``.
    :param drain: applies the order events that arrived (an in-process sink confirms a cancel at once).
    :param spend: told how many messages go to the sink, right before each call (the market's message budget).
    """

    def __init__(
        self,
        market: Market,
        sink: OrderSink,
        tracker: OrderTracker,
        gate: RiskGate,
        ids: ClientIds,
        *,
        counters: dict[str, int],
        log: logging.LoggerAdapter,  # type: ignore[type-arg]
        rng: random.Random,
        drain: Callable[[], None],
        spend: Callable[[int], None] | None = None,
    ) -> None:
        self.market = market
        self.sink = sink
        self.tracker = tracker
        self.gate = gate
        self.ids = ids
        self.counters = counters
        self.log = log
        self.rng = rng
        self._drain = drain
        self._spend = spend  # the market's message budget, told of every message as it is handed to the sink
        self.last_veto = ""
        self.interrupted: set[str] = set()  # client ids of batches whose place() call was interrupted
        self._veto_logged: dict[str, float] = {}
        #: The sink, when it can amend (AmendsOrders) — checked once: a component's class does not change under it.
        self.amender: AmendsOrders | None = sink if isinstance(sink, AmendsOrders) else None

    def pending_amends(self) -> list[Order]:
        """For each order with an amend under way, the order as it stood before: until the sink has answered, it may
        still rest there. The self-trade check looks at these as well (and nothing else: they are not more orders)."""
        return [attrs.evolve(order, request=old) for order, old in self.tracker.amends_pending()]

    async def amend(
        self,
        amends: Sequence[tuple[Order, Quote]],
        now: float,
        *,
        reference: Decimal | None,
        position: Position,
        settled: Decimal | None = None,
        book_mid: Decimal | None = None,
    ) -> list[Order]:
        """Amend each order of *amends* to its quote, through the risk gate once each; returns the orders whose amend
        the gate refused (the caller cancels them)."""
        amender = self.amender
        if not amends or amender is None:
            return [order for order, _ in amends]
        # Orders moving away from the other side (a bid down, an ask up) first: each amend is applied against the
        # book the ones before it left, so one moving towards the other side never meets an order of ours that is
        # about to move away.
        ordered = sorted(amends, key=lambda pair: 0 if _retreats(pair[0], pair[1].price) else 1)
        live = list(self.tracker.live())
        before = self.pending_amends()
        refused: list[Order] = []
        batch: list[AmendRequest] = []
        tracker = self.tracker
        symbol = self.market.symbol
        # One context for the batch (the amended orders' own entries are skipped by the self-trade check by id, and
        # each shows its new price once marked below); only at max_active_orders, or for a pre_trade_check hook, is
        # each amend's order left out of its context, so that it is not counted as one order more.
        shared = RiskContext(reference, live, position, settled, book_mid)
        # A pre_trade_check hook judges the amend with the market's other orders: there, each amend's own order is
        # left out (it is not one order more, and not at two prices).
        per_amend = len(live) >= self.gate.limits.max_active_orders or self.gate.hooked
        for order, quote in ordered:
            coid = order.client_order_id
            if not tracker.amendable(order):
                # Changed since the plan: the strategy cancelled it this step (its cancel went first), or the events
                # the cancels brought back ended it. Its quote comes back at the next decision.
                continue
            remaining = self._quantity(quote)
            quantity = order.filled_quantity + remaining
            # The gate judges what the amend puts on the book, as it would the same quote placed: the order at its new
            # price for its new remaining quantity (what has filled is position already); the order itself is not
            # one more live order.
            request = attrs.evolve(order.request, price=quote.price, quantity=remaining)
            context = shared
            if per_amend:
                others = [o for o in live if o.request.client_order_id != coid]
                context = RiskContext(reference, others, position, settled, book_mid)
            reason = self_trade_reason(request, before) if before else None
            refusal = Refusal(reason, self_trade=True) if reason else self.gate.refusal(
                request, context, self_trade_first=True
            )
            if refusal is not None:
                # The order is not where the strategy wants it, and may not go there now: it is cancelled, and its
                # quote is placed as a new order once the gate lets it (deferred: our opposite order is on its way
                # out) or counted as vetoed like any order the gate refuses.
                if refusal.self_trade:
                    self.counters["deferred"] += 1
                else:
                    self._vetoed(request, refusal.reason, now)
                refused.append(order)
                continue
            # Nothing filled yet (the usual case): the request the gate judged is the amended order itself.
            tracker.mark_amend_requested(coid, quote.price, quantity, now,
                                         request=request if quantity == remaining else None)
            batch.append(AmendRequest(coid, symbol, quote.price, quantity))
        if batch:
            self.counters["amended"] += len(batch)
            if self._spend is not None:
                self._spend(len(batch))
            await amender.amend(batch)
            self._drain()  # an in-process sink answers at once
        return refused

    async def cancel(self, orders: Sequence[Order], requested: Sequence[str], now: float) -> None:
        """Cancel *orders* (the plan's), and those of *requested* (the strategy's own cancels), those of them that are
        live and not being cancelled already (events applied since the plan may have ended one)."""
        cancel_ids = [o.client_order_id for o in orders if o.status.is_live and not o.cancel_requested]
        for coid in requested:
            order = self.tracker.get(coid)
            if order is not None and order.status.is_live and not order.cancel_requested and coid not in cancel_ids:
                cancel_ids.append(coid)
        if not cancel_ids:
            return
        for coid in cancel_ids:
            self.tracker.mark_cancel_requested(coid, now)
        self.counters["cancelled"] += len(cancel_ids)
        if self._spend is not None:
            self._spend(len(cancel_ids))
        await self.sink.cancel(self.market.symbol, cancel_ids)
        self._drain()  # an in-process sink confirms at once; its room is free for the places below

    async def place(
        self,
        places: Sequence[Quote],
        immediate: Sequence[tuple[str, Quote]],
        now: float,
        *,
        reference: Decimal | None,
        position: Position,
        settled: Decimal | None = None,
        book_mid: Decimal | None = None,
    ) -> None:
        """Place the strategy's *immediate* orders (ids already given) and the plan's *places*: each through the
        risk gate once, against our live orders and those placed before it in this batch."""
        live = list(self.tracker.live())
        before = self.pending_amends() if self.amender is not None else []
        batch: list[OrderRequest] = []
        add = self.tracker.add
        # One context for the batch: its live orders grow as orders pass (each is checked against those before it).
        context = RiskContext(reference, live, position, settled, book_mid)
        for coid, quote, from_plan in self._requests(places, immediate):
            request = self._request(coid, quote)
            # A desired-book order is checked for self-trade first: one that would cross our own order is held back
            # (that order is on its way out), whatever else the gate would say of it.
            # An order of ours whose amend is under way may still rest where it was: checked first, like our orders.
            reason = self_trade_reason(request, before) if before else None
            refusal = Refusal(reason, self_trade=True) if reason else self.gate.refusal(
                request, context, self_trade_first=from_plan
            )
            if refusal is not None:
                if from_plan and refusal.self_trade:
                    # Our own opposite order is still being cancelled: place this one on a later step.
                    self.counters["deferred"] += 1
                else:
                    self._vetoed(request, refusal.reason, now)
                continue
            live.append(add(request, now, status=PENDING))  # sent below, in this batch
            batch.append(request)
        if batch:
            self.counters["placed"] += len(batch)
            if self._spend is not None:
                self._spend(len(batch))
            try:
                await self.sink.place(batch)
            except BaseException:
                # Cancelled (or failed) while handing the batch over: whether the sink took it is unknown.
                self.interrupted.update(r.client_order_id for r in batch)
                raise

    def _requests(
        self, places: Sequence[Quote], immediate: Sequence[tuple[str, Quote]]
    ) -> Iterable[tuple[str, Quote, bool]]:
        for coid, quote in immediate:
            yield coid, quote, False
        for quote in places:
            yield self.ids.next(), quote, True

    def _quantity(self, quote: Quote) -> Decimal:
        """*quote*'s quantity cut by up to its ``size_variation`` (at random, never below the market's minimum)."""
        market = self.market
        quantity = quote.quantity
        if quote.size_variation:
            cut = quote.size_variation * self.rng.randint(0, 10_000) / 10_000
            varied = market.round_quantity(quantity * (1 - cut))
            quantity = varied if varied > 0 and varied >= market.min_quantity else quantity
        return quantity

    def _request(self, client_order_id: str, quote: Quote) -> OrderRequest:
        """*quote* as the order sent: its quantity cut by up to its ``size_variation``."""
        market = self.market
        quantity = self._quantity(quote)
        return OrderRequest(
            client_order_id=client_order_id,
            symbol=market.symbol,
            side=quote.side,
            type=quote.type,
            quantity=quantity,
            price=None if quote.type is OrderType.MARKET else quote.price,
            market_type=market.market_type,
            tag=quote.tag,
        )

    # ---- vetoes -----------------------------------------------------------------------------------------------

    def _vetoed(self, request: OrderRequest, reason: str, now: float) -> None:
        self.counters["vetoed"] += 1
        self.last_veto = reason
        # One log line per distinct reason a minute: a strategy asking for the same refused order every second
        # must not flood the log.
        key = reason.split(" at ")[0][:60]
        if now - self._veto_logged.get(key, -1e18) >= VETO_LOG_INTERVAL:
            self._veto_logged[key] = now
            self.log.warning("risk gate refused %s %s %s @ %s: %s", request.side, request.quantity,
                             request.type, request.price, reason)

    def unplaceable(self, quote: Quote, reason: str, now: float) -> None:
        """A desired quote that cannot be written at the market's precision: counted as vetoed, logged (rate
        limited like the risk gate's refusals)."""
        self.counters["vetoed"] += 1
        self.last_veto = reason
        key = "unplaceable"
        if now - self._veto_logged.get(key, -1e18) >= VETO_LOG_INTERVAL:
            self._veto_logged[key] = now
            self.log.warning("dropped a desired %s quote: %s", quote.side, reason)


def _retreats(order: Order, price: Decimal) -> bool:
    """Whether moving *order* to *price* takes it away from the other side of the book (or leaves its price)."""
    current = order.price
    if current is None:
        return False
    return price <= current if order.side is Side.BUY else price >= current
