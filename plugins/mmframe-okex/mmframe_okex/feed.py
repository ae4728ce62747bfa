"""The ``okex`` feed (alias ``okx``): index prices and top-of-book depth from OKX's v5 public WebSocket.

One WebSocket connection carries every subscribed symbol. It is opened when the first symbol is subscribed and
closed when the last subscription is closed; in between, each symbol that gains its first listener is subscribed
with ``{"op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}, ...]}`` (one arg per configured
channel, at most ``max_subscribe_batch`` args per op) and each symbol that loses its last listener is unsubscribed
the same way with ``"op": "unsubscribe"``.

Symbols: a market subscribes under its feed symbol, ``BTCUSDT``, which is mapped to OKX's instrument id
``BTC-USDT`` by its quote asset (the longest of OKX's quote assets, :data:`QUOTE_ASSETS`, that ends the symbol,
through :func:`mmframe.feedtools.split_symbol`); an OKX
instrument id (``BTC-USDT``, ``BTC-USDT-SWAP``) is used as it is. Items carry the symbol exactly as subscribed,
and two spellings of one instrument both receive its data. A symbol that maps to no instrument id is refused with
:class:`ValueError` when it is subscribed.

What a push becomes:

* ``tickers`` → :class:`~mmframe.PriceTick` with ``price=last``, ``bid=bidPx``, ``ask=askPx`` (an empty
  ``bidPx``/``askPx`` is ``None``), stamped with the wall-clock time it was received;
* ``books5`` → :class:`~mmframe.DepthSnapshot` of the five best levels a side, sorted best first, with
  ``sequence=seqId``.

OKX sends every number as a decimal string; anything else (a JSON number, ``"abc"``, ``"-1"``, a crossed book), a
frame that is not JSON or not UTF-8, a push without an ``instId`` or for an unknown channel, ``data`` that is not
a list: each is counted as rejected (:meth:`~mmframe.feedtools.FeedHub.reject`, attributed to the symbols of its
instrument when it names one) and skipped. Nothing in a message can break the connection.

Events: ``subscribe`` / ``unsubscribe`` confirmations are logged; an ``error`` event (``60012`` invalid request,
``60018`` unknown instrument, ...) is logged and counted as a rejected message of the symbol it names, and the
connection carries on; the ``notice`` ``64008`` (the server will close the connection for an upgrade) makes the
feed reconnect at once rather than wait for the close.

Keepalive, as OKX asks: the server drops a connection that has had no data for 30 seconds, so after
``ping_interval`` seconds without any message the feed sends the text ``ping``; the server answers the text
``pong``. If nothing at all arrives within ``pong_timeout`` seconds of the ping, the connection is dead: it is
closed and opened again.

Reconnects: after the server closes the connection, a connection error, a missing pong or an upgrade notice, the
feed waits a :class:`~mmframe.feedtools.Backoff` delay (from ``backoff_initial`` doubling to ``backoff_max``, with
jitter), counts the reconnect, connects again and subscribes every current symbol. The backoff starts again from
``backoff_initial`` once a connection has delivered data.

All waiting is trio's, so the keepalive and the backoff run on trio's ``MockClock`` in tests.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any, ClassVar

import attrs
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from mmframe import DepthSnapshot, MarketData, PriceTick, Subscription
from mmframe.config import positive_seconds
from mmframe.feedtools import (
    Backoff,
    BadMessage,
    FeedHub,
    FeedSymbolStats,
    depth_snapshot,
    parse_levels,
    parse_price,
    split_symbol,
)

__all__ = ["CHANNELS", "DEFAULT_WS_URL", "QUOTE_ASSETS", "OkexFeed", "to_inst_id"]

DEFAULT_WS_URL = "wss://ws.okx.com:8443/ws/v5/public"

#: The public channels the feed understands.
CHANNELS = ("tickers", "books5")

#: OKX's quote assets, recognised at the end of a symbol without a dash (``BTCUSDT`` → ``BTC-USDT``), longest first.
#: Not mmframe's list (:data:`mmframe.feedtools.QUOTE_ASSETS`): OKX lists USD pairs (``DOT-USD``), so a quote that
#: ends in USD (TUSD, BUSD) would split them wrongly. None is a suffix of another, so the mapping is unambiguous.
QUOTE_ASSETS = ("USDT", "USDC", "USDK", "USD", "BTC", "ETH", "OKB", "EUR", "DAI", "TRY", "BRL", "AUD", "SGD", "AED")

_INST_ID = re.compile(r"[A-Z0-9]+(?:-[A-Z0-9]+)+")
_ASSET = re.compile(r"[A-Z0-9]+")

#: OKX closes a connection that has had no data for this long; the ping interval must be shorter.
SERVER_IDLE_LIMIT = 30.0
CONNECT_TIMEOUT = 10.0  # seconds for the TCP, TLS and WebSocket handshakes together
CLOSE_TIMEOUT = 2.0  # seconds to wait for the server's answer to our close frame before dropping the socket
UPGRADE_NOTICE = "64008"


def to_inst_id(symbol: str) -> str:
    """OKX's instrument id for *symbol*: ``BTCUSDT`` → ``BTC-USDT`` (case-insensitive); an id with a dash, such as
    ``BTC-USDT`` or ``BTC-USDT-SWAP``, is returned upper-cased. Raises :class:`ValueError` for anything else."""
    if not isinstance(symbol, str):
        raise ValueError(f"symbol must be a string, got {type(symbol).__name__}")
    upper = symbol.strip().upper()
    if "-" in upper:
        if _INST_ID.fullmatch(upper):
            return upper
        raise ValueError(f"okex feed: {symbol!r} is not an OKX instrument id such as BTC-USDT")
    pair = split_symbol(upper, QUOTE_ASSETS) if _ASSET.fullmatch(upper) else None
    if pair is not None:
        return "-".join(pair)
    raise ValueError(
        f"okex feed: cannot map {symbol!r} to an OKX instrument id: use BASEQUOTE with a known quote asset "
        f"({', '.join(QUOTE_ASSETS)}) or the instrument id itself, such as BTC-USDT"
    )


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------


def _ws_url(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        parts = urllib.parse.urlsplit(value)
        ok = parts.scheme in ("ws", "wss") and bool(parts.hostname)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{attribute.name} must be a ws:// or wss:// URL with a host, got {value!r}")


def _to_channels(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"channels must be a list of channel names from {list(CHANNELS)}, got {value!r}")
    return tuple(value)


def _channels(instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    unknown = [channel for channel in value if channel not in CHANNELS]
    if unknown:
        raise ValueError(f"{attribute.name}: unknown channel {unknown[0]!r}; choose from {list(CHANNELS)}")
    if not value:
        raise ValueError(f"{attribute.name} must name at least one channel from {list(CHANNELS)}")
    if len(set(value)) != len(value):
        raise ValueError(f"{attribute.name} lists a channel twice: {list(value)}")


def _below_idle_limit(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value < SERVER_IDLE_LIMIT:
        raise ValueError(
            f"{attribute.name} must be below {SERVER_IDLE_LIMIT:g} seconds (OKX closes a connection that has had no "
            f"data for {SERVER_IDLE_LIMIT:g} s), got {value!r}"
        )


def _at_least_initial(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < instance.backoff_initial:
        raise ValueError(f"{attribute.name} must be at least backoff_initial ({instance.backoff_initial}), got {value}")


def _batch(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= 100:
        raise ValueError(f"{attribute.name} must be a whole number from 1 to 100, got {value!r}")


# ---------------------------------------------------------------------------------------------------------------
# The feed
# ---------------------------------------------------------------------------------------------------------------


@attrs.define
class _Session:
    """One WebSocket connection: what it has been asked to subscribe, and why it ended."""

    ws: WebSocketConnection
    scope: trio.CancelScope
    subscribed: frozenset[str] = frozenset()
    delivered: bool = False
    ended: bool = False
    reason: str | None = None  # None: closed because no symbol is subscribed any more

    def end(self, reason: str | None) -> None:
        if not self.ended:
            self.ended, self.reason = True, reason
            self.scope.cancel()


class OkexFeed:
    """OKX's public market data as an :class:`~mmframe.protocols.ExchangeFeed` (see the module docstring).

    ``OkexFeed(OkexFeed.Config(channels=["tickers"]))``; ``await nursery.start(feed.run)``;
    ``feed.subscribe("BTCUSDT", listener)``.
    """

    name: ClassVar[str] = "okex"

    @attrs.frozen
    class Config:
        """The ``okex`` feed's options.

        :param ws_url: the public WebSocket endpoint, used as it is.
        :param channels: what to subscribe for every symbol: ``tickers`` (index prices) and/or ``books5`` (depth).
        :param ping_interval: seconds without a message after which the text ``ping`` is sent (below 30).
        :param pong_timeout: seconds to wait after a ping for ``pong`` (or any message) before reconnecting.
        :param backoff_initial: the first reconnect delay, in seconds; doubles on every failure in a row.
        :param backoff_max: the longest reconnect delay, in seconds.
        :param max_subscribe_batch: channel/instrument args per subscribe or unsubscribe op (1 to 100).
        """

        ws_url: str = attrs.field(default=DEFAULT_WS_URL, validator=_ws_url)
        # Typed Any for the configuration converter, so that a bare string is refused by _to_channels rather than
        # split into letters; the attribute is always a tuple of channel names.
        channels: Any = attrs.field(default=CHANNELS, converter=_to_channels, validator=_channels)
        ping_interval: float = attrs.field(default=20.0, validator=[positive_seconds, _below_idle_limit])
        pong_timeout: float = attrs.field(default=10.0, validator=positive_seconds)
        backoff_initial: float = attrs.field(default=0.5, validator=positive_seconds)
        backoff_max: float = attrs.field(default=30.0, validator=[positive_seconds, _at_least_initial])
        max_subscribe_batch: int = attrs.field(default=20, validator=_batch)

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else OkexFeed.Config()
        self._hub = FeedHub(self.name)
        self._backoff = Backoff(initial=self.config.backoff_initial, maximum=self.config.backoff_max)
        self._inst_ids: dict[str, str] = {}  # symbol as subscribed -> instrument id
        self._spellings: dict[str, set[str]] = {}  # instrument id -> every symbol ever subscribed for it
        self._running = False

    def __repr__(self) -> str:
        return f"<OkexFeed {self.config.ws_url} {list(self.config.channels)}>"

    # -- the ExchangeFeed protocol ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the connection up while any symbol is subscribed, until cancelled.

        Ready at once: the connection is opened when the first symbol is subscribed. Connection failures are
        never raised from here; they are logged, counted and retried with backoff.
        """
        if self._running:
            raise RuntimeError("this OkexFeed is already running")
        self._running = True
        log = self._hub.log
        try:
            task_status.started()
            while True:
                if not self._wanted():
                    await self._hub.wait_changed()
                    continue
                reason = await self._connection()
                if reason is None:
                    log.info("okex feed: no symbol subscribed; connection closed")
                    continue
                delay = self._backoff.next()
                log.warning("okex feed: %s; reconnecting in %.2f s", reason, delay)
                await trio.sleep(delay)
        finally:
            self._running = False
            self._hub.disconnected(reconnecting=False)

    def subscribe(self, symbol: str, listener: Callable[[MarketData], None]) -> Subscription:
        """Deliver every tick (and depth snapshot) of *symbol* to *listener* until the subscription is closed.

        *symbol* is ``BTCUSDT`` or an OKX instrument id (``BTC-USDT``); anything that maps to no instrument id
        raises :class:`ValueError`. A listener that raises is logged and removed; the feed carries on.
        """
        inst_id = to_inst_id(symbol)
        self._inst_ids[symbol] = inst_id
        self._spellings.setdefault(inst_id, set()).add(symbol)
        return self._hub.subscribe(symbol, listener)

    def symbol_statistics(self, symbol: str) -> FeedSymbolStats:
        """Messages, rejects, reconnects, last price and age of the last update of *symbol*."""
        return self._hub.statistics(symbol)

    @property
    def connected(self) -> bool:
        """Whether the connection is up and subscribed."""
        return self._hub.is_connected

    # -- the connection -----------------------------------------------------------------------------------------

    def _wanted(self) -> frozenset[str]:
        """The instrument ids that have a listener now."""
        return frozenset(self._inst_ids[symbol] for symbol in self._hub.symbols())

    def _listening(self, inst_id: str) -> list[str]:
        """The symbols subscribed now for *inst_id* (more than one if it is subscribed under two spellings)."""
        return sorted(symbol for symbol in self._spellings.get(inst_id, ()) if self._hub.listening(symbol))

    async def _connection(self) -> str | None:
        """Connect, subscribe and read until the connection ends; return why (``None``: no symbol is left).

        The hub learns that the connection is down (and counts a reconnect, unless no symbol is left) as soon as it
        ends, before the closing handshake.
        """
        session: _Session | None = None
        try:
            async with open_websocket_url(
                self.config.ws_url, connect_timeout=CONNECT_TIMEOUT, disconnect_timeout=CLOSE_TIMEOUT
            ) as ws:
                self._hub.log.info("okex feed: connected to %s", self.config.ws_url)
                async with trio.open_nursery() as nursery:
                    session = _Session(ws=ws, scope=nursery.cancel_scope)
                    nursery.start_soon(self._keep_subscribed, session)
                    nursery.start_soon(self._read, session)
                self._hub.disconnected(reconnecting=session.reason is not None)
        except (HandshakeError, ConnectionClosed, OSError, ValueError) as exc:
            # ValueError: trio-websocket's answer to a URL it cannot use. A failure to close a connection that had
            # already ended is not news: report why it ended.
            if session is None or not session.ended:
                # an outage counts once as a reconnect: a failed attempt to connect again is not another one
                self._hub.disconnected(reconnecting=self._hub.is_connected)
                return f"connection to {self.config.ws_url} failed: {exc!r}"
        assert session is not None and session.ended  # both tasks only return through session.end
        return session.reason

    async def _keep_subscribed(self, session: _Session) -> None:
        """Send subscribe / unsubscribe ops as symbols come and go; end the session when none is left."""
        try:
            while True:
                wanted = self._wanted()
                if not wanted:
                    session.end(None)
                    return
                if wanted != session.subscribed:
                    removed, added = session.subscribed - wanted, wanted - session.subscribed
                    session.subscribed = wanted
                    await self._send_op(session.ws, "unsubscribe", removed)
                    await self._send_op(session.ws, "subscribe", added)
                    continue  # the symbols may have changed again while we were sending
                if not self._hub.is_connected:
                    self._hub.connected()
                await self._hub.wait_changed()
        except ConnectionClosed as exc:
            session.end(f"the connection closed while subscribing ({_close_reason(exc)})")

    async def _send_op(self, ws: WebSocketConnection, op: str, inst_ids: Iterable[str]) -> None:
        channels = self.config.channels
        args = [{"channel": channel, "instId": inst_id} for inst_id in sorted(inst_ids) for channel in channels]
        batch = self.config.max_subscribe_batch
        for start in range(0, len(args), batch):
            chunk = args[start : start + batch]
            self._hub.log.debug("okex feed: %s %s", op, chunk)
            await ws.send_message(json.dumps({"op": op, "args": chunk}, separators=(",", ":")))

    async def _read(self, session: _Session) -> None:
        """Read and handle messages; ping after ``ping_interval`` of silence, give up ``pong_timeout`` later."""
        ws, config = session.ws, self.config
        try:
            while not session.ended:
                with trio.move_on_after(config.ping_interval):
                    self._handle(await ws.get_message(), session)
                    continue
                self._hub.log.debug("okex feed: %.1f s without a message: ping", config.ping_interval)
                await ws.send_message("ping")
                with trio.move_on_after(config.pong_timeout):
                    self._handle(await ws.get_message(), session)
                    continue
                session.end(f"no pong within {config.pong_timeout:g} s of a ping")
        except ConnectionClosed as exc:
            session.end(f"the server closed the connection ({_close_reason(exc)})")

    # -- messages -----------------------------------------------------------------------------------------------

    def _handle(self, message: str | bytes, session: _Session) -> None:
        """Turn one frame into items for the listeners, or count it as rejected. Never raises."""
        try:
            self._dispatch(message, session)
        except _Rejected as rejected:
            for symbol in rejected.symbols or [None]:
                self._hub.reject(rejected.reason, symbol, raw=message)
        except Exception as exc:  # a bug here must not take the shared connection down
            self._hub.log.exception("okex feed: failed to handle a message")
            self._hub.reject(f"failed to handle the message: {exc!r}", None, raw=message)

    def _dispatch(self, message: str | bytes, session: _Session) -> None:
        if isinstance(message, bytes):
            try:
                text = message.decode("utf-8")
            except UnicodeDecodeError:
                raise _Rejected("a binary frame that is not UTF-8") from None
        else:
            text = message
        if text == "pong":
            return  # the answer to our keepalive ping: not data
        try:
            data = json.loads(text, parse_float=Decimal)
        except (ValueError, RecursionError) as exc:
            raise _Rejected(f"not JSON ({exc.__class__.__name__})") from None
        if not isinstance(data, dict):
            raise _Rejected(f"not a JSON object but {type(data).__name__}")
        if "event" in data:
            self._on_event(data, session)
        else:
            self._on_push(data, session)

    def _on_event(self, data: dict[str, Any], session: _Session) -> None:
        event, code, msg = data.get("event"), data.get("code"), data.get("msg")
        log = self._hub.log
        if event in ("subscribe", "unsubscribe"):
            log.debug("okex feed: %s confirmed: %s", event, data.get("arg"))
        elif event == "error":
            raise _Rejected(f"error event {code}: {msg}", self._error_symbols(data))
        elif event == "notice":
            log.warning("okex feed: notice %s: %s", code, msg)
            if code == UPGRADE_NOTICE:
                session.end(f"the server announced a service upgrade (notice {code})")
        elif isinstance(event, str):
            log.debug("okex feed: event %s ignored: %s", event, data)
        else:
            raise _Rejected(f"event is not a string: {event!r}")

    def _error_symbols(self, data: dict[str, Any]) -> list[str]:
        """The symbols an error event is about: its ``arg``'s instId, else a subscribed instId its ``msg`` names."""
        arg = data.get("arg")
        if isinstance(arg, dict) and isinstance(arg.get("instId"), str):
            return self._listening(arg["instId"])
        msg = data.get("msg")
        if not isinstance(msg, str):
            return []
        for inst_id in sorted(self._wanted(), key=len, reverse=True):
            if re.search(rf"(?<![A-Za-z0-9-]){re.escape(inst_id)}(?![A-Za-z0-9-])", msg):
                return self._listening(inst_id)
        return []

    def _on_push(self, data: dict[str, Any], session: _Session) -> None:
        arg = data.get("arg")
        if not isinstance(arg, dict):
            raise _Rejected("neither an event nor a push with an arg object")
        inst_id = arg.get("instId")
        if not isinstance(inst_id, str) or not inst_id:
            raise _Rejected("a push without an instId")
        symbols = self._listening(inst_id)
        channel = arg.get("channel")
        if channel not in CHANNELS:
            raise _Rejected(f"unknown channel {channel!r}", symbols)
        items = data.get("data")
        if not isinstance(items, list) or not items:
            raise _Rejected(f"{channel} data must be a non-empty list, got {type(items).__name__}", symbols)
        if not symbols:
            self._hub.log.debug("okex feed: %s push for %s, which nobody follows now", channel, inst_id)
            return
        reasons = []
        for item in items:
            try:
                for delivered in self._items(channel, inst_id, item, symbols):
                    self._hub.deliver(delivered)
                    if not session.delivered:
                        session.delivered = True
                        self._backoff.reset()  # this connection works: the next failure starts the backoff again
            except (BadMessage, ValueError) as exc:
                reasons.append(f"{channel} {inst_id}: {exc}")
        if reasons:
            raise _Rejected("; ".join(reasons), symbols)

    def _items(self, channel: str, inst_id: str, item: object, symbols: list[str]) -> Iterator[MarketData]:
        """The tick or depth snapshot of one ``data`` entry, once per symbol; raises BadMessage for a bad entry."""
        if not isinstance(item, dict):
            raise BadMessage(f"a data entry must be an object, got {type(item).__name__}")
        if item.get("instId", inst_id) != inst_id:
            raise BadMessage(f"data entry for {item.get('instId')!r} in a push for {inst_id}")
        now = time.time()
        if channel == "tickers":
            price = _price(item, "last")
            bid, ask = _optional_price(item, "bidPx"), _optional_price(item, "askPx")
            if bid is not None and ask is not None and bid >= ask:
                raise BadMessage(f"crossed ticker: bidPx {bid} >= askPx {ask}")
            for symbol in symbols:
                yield PriceTick(exchange=self.name, symbol=symbol, price=price, bid=bid, ask=ask, timestamp=now)
        else:
            sequence = item.get("seqId", 0)
            if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
                raise BadMessage(f"seqId must be a non-negative integer, got {sequence!r}")
            snapshot = depth_snapshot(
                self.name, symbols[0], _levels(item, "bids"), _levels(item, "asks"), sequence=sequence, timestamp=now
            )
            for symbol in symbols:
                yield snapshot if symbol == snapshot.symbol else _with_symbol(snapshot, symbol)


