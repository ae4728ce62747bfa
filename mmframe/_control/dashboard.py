"""The web dashboard: a page at ``/`` (shipped in the package, no build step), its live stream and its reads.

- ``GET /`` serves ``dashboard/index.html``; ``GET /dashboard/{app.js,app.css}`` its script and style. Every answer
  carries a Content-Security-Policy without inline scripts or styles: the page builds its DOM from text nodes.
- ``GET /api/v1/dashboard/markets``: one row per market (state, index, our best quotes, inventory, PnL, fills,
  orders a second, feed age, the sink's state, the owner in a cluster).
- ``GET /api/v1/dashboard/stream``: server-sent events: a ``snapshot`` of every row, then every second a ``delta``
  of the rows that changed, each with its id and only the fields that changed (at 1,000 markets a second's delta
  is what moved, not the whole table).
- ``GET /api/v1/dashboard/market?id=…``: one market: our ladder, the local book's depth, its history this session
  (index, PnL, inventory, sampled every second, bounded), its recent fills and order events, its strategy's status
  and its effective config.

Reads follow the API's own rules (no token); the page's actions are the API's mutating endpoints, with the token.
"""

from __future__ import annotations

import json
import math
import time
from array import array
from collections import deque
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from importlib import resources
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .._engine.spec import MarketStatus
from .._hookspecs import hookimpl
from .._models import Fill, Market, MarketKey, Order, OrderEvent, Side
from .._service.service import MarketRecord, Service
from ..protocols import KeepsLocalBooks, ReportsDegraded

__all__ = ["Dashboard", "dashboard_routes"]

#: Seconds between two samples of every market (the history) and two deltas of the stream.
SAMPLE_INTERVAL = 1.0
#: Samples of history kept per market (an hour at one a second).
HISTORY = 3_600
#: Recent order events and fills kept per market.
RECENT = 100
#: Levels of our ladder and of the local book a market's view shows per side.
LEVELS = 20

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def _age(seconds: float | None) -> float | None:
    """A feed's age to the half second (whole seconds beyond ten)."""
    if seconds is None or not math.isfinite(seconds):
        return None
    return round(seconds * 2) / 2 if seconds < 10 else float(round(seconds))


