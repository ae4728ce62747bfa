"""The ``binance`` feed: index prices and depth from Binance Spot's public WebSocket market streams.

One combined-stream connection serves every subscribed symbol::

    {ws_url}/stream?streams=btcusdt@bookTicker/btcusdt@depth5/ethusdt@bookTicker/ethusdt@depth5

Every message comes wrapped as ``{"stream": "<name>", "data": <payload>}`` and is turned into mmframe's items:

* ``<symbol>@bookTicker`` (``{"u", "s", "b", "B", "a", "A"}``) → a :class:`~mmframe.PriceTick` whose price is the
  exact mid ``(b + a) / 2``, with ``bid`` and ``ask`` set. A crossed or locked book (``b >= a``) is rejected.
* ``<symbol>@trade`` (``{"e": "trade", "E", "s", "t", "p", "q", "T", "m"}``) → a :class:`~mmframe.PriceTick` at
  ``p``, and the public :class:`~mmframe.Trade` itself (``m`` true: the buyer was the maker, a seller hit the bid)
  for a strategy's ``on_trade`` and ``mmframe feed record``.
* ``<symbol>@depth<levels>`` or ``<symbol>@depth<levels>@100ms`` (``{"lastUpdateId", "bids", "asks"}``, no symbol
  in it: the stream name says whose book it is) → a :class:`~mmframe.DepthSnapshot`, best levels first, with
  ``sequence = lastUpdateId``. Binance names the 1000 ms partial-depth stream without a speed suffix.

Ticks are stamped with the wall-clock time they were received (``time.time()``); items carry the symbol exactly as
it was subscribed (``BTCUSDT``), while stream names use it in lower case, as Binance requires.

Connection rules:

* No symbol subscribed, no connection: the feed connects when the first symbol is subscribed and closes the
  connection when the last one goes. Symbols that come and go while connected are added and removed with
  ``SUBSCRIBE`` / ``UNSUBSCRIBE`` requests (``{"method", "params", "id"}``), at most one every
  :data:`REQUEST_INTERVAL` seconds: Binance disconnects a client that sends more than 5 messages a second, pings
  and pongs included. An error reply is logged and counted as a rejected message; the connection carries on.
* A listener stops receiving the moment its subscription is closed; late messages for a stream being unsubscribed
  are dropped quietly.
* Binance pings every few minutes and disconnects a client that does not answer: trio-websocket answers pings
  itself. No message at all for ``silence_timeout`` seconds means the connection is dead, however open it looks:
  the feed drops it and reconnects. Binance also ends every connection after 24 hours, so the feed reconnects on
  its own after ``max_connection_age`` seconds (at once, without a backoff delay).
* After a server close, a connection error or silence it reconnects after an exponential backoff with jitter
  (:class:`~mmframe.feedtools.Backoff`, from ``backoff_initial`` to ``backoff_max``), reset once a connection has
  delivered data.

Every frame that cannot be used (not UTF-8, not JSON, not an object, an unknown stream, a missing or wrong-typed
field, a price that is not a positive decimal string) is counted through :meth:`FeedHub.reject
<mmframe.feedtools.FeedHub.reject>`, against its symbol when the frame names one, and skipped: it never produces an
item and never ends the connection. ``symbol_statistics(symbol)`` reports the counts.

With ``rest_snapshot`` the feed also asks the REST API for a symbol's last price (``/api/v3/ticker/price``) and, if
depth is streamed, its book (``/api/v3/depth``) as soon as the symbol is subscribed, and delivers them unless the
stream has already delivered that kind of item for the symbol: a market gets a price before the stream's first
message. A failed request or a bad body is logged and counted, never fatal.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import Any, ClassVar
from urllib.parse import urlsplit

import attrs
import httpx
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from mmframe import DepthSnapshot, MarketData, PriceTick, Side, Subscription, Trade
from mmframe.config import positive_seconds
from mmframe.feedtools import (
    Backoff,
    BadMessage,
    FeedHub,
    FeedSymbolStats,
    Listener,
    depth_snapshot,
    parse_levels,
    parse_price,
    parse_quantity,
)

__all__ = ["EXCHANGE", "STREAMS", "BinanceFeed", "BinanceFeedStatistics"]

log = logging.getLogger("mmframe.feed.binance")

EXCHANGE = "binance"  # the ``exchange`` of every item this feed delivers
STREAMS = ("bookTicker", "trade", "depth")  # the stream kinds the feed understands
DEPTH_LEVELS = (5, 10, 20)
DEPTH_SPEEDS = ("1000ms", "100ms")
REQUEST_INTERVAL = 0.25  # seconds between two SUBSCRIBE/UNSUBSCRIBE requests: 4 a second leaves room for a pong
MAX_STREAMS = 1024  # Binance's limit of streams on one connection
CONNECT_TIMEOUT = 10.0  # seconds for the TCP, TLS and WebSocket handshakes
CLOSE_TIMEOUT = 2.0  # seconds to wait for the server's answer to our close frame before dropping the socket
MESSAGE_QUEUE_SIZE = 64  # messages trio-websocket buffers ahead of the feed
REST_CONCURRENCY = 4  # REST snapshot requests under way at once

_SYMBOL = re.compile(r"[A-Za-z0-9_.-]{1,20}")  # Binance's symbol pattern, in either case

# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------


def _url(*schemes: str) -> Callable[[object, attrs.Attribute[Any], str], None]:
    def check(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(
                f"{attribute.name} must be a {' or '.join(s + '://' for s in schemes)} URL without a query, "
                f"got {value!r}"
            )

    return check


def _streams(instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must name at least one of {', '.join(STREAMS)}")
    for stream in value:
        if stream not in STREAMS:
            raise ValueError(
                f"{attribute.name}: unknown stream {stream!r}; {attribute.name} is a list of "
                f"{', '.join(repr(s) for s in STREAMS)}, e.g. [\"bookTicker\", \"depth\"]"
            )
    if len(set(value)) != len(value):
        raise ValueError(f"{attribute.name} names a stream twice: {list(value)!r}")


def _one_of(choices: tuple[Any, ...]) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or value not in choices:
            raise ValueError(f"{attribute.name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")

    return check


def _backoff_max(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    positive_seconds(instance, attribute, value)
    if value < instance.backoff_initial:
        raise ValueError(f"{attribute.name} must be at least backoff_initial ({instance.backoff_initial}), got {value}")


@attrs.frozen
class BinanceFeedStatistics:
    """A snapshot of a :class:`BinanceFeed`'s connection counters (see :meth:`BinanceFeed.statistics`).

    :param connected: whether a connection is up now.
    :param streams: the streams the current connection follows (empty when not connected).
    :param connections: connections opened since the feed was made.
    :param connect_failures: connection attempts that failed (refused, timed out, rejected by the server).
    :param reconnects: connections that went down and were reopened (the hub's count).
    :param silence_reconnects: of those, connections dropped because nothing arrived for ``silence_timeout``.
    :param age_reconnects: of those, connections replaced because they reached ``max_connection_age``.
    :param requests: ``SUBSCRIBE`` and ``UNSUBSCRIBE`` requests sent.
    :param error_replies: requests Binance answered with an error.
    :param rest_snapshots: items delivered from the REST API.
    :param rest_failures: REST requests that failed or answered something unusable.
    :param messages: items delivered, over every symbol.
    :param rejected: messages rejected, over every symbol and unattributed.
    """

    connected: bool
    streams: tuple[str, ...]
    connections: int
    connect_failures: int
    reconnects: int
    silence_reconnects: int
    age_reconnects: int
    requests: int
    error_replies: int
    rest_snapshots: int
    rest_failures: int
    messages: int
    rejected: int


@attrs.define
class _Counters:
    connections: int = 0
    connect_failures: int = 0
    silence_reconnects: int = 0
    age_reconnects: int = 0
    requests: int = 0
    error_replies: int = 0
    rest_snapshots: int = 0
    rest_failures: int = 0


@attrs.define
class _Session:
    """One connection's state, from the connection attempt to its close."""

    streams: set[str]  # what the server has been asked to send on this connection
    retired: set[str] = attrs.field(factory=set)  # unsubscribed on this connection: late messages are dropped quietly
    pending: dict[int, tuple[str, tuple[str, ...]]] = attrs.field(factory=dict)  # request id → (method, params)
    next_request: float = -math.inf  # trio time before which no request may be sent
    up: bool = False
    delivered: bool = False
    cause: str | None = None  # why it ended: idle, age, silence, closed, error
    detail: str = ""
    scope: trio.CancelScope | None = None

    def finish(self, cause: str, detail: str) -> None:
        """End the connection (the first cause given is the one reported)."""
        if self.cause is None:
            self.cause, self.detail = cause, detail
        if self.scope is not None:
            self.scope.cancel()


# ---------------------------------------------------------------------------------------------------------------
# The feed
# ---------------------------------------------------------------------------------------------------------------


class BinanceFeed:
    """An :class:`~mmframe.protocols.ExchangeFeed` following Binance Spot's public market streams.

    ``feed = BinanceFeed(BinanceFeed.Config(streams=("bookTicker",)))``; ``await nursery.start(feed.run)``;
    ``feed.subscribe("BTCUSDT", listener)``. ``feed.hub`` is its :class:`~mmframe.feedtools.FeedHub` (listeners
    and per-symbol counters).
    """

    name: ClassVar[str] = "binance"

    @attrs.frozen
    class Config:
        """The ``binance`` feed's options.

        :param ws_url: the market-stream endpoint (``ws://`` or ``wss://``, no query); the feed appends
            ``/stream?streams=...`` to it, after dropping a trailing slash.
        :param rest_url: the REST API, for ``rest_snapshot``.
        :param streams: which streams to follow per symbol: ``bookTicker``, ``trade``, ``depth``.
        :param depth_levels: levels of the partial-depth stream: 5, 10 or 20.
        :param depth_speed: ``1000ms`` or ``100ms``: how often the depth stream pushes.
        :param silence_timeout: seconds without any message before the connection is dropped and reopened.
        :param max_connection_age: seconds after which a connection is replaced (Binance cuts it at 24 h).
        :param backoff_initial: the first reconnect delay, in seconds, doubled (with jitter) after each failure...
        :param backoff_max: ... up to this.
        :param rest_snapshot: seed a newly subscribed symbol's price (and depth) from the REST API.
        :param rest_timeout: seconds to wait for a REST answer.
        """

        ws_url: str = attrs.field(default="wss://stream.binance.com:9443", validator=_url("ws", "wss"))
        rest_url: str = attrs.field(default="https://api.binance.com", validator=_url("http", "https"))
        streams: tuple[str, ...] = attrs.field(default=("bookTicker", "depth"), converter=tuple, validator=_streams)
        depth_levels: int = attrs.field(default=5, validator=_one_of(DEPTH_LEVELS))
        depth_speed: str = attrs.field(default="1000ms", validator=_one_of(DEPTH_SPEEDS))
        silence_timeout: float = attrs.field(default=30.0, converter=float, validator=positive_seconds)
        max_connection_age: float = attrs.field(default=23.5 * 3600, converter=float, validator=positive_seconds)
        backoff_initial: float = attrs.field(default=0.5, converter=float, validator=positive_seconds)
        backoff_max: float = attrs.field(default=30.0, converter=float, validator=_backoff_max)
        rest_snapshot: bool = False
        rest_timeout: float = attrs.field(default=5.0, converter=float, validator=positive_seconds)

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else BinanceFeed.Config()
        self.hub = FeedHub(EXCHANGE)
        self.backoff = Backoff(initial=self.config.backoff_initial, maximum=self.config.backoff_max)
        self._base_url = self.config.ws_url.rstrip("/")
        self._kinds = self._stream_kinds()  # stream-name suffix → kind
        self._routes: dict[str, tuple[str, ...]] = {}  # lower-case symbol → the symbols subscribed under it
        self._streamed: dict[str, set[str]] = {"price": set(), "depth": set()}  # symbols the stream served
        self._snapshot_send, self._snapshot_receive = trio.open_memory_channel[str](math.inf)
        self._session: _Session | None = None
        self._counters = _Counters()
        self._request_id = 0
        self._running = False

    def __repr__(self) -> str:
        return f"<BinanceFeed {self._base_url} streams={','.join(self.config.streams)}>"

    # -- the ExchangeFeed protocol ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow Binance until cancelled: ready at once; connects when the first symbol is subscribed."""
        if self._running:
            raise RuntimeError("this BinanceFeed is already running")
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                if self.config.rest_snapshot:
                    await nursery.start(self._snapshots)
                task_status.started()
                await self._connect_loop()
        finally:
            self._running = False
            self._session = None
            self.hub.disconnected(reconnecting=False)

    def subscribe(self, symbol: str, listener: Listener) -> Subscription:
        """Deliver *symbol*'s ticks (and depth) to *listener* until the returned subscription is closed.

        *symbol* is a Binance symbol such as ``BTCUSDT``; items carry it exactly as given here.
        """
        if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
            raise ValueError(f"symbol must be a Binance symbol such as 'BTCUSDT', got {symbol!r}")
        first = not self.hub.listening(symbol)
        subscription = self.hub.subscribe(symbol, listener)
        if first:
            self._refresh_routes()
            for served in self._streamed.values():
                served.discard(symbol)
            if self.config.rest_snapshot:
                self._snapshot_send.send_nowait(symbol)

        def close() -> None:
            subscription.close()
            if not self.hub.listening(symbol):
                self._refresh_routes()

        return Subscription(close)

    def symbol_statistics(self, symbol: str) -> FeedSymbolStats:
        """What the feed delivered and rejected for *symbol*, and how its connection is doing."""
        return self.hub.statistics(symbol)

    def statistics(self) -> BinanceFeedStatistics:
        """The connection's counters, over every symbol."""
        counters = self._counters
        totals = self.hub.totals()
        session = self._session
        return BinanceFeedStatistics(
            connected=self.hub.is_connected,
            streams=tuple(sorted(session.streams)) if session is not None and session.up else (),
            connections=counters.connections,
            connect_failures=counters.connect_failures,
            reconnects=self.hub.reconnects,
            silence_reconnects=counters.silence_reconnects,
            age_reconnects=counters.age_reconnects,
            requests=counters.requests,
            error_replies=counters.error_replies,
            rest_snapshots=counters.rest_snapshots,
            rest_failures=counters.rest_failures,
            messages=totals["messages"],
            rejected=totals["rejected"],
        )

    # -- streams and routes -------------------------------------------------------------------------------------

    def _stream_kinds(self) -> dict[str, str]:
        kinds = {}
        for stream in self.config.streams:
            if stream == "depth":
                suffix = f"depth{self.config.depth_levels}"
                if self.config.depth_speed != "1000ms":  # Binance's 1000 ms partial depth has no speed suffix
                    suffix += f"@{self.config.depth_speed}"
                kinds[suffix] = "depth"
            else:
                kinds[stream] = stream
        return kinds

    def _streams_for(self, symbols: Iterable[str]) -> set[str]:
        return {f"{symbol.lower()}@{suffix}" for symbol in symbols for suffix in self._kinds}

    def _stream_url(self, streams: Iterable[str]) -> str:
        return f"{self._base_url}/stream?streams={'/'.join(sorted(streams))}"

    def _refresh_routes(self) -> None:
        routes: dict[str, list[str]] = {}
        for symbol in sorted(self.hub.symbols()):
            routes.setdefault(symbol.lower(), []).append(symbol)
        self._routes = {lower: tuple(symbols) for lower, symbols in routes.items()}

    # -- connections --------------------------------------------------------------------------------------------

    async def _connect_loop(self) -> None:
        while True:
            while not self.hub.symbols():
                await self.hub.wait_changed()
            session = await self._connect()
            self._session = None
            if session.up:
                self.hub.disconnected(reconnecting=session.cause != "idle")
            else:
                self._counters.connect_failures += 1
            if session.cause == "idle":
                log.info("binance feed: no symbol subscribed any more; connection closed")
                continue
            if session.cause == "age":
                self._counters.age_reconnects += 1
                log.info("binance feed: %s; reconnecting now", session.detail)
                continue
            if session.cause == "silence":
                self._counters.silence_reconnects += 1
            delay = self.backoff.next()
            (log.warning if session.up or self.backoff.attempts == 1 else log.debug)(
                "binance feed: %s; reconnecting in %.2f s", session.detail, delay
            )
            await trio.sleep(delay)

    async def _connect(self) -> _Session:
        """Hold one connection until it ends; returns why it ended."""
        session = self._session = _Session(streams=self._streams_for(self.hub.symbols()))
        _check_stream_count(session.streams)
        url = self._stream_url(session.streams)
        try:
            async with open_websocket_url(
                url,
                connect_timeout=CONNECT_TIMEOUT,
                disconnect_timeout=CLOSE_TIMEOUT,
                message_queue_size=MESSAGE_QUEUE_SIZE,
            ) as ws:
                session.up = True
                self._counters.connections += 1
                self.hub.connected()
                log.info("binance feed: connected to %s (%s)", self._base_url, _plural(len(session.streams), "stream"))
                async with trio.open_nursery() as nursery:
                    session.scope = nursery.cancel_scope
                    nursery.start_soon(self._follow_symbols, ws, session)
                    nursery.start_soon(self._receive, ws, session)
        except (HandshakeError, ConnectionClosed, trio.BrokenResourceError, OSError) as exc:
            if session.up:
                session.finish("closed", f"connection lost: {_error_text(exc)}")
            else:
                session.finish("error", f"cannot connect to {self._base_url}: {_error_text(exc)}")
        if session.cause is None:  # not expected: both tasks end the session before they return
            session.finish("closed", "connection ended")
        return session

    async def _receive(self, ws: WebSocketConnection, session: _Session) -> None:
        deadline = trio.current_time() + self.config.max_connection_age
        try:
            while True:
                message: str | bytes | None = None
                with trio.move_on_at(min(deadline, trio.current_time() + self.config.silence_timeout)):
                    message = await ws.get_message()
                if message is None:
                    if trio.current_time() >= deadline:
                        session.finish("age", f"connection is {self.config.max_connection_age:g} s old")
                    else:
                        session.finish("silence", f"no message for {self.config.silence_timeout:g} s")
                    return
                self._on_message(message, session)
        except ConnectionClosed as exc:
            session.finish("closed", f"server closed the connection ({_close_reason(exc)})")

    async def _follow_symbols(self, ws: WebSocketConnection, session: _Session) -> None:
        """Keep the connection's streams in line with the subscribed symbols; end it when none is left."""
        try:
            while True:
                symbols = self.hub.symbols()
                if not symbols:
                    session.finish("idle", "no symbol subscribed")
                    return
                wanted = self._streams_for(symbols)
                removed, added = session.streams - wanted, wanted - session.streams
                if not removed and not added:
                    await self.hub.wait_changed()
                elif trio.current_time() < session.next_request:
                    await trio.sleep_until(session.next_request)  # then look again: the symbols may have changed
                elif removed:
                    await self._request(ws, session, "UNSUBSCRIBE", removed)
                else:
                    await self._request(ws, session, "SUBSCRIBE", added)
        except ConnectionClosed as exc:
            session.finish("closed", f"server closed the connection ({_close_reason(exc)})")

    async def _request(self, ws: WebSocketConnection, session: _Session, method: str, streams: set[str]) -> None:
        if method == "SUBSCRIBE":
            session.streams |= streams
            session.retired -= streams
            _check_stream_count(session.streams)
        else:
            session.streams -= streams
            session.retired |= streams
        self._request_id += 1
        params = tuple(sorted(streams))
        session.pending[self._request_id] = (method, params)
        session.next_request = trio.current_time() + REQUEST_INTERVAL
        self._counters.requests += 1
        log.debug("binance feed: %s %s", method, ", ".join(params))
        request = {"method": method, "params": list(params), "id": self._request_id}
        await ws.send_message(json.dumps(request, separators=(",", ":")))

    # -- messages -----------------------------------------------------------------------------------------------

    def _on_message(self, message: str | bytes, session: _Session) -> None:
        """Turn one frame into items; count and skip anything unusable."""
        if isinstance(message, bytes):
            try:
                text = message.decode("utf-8")
            except UnicodeDecodeError:
                self.hub.reject("a binary frame that is not UTF-8", raw=message)
                return
        else:
            text = message
        try:
            envelope = json.loads(text, parse_float=Decimal)
        except (ValueError, RecursionError) as exc:
            self.hub.reject(f"not JSON ({type(exc).__name__}: {exc})", raw=text)
            return
        if not isinstance(envelope, dict):
            self.hub.reject(f"not a JSON object but {type(envelope).__name__}", raw=text)
            return
        if "stream" not in envelope and "id" in envelope:
            self._on_reply(envelope, session, text)
            return
        stream = envelope.get("stream")
        if not isinstance(stream, str):
            self.hub.reject("no stream name", raw=text)
            return
        lower, _, suffix = stream.partition("@")
        symbols = self._routes.get(lower, ())
        if stream not in session.streams:
            if stream not in session.retired:
                self.hub.reject(f"unexpected stream {stream!r}", symbols[0] if symbols else None, raw=text)
            return
        if not symbols:
            return  # its last listener left a moment ago; the UNSUBSCRIBE is on its way
        try:
            items = self._parse(self._kinds[suffix], envelope.get("data"), lower, symbols)
        except ValueError as exc:  # BadMessage, or a model refusing a value
            self.hub.reject(f"{stream}: {exc}", symbols[0], raw=text)
            return
        except Exception as exc:  # a frame must never end the connection, even one that trips a bug here
            log.exception("binance feed: cannot handle a message on %s", stream)
            self.hub.reject(f"{stream}: {type(exc).__name__}: {exc}", symbols[0], raw=text)
            return
        if not session.delivered:  # the connection works: the next failure starts the backoff afresh
            session.delivered = True
            self.backoff.reset()
        kind = "depth" if isinstance(items[0], DepthSnapshot) else "price"
        for item in items:
            self._streamed[kind].add(item.symbol)
            self.hub.deliver(item)

    def _parse(self, kind: str, data: object, lower: str, symbols: tuple[str, ...]) -> list[MarketData]:
        if not isinstance(data, dict):
            raise BadMessage(f"data must be a JSON object, got {type(data).__name__}")
        now = time.time()
        if kind == "bookTicker":
            _check_symbol(data, lower)
            bid = parse_price(_text(data, "b"), "b (best bid)")
            ask = parse_price(_text(data, "a"), "a (best ask)")
            parse_quantity(_text(data, "B"), "B (best bid quantity)")
            parse_quantity(_text(data, "A"), "A (best ask quantity)")
            if "u" in data:
                _sequence(data["u"], "u")
            if bid >= ask:
                raise BadMessage(f"crossed book: bid {bid} >= ask {ask}")
            mid = _mid(bid, ask)
            return [PriceTick(exchange=EXCHANGE, symbol=s, price=mid, bid=bid, ask=ask, timestamp=now) for s in symbols]
        if kind == "trade":
            if data.get("e") != "trade":
                raise BadMessage(f"e must be 'trade', got {data.get('e')!r}")
            _check_symbol(data, lower)
            price = parse_price(_text(data, "p"), "p (price)")
            quantity = parse_quantity(_text(data, "q"), "q (quantity)")
            maker = data.get("m")
            if not isinstance(maker, bool):
                raise BadMessage(f"m (buyer is the maker) must be true or false, got {maker!r}")
            side = Side.SELL if maker else Side.BUY  # the aggressor: a seller hit the bid when the buyer made
            trade_id = data.get("t")
            ticks: list[MarketData] = [PriceTick(exchange=EXCHANGE, symbol=s, price=price, timestamp=now)
                                       for s in symbols]
            if quantity <= 0:
                return ticks
            return ticks + [Trade(exchange=EXCHANGE, symbol=s, price=price, quantity=quantity, side=side,
                                  timestamp=now, trade_id="" if trade_id is None else str(trade_id))
                            for s in symbols]
        snapshot = _depth(data, symbols[0], now)
        return [snapshot, *(attrs.evolve(snapshot, symbol=s) for s in symbols[1:])]

    def _on_reply(self, reply: dict[str, Any], session: _Session, raw: str) -> None:
        """A reply to SUBSCRIBE / UNSUBSCRIBE: ``{"result": null, "id": n}`` or ``{"error": {...}, "id": n}``."""
        request_id = reply.get("id")
        request = session.pending.pop(request_id, None) if isinstance(request_id, int) else None
        error = reply.get("error")
        if error is None and "result" in reply:
            if request is None:
                log.debug("binance feed: a reply to no request of ours: %s", raw)
            return
        if error is None:
            self.hub.reject("a reply with neither result nor error", raw=raw)
            return
        if isinstance(error, dict):
            error = f"code {error.get('code')!r}: {error.get('msg')!r}"
        what = f"{request[0]} {', '.join(request[1])}" if request is not None else f"request {request_id!r}"
        self._counters.error_replies += 1
        self.hub.reject(f"Binance refused {what}: {error}", raw=raw, level=logging.ERROR)

    # -- REST snapshots -----------------------------------------------------------------------------------------

    async def _snapshots(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fetch a snapshot for every symbol subscribed anew, a few at a time, through one HTTP client."""
        limiter = trio.CapacityLimiter(REST_CONCURRENCY)
        async with (
            httpx.AsyncClient(base_url=self.config.rest_url, timeout=self.config.rest_timeout) as client,
            trio.open_nursery() as nursery,
        ):
            task_status.started()
            while True:
                symbol = await self._snapshot_receive.receive()
                nursery.start_soon(self._snapshot, client, limiter, symbol)

    async def _snapshot(self, client: httpx.AsyncClient, limiter: trio.CapacityLimiter, symbol: str) -> None:
        async with limiter:
            if not self.hub.listening(symbol):
                return
            body = await self._rest_get(client, "/api/v3/ticker/price", {"symbol": symbol.upper()}, symbol)
            if body is not None:
                try:
                    tick = _rest_price(body, symbol)
                except ValueError as exc:
                    self._rest_failed(f"/api/v3/ticker/price: {exc}", symbol, body)
                else:
                    self._deliver_snapshot("price", tick)
            if "depth" not in self.config.streams or not self.hub.listening(symbol):
                return
            params = {"symbol": symbol.upper(), "limit": str(self.config.depth_levels)}
            body = await self._rest_get(client, "/api/v3/depth", params, symbol)
            if body is not None:
                try:
                    if not isinstance(body, dict):
                        raise BadMessage(f"the body must be a JSON object, got {type(body).__name__}")
                    snapshot = _depth(body, symbol, time.time())
                except ValueError as exc:
                    self._rest_failed(f"/api/v3/depth: {exc}", symbol, body)
                else:
                    self._deliver_snapshot("depth", snapshot)

    async def _rest_get(self, client: httpx.AsyncClient, path: str, params: dict[str, str], symbol: str) -> Any:
        """The JSON body of a successful ``GET``, or ``None`` (the failure is logged and counted)."""
        try:
            response = await client.get(path, params=params)
        except httpx.HTTPError as exc:
            self._rest_failed(f"GET {path} failed: {exc!r}", symbol)
            return None
        if response.status_code != 200:
            self._rest_failed(f"GET {path} answered HTTP {response.status_code}", symbol, response.text)
            return None
        try:
            return json.loads(response.text, parse_float=Decimal)
        except (ValueError, RecursionError) as exc:
            self._rest_failed(f"GET {path} answered something that is not JSON ({exc})", symbol, response.text)
            return None

    def _rest_failed(self, reason: str, symbol: str, raw: object = None) -> None:
        self._counters.rest_failures += 1
        self.hub.reject(f"REST snapshot: {reason}", symbol, raw=raw)

    def _deliver_snapshot(self, kind: str, item: MarketData) -> None:
        if item.symbol in self._streamed[kind] or not self.hub.listening(item.symbol):
            return  # the stream was first: its item is newer
        self._counters.rest_snapshots += 1
        self.hub.deliver(item)


# ---------------------------------------------------------------------------------------------------------------
# Parsing helpers
# ---------------------------------------------------------------------------------------------------------------


def _check_symbol(data: dict[str, Any], lower: str) -> None:
    symbol = data.get("s")
    if not isinstance(symbol, str) or symbol.lower() != lower:
        raise BadMessage(f"s must be the stream's symbol {lower.upper()!r}, got {symbol!r}")


def _text(data: dict[str, Any], key: str) -> str:
    """A number field: Binance sends every price and quantity as a decimal string, never as a JSON number."""
    value = data.get(key)
    if not isinstance(value, str):
        raise BadMessage(f"{key} must be a decimal string, got {'nothing' if value is None else repr(value)}")
    return value


def _text_levels(data: dict[str, Any], key: str) -> object:
    """The levels of a depth payload, checked to be ``[price, quantity]`` string pairs (the rest is
    :func:`~mmframe.feedtools.parse_levels`' job)."""
    levels = data.get(key)
    if isinstance(levels, list):
        for i, level in enumerate(levels):
            if isinstance(level, list) and not all(isinstance(item, str) for item in level[:2]):
                raise BadMessage(f"{key}[{i}] must be a pair of decimal strings, got {level!r}")
    return levels


def _sequence(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadMessage(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _depth(data: dict[str, Any], symbol: str, timestamp: float) -> DepthSnapshot:
    """A partial-depth payload (the stream's or the REST API's): ``{"lastUpdateId", "bids", "asks"}``."""
    sequence = _sequence(data.get("lastUpdateId"), "lastUpdateId")
    bids = parse_levels(_text_levels(data, "bids"), "bids")
    asks = parse_levels(_text_levels(data, "asks"), "asks")
    return depth_snapshot(EXCHANGE, symbol, bids, asks, sequence=sequence, timestamp=timestamp)


def _rest_price(body: object, symbol: str) -> PriceTick:
    """``GET /api/v3/ticker/price`` answers ``{"symbol": "BTCUSDT", "price": "..."}``."""
    if not isinstance(body, dict):
        raise BadMessage(f"the body must be a JSON object, got {type(body).__name__}")
    if body.get("symbol") != symbol.upper():
        raise BadMessage(f"symbol must be {symbol.upper()!r}, got {body.get('symbol')!r}")
    price = parse_price(_text(body, "price"), "price")
    return PriceTick(exchange=EXCHANGE, symbol=symbol, price=price, timestamp=time.time())


def _mid(bid: Decimal, ask: Decimal) -> Decimal:
    """``(bid + ask) / 2`` exactly, however many digits the prices have."""
    lowest = min(int(bid.as_tuple().exponent), int(ask.as_tuple().exponent))
    highest = max(bid.adjusted(), ask.adjusted())
    context = Context(prec=max(28, highest - lowest + 3), traps=[Inexact, InvalidOperation, Overflow])
    return context.divide(context.add(bid, ask), 2)


def _check_stream_count(streams: set[str]) -> None:
    if len(streams) > MAX_STREAMS:  # Binance will refuse the connection or the request: say why
        log.error("binance feed: %d streams on one connection; Binance allows %d", len(streams), MAX_STREAMS)


def _error_text(exc: BaseException) -> str:
    """``HandshakeError`` says nothing by itself: the reason is its cause (refused, timed out, rejected...)."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    return f"{text}: {cause!r}" if cause is not None else text


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _close_reason(exc: ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None:
        return "no close frame"
    return f"code {reason.code}" + (f": {reason.reason}" if reason.reason else "")
