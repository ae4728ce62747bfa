"""The ``match-engine`` order sink: mmframe's orders to a match engine over HTTP (``docs/match-engine-api.md``).

What it guarantees:

- **No doubled order.** A batch whose answer never came (a timeout, a dropped connection) is sent again with the
  same client order ids; the engine answers ``duplicate`` for those it already has.
- **No lost order.** An order whose fate is unknown stays *pending* for the engine (it counts as live, so nothing
  is placed twice) until the sink has found out, by asking the engine, whether it exists.
- **No lost cancel.** A cancel stays wanted until the order is known to be finished: from the stream, from a query,
  or from a cancel answer ``cancelled``/``not_open``. A cancel the engine answers ``unknown`` for an order that
  was still on its way (its batch queued or in flight) is sent again once the engine has the order; an ``unknown``
  for an order the engine has since accepted (the cancel overtook the batch) makes the sink ask the engine, and
  cancel again if the order is open.
- **Only our account's orders.** Every request names the configured ``account``; the engine scopes client ids per
  account, and the sink also checks what comes back: an answer, an open order or a stream event about another
  account's order is never taken for one of ours (a ``duplicate`` of another account's order, or of a different
  order, rejects our place), so another account's orders with our prefix are neither adopted nor cancelled.
- **No stale view.** Order events come from the engine's event stream; after a gap (a reconnect the engine cannot
  replay, or a restart of the engine) the sink asks the engine how each of its open orders stands and turns the
  difference into events.
- **Amend in one message.** The sink can amend (``mmframe.protocols.AmendsOrders``, the engine's ``orders/amend``):
  every amend ends in one ``amended`` event (from the answer or the stream, whichever is first) or one
  ``amend_rejected``; an amend whose answer never came is settled by asking the engine how the order stands (amended
  if it shows the new price and quantity, else refused). Amends are sent at once, in order, never retried blindly
  after the order's own end.
- **No storm.** Requests pass a token bucket; 429 answers are honoured (``Retry-After``); transport errors and 5xx
  are retried with exponential backoff and jitter; 4xx are never retried. After ``breaker_threshold`` consecutive
  failures the circuit opens: the sink fails fast, reports ``degraded`` (markets hold their orders), probes the
  engine's ``/health`` with growing pauses, and closes the circuit when it answers.
"""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import aclosing
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

import attrs
import httpx
import msgspec
import trio

from mmframe import (
    AmendRequest,
    DepthSnapshot,
    Fill,
    Liquidity,
    MMFrameError,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderStatus,
    Side,
    Subscription,
)
from mmframe.config import finite, positive, positive_seconds
from mmframe.sinktools import LatencyHistogram, OrderEventListeners

from .wire import (
    WireError,
    WireOrder,
    amends_of,
    amends_to_wire,
    event_account,
    event_from_wire,
    json_dumps,
    request_to_wire,
)

__all__ = ["EngineRejected", "MatchEngineSink", "SinkUnavailable"]

log = logging.getLogger("mmframe.match_engine")


#: One attempt of a request, from the moment the gates were asked to its answer, is given up after this many
#: ``timeout``s: room for a connection to be made (httpx's own connect, write and read timeouts are ``timeout``
#: each) while still a bound the cluster's lease margin can count on.
ATTEMPT_BOUND = 1.5


class _NotSent(Exception):
    """Every order of a request was stopped by its market's gate before an attempt: nothing more is sent."""


class SinkUnavailable(MMFrameError):
    """The match engine cannot be reached now (the circuit is open, or every retry failed)."""


class EngineRejected(MMFrameError):
    """The match engine refused a request (a 4xx answer): retrying it would not help."""