class Dashboard:
    """What the dashboard shows beyond the API's figures: per market, a bounded history and the recent order events
    and fills (an observer of the engine's order_event hook), and the figures of the previous sample (orders a
    second)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.history: dict[str, History] = {}
        self.events: dict[MarketKey, deque[tuple[OrderEvent, Side, Decimal | None, Decimal]]] = {}
        self.fills: dict[MarketKey, deque[Fill]] = {}
        self._orders: dict[str, tuple[float, int]] = {}  # id -> (when, orders placed + cancelled) at the last sample
        self.rates: dict[str, float] = {}
        #: Every market's row as of the latest sample, shared by every open stream (at 1,000 markets a row set
        #: costs tens of milliseconds: made once a second, not once per browser tab); and an event set at each.
        self.latest: list[dict[str, Any]] = []
        self.sampled = trio.Event()

    # ---- the engine's hooks ------------------------------------------------------------------------------------

    @hookimpl
    def order_event(self, market: Market, event: OrderEvent, order: Order) -> None:
        """Keep the event (on every order event of the service: a tuple appended, the rest done when a page asks)."""
        key = market.key
        recent = self.events.get(key)
        if recent is None:
            recent = self.events[key] = deque(maxlen=RECENT)
        recent.append((event, order.side, order.price, order.quantity))
        if event.fill is not None:
            fills = self.fills.get(key)
            if fills is None:
                fills = self.fills[key] = deque(maxlen=RECENT)
            fills.append(event.fill)

    # ---- sampling ----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Sample every market every :data:`SAMPLE_INTERVAL` seconds until cancelled."""
        while True:
            self.sample()
            sampled, self.sampled = self.sampled, trio.Event()
            sampled.set()
            await trio.sleep(SAMPLE_INTERVAL)

    def sample(self) -> None:
        now = time.time()
        records = self.service.records
        for gone in [market_id for market_id in self.history if market_id not in records]:
            del self.history[gone]  # a market no longer configured keeps nothing here
            self._orders.pop(gone, None)
            self.rates.pop(gone, None)
        keys = {record.spec.key for record in records.values() if record.spec is not None}
        for recent in (self.events, self.fills):
            for key in [key for key in recent if key not in keys]:
                del recent[key]
        rows = []
        for record in list(records.values()):
            status = self.service.status_of(record)
            rows.append((record, status))
            if status is None:
                continue
            history = self.history.get(record.id)
            if history is None:
                history = self.history[record.id] = History()
            index = float(status.index_price) if status.index_price is not None else math.nan
            history.add(now, index, float(status.pnl), float(status.position))
            count = status.orders_placed + status.orders_cancelled + status.orders_amended  # messages
            before = self._orders.get(record.id)
            if before is not None and now > before[0]:
                self.rates[record.id] = max(0.0, (count - before[1]) / (now - before[0]))
            self._orders[record.id] = (now, count)
        self.latest = [self._row(record, status) for record, status in rows]

    # ---- rows --------------------------------------------------------------------------------------------------

    def _ours(self, record: MarketRecord) -> tuple[list[list[str]], list[list[str]]]:
        """Our resting orders, best first, as [price, quantity] pairs (none for a market not run here)."""
        if record.spec is None:
            return [], []
        runner = self.service.manager.runner(record.spec.key)
        if runner is None:
            return [], []
        sides: dict[Side, list[list[str]]] = {Side.BUY: [], Side.SELL: []}
        for order in runner.tracker.quoting():
            if order.price is not None:
                sides[order.side].append([str(order.price), str(order.remaining_quantity)])
        return sides[Side.BUY][:LEVELS], sides[Side.SELL][:LEVELS]

    def row(self, record: MarketRecord) -> dict[str, Any]:
        """*record*'s row now."""
        return self._row(record, self.service.status_of(record))

    def _row(self, record: MarketRecord, status: MarketStatus | None) -> dict[str, Any]:
        """*record*'s row from its *status* (a sample reads each market's status once)."""
        service = self.service
        bids, asks = self._ours(record)
        bid = bids[0][0] if bids else None
        ask = asks[0][0] if asks else None
        spread = str(Decimal(ask) - Decimal(bid)) if bid is not None and ask is not None else None
        sink = service.manager.sink
        degraded = isinstance(sink, ReportsDegraded) and sink.degraded
        return {
            "id": record.id,
            "symbol": record.symbol,
            "market_type": record.row.market_type,
            "state": service.state_of(record),
            "strategy": record.row.strategy_name,
            "index_price": _text(status.index_price) if status is not None else None,
            "bid": bid,
            "ask": ask,
            "spread": spread,
            "inventory": str(status.position) if status is not None else "0",
            "pnl": str(status.pnl) if status is not None else "0",
            "fills": status.fills if status is not None else 0,
            # rounded, so that a row changes (and is in a delta) when a figure moves, not at every sample
            "orders_per_s": _rounded(self.rates.get(record.id), 1),
            "feed_age": _age(status.index_age) if status is not None else None,
            "sink": "degraded" if degraded else "ok",
            "error": (record.error or (status.error if status is not None else "")),
            "owner": service.owner_of(record) if service.cluster is not None else None,
        }

    def rows(self) -> list[dict[str, Any]]:
        return [self.row(record) for record in self.service.records.values()]

    def markets(self) -> dict[str, Any]:
        service = self.service
        cluster = service.cluster
        return {
            "markets": self.rows(),
            "cluster": None if cluster is None else {"instance": cluster.member,
                                                     "instances": len(cluster.describe().get("instances", []))},
            "time": time.time(),
        }

    async def market(self, record: MarketRecord) -> dict[str, Any]:
        service = self.service
        bids, asks = self._ours(record)
        book: dict[str, list[list[str]]] = {"bids": [], "asks": []}
        sink = service.manager.sink
        if isinstance(sink, KeepsLocalBooks) and record.spec is not None:
            levels = sink.book(record.symbol).depth(LEVELS)
            book = {"bids": [[str(p), str(q)] for p, q in levels[0]], "asks": [[str(p), str(q)] for p, q in levels[1]]}
        history = self.history.get(record.id) or History()
        key = record.spec.key if record.spec is not None else None
        status = service.status_of(record)
        return {
            "row": self.row(record),
            "ladder": {"bids": bids, "asks": asks},
            "book": book,
            "history": history.columns(),
            "events": [_event_row(*entry) for entry in reversed(self.events.get(key, ()))] if key else [],
            "fills": [_fill_row(fill) for fill in reversed(self.fills.get(key, ()))] if key else [],
            "strategy_status": _jsonable(status.strategy_status) if status is not None else {},
            "config": _jsonable(record.row.effective_config),
        }


