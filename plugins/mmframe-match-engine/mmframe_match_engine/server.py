"""The reference match engine: every endpoint of ``docs/match-engine-api.md`` on hypercorn's trio worker.

:class:`Engine` holds the state (one :class:`mmframe.book.OrderBook` per symbol, the event sequence, the replay
buffer, the stream subscribers) and does the work; :func:`create_app` puts the HTTP API in front of it and
:func:`serve_engine` serves it. The state lives in the :class:`Engine`, not in the server: stopping
:func:`serve_engine` and starting it again with the same engine (on the same port) simulates an outage of the
network path while the engine keeps its books.

For tests and operations the engine has plain attributes that change how the API answers (see :class:`Engine`):
a rate limit, forced 503s and 429s, a delay between executing and answering, and a record of every request.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mmframe import Liquidity, OrderEventKind, OrderRequest, OrderStatus
from mmframe.book import OrderBook, OrderState, SubmitResult, TakerFlow, Trade, TradeParty

from .wire import (
    CLIENT_ORDER_ID_PATTERN,
    MAX_AMENDS,
    MAX_BATCH_ORDERS,
    WireAmend,
    WireError,
    WireOrder,
    account_from_wire,
    amends_from_wire,
    decimal_to_wire,
    default_account,
    error_body,
    json_dumps,
    json_loads,
    request_from_wire,
    symbol_from_wire,
    type_to_wire,
)

__all__ = [
    "AmendResult",
    "CancelResult",
    "Engine",
    "PlaceResult",
    "StreamLine",
    "StreamSubscription",
    "create_app",
    "serve_engine",
    "stream_line",
]

log = logging.getLogger("mmframe.match_engine")

SIM_ACCOUNT = "sim"
MAX_BODY_BYTES = 1 << 20  # 1 MiB
MAX_IDS = 1000  # client order ids per cancel or query request
MAX_DEPTH_LIMIT = 1000
_REQUEST_LOG_CAP = 100_000  # Engine.requests keeps at most this many (the oldest half is dropped beyond)


@attrs.frozen
class PlaceResult:
    """The result for one order of a batch: ``accepted``, ``rejected`` or ``duplicate``."""

    client_order_id: str
    result: str
    reason: str
    order: WireOrder | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "result": self.result,
            "reason": self.reason,
            "order": None if self.order is None else self.order.to_wire(),
        }


@attrs.frozen
class CancelResult:
    """The result for one id of a cancel: ``cancelled``, ``not_open`` or ``unknown``."""

    client_order_id: str
    result: str
    order: WireOrder | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "result": self.result,
            "order": None if self.order is None else self.order.to_wire(),
        }


@attrs.frozen
class AmendResult:
    """The result for one entry of an amend: ``amended`` (``kept_priority``: the order kept its place in its
    queue), ``rejected`` (``reason`` says why) or ``unknown``. (The engine's answer, not the book's
    :class:`mmframe.book.AmendResult`.)"""

    client_order_id: str
    result: str
    reason: str
    kept_priority: bool
    order: WireOrder | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "result": self.result,
            "reason": self.reason,
            "kept_priority": self.kept_priority,
            "order": None if self.order is None else self.order.to_wire(),
        }


#: One line of the event stream as the engine sends it: ``(seq, account, data)``, where *data* is the line already
#: encoded (UTF-8 JSON and its newline) and *account* whose order the event is about. Encoded once, when the event
#: happens, for every subscriber and the replay buffer alike.
StreamLine = tuple[int, str, bytes]


def stream_line(line: StreamLine) -> dict[str, Any]:
    """*line*'s JSON object (``{"type": "order", "seq": ..., "epoch": ..., "event": {...}}``), for tests and tools."""
    return json_loads(line[2])  # type: ignore[no-any-return]


@attrs.frozen
class StreamSubscription:
    """One stream client: its ``hello`` line, the lines to replay, then live lines from ``receive``.

    ``receive`` ends (``EndOfChannel``) when the engine dropped the subscriber for falling too far behind. Lines are
    :data:`StreamLine` tuples (:func:`stream_line` reads one).
    """

    hello: dict[str, Any]
    replay: list[StreamLine]
    receive: trio.MemoryReceiveChannel[StreamLine]
    send: trio.MemorySendChannel[StreamLine] = attrs.field(repr=False)


def _client_id(key: str) -> str:
    """The client order id of a book key (``"{account}/{client_order_id}"``, see :meth:`Engine.order_key`)."""
    return key.partition("/")[2] or key


def _wire_order(symbol: str, state: OrderState | WireOrder) -> WireOrder:
    if isinstance(state, WireOrder):
        return state
    return WireOrder(
        client_order_id=_client_id(state.client_order_id),
        account=state.owner,
        order_id=state.order_id,
        symbol=symbol,
        side=state.side,
        type=state.type,
        price=state.price,
        quantity=state.quantity,
        filled_quantity=state.filled_quantity,
        filled_notional=state.filled_notional,
        status=state.status,
        reason=state.reason,
        amends=state.amends,
    )