def _endpoint(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{attribute.name} must be an http(s) URL like http://127.0.0.1:8080, got {value!r}")


@attrs.define
class _Mirror:
    """What the sink knows of one of its orders: enough to tell a new event from a repeated one."""

    symbol: str
    side: Side
    status: OrderStatus | None = None  # None: sent, not yet confirmed by the engine
    filled: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    price: Decimal | None = None  # as the engine has it: the placed price, then each amend's
    quantity: Decimal = Decimal(0)
    amends: int = 0  # the engine's count of amends that changed the order, as far as we have heard


class _TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self.stamp = trio.current_time()

    async def acquire(self) -> None:
        while True:
            now = trio.current_time()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                await trio.lowlevel.checkpoint()
                return
            await trio.sleep((1 - self.tokens) / self.rate)


class MatchEngineSink:
    """An :class:`~mmframe.OrderSink` speaking ``docs/match-engine-api.md`` over one pooled ``httpx.AsyncClient``."""

    name: ClassVar[str] = "match-engine"

    @attrs.frozen
    class Config:
        """The ``match-engine`` sink's options.

        :param endpoint: the engine's base URL (``MATCH_ENGINE_ENDPOINT``, ``--http``).
        :param account: the account every order is placed for (the engine's self-trade prevention key).
        :param timeout: seconds to wait for one answer.
        :param max_batch: orders per batch request (the contract allows 100).
        :param linger: seconds a batch waits for more orders before it is sent.
        :param max_in_flight: batch requests under way at once.
        :param max_retries: attempts after the first before a request is given up.
        :param backoff: the first retry's pause, doubled each time (with jitter) up to ``max_backoff``.
        :param rate_limit: requests per second (token bucket); ``burst``: how many may go at once.
        :param breaker_threshold: consecutive failed attempts that open the circuit.
        :param breaker_cooldown: the first pause before probing an open circuit (doubles up to ``max_backoff``).
        :param stream_stall: seconds without a line (events or heartbeats) after which the stream is reconnected.
        :param max_connections: the HTTP connection pool's size.
        """

        endpoint: str = attrs.field(validator=_endpoint)
        account: str = "mmframe"
        timeout: float = attrs.field(default=2.0, validator=positive_seconds)
        max_batch: int = attrs.field(default=100, validator=attrs.validators.and_(attrs.validators.ge(1),
                                                                                 attrs.validators.le(100)))
        linger: float = attrs.field(default=0.002, validator=attrs.validators.ge(0))
        max_in_flight: int = attrs.field(default=4, validator=attrs.validators.ge(1))
        max_retries: int = attrs.field(default=4, validator=attrs.validators.ge(0))
        backoff: float = attrs.field(default=0.05, validator=positive_seconds)
        max_backoff: float = attrs.field(default=2.0, validator=positive_seconds)
        rate_limit: float = attrs.field(default=100.0, validator=[finite, positive])
        burst: int = attrs.field(default=20, validator=attrs.validators.ge(1))
        breaker_threshold: int = attrs.field(default=5, validator=attrs.validators.ge(1))
        breaker_cooldown: float = attrs.field(default=0.5, validator=positive_seconds)
        stream_stall: float = attrs.field(default=5.0, validator=positive_seconds)
        max_connections: int = attrs.field(default=20, validator=attrs.validators.ge(2))

    def __init__(self, config: Config) -> None:
        self.config = config
        self._listeners = OrderEventListeners(log)
        self._client: httpx.AsyncClient | None = None
        self._mirror: dict[str, _Mirror] = {}
        self._queue: list[OrderRequest] = []
        self._queue_wake = trio.Event()
        self._unverified: dict[str, _Mirror] = {}  # orders whose state the engine must be asked for
        self._in_flight: set[str] = set()  # client ids taken out of the queue whose batch answer is not yet handled
        # Client ids of our orders that ended lately (bounded): a stream event that arrives for one after a query or
        # a cancel answer already told its end is a repetition, not another process's order.
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._cancel_wanted: dict[str, str] = {}  # client id -> symbol: cancels still to be confirmed
        # GatesRequests: client-id prefix -> may the orders under it be sent now? (asked before every attempt)
        self._gates: dict[str, Callable[[], bool]] = {}
        self._gate_lengths: list[int] = []
        # Attempts under way at once: the pool's connections but the event stream's.
        self._attempts = trio.CapacityLimiter(max(1, config.max_connections - 1))
        # client id -> cancel requests for it under way: while one is, the order's news does not send another
        self._cancelling: dict[str, int] = {}
        # client id -> (price, quantity) of the amend whose outcome the market still waits for, and the ids whose amend
        # request is under way (its answer settles them; a query must not)
        self._amends_awaited: dict[str, tuple[Decimal, Decimal]] = {}
        self._amending: set[str] = set()
        self._bucket: _TokenBucket | None = None
        self._failures = 0
        self._open_until: float | None = None  # the circuit is open while this is set
        self._closed_event = trio.Event()
        self._closed_event.set()
        self._stream_up = False
        self._resync_needed = trio.Event()
        #: Seconds per HTTP request to the engine (each attempt), exported as ``mmframe_sink_request_seconds``.
        self.request_latency = LatencyHistogram()
        self.statistics: dict[str, int] = dict.fromkeys(
            ("requests", "retries", "rate_limited", "failures", "batches", "duplicates", "resyncs", "breaker_opened",
             "amends"),
            0,
        )

    # ---- health -----------------------------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """True while the engine cannot take orders: the circuit is open, or the event stream is down."""
        return self._open_until is not None or not self._stream_up

    @property
    def circuit_open(self) -> bool:
        return self._open_until is not None

    @property
    def request_timeout(self) -> float:
        """How long one attempt may take, connecting included (:class:`~mmframe.protocols.BoundsRequestTime`):
        :data:`ATTEMPT_BOUND` times ``timeout`` from the moment the gates were asked; an attempt still without an
        answer then is given up (and what it carried is verified or sent again only through the gates)."""
        return ATTEMPT_BOUND * float(self.config.timeout)

    # ---- gates (GatesRequests) ----------------------------------------------------------------------------------

    def set_gate(self, prefix: str, may_send: Callable[[], bool] | None) -> None:
        """Ask *may_send* before every attempt to send something for the orders whose client id starts with
        *prefix* (:class:`~mmframe.protocols.GatesRequests`); ``None`` removes the gate."""
        if may_send is None:
            self._gates.pop(prefix, None)
        else:
            self._gates[prefix] = may_send
        self._gate_lengths = sorted({len(p) for p in self._gates})

    def _may_send(self, client_id_or_prefix: str) -> bool:
        """Whether every gate on the id's (or prefix's) chain of prefixes allows it: a market's whole-prefix gate
        (a sweep under way) never opens what its stopped run's own gate closed."""
        gates = self._gates
        if not gates:
            return True
        for length in self._gate_lengths:
            if length > len(client_id_or_prefix):
                break
            gate = gates.get(client_id_or_prefix[:length])
            if gate is not None and not gate():
                return False
        return True

    def _not_sent(self, request: OrderRequest) -> None:
        """A place its market's gate stopped before an attempt: it ends here (if an earlier attempt reached the
        engine after all, it landed while the market could still send, and whoever may send now cancels it)."""
        self._mirror.pop(request.client_order_id, None)
        self._unverified.pop(request.client_order_id, None)
        self._remember_finished(request.client_order_id)
        self._emit(OrderEvent(OrderEventKind.EXPIRED, request.client_order_id, request.symbol,
                              reason="not sent: the market may not send now"))

    # ---- running ----------------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        limits = httpx.Limits(max_connections=self.config.max_connections,
                              max_keepalive_connections=self.config.max_connections)
        async with httpx.AsyncClient(base_url=self.config.endpoint, timeout=self.config.timeout,
                                     limits=limits) as client:
            self._client = client
            self._bucket = _TokenBucket(self.config.rate_limit, self.config.burst)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._batcher)
                    nursery.start_soon(self._stream_loop)
                    nursery.start_soon(self._repair_loop)
                    log.info("match-engine sink: %s (account %s)", self.config.endpoint, self.config.account)
                    task_status.started()
            finally:
                self._client = None
                self._stream_up = False

    # ---- the OrderSink interface ------------------------------------------------------------------------------

    def subscribe(self, symbol: str, prefix: str, listener: Callable[[OrderEvent], None]) -> Subscription:
        return self._listeners.subscribe(symbol, prefix, listener)

    async def place(self, requests: Sequence[OrderRequest]) -> None:
        """Queue *requests* for the next batch. With the circuit open they are rejected at once (they never left)."""
        await trio.lowlevel.checkpoint()
        for request in requests:
            if request.client_order_id in self._mirror:
                continue  # the same order twice: the engine would say duplicate; say nothing
            if self.circuit_open:
                self._emit(OrderEvent(OrderEventKind.REJECTED, request.client_order_id, request.symbol,
                                      reason="match engine unavailable (circuit open)"))
                continue
            if not self._may_send(request.client_order_id):
                self._emit(OrderEvent(OrderEventKind.EXPIRED, request.client_order_id, request.symbol,
                                      reason="not sent: the market may not send now"))
                continue
            self._mirror[request.client_order_id] = _Mirror(request.symbol, request.side, price=request.price,
                                                            quantity=request.quantity)
            self._queue.append(request)
        if self._queue:
            self._queue_wake.set()

    async def cancel(self, symbol: str, client_order_ids: Sequence[str]) -> None:
        """Cancel orders; one still queued is taken out of the queue. A cancel that cannot be sent now is kept
        and sent when the engine is back: this never raises for a transport problem."""
        queued = {r.client_order_id for r in self._queue}
        unqueue = [coid for coid in client_order_ids if coid in queued]
        if unqueue:
            self._queue = [r for r in self._queue if r.client_order_id not in unqueue]
            for coid in unqueue:
                # Our own cancel, not a refusal: the order ends cancelled (pending → cancelled), without a fill.
                self._mirror.pop(coid, None)
                self._emit(OrderEvent(OrderEventKind.CANCELLED, coid, symbol, reason="cancelled before it was sent"))
        to_send = [coid for coid in client_order_ids if coid not in queued and self._may_send(coid)]
        for coid in to_send:
            self._cancel_wanted[coid] = symbol
        if not to_send:
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._send_cancel(symbol, to_send)
        except (SinkUnavailable, EngineRejected, WireError) as exc:
            # Still wanted: the repair loop sends it again.
            log.warning("cancel of %d orders on %s not confirmed yet (%s); will retry", len(to_send), symbol, exc)
            self._resync_needed.set()

    async def amend(self, requests: Sequence[AmendRequest]) -> None:
        """Amend resting orders (:class:`~mmframe.protocols.AmendsOrders`): sent at once, in order, one request per
        symbol and hundred; returns with the answer. Each ends in one ``amended`` or ``amend_rejected``; one whose
        answer never came is settled by asking the engine (see the module docstring)."""
        await trio.lowlevel.checkpoint()
        by_symbol: dict[str, list[AmendRequest]] = {}
        for request in requests:
            coid = request.client_order_id
            mirror = self._mirror.get(coid)
            reason = ""
            if mirror is None or mirror.status is None or mirror.status.is_terminal:
                reason = "the order is not open on the match engine (not acknowledged yet, or finished)"
            elif coid in self._amends_awaited:
                reason = "an amend of this order is under way"
            elif self.circuit_open:
                reason = "match engine unavailable (circuit open)"
            elif not self._may_send(coid):
                reason = "not sent: the market may not send now"
            if reason:
                self._emit(OrderEvent(OrderEventKind.AMEND_REJECTED, coid, request.symbol, reason=reason))
                continue
            self._amends_awaited[coid] = (request.price, request.quantity)
            by_symbol.setdefault(request.symbol, []).append(request)
        for symbol, amends in by_symbol.items():
            for start in range(0, len(amends), 100):
                await self._send_amends(symbol, amends[start : start + 100])

    async def _send_amends(self, symbol: str, amends: list[AmendRequest]) -> None:
        pending = list(amends)
        self._amending.update(a.client_order_id for a in amends)
        self.statistics["amends"] += len(amends)

        def attempt_body() -> Any:
            # An amend whose market's gate closed is not sent (again): refused, the order stands as it was (if an
            # earlier attempt landed after all, the stream or a query tells).
            if self._gates:
                for amend in [a for a in pending if not self._may_send(a.client_order_id)]:
                    pending.remove(amend)
                    self._amend_refused(amend.client_order_id, symbol, "not sent: the market may not send now")
            return amends_to_wire(symbol, self.config.account, pending) if pending else None

        try:
            try:
                data = await self._request("POST", "/api/v1/orders/amend", attempt_body=attempt_body)
            except _NotSent:
                return
            except EngineRejected as exc:  # the request is malformed: nothing was amended
                for amend in pending:
                    self._amend_refused(amend.client_order_id, symbol, str(exc))
                return
            except (SinkUnavailable, WireError) as exc:
                # The amends may or may not have reached the engine: ask it how the orders stand.
                log.warning("amend of %d orders on %s: outcome unknown (%s); will ask the engine", len(pending),
                            symbol, exc)
                self._amend_unknown(pending)
                return
            try:
                self._amend_results(symbol, pending, data)
            except WireError as exc:
                log.warning("amend of %d orders on %s: unreadable answer (%s); will ask the engine", len(pending),
                            symbol, exc)
                self._amend_unknown(pending)
        finally:
            self._amending.difference_update(a.client_order_id for a in amends)

    def _amend_unknown(self, amends: Sequence[AmendRequest]) -> None:
        """Amends whose outcome is unknown: still awaited, so the repair loop asks the engine about their orders
        (:meth:`_unsettled_amends`); one whose order has ended meanwhile was settled by that end."""
        for amend in amends:
            if amend.client_order_id not in self._mirror:
                self._amends_awaited.pop(amend.client_order_id, None)
        self._resync_needed.set()

    def _amend_results(self, symbol: str, amends: Sequence[AmendRequest], data: dict[str, Any]) -> None:
        results = {r.get("client_order_id"): r for r in _list(data, "results") if isinstance(r, dict)}
        unknown = []
        for amend in amends:
            coid = amend.client_order_id
            result = results.get(coid)
            mirror = self._mirror.get(coid)
            if result is None or mirror is None:
                unknown.append(amend)
                continue
            outcome = result.get("result")
            raw = result.get("order")
            order = WireOrder.from_wire(raw) if isinstance(raw, dict) else None
            if order is not None and not self._is_ours(order, mirror.symbol, mirror.side):
                outcome, order = "unknown", None  # another account's order with our id: ours is not on the engine
            if outcome == "amended" and order is not None and order.price is not None:
                self._amended(coid, mirror, order.price, order.quantity, order.filled_quantity, order.order_id,
                              order.amends)
                if coid in self._amends_awaited:  # the engine has other values than we asked for: ask it
                    unknown.append(amend)
            elif outcome in ("rejected", "unknown"):
                reason = str(result.get("reason") or "") or (
                    "the match engine does not know the order" if outcome == "unknown" else "refused"
                )
                self._amend_refused(coid, symbol, reason)
                if outcome == "unknown":
                    # We believe it open and the engine does not know it: ask (gone → expired).
                    self._unverified[coid] = mirror
                    self._resync_needed.set()
            else:
                unknown.append(amend)
        if unknown:
            self._amend_unknown(unknown)

    def _amended(self, coid: str, mirror: _Mirror, price: Decimal, quantity: Decimal, filled: Decimal,
                 order_id: str | None, amends: int | None) -> None:
        """The engine has the order at *price* and *quantity* after *amends* amends (``None``: it did not say). Tell
        the market once per change — the answer, the stream and a query may each report it, in any order — and
        once per amend it waits for; never an older report after a newer one (the stream can lag the answers)."""
        if amends is not None:
            if amends < mirror.amends:
                return  # older news than what we told
            fresh = amends > mirror.amends
        else:
            fresh = (mirror.price, mirror.quantity) != (price, quantity)
        if fresh:
            mirror.price, mirror.quantity = price, quantity
            if amends is not None:
                mirror.amends = amends
        settles = self._amends_awaited.get(coid) == (price, quantity)
        if settles:
            del self._amends_awaited[coid]
        if fresh or settles:
            self._emit(OrderEvent(OrderEventKind.AMENDED, coid, mirror.symbol, filled_quantity=filled,
                                  order_id=order_id, price=price, quantity=quantity))

    def _amend_refused(self, coid: str, symbol: str, reason: str) -> None:
        if self._amends_awaited.pop(coid, None) is not None:
            mirror = self._mirror.get(coid)
            self._emit(OrderEvent(OrderEventKind.AMEND_REJECTED, coid, symbol, reason=reason,
                                  filled_quantity=mirror.filled if mirror is not None else Decimal(0)))

    def _unsettled_amends(self) -> list[str]:
        """Orders whose amend is awaited with no request under way: its answer was lost, the engine must say."""
        return [c for c in self._amends_awaited if c not in self._amending and c in self._mirror]

    async def cancel_all(self, symbol: str, prefix: str = "") -> int:
        body = {"symbol": symbol, "account": self.config.account, "prefix": prefix}
        if not self._may_send(prefix):
            await trio.lowlevel.checkpoint()
            return 0
        try:
            data = await self._request("POST", "/api/v1/orders/cancel-all", body,
                                       attempt_body=lambda: body if self._may_send(prefix) else None)
        except _NotSent:
            return 0
        cancelled = _list(data, "cancelled")
        for coid in cancelled:
            self._cancel_wanted.pop(coid, None)
        return len(cancelled)

    async def open_orders(self, symbol: str, prefix: str = "") -> list[Order]:
        params = {"symbol": symbol, "account": self.config.account, "prefix": prefix}
        data = await self._request("GET", "/api/v1/orders/open", params=params)
        orders = [WireOrder.from_wire(o, f"orders[{i}]") for i, o in enumerate(_list(data, "orders"))]
        # Only ours, whatever the engine sent: another account's order with our prefix is not ours to cancel.
        account = self.config.account
        return [o.to_order() for o in orders if o.account == account and o.client_order_id.startswith(prefix)]

    async def depth(self, symbol: str, limit: int = 20) -> DepthSnapshot:
        data = await self._request("GET", "/api/v1/depth", params={"symbol": symbol, "limit": limit})
        return DepthSnapshot(
            exchange="match-engine",
            symbol=symbol,
            bids=data.get("bids", []),
            asks=data.get("asks", []),
            sequence=int(data.get("sequence", 0)),
        )

    # ---- requests: rate limit, retries, circuit breaker -------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Any = None,
        attempt_body: Callable[[], Any] | None = None,
    ) -> dict[str, Any]:
        """One request with retries. Raises :class:`SinkUnavailable` or :class:`EngineRejected`.

        With *attempt_body*, the body of each attempt is what it returns just before the attempt is sent (after
        the rate limiter's wait): the markets' gates are asked then; ``None`` sends nothing more and raises
        :class:`_NotSent`."""
        client, bucket = self._client, self._bucket
        if client is None or bucket is None:
            raise SinkUnavailable("the match-engine sink is not running")
        delay = self.config.backoff
        for attempt in range(self.config.max_retries + 1):
            if self.circuit_open:
                raise SinkUnavailable(f"match engine {self.config.endpoint} unavailable (circuit open)")
            retry_after: float | None = None
            response = None
            # A connection of the pool is ours before the gates are asked: the attempt - connecting, writing,
            # reading - then fits in one timeout from that moment (BoundsRequestTime), and a busy pool is a wait,
            # not a failure. The rate limiter's token is taken after the slot, so requests that waited for a slot
            # do not all go out at once.
            async with self._attempts:
                await bucket.acquire()
                if attempt_body is not None:
                    body = attempt_body()
                    if body is None:
                        raise _NotSent()
                self.statistics["requests"] += 1
                started = time.perf_counter()
                problem = ""
                try:
                    with trio.move_on_after(self.request_timeout):
                        if body is None:
                            response = await client.request(method, path, params=params)
                        else:
                            response = await client.request(
                                method, path, content=json_dumps(body), headers=_JSON_CONTENT, params=params
                            )
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self.request_latency.observe(time.perf_counter() - started)
            if response is None and not problem:
                problem = f"no answer within {self.request_timeout:g}s"
            if response is not None:
                if response.status_code < 300:
                    self._succeeded()
                    return _json_object(response)
                problem = f"HTTP {response.status_code}: {_error_message(response)}"
                if response.status_code == 429:
                    self.statistics["rate_limited"] += 1
                    retry_after = _retry_after(response.headers.get("retry-after"))
                elif response.status_code < 500:
                    self._succeeded()  # the engine is there; it refused this request
                    raise EngineRejected(f"match engine refused {method} {path}: {problem}")
            if retry_after is None:
                self._failed(problem)
            if attempt == self.config.max_retries:
                raise SinkUnavailable(f"{method} {path} failed {attempt + 1} times, last: {problem}")
            self.statistics["retries"] += 1
            pause = retry_after if retry_after is not None else delay * (0.5 + random.random())
            log.debug("%s %s: %s; retrying in %.2fs", method, path, problem, pause)
            await trio.sleep(pause)
            delay = min(delay * 2, self.config.max_backoff)
        raise AssertionError("unreachable")

    def _succeeded(self) -> None:
        self._failures = 0

    def _failed(self, problem: str) -> None:
        self._failures += 1
        self.statistics["failures"] += 1
        if self._failures >= self.config.breaker_threshold and self._open_until is None:
            self._open_until = trio.current_time() + self.config.breaker_cooldown
            self._closed_event = trio.Event()
            self.statistics["breaker_opened"] += 1
            log.error("match engine %s failing (%s): circuit open, markets hold their orders",
                      self.config.endpoint, problem)

    async def _repair_loop(self) -> None:
        """Probe an open circuit until the engine answers; then verify what was left uncertain, and retry
        cancels that could not be confirmed."""
        cooldown = self.config.breaker_cooldown
        while True:
            if self._open_until is not None:
                await trio.sleep_until(self._open_until)
                if await self._probe():
                    self._open_until = None
                    self._failures = 0
                    cooldown = self.config.breaker_cooldown
                    self._closed_event.set()
                    log.warning("match engine %s answers again: circuit closed", self.config.endpoint)
                else:
                    cooldown = min(cooldown * 2, self.config.max_backoff)
                    self._open_until = trio.current_time() + cooldown
                    continue
            if self._unverified or self._cancel_wanted or self._unsettled_amends():
                try:
                    await self._verify_unknown()
                    await self._retry_cancels()
                except (SinkUnavailable, EngineRejected, WireError) as exc:
                    log.warning("could not settle uncertain orders yet: %s", exc)
            with trio.move_on_after(self.config.breaker_cooldown):
                await self._resync_needed.wait()
            self._resync_needed = trio.Event()

    async def _probe(self) -> bool:
        assert self._client is not None
        try:
            response = await self._client.get("/health")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    # ---- batching ---------------------------------------------------------------------------------------------

    async def _batcher(self) -> None:
        limiter = trio.CapacityLimiter(self.config.max_in_flight)
        async with trio.open_nursery() as nursery:
            while True:
                await self._queue_wake.wait()
                self._queue_wake = trio.Event()
                if self.config.linger:
                    await trio.sleep(self.config.linger)
                while self._queue:
                    batch, self._queue = self._queue[: self.config.max_batch], self._queue[self.config.max_batch :]
                    self._in_flight.update(r.client_order_id for r in batch)
                    token = object()
                    await limiter.acquire_on_behalf_of(token)
                    nursery.start_soon(self._send_batch, batch, limiter, token)

    async def _send_batch(self, batch: list[OrderRequest], limiter: trio.CapacityLimiter, token: object) -> None:
        sent_ids = [r.client_order_id for r in batch]  # the batch shrinks when a gate closes
        try:
            self.statistics["batches"] += 1

            def attempt_body() -> Any:
                # What may still be sent of the batch: an order whose market's gate closed is not sent (again).
                if self._gates:
                    allowed = [r for r in batch if self._may_send(r.client_order_id)]
                    if len(allowed) != len(batch):
                        for request in batch:
                            if request not in allowed:
                                self._not_sent(request)
                        batch[:] = allowed
                return {"orders": [request_to_wire(r, self.config.account) for r in batch]} if batch else None

            try:
                data = await self._request("POST", "/api/v1/orders/batch", attempt_body=attempt_body)
            except _NotSent:
                return
            except EngineRejected as exc:  # the whole batch is malformed: nothing was placed
                for request in batch:
                    self._reject(request, str(exc))
                return
            except SinkUnavailable as exc:
                # The batch may or may not have reached the engine: keep the orders pending until we know.
                log.warning("batch of %d orders: outcome unknown (%s); will ask the engine", len(batch), exc)
                for request in batch:
                    mirror = self._mirror.get(request.client_order_id)
                    if mirror is not None:
                        self._unverified[request.client_order_id] = mirror
                self._resync_needed.set()
                return
            self._batch_results(batch, data)
        finally:
            self._in_flight.difference_update(sent_ids)
            limiter.release_on_behalf_of(token)

    def _batch_results(self, batch: list[OrderRequest], data: dict[str, Any]) -> None:
        results = _list(data, "results")
        by_id = {r.get("client_order_id"): r for r in results if isinstance(r, dict)}
        for request in batch:
            result = by_id.get(request.client_order_id)
            if result is None:
                self._unverified[request.client_order_id] = self._mirror.get(
                    request.client_order_id, _Mirror(request.symbol, request.side)
                )
                continue
            kind = result.get("result")
            known = self._mirror.get(request.client_order_id)
            if kind == "duplicate" and known is not None and known.status is not None:
                # A retried batch whose first attempt landed: the stream (or a query) told us of the order already,
                # for our account, and it may have been amended since; a repeat, nothing new.
                self.statistics["duplicates"] += 1
                continue
            if kind == "rejected":
                self._reject(request, str(result.get("reason") or "rejected by the match engine"))
            elif kind in ("accepted", "duplicate"):
                order = result.get("order")
                foreign = self._foreign(request, order, duplicate=kind == "duplicate")
                if foreign is None:  # a duplicate we cannot check: ask the engine (the query checks it)
                    self._unverified[request.client_order_id] = self._mirror.get(
                        request.client_order_id, _Mirror(request.symbol, request.side)
                    )
                    self._resync_needed.set()
                    continue
                if foreign:
                    # Not our order: our place did not make an order (another account's, or another order, holds
                    # the id). Never take it for ours: we would track, and later cancel, an order not ours.
                    log.warning("order %s refused: %s", request.client_order_id, foreign)
                    self._reject(request, foreign)
                    continue
                if kind == "duplicate":
                    self.statistics["duplicates"] += 1
                # The engine has it. Its fills and its end come on the stream (or, after a gap, from a resync),
                # so that every fill keeps the engine's own trade id; only the acknowledgement is taken here.
                mirror = self._mirror.get(request.client_order_id)
                self._unverified.pop(request.client_order_id, None)
                if mirror is not None and mirror.status is None:
                    order = order or {}
                    mirror.status = OrderStatus.OPEN
                    self._emit(OrderEvent(OrderEventKind.ACCEPTED, request.client_order_id, request.symbol,
                                          order_id=order.get("order_id") if isinstance(order, dict) else None))
                    self._after_event(request.client_order_id, mirror)

    def _is_ours(self, order: WireOrder, symbol: str, side: Side) -> bool:
        """Whether the engine's *order* is our order of that id: our account, and the symbol and side we sent."""
        return order.account == self.config.account and order.symbol == symbol and order.side is side

    def _foreign(self, request: OrderRequest, raw: object, *, duplicate: bool) -> str | None:
        """Why the batch answer's order *raw* for *request* is not our order: "" if it is (or an ``accepted`` answer
        does not say), ``None`` if a ``duplicate`` answer's order cannot be read.

        A ``duplicate`` must be the very order we sent (a retry of it); one of another account, or of another
        symbol, side, type, price or quantity, is somebody else's (an engine that does not scope client ids per
        account, or an id used before)."""
        if not isinstance(raw, dict):
            return None if duplicate else ""
        account = raw.get("account")
        if account is not None and account != self.config.account:
            return f"client order id {request.client_order_id} is used by another account on the match engine"
        if not duplicate:
            return ""
        try:
            order = WireOrder.from_wire(raw)
        except WireError:
            return None
        if not self._is_ours(order, request.symbol, request.side) or (order.type, order.price, order.quantity) != (
            request.type, request.price, request.quantity
        ):
            return f"client order id {request.client_order_id} was used for another order on the match engine"
        return ""

    def _reject(self, request: OrderRequest, reason: str) -> None:
        self._mirror.pop(request.client_order_id, None)
        self._cancel_wanted.pop(request.client_order_id, None)
        self._unverified.pop(request.client_order_id, None)
        self._remember_finished(request.client_order_id)
        self._emit(OrderEvent(OrderEventKind.REJECTED, request.client_order_id, request.symbol, reason=reason))

    # ---- cancels ----------------------------------------------------------------------------------------------

    def _cancel_results(self, data: dict[str, Any]) -> None:
        for result in _list(data, "results"):
            if not isinstance(result, dict):
                continue
            coid = str(result.get("client_order_id"))
            outcome = result.get("result")
            order = result.get("order")
            if isinstance(order, dict) and order.get("account") not in (None, self.config.account):
                outcome = "unknown"  # another account's order with our id: ours is not on the engine
            if outcome in ("cancelled", "not_open"):
                self._cancel_wanted.pop(coid, None)  # the stream brings the order's end
            elif outcome == "unknown":
                mirror = self._mirror.get(coid)
                if mirror is None:
                    self._cancel_wanted.pop(coid, None)  # not an order of ours that can still be open
                elif mirror.status is None:
                    pass  # the place is still on its way; the cancel is sent again once the engine has it
                elif not mirror.status.is_terminal and coid in self._cancel_wanted:
                    # The engine handled the cancel before the batch that placed the order, and we have heard of
                    # the order since (the stream or the batch answer was faster than this answer). The cancel
                    # stays wanted; ask the engine how the order stands: open → cancel again, absent → expired.
                    self._unverified[coid] = mirror
                    self._resync_needed.set()

    async def _retry_cancels(self) -> None:
        by_symbol: dict[str, list[str]] = {}
        for coid, symbol in list(self._cancel_wanted.items()):
            if coid in self._cancelling:
                continue  # its cancel is under way; the answer tells
            mirror = self._mirror.get(coid)
            if coid in self._unverified:
                continue  # asked about first (see _verify_unknown); a cancel follows if it is open
            if mirror is not None and mirror.status is None:
                if coid not in self._in_flight and coid not in self._queue_ids():
                    self._unverified[coid] = mirror  # its batch is settled but we never heard: ask the engine
                continue  # still unconfirmed: cancel once the engine has it
            by_symbol.setdefault(symbol, []).append(coid)
        for symbol, ids in by_symbol.items():
            for start in range(0, len(ids), 100):
                await self._send_cancel(symbol, ids[start : start + 100])

    async def _send_cancel(self, symbol: str, ids: list[str]) -> None:
        """One cancel request for *ids* and its answer; the ids count as being cancelled meanwhile."""
        cancelling = self._cancelling
        for coid in ids:
            cancelling[coid] = cancelling.get(coid, 0) + 1
        pending = list(ids)

        def attempt_body() -> Any:
            # A cancel whose market's gate closed is dropped: whoever may send for the market now cancels.
            if self._gates:
                for coid in [c for c in pending if not self._may_send(c)]:
                    pending.remove(coid)
                    self._cancel_wanted.pop(coid, None)
            if not pending:
                return None
            return {"symbol": symbol, "account": self.config.account, "client_order_ids": pending}

        try:
            data = await self._request("POST", "/api/v1/orders/cancel", attempt_body=attempt_body)
        except _NotSent:
            data = {"results": []}
        finally:
            for coid in ids:
                left = cancelling.pop(coid) - 1
                if left:
                    cancelling[coid] = left
        self._cancel_results(data)

    # ---- the event stream -------------------------------------------------------------------------------------

    async def _stream_loop(self) -> None:
        epoch: str | None = None
        since: int | None = None
        pause = self.config.backoff
        while True:
            await self._closed_event.wait()
            assert self._client is not None
            params: dict[str, Any] = {"account": self.config.account}
            if since is not None and epoch:
                params |= {"since": since, "epoch": epoch}
            timeout = httpx.Timeout(self.config.timeout, read=self.config.stream_stall)
            try:
                async with self._client.stream("GET", "/api/v1/stream", params=params, timeout=timeout) as response:
                    if response.status_code != 200:
                        raise SinkUnavailable(f"event stream: HTTP {response.status_code}")
                    async with aclosing(_lines(response)) as lines:
                        hello = _parse_line(await anext(lines))
                        if hello.get("type") != "hello":
                            raise WireError("event stream: the first line is not a hello")
                        resumed = bool(hello.get("resumed")) and hello.get("epoch") == epoch and since is not None
                        if hello.get("epoch") != epoch:
                            since = None
                        epoch = str(hello.get("epoch"))
                        if not resumed:
                            since = int(hello.get("sequence", 0))
                        self._stream_up = True
                        pause = self.config.backoff
                        if not resumed:
                            await self._resync()
                        async for line in lines:
                            message = _parse_line(line)
                            if message.get("type") == "order":
                                since = int(message["seq"])
                                raw = message.get("event")
                                account = event_account(raw)
                                ours = account is None or account == self.config.account
                                if ours and not self._known_acceptance(raw):
                                    amends = amends_of(raw, "event") if raw.get("kind") == "amended" else None
                                    self._stream_event(*event_from_wire(raw), amends=amends)
                                # else another account's order, even with one of our ids: not ours, not passed on
                            elif message.get("type") == "heartbeat" and since is not None:
                                # every event up to it was sent (the rest are other accounts'): resume from there
                                since = max(since, int(message.get("sequence", since)))
            except (httpx.HTTPError, SinkUnavailable, EngineRejected, WireError, StopAsyncIteration, ValueError,
                    KeyError) as exc:
                if self._stream_up:
                    log.warning("event stream from %s lost: %s", self.config.endpoint, exc or type(exc).__name__)
                self._failed(f"event stream: {exc or type(exc).__name__}")
            finally:
                self._stream_up = False
            if self.circuit_open:
                continue  # reconnect as soon as the probe closes the circuit
            await trio.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, self.config.max_backoff)

    def _known_acceptance(self, raw: object) -> bool:
        """Whether *raw* is an ``accepted`` event of an order of ours whose acceptance we know already (the batch
        answer came first): it changes nothing (see :meth:`_apply`), so it is not read any further; half of the
        stream's events at full speed."""
        if not isinstance(raw, dict) or raw.get("kind") != "accepted":
            return False
        coid = raw.get("client_order_id")
        mirror = self._mirror.get(coid) if isinstance(coid, str) else None
        if mirror is None or mirror.status is None:
            return False
        self._after_event(coid, mirror)
        return True

    def _stream_event(self, event: OrderEvent, side: Side, status: OrderStatus, amends: int | None = None) -> None:
        mirror = self._mirror.get(event.client_order_id)
        if mirror is None:
            if event.client_order_id in self._finished:
                return  # its end was told already (by a query, or the batch's answer): nothing new
            self._emit(event)  # not one this process placed (a leftover, another process): pass it on
            return
        if event.kind is OrderEventKind.AMENDED:
            if event.price is not None and event.quantity is not None and not (
                mirror.status is not None and mirror.status.is_terminal
            ):
                self._amended(event.client_order_id, mirror, event.price, event.quantity, event.filled_quantity,
                              event.order_id, amends)
            self._after_event(event.client_order_id, mirror)
            return
        fresh = self._apply(mirror, event.kind, event.filled_quantity, status,
                            None if event.fill is None else event.fill.price * event.fill.quantity)
        if fresh:
            self._emit(event)
        self._after_event(event.client_order_id, mirror)

    def _apply(
        self, mirror: _Mirror, kind: OrderEventKind, filled: Decimal, status: OrderStatus, notional: Decimal | None
    ) -> bool:
        """Update *mirror* with an event; False if it says nothing new (a replay or an earlier resync said it)."""
        if mirror.status is not None and mirror.status.is_terminal:
            return False
        if kind is OrderEventKind.ACCEPTED:
            if mirror.status is not None:
                return False
            mirror.status = OrderStatus.OPEN
            return True
        if kind in (OrderEventKind.PARTIALLY_FILLED, OrderEventKind.FILLED):
            if filled <= mirror.filled:
                return False
            mirror.filled = filled
            mirror.notional += notional or Decimal(0)
            mirror.status = status
            return True
        mirror.status = status
        return True

    def _after_event(self, coid: str, mirror: _Mirror) -> None:
        self._unverified.pop(coid, None)
        if mirror.status is not None and mirror.status.is_terminal:
            self._mirror.pop(coid, None)
            self._cancel_wanted.pop(coid, None)
            self._remember_finished(coid)
            if coid not in self._amending:
                self._amend_refused(coid, mirror.symbol, f"the order is {mirror.status}")
        elif coid in self._cancel_wanted and coid not in self._cancelling:
            self._resync_needed.set()  # a cancel that arrived before the order did: send it again now

    def _remember_finished(self, coid: str) -> None:
        self._finished[coid] = None
        if len(self._finished) > REMEMBER_FINISHED:
            self._finished.popitem(last=False)

    # ---- resynchronisation ------------------------------------------------------------------------------------

    async def _resync(self) -> None:
        """After a gap in the stream: ask the engine how each of our unfinished orders stands."""
        if not self._mirror:
            return
        self.statistics["resyncs"] += 1
        await self._query_and_reconcile(list(self._mirror))

    async def _verify_unknown(self) -> None:
        for coid in [c for c in self._unverified if c not in self._mirror]:
            del self._unverified[coid]  # settled meanwhile
        ids = list(self._unverified)
        ids += [c for c in self._unsettled_amends() if c not in self._unverified]
        if ids:
            await self._query_and_reconcile(ids)

    async def _query_and_reconcile(self, ids: Iterable[str]) -> None:
        by_symbol: dict[str, list[str]] = {}
        for coid in ids:
            mirror = self._mirror.get(coid)
            if mirror is not None:
                by_symbol.setdefault(mirror.symbol, []).append(coid)
        for symbol, coids in by_symbol.items():
            for start in range(0, len(coids), 100):
                chunk = coids[start : start + 100]
                body = {"symbol": symbol, "account": self.config.account, "client_order_ids": chunk}
                data = await self._request("POST", "/api/v1/orders/query", body)
                orders = _list(data, "orders")
                for coid, raw in zip(chunk, orders, strict=False):
                    order = None if raw is None else WireOrder.from_wire(raw)
                    mirror = self._mirror.get(coid)
                    if order is None or mirror is None or not self._is_ours(order, mirror.symbol, mirror.side):
                        self._unknown_to_engine(coid)  # another account's order with our id is not ours
                    else:
                        self._reconcile_order(coid, order)

    def _unknown_to_engine(self, coid: str) -> None:
        mirror = self._mirror.get(coid)
        if mirror is None:
            return
        if mirror.status is None:
            if coid in self._in_flight or coid in self._queue_ids():
                return  # still waiting for its batch (or for its answer): the batch settles it
            reason, kind = "never reached the match engine", OrderEventKind.REJECTED
            mirror.status = OrderStatus.REJECTED
        else:
            reason, kind = "the match engine no longer knows this order", OrderEventKind.EXPIRED
            mirror.status = OrderStatus.EXPIRED
        self._emit(OrderEvent(kind, coid, mirror.symbol, filled_quantity=mirror.filled, reason=reason))
        self._after_event(coid, mirror)

    def _queue_ids(self) -> set[str]:
        return {r.client_order_id for r in self._queue}

    def _reconcile_order(self, coid: str, order: WireOrder) -> None:
        """Bring our view of one order up to the engine's state, emitting the events we missed."""
        mirror = self._mirror.get(coid)
        if mirror is None:
            return
        if mirror.status is None and order.status is not OrderStatus.REJECTED:
            self._apply(mirror, OrderEventKind.ACCEPTED, Decimal(0), OrderStatus.OPEN, None)
            self._emit(OrderEvent(OrderEventKind.ACCEPTED, coid, order.symbol, order_id=order.order_id))
        if order.price is not None:
            # Amended since we last heard (the answer, or the stream's event, was lost): the order as the engine has
            # it; an amend awaited with no request under way that the engine does not show never reached it.
            self._amended(coid, mirror, order.price, order.quantity, mirror.filled, order.order_id, order.amends)
            if coid in self._amends_awaited and coid not in self._amending:
                self._amend_refused(coid, order.symbol, "the amend did not reach the match engine")
        if order.filled_quantity > mirror.filled:
            quantity = order.filled_quantity - mirror.filled
            price = (order.filled_notional - mirror.notional) / quantity
            complete = order.filled_quantity == order.quantity
            kind = OrderEventKind.FILLED if complete else OrderEventKind.PARTIALLY_FILLED
            fill = Fill(f"resync-{coid}-{order.filled_quantity}", coid, order.symbol, order.side,
                        price=price, quantity=quantity, liquidity=Liquidity.MAKER, timestamp=time.time())
            self._apply(mirror, kind, order.filled_quantity, OrderStatus.FILLED if complete else
                        OrderStatus.PARTIALLY_FILLED, order.filled_notional - mirror.notional)
            self._emit(OrderEvent(kind, coid, order.symbol, filled_quantity=order.filled_quantity,
                                  order_id=order.order_id, fill=fill))
        if order.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED) and not (
            mirror.status is not None and mirror.status.is_terminal
        ):
            kind = {OrderStatus.CANCELLED: OrderEventKind.CANCELLED, OrderStatus.EXPIRED: OrderEventKind.EXPIRED,
                    OrderStatus.REJECTED: OrderEventKind.REJECTED}[order.status]
            mirror.status = order.status
            self._emit(OrderEvent(kind, coid, order.symbol, filled_quantity=order.filled_quantity,
                                  order_id=order.order_id, reason=order.reason))
        self._after_event(coid, mirror)

    def _emit(self, event: OrderEvent) -> None:
        self._listeners.emit(event)