class History:
    """A market's samples this session, as columns of machine numbers (about 20 bytes a sample: an hour of a
    thousand markets is about 90 MB, where tuples of floats took seven times that), at most :data:`HISTORY` kept
    (trimmed in chunks)."""

    __slots__ = ("index", "inventory", "pnl", "t")

    def __init__(self) -> None:
        self.t = array("d")
        self.index = array("f")
        self.pnl = array("f")
        self.inventory = array("f")

    def __len__(self) -> int:
        return len(self.t)

    def add(self, t: float, index: float, pnl: float, inventory: float) -> None:
        self.t.append(t)
        self.index.append(index)
        self.pnl.append(pnl)
        self.inventory.append(inventory)
        if len(self.t) > HISTORY + HISTORY // 4:
            for column in (self.t, self.index, self.pnl, self.inventory):
                del column[: len(column) - HISTORY]

    def columns(self) -> dict[str, list[float | None]]:
        start = max(0, len(self.t) - HISTORY)

        def finite(column: array[float]) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in column[start:]]

        return {"t": list(self.t[start:]), "index": finite(self.index), "pnl": finite(self.pnl),
                "inventory": finite(self.inventory)}


def _event_row(event: OrderEvent, side: Side, price: Decimal | None, quantity: Decimal) -> dict[str, Any]:
    fill = event.fill
    return {
        "t": event.timestamp, "kind": str(event.kind), "client_order_id": event.client_order_id, "side": str(side),
        "price": _text(fill.price if fill is not None else price),
        "quantity": _text(fill.quantity if fill is not None else quantity), "reason": event.reason,
    }


def _fill_row(fill: Fill) -> dict[str, Any]:
    return {"t": fill.timestamp, "side": str(fill.side), "price": str(fill.price), "quantity": str(fill.quantity),
            "fee": str(fill.fee), "liquidity": str(fill.liquidity)}


def _changes(before: dict[str, Any] | None, row: dict[str, Any]) -> dict[str, Any]:
    """What of *row* differs from *before*, with its id (all of it for a new row): what a delta sends."""
    if before is None:
        return row
    return {"id": row["id"], **{key: value for key, value in row.items() if before.get(key) != value}}


def _jsonable(value: Any) -> Any:
    """*value* as JSON can carry it: decimals and anything else as text, a non-finite float (a strategy's status
    may hold one) as ``null`` (a browser's JSON parser refuses ``NaN``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def _dashboard(request: Request) -> Dashboard:
    return request.app.state.dashboard  # type: ignore[no-any-return]


def _page(name: str) -> bytes:
    return resources.files("mmframe._control").joinpath("dashboard", name).read_bytes()


async def index(request: Request) -> Response:
    return Response(_page("index.html"), media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    media = STATIC.get(name)
    try:
        body = _page(name) if media is not None else None
    except FileNotFoundError:
        body = None
    if body is None:
        return Response("not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
    return Response(body, media_type=media, headers=SECURITY_HEADERS)


def _ok(data: Any) -> Response:
    body = json.dumps({"code": 0, "message": "Success", "data": data}, default=str, allow_nan=False)
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


async def markets(request: Request) -> Response:
    return _ok(_dashboard(request).markets())


async def market(request: Request) -> Response:
    from .app import ApiError

    market_id = request.query_params.get("id", "")
    record = _dashboard(request).service.records.get(market_id)
    if record is None:
        raise ApiError(404, f"no market with id {market_id[:40]!r}")
    return _ok(await _dashboard(request).market(record))


async def stream(request: Request) -> Response:
    dashboard = _dashboard(request)

    async def events() -> AsyncIterator[str]:
        snapshot = dashboard.markets()
        last = {row["id"]: row for row in snapshot["markets"]}
        yield f"event: snapshot\ndata: {json.dumps(snapshot, default=str)}\n\n"
        closed = dashboard.service.closed
        while not closed.is_set():
            with trio.move_on_after(SAMPLE_INTERVAL * 3):  # the next sample (or, should sampling stall, anyway)
                sampled = dashboard.sampled
                async with trio.open_nursery() as nursery:
                    async def stop_on_close() -> None:
                        await closed.wait()
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(stop_on_close)
                    await sampled.wait()
                    nursery.cancel_scope.cancel()
            if closed.is_set():
                return
            rows = {row["id"]: row for row in dashboard.latest or dashboard.rows()}
            changed = [_changes(last.get(market_id), row) for market_id, row in rows.items()
                       if last.get(market_id) != row]
            removed = [market_id for market_id in last if market_id not in rows]
            last = rows
            delta = {"changed": changed, "removed": removed, "time": time.time()}
            yield f"event: delta\ndata: {json.dumps(delta, default=str)}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def dashboard_routes() -> list[Route]:
    return [
        Route("/", index, methods=["GET"]),
        Route("/dashboard/{name}", static, methods=["GET"]),
        Route("/api/v1/dashboard/markets", markets, methods=["GET"]),
        Route("/api/v1/dashboard/market", market, methods=["GET"]),
        Route("/api/v1/dashboard/stream", stream, methods=["GET"]),
    ]