def _order_to_wire(symbol: str, state: OrderState | WireOrder | None) -> dict[str, Any] | None:
    """The contract's order object of *state*, straight from the book's state: ``_wire_order(symbol,
    state).to_wire()`` without the :class:`WireOrder` in between (the answer to a batch carries one per order)."""
    if state is None:
        return None
    if isinstance(state, WireOrder):
        return state.to_wire()
    kind, tif, post_only = type_to_wire(state.type)
    price = state.price
    return {
        "client_order_id": _client_id(state.client_order_id),
        "account": state.owner,
        "order_id": state.order_id,
        "symbol": symbol,
        "side": str(state.side),
        "type": kind,
        "time_in_force": tif,
        "post_only": post_only,
        "price": None if price is None else decimal_to_wire(price),
        "quantity": decimal_to_wire(state.quantity),
        "filled_quantity": decimal_to_wire(state.filled_quantity),
        "filled_notional": decimal_to_wire(state.filled_notional),
        "status": str(state.status),
        "reason": state.reason,
        "amends": state.amends,
    }


def _finite_non_negative(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
    return value


class Engine:
    """The reference match engine's state and operations (no HTTP here; see :func:`create_app`).

    State: ``epoch`` (a random hex id of this engine run), ``books`` (one :class:`OrderBook` per symbol, made on
    first use; an order's key in its book is ``"{account}/{client_order_id}"``, see :meth:`order_key`), ``seq``
    (the last event sequence number, shared by all symbols), ``replay`` (the last
    ``replay_size`` stream lines, each a :data:`StreamLine`), and the stream subscribers.

    What the engine remembers for long (finished orders in the books, client ids, the replay buffer) is kept as
    strings, bytes and numbers in a few containers, never as an object per entry: the garbage collector has nothing
    to walk in it. (The replay buffer as ``(seq, line)`` pairs of dicts was some 300,000 objects that every full
    collection walked, and each new line a tuple the next young collection had to look at.)

    Test and operations hooks, plain attributes to set at any time:

    - ``rate_limit``: requests per second over a sliding 1 s window on ``/api/`` paths; beyond it the answer is
      429 ``rate_limited`` with ``Retry-After: 1``. 0 (the default) turns it off.
    - ``fail_next``: the next N *mutating* requests (``orders/batch``, ``orders/cancel``, ``orders/cancel-all``,
      ``orders/amend``) answer ``fail_status`` (503 ``unavailable`` by default) without executing anything.
    - ``force_429_next``: the next N mutating requests answer 429 with ``Retry-After: <retry_after>`` (seconds;
      a fraction such as ``0.2`` is written as is) without executing anything. Checked before ``fail_next``.
    - ``delay_after_execute``: seconds to sleep after executing a mutating request and before answering it: the
      request has taken effect even if the client gave up waiting.
    - ``heartbeat_interval``: seconds between stream heartbeats (the contract wants at most 1).
    - ``requests``: ``(trio.current_time(), path)`` of every HTTP request received, oldest first (capped: beyond
      100,000 the oldest half is dropped).
    """

    def __init__(
        self,
        *,
        taker_flow_rate: float = 0.0,
        taker_size_fraction: float = 0.3,
        seed: int | None = None,
        rate_limit: float = 0.0,
        replay_size: int = 100_000,
        subscriber_buffer: int = 10_000,
        remember_finished: int = 100_000,
        remember_ids: int = 200_000,
        heartbeat_interval: float = 0.5,
    ) -> None:
        self.taker_flow_rate = _finite_non_negative("taker_flow_rate", taker_flow_rate)
        self.rate_limit = _finite_non_negative("rate_limit", rate_limit)
        if replay_size < 1 or subscriber_buffer < 1 or remember_ids < 1:
            raise ValueError("replay_size, subscriber_buffer and remember_ids must be at least 1")
        if not 0 < heartbeat_interval <= 1:
            raise ValueError(f"heartbeat_interval must be in (0, 1] seconds, got {heartbeat_interval!r}")
        self.epoch = secrets.token_hex(8)
        self.books: dict[str, OrderBook] = {}
        self.seq = 0
        # The replay buffer: the last replay_size lines (sequence numbers are consecutive, the last is self.seq) and,
        # beside them, whose order each is about. Bytes and strings: nothing per line for the collector.
        self._replay_data: collections.deque[bytes] = collections.deque(maxlen=replay_size)
        self._replay_account: collections.deque[str] = collections.deque(maxlen=replay_size)
        self.subscriber_buffer = subscriber_buffer
        self.remember_finished = remember_finished
        self.remember_ids = remember_ids
        self.heartbeat_interval = heartbeat_interval
        # test / ops hooks
        self.fail_next = 0
        self.fail_status = 503
        self.force_429_next = 0
        self.retry_after = 1.0
        self.delay_after_execute = 0.0
        self.requests: list[tuple[float, str]] = []
        # internals
        # each subscriber's channel -> the account whose events it gets (None: every account's)
        self._subscribers: dict[trio.MemorySendChannel[StreamLine], str | None] = {}
        # order key (account and client order id) -> the symbol it was first used on (bounded). An OrderedDict:
        # forgetting the oldest of a plain dict (next(iter(d))) walks past every slot deleted before it, tens of µs
        # per order once full.
        self._id_symbol: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._window: collections.deque[float] = collections.deque()  # admitted request times (rate limit)
        self._takers = TakerFlow(taker_flow_rate, taker_size_fraction, seed)
        self._sim_ids = itertools.count(1)
        self._running = False

    # ---------------------------------------------------------------------------------------------------------
    # Orders
    # ---------------------------------------------------------------------------------------------------------

    def book(self, symbol: str) -> OrderBook:
        """*symbol*'s book, made on first use."""
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = OrderBook(symbol, remember_finished=self.remember_finished)
        return book

    @staticmethod
    def order_key(account: str, client_order_id: str) -> str:
        """The key of *account*'s order *client_order_id* in its book. Client order ids are scoped per account, as
        on real exchanges: two accounts may use one id, and every request acts on its own account's orders only.
        (``/`` never appears in an account or a client id.)"""
        return f"{account}/{client_order_id}"

    def place(self, batch: Sequence[tuple[OrderRequest, str]]) -> list[PlaceResult]:
        """Place ``(request, account)`` pairs in order; one result each. Publishes their events."""
        out = []
        for request, account in batch:
            coid, result, reason, symbol, order = self._place_one(request, account)
            out.append(PlaceResult(coid, result, reason, _wire_order(symbol, order)))
        return out

    def place_wire(self, batch: Sequence[tuple[OrderRequest, str]]) -> list[dict[str, Any]]:
        """:meth:`place`, each result as the contract's result object (what ``POST /api/v1/orders/batch``
        answers), built straight from the book's state."""
        out = []
        for request, account in batch:
            coid, result, reason, symbol, order = self._place_one(request, account)
            out.append(
                {"client_order_id": coid, "result": result, "reason": reason, "order": _order_to_wire(symbol, order)}
            )
        return out

    def _place_one(self, request: OrderRequest, account: str) -> tuple[str, str, str, str, OrderState | WireOrder]:
        """``(client_order_id, result, reason, symbol, order)`` of one order."""
        coid = request.client_order_id
        key = self.order_key(account, coid)
        symbol = request.symbol
        first_symbol = self._id_symbol.get(key)
        if first_symbol is not None and first_symbol != symbol:
            # Client order ids are unique per account on the engine, not per symbol.
            other = self.books.get(first_symbol)
            existing = other.get(key) if other is not None else None
            if existing is not None:
                return coid, "duplicate", "duplicate client order id", first_symbol, existing
            reason = f"client order id already used on {first_symbol}"
            return coid, "rejected", reason, symbol, self._unbooked(request, account, reason)
        result = self.book(symbol).submit(
            client_order_id=key,
            owner=account,
            side=request.side,
            type=request.type,
            price=request.price,
            quantity=request.quantity,
        )
        if result.duplicate:
            return coid, "duplicate", "duplicate client order id", symbol, result.order
        if first_symbol is None:
            self._id_symbol[key] = symbol
            if len(self._id_symbol) > self.remember_ids:
                self._id_symbol.popitem(last=False)  # the oldest
        if result.rejected:
            return coid, "rejected", result.reason, symbol, result.order
        self._publish_submit(symbol, result)
        return coid, "accepted", "", symbol, result.order

    @staticmethod
    def _unbooked(request: OrderRequest, account: str, reason: str) -> WireOrder:
        return WireOrder(
            client_order_id=request.client_order_id,
            account=account,
            order_id="",
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            price=request.price,
            quantity=request.quantity,
            filled_quantity=Decimal(0),
            filled_notional=Decimal(0),
            status=OrderStatus.REJECTED,
            reason=reason,
        )

    def _key_of(self, account: str | None, client_order_id: str) -> str:
        return self.order_key(default_account(client_order_id) if account is None else account, client_order_id)

    def cancel(self, symbol: str, client_order_ids: Sequence[str], account: str | None = None) -> list[CancelResult]:
        """Cancel *account*'s orders by client id: ``cancelled`` (with a ``cancelled`` event), ``not_open`` or
        ``unknown`` (another account's order with that id is unknown). *account* ``None``: each id's default account
        (:func:`~.wire.default_account`), as for a place that names none."""
        return [
            CancelResult(coid, result, None if state is None else _wire_order(symbol, state))
            for coid, result, state in self._cancel(symbol, client_order_ids, account)
        ]

    def cancel_wire(
        self, symbol: str, client_order_ids: Sequence[str], account: str | None = None
    ) -> list[dict[str, Any]]:
        """:meth:`cancel`, each result as the contract's result object (what ``POST /api/v1/orders/cancel``
        answers)."""
        return [
            {"client_order_id": coid, "result": result, "order": _order_to_wire(symbol, state)}
            for coid, result, state in self._cancel(symbol, client_order_ids, account)
        ]

    def _cancel(
        self, symbol: str, client_order_ids: Sequence[str], account: str | None
    ) -> list[tuple[str, str, OrderState | None]]:
        book = self.books.get(symbol)
        out: list[tuple[str, str, OrderState | None]] = []
        for coid in client_order_ids:
            key = self._key_of(account, coid)
            state = book.cancel(key) if book is not None else None
            if state is not None:
                self._publish_cancelled(symbol, state)
                out.append((coid, "cancelled", state))
                continue
            known = book.get(key) if book is not None else None
            out.append((coid, "unknown", None) if known is None else (coid, "not_open", known))
        return out

    def amend(self, symbol: str, amends: Sequence[WireAmend], account: str | None = None) -> list[AmendResult]:
        """Amend *account*'s orders on *symbol*, in order, each against the book the ones before it left: ``amended``
        (with an ``amended`` event if the order changed), ``rejected`` or ``unknown`` (another account's order with
        that id is unknown). *account* ``None``: each id's default account, as for a cancel."""
        return [
            AmendResult(coid, result, reason, kept, None if state is None else _wire_order(symbol, state))
            for coid, result, reason, kept, state in self._amend(symbol, amends, account)
        ]

    def amend_wire(self, symbol: str, amends: Sequence[WireAmend], account: str | None = None) -> list[dict[str, Any]]:
        """:meth:`amend`, each result as the contract's result object (what ``POST /api/v1/orders/amend``
        answers)."""
        return [
            {
                "client_order_id": coid,
                "result": result,
                "reason": reason,
                "kept_priority": kept,
                "order": _order_to_wire(symbol, state),
            }
            for coid, result, reason, kept, state in self._amend(symbol, amends, account)
        ]

    def _amend(
        self, symbol: str, amends: Sequence[WireAmend], account: str | None
    ) -> list[tuple[str, str, str, bool, OrderState | None]]:
        """``(client_order_id, result, reason, kept_priority, order)`` of each amend. The book does the matching
        rules (:meth:`OrderBook.amend`); an amend that changes nothing answers ``amended``, keeps the order's place
        and publishes nothing (a retried amend is harmless)."""
        book = self.books.get(symbol)
        out: list[tuple[str, str, str, bool, OrderState | None]] = []
        for amend in amends:
            coid = amend.client_order_id
            owner = default_account(coid) if account is None else account
            key = self.order_key(owner, coid)
            state = book.get(key) if book is not None else None
            if book is None or state is None:
                out.append((coid, "unknown", "", False, None))
                continue
            if not state.is_open:
                out.append((coid, "rejected", f"the order is not open ({state.status})", False, state))
                continue
            price = state.price if amend.price is None else amend.price
            quantity = state.quantity if amend.quantity is None else amend.quantity
            if price == state.price and quantity == state.quantity:
                out.append((coid, "amended", "", True, state))
                continue
            result = book.amend(key, price=amend.price, quantity=amend.quantity, owner=owner)
            if not result.accepted or result.order is None:
                current = result.order if result.order is not None else book.get(key)
                out.append((coid, "rejected", result.reason, False, current))
                continue
            self._publish_amended(symbol, result.order)
            out.append((coid, "amended", "", result.kept_priority, result.order))
        return out

    def _open_states(self, book: OrderBook, prefix: str, account: str | None) -> list[OrderState]:
        if account is not None:
            return book.open_orders(self.order_key(account, prefix))
        return [state for state in book.open_orders() if _client_id(state.client_order_id).startswith(prefix)]

    def cancel_all(self, symbol: str, prefix: str = "", account: str | None = None) -> list[str]:
        """Cancel every open order of *account* on *symbol* whose client id starts with *prefix*; their ids.
        *account* ``None`` (operators and tests, never the HTTP API): every account's."""
        book = self.books.get(symbol)
        if book is None:
            return []
        cancelled = []
        for state in self._open_states(book, prefix, account):
            done = book.cancel(state.client_order_id)
            if done is not None:
                cancelled.append(done)
                self._publish_cancelled(symbol, done)
        return [_client_id(state.client_order_id) for state in cancelled]

    def open_orders(self, symbol: str, prefix: str = "", account: str | None = None) -> list[WireOrder]:
        """*account*'s open orders on *symbol* whose client id starts with *prefix*, in arrival order. *account*
        ``None`` (operators and tests, never the HTTP API): every account's."""
        book = self.books.get(symbol)
        if book is None:
            return []
        return [_wire_order(symbol, state) for state in self._open_states(book, prefix, account)]

    def query(
        self, symbol: str, client_order_ids: Sequence[str], account: str | None = None
    ) -> list[WireOrder | None]:
        """The current state of each of *account*'s ids on *symbol* (finished orders too), ``None`` for an unknown
        one (another account's order with that id is unknown). *account* ``None``: each id's default account."""
        book = self.books.get(symbol)
        out: list[WireOrder | None] = []
        for coid in client_order_ids:
            state = book.get(self._key_of(account, coid)) if book is not None else None
            out.append(None if state is None else _wire_order(symbol, state))
        return out

    def depth(self, symbol: str, limit: int = 20) -> dict[str, Any]:
        """The contract's depth object (an unknown symbol has an empty book; none is made for it)."""
        book = self.books.get(symbol)
        if book is None:
            return {"symbol": symbol, "sequence": 0, "bids": [], "asks": []}
        bids, asks = book.depth(limit)
        return {
            "symbol": symbol,
            "sequence": book.sequence,
            "bids": [[decimal_to_wire(p), decimal_to_wire(q)] for p, q in bids],
            "asks": [[decimal_to_wire(p), decimal_to_wire(q)] for p, q in asks],
        }

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "epoch": self.epoch, "sequence": self.seq}

    # ---------------------------------------------------------------------------------------------------------
    # Events
    # ---------------------------------------------------------------------------------------------------------

    def subscribe(
        self, since: int | None = None, epoch: str | None = None, account: str | None = None
    ) -> StreamSubscription:
        """A new stream subscriber. With *since*, the events after it are replayed (``resumed: true``) unless the
        engine cannot: *epoch* given and not ours, *since* ahead of ``seq``, or older than the replay buffer.
        With *account*, only that account's orders' events are replayed and sent."""
        replay: list[StreamLine] = []
        resumed = False
        if since is not None and (epoch is None or epoch == self.epoch) and 0 <= since <= self.seq:
            oldest = self.seq - len(self._replay_data) + 1
            if since + 1 >= oldest or since == self.seq:
                resumed = True
                replay = [
                    line for line in self._replay_after(since) if account is None or line[1] == account
                ]
        send, receive = trio.open_memory_channel[StreamLine](self.subscriber_buffer)
        self._subscribers[send] = account
        hello = {"type": "hello", "epoch": self.epoch, "sequence": self.seq, "resumed": resumed}
        return StreamSubscription(hello=hello, replay=replay, receive=receive, send=send)

    @property
    def replay(self) -> list[StreamLine]:
        """The replay buffer's lines, oldest first."""
        return self._replay_after(self.seq - len(self._replay_data))

    def _replay_after(self, since: int) -> list[StreamLine]:
        first = self.seq - len(self._replay_data) + 1  # the oldest line's sequence number
        skip = max(0, since + 1 - first)
        return [
            (first + skip + i, account, data)
            for i, (account, data) in enumerate(
                zip(
                    itertools.islice(self._replay_account, skip, None),
                    itertools.islice(self._replay_data, skip, None),
                    strict=True,
                )
            )
        ]

    def unsubscribe(self, subscription: StreamSubscription) -> None:
        self._subscribers.pop(subscription.send, None)
        subscription.send.close()
        subscription.receive.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def _publish(
        self,
        kind: OrderEventKind,
        symbol: str,
        state: OrderState,
        status: OrderStatus,
        filled_quantity: Decimal,
        *,
        reason: str = "",
        timestamp: float,
        amended: bool = False,
    ) -> None:
        """The event of *state*'s order (``event_to_wire``'s object, built without an :class:`OrderEvent`); with
        *amended*, the order's (new) ``price`` and ``quantity`` too."""
        account = state.owner
        event = {
            "kind": str(kind),
            "client_order_id": _client_id(state.client_order_id),
            "account": account,
            "order_id": state.order_id,
            "symbol": symbol,
            "side": str(state.side),
            "status": str(status),
            "filled_quantity": decimal_to_wire(filled_quantity),
            "reason": reason,
            "timestamp": timestamp,
        }
        if amended:
            assert state.price is not None
            event["price"] = decimal_to_wire(state.price)
            event["quantity"] = decimal_to_wire(state.quantity)
            event["amends"] = state.amends
        self._publish_event(event, account)

    def _publish_event(self, event: dict[str, Any], account: str) -> None:
        """Number *event* (the contract's event object), encode its line once, keep it for replay, send it."""
        self.seq = seq = self.seq + 1
        data = json_dumps({"type": "order", "seq": seq, "epoch": self.epoch, "event": event}) + b"\n"
        self._replay_data.append(data)
        self._replay_account.append(account)
        if not self._subscribers:
            return
        line = (seq, account, data)
        for send, only in list(self._subscribers.items()):
            if only is not None and only != account:
                continue
            try:
                send.send_nowait(line)
            except trio.WouldBlock:
                # Never block the engine for a slow reader: drop it; it reconnects with ``since``.
                log.warning("stream subscriber fell %d events behind; disconnecting it", self.subscriber_buffer)
                self._subscribers.pop(send, None)
                send.close()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.pop(send, None)

    def _publish_submit(self, symbol: str, result: SubmitResult) -> None:
        """accepted, then per trade the incoming order's taker fill and the maker's fill, then expired."""
        state = result.order
        now = time.time()
        self._publish(
            OrderEventKind.ACCEPTED,
            symbol,
            state,
            OrderStatus.OPEN,
            Decimal(0),
            timestamp=now,
        )
        for trade in result.trades:
            taker_done = trade.taker.filled_quantity == state.quantity
            self._publish_fill(trade, trade.taker, taker_done, now)
            self._publish_fill(trade, trade.maker, trade.maker_filled, now)
        if result.expired_quantity > 0:
            self._publish(
                OrderEventKind.EXPIRED,
                symbol,
                state,
                OrderStatus.EXPIRED,
                state.filled_quantity,
                reason=state.reason,
                timestamp=now,
            )

    def _publish_fill(self, trade: Trade, party: TradeParty, complete: bool, now: float) -> None:
        """*party*'s fill of *trade* (``Trade.fill_event``, as the contract's event object)."""
        self._publish_event(
            {
                "kind": str(OrderEventKind.FILLED if complete else OrderEventKind.PARTIALLY_FILLED),
                "client_order_id": _client_id(party.client_order_id),
                "account": party.owner,
                "order_id": party.order_id,
                "symbol": trade.symbol,
                "side": str(party.side),
                "status": str(OrderStatus.FILLED if complete else OrderStatus.PARTIALLY_FILLED),
                "filled_quantity": decimal_to_wire(party.filled_quantity),
                "reason": "",
                "timestamp": now,
                "fill": {
                    "trade_id": trade.trade_id,
                    "price": decimal_to_wire(trade.price),
                    "quantity": decimal_to_wire(trade.quantity),
                    "liquidity": str(Liquidity.MAKER if party is trade.maker else Liquidity.TAKER),
                },
            },
            party.owner,
        )

    def _publish_cancelled(self, symbol: str, state: OrderState) -> None:
        self._publish(
            OrderEventKind.CANCELLED,
            symbol,
            state,
            OrderStatus.CANCELLED,
            state.filled_quantity,
            reason=state.reason,
            timestamp=time.time(),
        )

    def _publish_amended(self, symbol: str, state: OrderState) -> None:
        """The order's new price and quantity; its status is unchanged."""
        self._publish(
            OrderEventKind.AMENDED,
            symbol,
            state,
            state.status,
            state.filled_quantity,
            timestamp=time.time(),
            amended=True,
        )

    # ---------------------------------------------------------------------------------------------------------
    # Rate limit and simulated participants
    # ---------------------------------------------------------------------------------------------------------

    def admit(self) -> bool:
        """Count one request against ``rate_limit``; False if it is over the limit (and not counted)."""
        if self.rate_limit <= 0:
            return True
        now = trio.current_time()
        window = self._window
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= self.rate_limit:
            return False
        window.append(now)
        return True

    def record_request(self, path: str) -> None:
        self.requests.append((trio.current_time(), path))
        if len(self.requests) > _REQUEST_LOG_CAP:
            del self.requests[: _REQUEST_LOG_CAP // 2]

    async def run(self) -> None:
        """The engine's background work until cancelled: the simulated taker flow, if ``taker_flow_rate > 0``.

        Runs once per engine: a second concurrent call just waits.
        """
        if self._running or self.taker_flow_rate <= 0:
            await trio.sleep_forever()
        self._running = True
        try:
            await self._takers.run(self.books.values, self.simulate_taker)
        finally:
            self._running = False

    def simulate_taker(self, symbol: str) -> PlaceResult | None:
        """Send one simulated taker order (account ``sim``, client id ``sim-<n>``) against *symbol*'s best level
        now: a market order or an IOC at the best price, of a random side with resting orders, for a random part
        (up to ``taker_size_fraction``) of the level. ``None`` if the book is empty."""
        book = self.books.get(symbol)
        order = self._takers.order_for(book) if book is not None else None
        if order is None:
            return None
        coid = f"{SIM_ACCOUNT}-{next(self._sim_ids)}"
        while (key := self.order_key(SIM_ACCOUNT, coid)) in self._id_symbol or key in book:
            coid = f"{SIM_ACCOUNT}-{next(self._sim_ids)}"
        request = OrderRequest(
            client_order_id=coid,
            symbol=symbol,
            side=order.side,
            type=order.type,
            quantity=order.quantity,
            price=order.price,
        )
        return self.place([(request, SIM_ACCOUNT)])[0]


# ---------------------------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer in the contract's format."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer, encoded with msgspec (Starlette's ``JSONResponse`` uses the standard library's encoder)."""
    return Response(json_dumps(data), status_code=status, headers=headers, media_type="application/json")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(error_body(code, message), status, headers)


def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


async def _read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object, at most ``MAX_BODY_BYTES``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ApiError(413, "too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")
    if not body:
        raise WireError("the body must be a JSON object")
    data = json_loads(bytes(body))
    if not isinstance(data, dict):
        raise WireError("the body must be a JSON object")
    return data


def _symbol_of(value: object, field: str = "symbol") -> str:
    return symbol_from_wire(value, field)


def _prefix_of(value: object, field: str = "prefix") -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 64:
        raise WireError(f"{field}: must be a string of at most 64 characters")
    return value


def _account_of(value: object, field: str = "account") -> str | None:
    """The request's ``account`` (whose orders it acts on), ``None`` if it names none."""
    return None if value is None or value == "" else account_from_wire(value, field)


def _prefix_account(value: object, prefix: str) -> str:
    """The account of a request by prefix: its ``account``, or else the prefix's part before its first ``-`` (the
    default account of the ids it selects). A request that names neither is refused: it would act for nobody."""
    account = _account_of(value)
    if account is not None:
        return account
    if "-" not in prefix or prefix.startswith("-"):
        raise WireError('account: required (or a prefix whose part before its first "-" names the account)')
    return default_account(prefix)


def _ids_of(data: dict[str, Any]) -> list[str]:
    ids = data.get("client_order_ids")
    if not isinstance(ids, list):
        raise WireError("client_order_ids: must be a list of client order ids")
    if len(ids) > MAX_IDS:
        raise ApiError(413, "too_large", f"client_order_ids: at most {MAX_IDS} ids per request, got {len(ids)}")
    for i, coid in enumerate(ids):
        if not isinstance(coid, str) or not CLIENT_ORDER_ID_PATTERN.fullmatch(coid):
            raise WireError(
                f"client_order_ids[{i}]: must be 1 to 64 characters of [A-Za-z0-9._:-], "
                f"got {json.dumps(coid, default=str)}"
            )
    return ids


async def _before_mutating(engine: Engine) -> None:
    if engine.force_429_next > 0:
        engine.force_429_next -= 1
        raise ApiError(429, "rate_limited", "rate limited (forced)", {"Retry-After": _seconds(engine.retry_after)})
    if engine.fail_next > 0:
        engine.fail_next -= 1
        status = engine.fail_status
        code = "internal" if status == 500 else "unavailable"
        raise ApiError(status, code, "the engine is unavailable (forced); nothing was executed")


async def _after_mutating(engine: Engine) -> None:
    if engine.delay_after_execute > 0:
        await trio.sleep(engine.delay_after_execute)


async def place_batch(request: Request) -> Response:
    engine = _engine(request)
    await _before_mutating(engine)
    data = await _read_json(request)
    orders = data.get("orders")
    if not isinstance(orders, list):
        raise WireError("orders: must be a list of orders")
    if len(orders) > MAX_BATCH_ORDERS:
        raise ApiError(413, "too_large", f"orders: at most {MAX_BATCH_ORDERS} orders per batch, got {len(orders)}")
    batch = [request_from_wire(order, f"orders[{i}]") for i, order in enumerate(orders)]  # all or nothing
    results = engine.place_wire(batch)
    await _after_mutating(engine)
    return _json({"results": results})


async def cancel(request: Request) -> Response:
    engine = _engine(request)
    await _before_mutating(engine)
    data = await _read_json(request)
    symbol = _symbol_of(data.get("symbol"))
    ids = _ids_of(data)
    results = engine.cancel_wire(symbol, ids, _account_of(data.get("account")))
    await _after_mutating(engine)
    return _json({"results": results})


async def cancel_all(request: Request) -> Response:
    engine = _engine(request)
    await _before_mutating(engine)
    data = await _read_json(request)
    symbol = _symbol_of(data.get("symbol"))
    prefix = _prefix_of(data.get("prefix"))
    cancelled = engine.cancel_all(symbol, prefix, _prefix_account(data.get("account"), prefix))
    await _after_mutating(engine)
    return _json({"cancelled": cancelled})


async def amend(request: Request) -> Response:
    engine = _engine(request)
    await _before_mutating(engine)
    data = await _read_json(request)
    symbol = _symbol_of(data.get("symbol"))
    account = _account_of(data.get("account"))
    entries = data.get("amends")
    if isinstance(entries, list) and len(entries) > MAX_AMENDS:
        raise ApiError(413, "too_large", f"amends: at most {MAX_AMENDS} amends per request, got {len(entries)}")
    amends = amends_from_wire(entries)  # all or nothing
    results = engine.amend_wire(symbol, amends, account)
    await _after_mutating(engine)
    return _json({"results": results})


async def open_orders(request: Request) -> Response:
    params = request.query_params
    symbol = _symbol_of(params.get("symbol"))
    prefix = _prefix_of(params.get("prefix"))
    orders = _engine(request).open_orders(symbol, prefix, _prefix_account(params.get("account"), prefix))
    return _json({"orders": [o.to_wire() for o in orders]})


async def query(request: Request) -> Response:
    data = await _read_json(request)
    symbol = _symbol_of(data.get("symbol"))
    ids = _ids_of(data)
    orders = _engine(request).query(symbol, ids, _account_of(data.get("account")))
    return _json({"orders": [None if o is None else o.to_wire() for o in orders]})


def _int_param(request: Request, name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise WireError(f"{name}: must be a whole number ≥ {low}, got {json.dumps(raw)}")
    value = int(raw)
    if value < low or (high is not None and value > high):
        raise WireError(f"{name}: must be from {low} to {high}, got {value}")
    return value


async def depth(request: Request) -> Response:
    symbol = _symbol_of(request.query_params.get("symbol"))
    limit = _int_param(request, "limit", 20, 0, MAX_DEPTH_LIMIT)
    assert limit is not None
    return _json(_engine(request).depth(symbol, limit))


async def stream(request: Request) -> Response:
    engine = _engine(request)
    since = _int_param(request, "since", None, 0)
    epoch = request.query_params.get("epoch") or None
    account = _account_of(request.query_params.get("account"))
    return StreamingResponse(
        _stream_lines(engine, since, epoch, account),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-cache"},
    )


def _dump(line: dict[str, Any]) -> bytes:
    return json_dumps(line) + b"\n"


async def _stream_lines(
    engine: Engine, since: int | None, epoch: str | None, account: str | None = None
) -> AsyncIterator[bytes]:
    """hello, the replay, then live events and a heartbeat every ``heartbeat_interval``. Ends when the engine
    drops the subscriber (too slow); cancelled when the client disconnects or the server stops. With *account*,
    only that account's events.

    A heartbeat's ``sequence`` is the engine's when nothing is waiting to be sent to this client (every event up to
    it was sent or is another account's), else the last one sent: a client may resume from it.

    No ``yield`` happens inside a cancel scope (a trio rule for async generators)."""
    subscription = engine.subscribe(since, epoch, account)
    try:
        last_seq: int = subscription.hello["sequence"]
        yield _dump(subscription.hello)
        replay = subscription.replay
        for start in range(0, len(replay), 1000):
            yield b"".join([line[2] for line in replay[start : start + 1000]])
        next_beat = trio.current_time() + engine.heartbeat_interval
        ended = False
        while not ended:
            lines: list[StreamLine] = []
            with trio.move_on_at(next_beat):
                try:
                    lines.append(await subscription.receive.receive())
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    ended = True
            while lines and len(lines) < 1000:
                try:
                    lines.append(subscription.receive.receive_nowait())
                except trio.WouldBlock:
                    break
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    ended = True
                    break
            if lines:
                last_seq = lines[-1][0]
                yield b"".join([line[2] for line in lines])
            if not ended and trio.current_time() >= next_beat:
                if subscription.receive.statistics().current_buffer_used == 0:
                    last_seq = max(last_seq, engine.seq)
                yield _dump({"type": "heartbeat", "sequence": last_seq})
                next_beat = trio.current_time() + engine.heartbeat_interval
    finally:
        engine.unsubscribe(subscription)


async def health(request: Request) -> Response:
    return _json(_engine(request).health())


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error(exc.status, exc.code, exc.message, exc.headers)


async def _wire_error(request: Request, exc: Exception) -> Response:
    return _error(400, "bad_request", str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {}) or None
    if exc.status_code == 404:
        return _error(404, "not_found", f"no endpoint {request.url.path}", headers)
    if exc.status_code == 405:
        return _error(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}", headers)
    code = "bad_request" if exc.status_code < 500 else "internal"
    return _error(exc.status_code, code, str(exc.detail), headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("match engine: %s %s failed", request.method, request.url.path)
    return _error(500, "internal", "internal error (logged)")


class _Gate:
    """Records every request and applies ``rate_limit`` to ``/api/`` paths, before routing."""

    def __init__(self, app: ASGIApp, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            self.engine.record_request(path)
            if path.startswith("/api/") and not self.engine.admit():
                limit = self.engine.rate_limit
                response = _error(429, "rate_limited", f"more than {limit:g} requests per second", {"Retry-After": "1"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(engine: Engine) -> Starlette:
    """The match-engine API of ``docs/match-engine-api.md`` over *engine*."""
    routes = [
        Route("/api/v1/orders/batch", place_batch, methods=["POST"]),
        Route("/api/v1/orders/cancel", cancel, methods=["POST"]),
        Route("/api/v1/orders/cancel-all", cancel_all, methods=["POST"]),
        Route("/api/v1/orders/amend", amend, methods=["POST"]),
        Route("/api/v1/orders/open", open_orders, methods=["GET"]),
        Route("/api/v1/orders/query", query, methods=["POST"]),
        Route("/api/v1/depth", depth, methods=["GET"]),
        Route("/api/v1/stream", stream, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: _api_error,
        WireError: _wire_error,
        HTTPException: _http_error,
        Exception: _server_error,
    }
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_Gate, engine=engine)],
        exception_handlers=handlers,
    )
    app.state.engine = engine
    return app


async def serve_engine(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *engine* over HTTP and run its background work until cancelled; reports the bound URLs (port 0
    picks a free port). Cancelling it closes the listening socket, so a new server may bind the same port at
    once (hypercorn sets ``SO_REUSEADDR``)."""
    config = HypercornConfig()
    bind_host = f"[{host}]" if ":" in host else host
    config.bind = [f"{bind_host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("mmframe.match_engine.http")  # type: ignore[assignment]
    config.graceful_timeout = 1.0
    app = create_app(engine)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(serve, app, config)
        for bind in binds:
            log.info("Match engine listening on %s", bind)
        nursery.start_soon(engine.run)
        task_status.started(binds)