#: Client ids of finished orders the sink remembers, to tell a late repetition of an order's end from news.
REMEMBER_FINISHED = 20_000


# ---- helpers ---------------------------------------------------------------------------------------------------


_JSON_CONTENT = {"Content-Type": "application/json"}
_DECODER = msgspec.json.Decoder()  # answers and stream lines: JSON as the standard library reads it, faster


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = _DECODER.decode(response.content)
    except ValueError as exc:
        raise WireError(f"the match engine answered {response.request.url.path} with invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WireError(f"the match engine answered {response.request.url.path} with a non-object")
    return data


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise WireError(f"the match engine's answer has no list {key!r}")
    return value


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        return f"{error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        return response.text[:200]


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value), 0.0), 60.0) if value is not None else 1.0
    except ValueError:
        return 1.0


async def _lines(response: httpx.Response) -> AsyncIterator[bytes]:
    """The stream's non-empty lines, as bytes (``aiter_lines`` decodes every chunk to text first)."""
    rest = b""
    async for chunk in response.aiter_bytes():
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.strip():
                yield line
    if rest.strip():
        yield rest


def _parse_line(line: bytes) -> dict[str, Any]:
    data = _DECODER.decode(line)
    if not isinstance(data, dict):
        raise WireError("event stream: a line is not a JSON object")
    return data