class _Rejected(Exception):
    """A frame to count as rejected (for *symbols*, or unattributed) and skip."""

    def __init__(self, reason: str, symbols: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.symbols = symbols or []


def _price(item: dict[str, Any], key: str) -> Decimal:
    value = item.get(key)
    if not isinstance(value, str):
        raise BadMessage(f"{key} must be a decimal string, got {type(value).__name__} {value!r}")
    return parse_price(value, key)


def _optional_price(item: dict[str, Any], key: str) -> Decimal | None:
    """A price that OKX leaves empty (``""``) when there is none, such as ``bidPx`` on an empty book side."""
    value = item.get(key)
    if value is None or value == "":
        return None
    return _price(item, key)


def _levels(item: dict[str, Any], key: str) -> list[tuple[Decimal, Decimal]]:
    """``[["8476.98", "415", "0", "13"], ...]`` (price, size, deprecated, orders) → exact (price, size) pairs."""
    levels = item.get(key)
    if not isinstance(levels, list):
        raise BadMessage(f"{key} must be a list of levels, got {type(levels).__name__}")
    for i, level in enumerate(levels):
        if not isinstance(level, list) or len(level) < 2 or not all(isinstance(x, str) for x in level[:2]):
            raise BadMessage(f"{key}[{i}] must be [price, size, ...] as strings, got {level!r}")
    return parse_levels(levels, key)


def _with_symbol(snapshot: DepthSnapshot, symbol: str) -> DepthSnapshot:
    return attrs.evolve(snapshot, symbol=symbol)


def _close_reason(exc: ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None:
        return "no close frame"
    return f"code {reason.code}" + (f": {reason.reason}" if reason.reason else "")
