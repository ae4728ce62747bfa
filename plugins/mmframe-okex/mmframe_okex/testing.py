"""A fake of OKX's v5 public WebSocket server, for testing the ``okex`` feed (or anything else that speaks it).

:class:`FakeOkx` serves trio-websocket on ``127.0.0.1``, port 0, at the path ``/ws/v5/public``::

    server = FakeOkx()
    url = await nursery.start(server.serve)          # also server.url
    feed = OkexFeed(OkexFeed.Config(ws_url=url))
    ...
    await server.wait_until(lambda: ("tickers", "BTC-USDT") in server.subscriptions)
    await server.ticker("BTC-USDT", "30000.1", bid="30000", ask="30000.2")

It answers what OKX answers, in OKX's documented formats:

* ``{"op": "subscribe" | "unsubscribe", "args": [{"channel": ..., "instId": ...}, ...]}`` → one
  ``{"event": "subscribe" | "unsubscribe", "arg": {...}, "connId": ...}`` per arg, and the connection's
  subscriptions change accordingly; an unknown channel or instrument (see *instruments*) →
  ``{"event": "error", "code": "60018", "msg": "Wrong URL or channel:...,instId:... doesn't exist. ...", ...}``;
  a request that is not such an op (bad JSON, unknown op, args not a list of objects) →
  ``{"event": "error", "code": "60012", "msg": "Invalid request: <the request>", ...}``;
* the text ``ping`` → the text ``pong`` (unless :attr:`FakeOkx.answer_pings` is false).

Pushes (:meth:`FakeOkx.ticker`, :meth:`FakeOkx.books5`) go to the connections subscribed to that channel and
instrument. :attr:`FakeOkx.silent` makes the server send nothing at all (no replies, no pongs, no pushes), as a
dead upstream would. The server never closes a connection on its own; :meth:`FakeOkx.close_all` does.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from functools import partial
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

__all__ = ["PATH", "FakeConnection", "FakeOkx"]

PATH = "/ws/v5/public"
CHANNELS = frozenset({"tickers", "books5"})

Level = tuple[str | Decimal, str | Decimal]


@attrs.define(eq=False)
class FakeConnection:
    """One client connection: its subscriptions ``(channel, instId)`` and every message it sent, in order."""

    ws: WebSocketConnection
    conn_id: str
    subscriptions: set[tuple[str, str]] = attrs.field(factory=set)
    received: list[str | bytes] = attrs.field(factory=list)


class FakeOkx:
    """A small, honest OKX public WebSocket server (see the module docstring).

    :param instruments: the instrument ids that exist; ``None`` (the default) accepts every instId.
    """

    def __init__(self, *, instruments: Iterable[str] | None = None) -> None:
        self.instruments = None if instruments is None else frozenset(instruments)
        #: Answer the text ``ping`` with ``pong``.
        self.answer_pings = True
        #: Send nothing at all: no replies, no pongs, no pushes.
        self.silent = False
        #: Refuse WebSocket handshakes (HTTP 503), as a server that is down for maintenance does.
        self.refuse = False
        self.url = ""
        #: The open connections, oldest first.
        self.connections: list[FakeConnection] = []
        #: Connections accepted since the server started.
        self.connections_accepted = 0
        #: ``trio.current_time()`` of every handshake, accepted or refused.
        self.handshake_times: list[float] = []
        #: Every message received, over every connection, in order.
        self.received: list[str | bytes] = []
        self.pings_received = 0
        self._next_id = 0
        self._changed = trio.Event()

    # -- serving ------------------------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started`` with :attr:`url` once connections are accepted."""
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(serve_websocket, self._handle, "127.0.0.1", 0, None))
            self.url = f"ws://127.0.0.1:{server.port}{PATH}"
            task_status.started(self.url)

    async def _handle(self, request: WebSocketRequest) -> None:
        self.handshake_times.append(trio.current_time())
        self._notify()
        if request.path != PATH:
            await request.reject(404, body=b"not found")
            return
        if self.refuse:
            await request.reject(503, body=b"service unavailable")
            return
        ws = await request.accept()
        self._next_id += 1
        connection = FakeConnection(ws=ws, conn_id=f"{self._next_id:08x}")
        self.connections.append(connection)
        self.connections_accepted += 1
        self._notify()
        try:
            while True:
                message = await ws.get_message()
                connection.received.append(message)
                self.received.append(message)
                await self._on_message(connection, message)
                self._notify()
        except ConnectionClosed:
            pass
        finally:
            self.connections.remove(connection)
            self._notify()

    async def _on_message(self, connection: FakeConnection, message: str | bytes) -> None:
        if message == "ping":
            self.pings_received += 1
            if self.answer_pings:
                await self._send(connection, "pong")
            return
        request = _subscription_request(message)
        if request is None:
            text = message if isinstance(message, str) else message.decode("utf-8", "replace")
            await self._send_json(connection, {"event": "error", "code": "60012", "msg": f"Invalid request: {text}",
                                               "connId": connection.conn_id})
            return
        op, args = request
        for arg in args:
            channel, inst_id = arg.get("channel"), arg.get("instId")
            exists = self.instruments is None or inst_id in self.instruments
            if channel not in CHANNELS or not isinstance(inst_id, str) or not exists:
                await self._send_json(connection, {
                    "event": "error", "code": "60018",
                    "msg": f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. Please use the correct "
                           "URL, channel and parameters referring to API document.",
                    "connId": connection.conn_id,
                })
                continue
            if op == "subscribe":
                connection.subscriptions.add((channel, inst_id))
            else:
                connection.subscriptions.discard((channel, inst_id))
            await self._send_json(connection, {"event": op, "arg": {"channel": channel, "instId": inst_id},
                                               "connId": connection.conn_id})

    # -- what tests look at -------------------------------------------------------------------------------------

    @property
    def subscriptions(self) -> set[tuple[str, str]]:
        """``(channel, instId)`` subscribed on any open connection."""
        return {sub for connection in self.connections for sub in connection.subscriptions}

    def ops(self, op: str) -> list[list[dict[str, Any]]]:
        """The ``args`` of every *op* (``subscribe`` / ``unsubscribe``) request received, in order."""
        found = []
        for message in self.received:
            request = _subscription_request(message)
            if request is not None and request[0] == op:
                found.append(request[1])
        return found

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once *predicate* is true; it is checked whenever a connection opens, closes or sends."""
        while not predicate():
            await self._changed.wait()

    # -- what tests do ------------------------------------------------------------------------------------------

    async def ticker(
        self, inst_id: str, last: str | Decimal, bid: str | Decimal | None = None, ask: str | Decimal | None = None
    ) -> int:
        """Push a ``tickers`` message (``""`` for a missing bid or ask, as OKX does); returns how many got it."""
        ts = str(int(time.time() * 1000))
        entry = {
            "instType": "SPOT", "instId": inst_id, "last": str(last), "lastSz": "0.1",
            "askPx": "" if ask is None else str(ask), "askSz": "0" if ask is None else "11",
            "bidPx": "" if bid is None else str(bid), "bidSz": "0" if bid is None else "5",
            "open24h": str(last), "high24h": str(last), "low24h": str(last), "volCcy24h": "0", "vol24h": "0",
            "sodUtc0": str(last), "sodUtc8": str(last), "ts": ts,
        }
        return await self._push("tickers", inst_id, entry)

    async def books5(
        self, inst_id: str, bids: Sequence[Level], asks: Sequence[Level], seq_id: int | None = None
    ) -> int:
        """Push a ``books5`` message; levels are ``(price, size)`` and go out as ``[price, size, "0", orders]``."""
        entry: dict[str, Any] = {
            "asks": [[str(price), str(size), "0", "1"] for price, size in asks],
            "bids": [[str(price), str(size), "0", "1"] for price, size in bids],
            "instId": inst_id,
            "ts": str(int(time.time() * 1000)),
        }
        if seq_id is not None:
            entry["seqId"] = seq_id
        return await self._push("books5", inst_id, entry)

    async def send_raw(self, message: str | bytes) -> None:
        """Send *message* as it is (a text frame for ``str``, a binary frame for ``bytes``) to every connection."""
        for connection in list(self.connections):
            await self._send(connection, message)

    async def notice(self, code: str = "64008") -> None:
        """Announce to every connection that the server will close it for a service upgrade."""
        for connection in list(self.connections):
            await self._send_json(connection, {
                "event": "notice", "code": code,
                "msg": "The connection will soon be closed for a service upgrade. Please reconnect.",
                "connId": connection.conn_id,
            })

    async def close_all(self, code: int = 1000) -> None:
        """Close every open connection with *code*."""
        for connection in list(self.connections):
            await connection.ws.aclose(code)

    # -- internals ----------------------------------------------------------------------------------------------

    async def _push(self, channel: str, inst_id: str, entry: dict[str, Any]) -> int:
        message = json.dumps({"arg": {"channel": channel, "instId": inst_id}, "data": [entry]})
        sent = 0
        for connection in list(self.connections):
            if (channel, inst_id) in connection.subscriptions and not self.silent:
                await self._send(connection, message)
                sent += 1
        return sent

    async def _send_json(self, connection: FakeConnection, message: dict[str, Any]) -> None:
        await self._send(connection, json.dumps(message))

    async def _send(self, connection: FakeConnection, message: str | bytes) -> None:
        if self.silent:
            return
        with contextlib.suppress(ConnectionClosed):  # the client went away meanwhile: like a real server, carry on
            await connection.ws.send_message(message)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


def _subscription_request(message: str | bytes) -> tuple[str, list[dict[str, Any]]] | None:
    """``(op, args)`` of a well-formed subscribe / unsubscribe request, else ``None``."""
    try:
        data = json.loads(message)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("op") not in ("subscribe", "unsubscribe"):
        return None
    args = data.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(arg, dict) for arg in args):
        return None
    return data["op"], args
