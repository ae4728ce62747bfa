"""A fake Binance for tests, on loopback sockets: the Spot market streams and the two REST endpoints the feed reads.

:class:`FakeBinance` serves Binance's combined market streams over a real WebSocket (trio-websocket) on
``127.0.0.1``, port 0; use its ``url`` as the feed's ``ws_url``::

    fake = FakeBinance()
    url = await nursery.start(fake.serve)  # "ws://127.0.0.1:<port>"
    feed = BinanceFeed(BinanceFeed.Config(ws_url=url))
    await nursery.start(feed.run)
    feed.subscribe("BTCUSDT", listener)
    await fake.wait_until(lambda: "btcusdt@bookTicker" in fake.subscriptions)
    await fake.book_ticker("BTCUSDT", "30000.10", "30000.20")

It accepts ``/stream?streams=a/b/...`` (any other path is refused with HTTP 404, like a wrong path on Binance),
keeps each connection's streams, answers ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` as Binance does
(``{"result": null, "id": n}``), and records every connection's path (:attr:`FakeBinance.paths`) and every client
message (:attr:`FakeBinance.received`). :meth:`FakeBinance.book_ticker`, :meth:`~FakeBinance.trade` and
:meth:`~FakeBinance.depth` send Binance's documented payloads, wrapped in ``{"stream", "data"}``, to the connections
subscribed to the stream. Trouble on demand: :meth:`~FakeBinance.send_raw` (any frame), :meth:`~FakeBinance.close_all`,
:attr:`~FakeBinance.silence` (connections are accepted but the fake sends nothing at all, replies included),
:meth:`~FakeBinance.reply_error` (the next ``SUBSCRIBE`` is answered with an error) and
:meth:`~FakeBinance.ping_all`, which returns once every connection answered a ping.

:class:`FakeBinanceRest` serves ``GET /api/v3/ticker/price`` and ``GET /api/v3/depth`` (hypercorn, port 0) from
prices and books a test sets, for the feed's ``rest_snapshot``.

Waiting is event-driven (:meth:`FakeBinance.wait_until`), so tests run on trio's ``MockClock``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

__all__ = ["FakeBinance", "FakeBinanceRest", "ReceivedMessage"]

Number = str | Decimal | int  # sent as str(value): "30000.10", Decimal("30000.10"), 30000


@attrs.frozen
class ReceivedMessage:
    """One message a client sent to :class:`FakeBinance`.

    :param at: ``trio.current_time()`` when it arrived.
    :param connection: which connection sent it: an index into :attr:`FakeBinance.paths`.
    :param text: the frame (a binary frame decoded as UTF-8 with replacement).
    :param data: the frame parsed as JSON, or ``None`` if it is not JSON.
    """

    at: float
    connection: int
    text: str
    data: Any


@attrs.define(eq=False)
class _Connection:
    number: int
    ws: WebSocketConnection
    streams: set[str]


class FakeBinance:
    """Binance's Spot market-stream WebSocket, in-process on ``127.0.0.1`` (see the module docstring).

    :attr:`url` is ``ws://127.0.0.1:<port>`` once :meth:`serve` started. :attr:`paths` holds the requested path of
    every connection in the order they came, :attr:`received` every message clients sent. Set :attr:`silence` to
    make the fake send nothing at all (no data, no replies, no pings) while it keeps accepting connections.
    """

    def __init__(self) -> None:
        self.url = ""
        self.paths: list[str] = []
        self.received: list[ReceivedMessage] = []
        self.silence = False
        self._error: tuple[int, str] | None = None
        self._open: dict[int, _Connection] = {}
        self._changed = trio.Event()
        self._update_id = 1000
        self._trade_id = 0

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``await nursery.start(fake.serve)`` returns :attr:`url`."""
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, self._handle, "127.0.0.1", 0, None)
            self.url = f"ws://127.0.0.1:{server.port}"
            task_status.started(self.url)

    # -- what the tests look at ---------------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._open)

    @property
    def subscriptions(self) -> frozenset[str]:
        """The streams of every open connection, together."""
        return frozenset(stream for connection in self._open.values() for stream in connection.streams)

    def requests(self, method: str) -> list[Any]:
        """The params of every ``method`` request received (``"SUBSCRIBE"``, ``"UNSUBSCRIBE"``), in order."""
        return [
            m.data.get("params") for m in self.received if isinstance(m.data, dict) and m.data.get("method") == method
        ]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once *predicate()* is true, checking it again whenever the fake's state changes (a connection
        opened or closed, a message received and answered)."""
        while not predicate():
            await self._changed.wait()

    # -- what the tests do --------------------------------------------------------------------------------------

    def reply_error(self, code: int, msg: str) -> None:
        """Answer the next ``SUBSCRIBE`` with ``{"error": {"code": code, "msg": msg}, "id": n}`` (and ignore it)."""
        self._error = (code, msg)

    async def book_ticker(self, symbol: str, bid: Number, ask: Number, *, bid_qty: Number = "1.00000000",
                          ask_qty: Number = "1.00000000") -> int:
        """Send a ``<symbol>@bookTicker`` update; returns how many connections it went to."""
        self._update_id += 1
        data = {"u": self._update_id, "s": symbol.upper(), "b": str(bid), "B": str(bid_qty), "a": str(ask),
                "A": str(ask_qty)}
        stream = f"{symbol.lower()}@bookTicker"
        return await self._push(lambda name: name == stream, data)

    async def trade(self, symbol: str, price: Number, qty: Number, *, buyer_maker: bool = False) -> int:
        """Send a ``<symbol>@trade`` event; returns how many connections it went to."""
        self._trade_id += 1
        now = int(time.time() * 1000)
        data = {"e": "trade", "E": now, "s": symbol.upper(), "t": self._trade_id, "p": str(price), "q": str(qty),
                "T": now, "m": buyer_maker}
        stream = f"{symbol.lower()}@trade"
        return await self._push(lambda name: name == stream, data)

    async def depth(self, symbol: str, bids: Iterable[tuple[Number, Number]], asks: Iterable[tuple[Number, Number]],
                    levels: int = 5, *, last_update_id: int | None = None) -> int:
        """Send a partial-depth snapshot on ``<symbol>@depth<levels>`` (and ``...@100ms``), levels as given;
        returns how many connections it went to."""
        if last_update_id is None:
            self._update_id += 1
            last_update_id = self._update_id
        data = {"lastUpdateId": last_update_id, "bids": [[str(p), str(q)] for p, q in bids],
                "asks": [[str(p), str(q)] for p, q in asks]}
        stream = f"{symbol.lower()}@depth{levels}"
        return await self._push(lambda name: name == stream or name.startswith(stream + "@"), data)

    async def send_raw(self, message: str | bytes) -> int:
        """Send *message* as it is (a ``bytes`` one as a binary frame) to every connection."""
        if self.silence:
            return 0
        sent = 0
        for connection in list(self._open.values()):
            sent += await _send(connection.ws, message)
        return sent

    async def close_all(self, code: int = 1000) -> int:
        """Close every connection with *code* (waits for the clients' close frames); returns how many."""
        connections = list(self._open.values())
        for connection in connections:
            await connection.ws.aclose(code)
        return len(connections)

    async def ping_all(self) -> int:
        """Ping every connection and return once each answered with a pong; returns how many were pinged."""
        if self.silence:
            return 0
        pinged = 0
        for connection in list(self._open.values()):
            try:
                await connection.ws.ping()
            except ConnectionClosed:
                continue
            pinged += 1
        return pinged

    # -- internals ----------------------------------------------------------------------------------------------

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _push(self, matches: Callable[[str], bool], data: dict[str, Any]) -> int:
        if self.silence:
            return 0
        sent = 0
        for connection in list(self._open.values()):
            for stream in sorted(s for s in connection.streams if matches(s)):
                sent += await _send(connection.ws, json.dumps({"stream": stream, "data": data}, separators=(",", ":")))
        return sent

    async def _handle(self, request: WebSocketRequest) -> None:
        number = len(self.paths)
        self.paths.append(request.path)
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") != "/stream":
            await request.reject(404, body=b'{"code":-1,"msg":"only combined streams: /stream?streams=..."}')
            self._signal()
            return
        streams = {s for value in parse_qs(parts.query).get("streams", []) for s in value.split("/") if s}
        ws = await request.accept()
        connection = self._open[number] = _Connection(number, ws, streams)
        self._signal()
        try:
            while True:
                message = await ws.get_message()
                await self._on_client_message(connection, message)
                self._signal()
        except ConnectionClosed:
            pass
        finally:
            del self._open[number]
            self._signal()

    async def _on_client_message(self, connection: _Connection, message: str | bytes) -> None:
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        self.received.append(ReceivedMessage(at=trio.current_time(), connection=connection.number, text=text,
                                             data=data))
        if self.silence:
            return
        if not isinstance(data, dict):
            await self._reply(connection, {"error": {"code": 3, "msg": "Invalid JSON"}, "id": None})
            return
        method, params, request_id = data.get("method"), data.get("params"), data.get("id")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                await self._reply(connection, {"error": {"code": 2, "msg": "Invalid request"}, "id": request_id})
                return
            if method == "SUBSCRIBE" and self._error is not None:
                code, msg = self._error
                self._error = None
                await self._reply(connection, {"error": {"code": code, "msg": msg}, "id": request_id})
                return
            if method == "SUBSCRIBE":
                connection.streams.update(params)
            else:
                connection.streams.difference_update(params)
            await self._reply(connection, {"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            await self._reply(connection, {"result": sorted(connection.streams), "id": request_id})
        else:
            await self._reply(connection, {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
                                           "id": request_id})

    async def _reply(self, connection: _Connection, reply: dict[str, Any]) -> None:
        await _send(connection.ws, json.dumps(reply, separators=(",", ":")))


async def _send(ws: WebSocketConnection, message: str | bytes) -> int:
    try:
        await ws.send_message(message)
    except ConnectionClosed:
        return 0
    return 1


class FakeBinanceRest:
    """``GET /api/v3/ticker/price`` and ``GET /api/v3/depth`` of Binance's REST API, on hypercorn at ``127.0.0.1``.

    Set :attr:`prices` (symbol → price string) and :attr:`books` (symbol → ``(bids, asks)`` as ``[(price, qty)]``);
    an unknown symbol is answered ``400 {"code": -1121, "msg": "Invalid symbol."}`` as Binance does. Setting
    :attr:`status` to something else than 200 answers every request with it; :attr:`requests` holds the path and
    query of every request. Set :attr:`gate` to a :class:`trio.Event` to hold every answer until it is set.
    """

    def __init__(self) -> None:
        self.url = ""
        self.prices: dict[str, str] = {}
        self.books: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {}
        self.status = 200
        self.requests: list[str] = []
        self.gate: trio.Event | None = None
        self._update_id = 5000

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``await nursery.start(rest.serve)`` returns :attr:`url` (``http://...``)."""
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = logging.getLogger("mmframe_binance.testing.rest")  # type: ignore[assignment]
        config.graceful_timeout = 0.1
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(hypercorn_serve, self._app(), config)
            self.url = binds[0]
            task_status.started(self.url)

    def _app(self) -> Starlette:
        return Starlette(routes=[
            Route("/api/v3/ticker/price", self._ticker_price),
            Route("/api/v3/depth", self._depth),
        ])

    async def _refuse(self, request: Request) -> JSONResponse | None:
        self.requests.append(f"{request.url.path}?{request.url.query}")
        if self.gate is not None:
            await self.gate.wait()
        if self.status != 200:
            return JSONResponse({"code": -1000, "msg": "An unknown error occurred."}, status_code=self.status)
        if request.query_params.get("symbol") not in {*self.prices, *self.books}:
            return JSONResponse({"code": -1121, "msg": "Invalid symbol."}, status_code=400)
        return None

    async def _ticker_price(self, request: Request) -> JSONResponse:
        refused = await self._refuse(request)
        if refused is not None:
            return refused
        symbol = request.query_params["symbol"]
        if symbol not in self.prices:
            return JSONResponse({"code": -1121, "msg": "Invalid symbol."}, status_code=400)
        return JSONResponse({"symbol": symbol, "price": self.prices[symbol]})

    async def _depth(self, request: Request) -> JSONResponse:
        refused = await self._refuse(request)
        if refused is not None:
            return refused
        symbol = request.query_params["symbol"]
        if symbol not in self.books:
            return JSONResponse({"code": -1121, "msg": "Invalid symbol."}, status_code=400)
        limit = int(request.query_params.get("limit", "100"))
        bids, asks = self.books[symbol]
        self._update_id += 1
        return JSONResponse({
            "lastUpdateId": self._update_id,
            "bids": [[str(p), str(q)] for p, q in bids[:limit]],
            "asks": [[str(p), str(q)] for p, q in asks[:limit]],
        })
