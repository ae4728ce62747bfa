"""The binance feed against FakeBinance over real loopback sockets, on trio's MockClock.

The clock jumps only when every task has been idle for 20 ms of real time, so loopback I/O in flight never lets
a silence timeout or a backoff fire early; waits are guarded with ``fail_after`` in virtual time, so a feed that
never delivers fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import mmframe_binance
import pytest
import trio
import trio.testing
from mmframe_binance import BinanceFeed
from mmframe_binance.feed import REQUEST_INTERVAL
from mmframe_binance.testing import FakeBinance, FakeBinanceRest
from trio_websocket import ConnectionRejected, open_websocket_url

import mmframe
from mmframe import DepthSnapshot, MarketData, PriceTick, Side, Trade
from mmframe.config import structure_config
from mmframe.testing import load_plugins

GUARD = 600.0  # virtual seconds before a wait is declared hung


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.02)


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeBinance:
    server = FakeBinance()
    await nursery.start(server.serve)
    return server


class Collector:
    """A listener that keeps what it gets and lets a test wait for the next item."""

    def __init__(self) -> None:
        self.items: list[MarketData] = []
        self._send, self._receive = trio.open_memory_channel[MarketData](math.inf)

    def __call__(self, item: MarketData) -> None:
        self.items.append(item)
        self._send.send_nowait(item)

    async def next(self) -> MarketData:
        with trio.fail_after(GUARD):
            return await self._receive.receive()

    def pending(self) -> int:
        return self._receive.statistics().current_buffer_used


async def start_feed(nursery: trio.Nursery, fake: FakeBinance, **options: Any) -> BinanceFeed:
    feed = BinanceFeed(structure_config({"ws_url": fake.url, **options}, BinanceFeed.Config))
    await nursery.start(feed.run)
    return feed


async def wait(fake: FakeBinance, predicate: Callable[[], bool]) -> None:
    with trio.fail_after(GUARD):
        await fake.wait_until(predicate)


async def eventually(predicate: Callable[[], bool]) -> None:
    """For state outside the fake (the feed's counters, the REST server): look again every half virtual second."""
    with trio.fail_after(GUARD):
        while not predicate():  # noqa: ASYNC110 - the state has no event to wait on
            await trio.sleep(0.5)  # each jump of the mock clock costs 20 ms of real idleness: not too many


BTC = {"btcusdt@bookTicker", "btcusdt@depth5"}
ETH = {"ethusdt@bookTicker", "ethusdt@depth5"}


# ---------------------------------------------------------------------------------------------------------------
# The normal flow
# ---------------------------------------------------------------------------------------------------------------


async def test_book_ticker_trade_and_depth_become_exact_items(nursery: trio.Nursery, fake: FakeBinance,
                                                              clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake, streams=["bookTicker", "trade", "depth"])
    btc = Collector()
    feed.subscribe("BTCUSDT", btc)
    await wait(fake, lambda: fake.connections == 1)
    assert fake.paths == ["/stream?streams=btcusdt@bookTicker/btcusdt@depth5/btcusdt@trade"]

    await fake.book_ticker("BTCUSDT", "25.35190000", "25.36520000")
    tick = await btc.next()
    assert isinstance(tick, PriceTick)
    assert (tick.exchange, tick.symbol) == ("binance", "BTCUSDT")
    assert (tick.price, tick.bid, tick.ask) == (Decimal("25.35855"), Decimal("25.3519"), Decimal("25.3652"))

    await fake.trade("BTCUSDT", "25.36000000", "0.5", buyer_maker=True)
    tick = await btc.next()
    assert isinstance(tick, PriceTick) and tick.price == Decimal("25.36") and tick.bid is None
    trade = await btc.next()  # and the trade itself: the buyer made, so a seller hit the bid
    assert isinstance(trade, Trade)
    assert (trade.price, trade.quantity, trade.side, trade.trade_id) == (Decimal("25.36"), Decimal("0.5"), Side.SELL,
                                                                         "1")

    await fake.depth("BTCUSDT", bids=[("0.0023", "5"), ("0.0024", "10"), ("0.0022", "0")],
                     asks=[("0.0027", "1"), ("0.0026", "100")], last_update_id=160)
    depth = await btc.next()
    assert isinstance(depth, DepthSnapshot)
    assert depth.symbol == "BTCUSDT" and depth.sequence == 160
    assert depth.bids == ((Decimal("0.0024"), Decimal("10")), (Decimal("0.0023"), Decimal("5")))  # empty dropped
    assert depth.asks == ((Decimal("0.0026"), Decimal("100")), (Decimal("0.0027"), Decimal("1")))

    stats = feed.symbol_statistics("BTCUSDT")
    assert (stats.messages, stats.rejected, stats.last_price, stats.connected) == (4, 0, Decimal("25.36"), True)
    assert feed.statistics().streams == ("btcusdt@bookTicker", "btcusdt@depth5", "btcusdt@trade")


async def test_depth_levels_and_speed_name_the_stream(nursery: trio.Nursery, fake: FakeBinance,
                                                      clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake, ws_url=fake.url + "/", streams=["depth"], depth_levels=20,
                            depth_speed="100ms")
    btc = Collector()
    feed.subscribe("BTCUSDT", btc)
    await wait(fake, lambda: fake.connections == 1)
    assert fake.paths == ["/stream?streams=btcusdt@depth20@100ms"]  # the trailing slash of ws_url is not doubled

    assert await fake.depth("BTCUSDT", bids=[("99", "1")], asks=[("101", "2")], levels=20, last_update_id=7) == 1
    depth = await btc.next()
    assert isinstance(depth, DepthSnapshot) and depth.mid == Decimal("100") and depth.sequence == 7


async def test_two_symbols_share_one_connection(nursery: trio.Nursery, fake: FakeBinance,
                                                clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake, streams=["bookTicker"])
    btc, eth = Collector(), Collector()
    feed.subscribe("BTCUSDT", btc)
    feed.subscribe("ETHUSDT", eth)
    await wait(fake, lambda: fake.connections == 1)
    assert fake.paths == ["/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker"]

    await fake.book_ticker("ETHUSDT", "2000.01", "2000.03")
    await fake.book_ticker("BTCUSDT", "30000", "30001")
    assert (await eth.next()).price == Decimal("2000.02")
    assert (await btc.next()).price == Decimal("30000.5")
    assert len(btc.items) == len(eth.items) == 1
    assert fake.requests("SUBSCRIBE") == []  # both were in the URL


async def test_a_symbol_in_two_cases_is_one_stream_and_two_symbols(nursery: trio.Nursery, fake: FakeBinance,
                                                                   clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake, streams=["bookTicker"])
    upper, lower = Collector(), Collector()
    feed.subscribe("BTCUSDT", upper)
    feed.subscribe("btcusdt", lower)
    await wait(fake, lambda: fake.connections == 1)
    assert fake.paths == ["/stream?streams=btcusdt@bookTicker"]

    await fake.book_ticker("BTCUSDT", "1", "3")
    assert ((await upper.next()).symbol, (await lower.next()).symbol) == ("BTCUSDT", "btcusdt")


async def test_subscribe_and_unsubscribe_while_connected(nursery: trio.Nursery, fake: FakeBinance,
                                                         clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake)
    btc, eth = Collector(), Collector()
    btc_subscription = feed.subscribe("BTCUSDT", btc)
    await wait(fake, lambda: fake.subscriptions == BTC)

    feed.subscribe("ETHUSDT", eth)
    await wait(fake, lambda: fake.subscriptions == BTC | ETH)
    assert fake.requests("SUBSCRIBE") == [sorted(ETH)]
    await fake.book_ticker("ETHUSDT", "2000", "2001")
    assert (await eth.next()).price == Decimal("2000.5")

    btc_subscription.close()
    # Whatever still comes for BTC (here before Binance has even seen the UNSUBSCRIBE) reaches nobody.
    await fake.send_raw('{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}}')
    await fake.book_ticker("ETHUSDT", "2002", "2003")
    assert (await eth.next()).price == Decimal("2002.5")
    assert btc.items == []
    await wait(fake, lambda: fake.subscriptions == ETH)
    assert fake.requests("UNSUBSCRIBE") == [sorted(BTC)]
    assert await fake.book_ticker("BTCUSDT", "1", "2") == 0  # Binance no longer sends it
    assert len(fake.paths) == 1 and feed.statistics().requests == 2
    stats = feed.symbol_statistics("BTCUSDT")
    assert (stats.rejected, stats.unattributed_rejected) == (0, 0)


async def test_requests_are_paced(nursery: trio.Nursery, fake: FakeBinance, clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake, streams=["bookTicker"])
    feed.subscribe("BTCUSDT", Collector())
    await wait(fake, lambda: fake.connections == 1)
    subscriptions = {}
    for n, symbol in enumerate(["ETHUSDT", "BNBUSDT", "XRPUSDT"], start=1):
        subscriptions[symbol] = feed.subscribe(symbol, Collector())
        await wait(fake, lambda n=n: len(fake.received) == n)
    subscriptions["ETHUSDT"].close()  # two changes at once: an UNSUBSCRIBE, then a SUBSCRIBE
    feed.subscribe("ADAUSDT", Collector())
    await wait(fake, lambda: len(fake.received) == 5)

    methods = [(m.data["method"], m.data["params"]) for m in fake.received]
    assert methods == [
        ("SUBSCRIBE", ["ethusdt@bookTicker"]),
        ("SUBSCRIBE", ["bnbusdt@bookTicker"]),
        ("SUBSCRIBE", ["xrpusdt@bookTicker"]),
        ("UNSUBSCRIBE", ["ethusdt@bookTicker"]),
        ("SUBSCRIBE", ["adausdt@bookTicker"]),
    ]
    gaps = [later.at - earlier.at for earlier, later in zip(fake.received, fake.received[1:], strict=False)]
    assert min(gaps) >= 0.2  # never more than 5 a second, Binance's limit
    assert min(gaps) >= REQUEST_INTERVAL  # in fact 4 a second: a pong must fit in too
    assert len({m.data["id"] for m in fake.received}) == 5


async def test_last_unsubscribe_closes_the_connection(nursery: trio.Nursery, fake: FakeBinance,
                                                      clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake)
    btc = Collector()
    subscription = feed.subscribe("BTCUSDT", btc)
    await wait(fake, lambda: fake.connections == 1)

    subscription.close()
    await wait(fake, lambda: fake.connections == 0)
    assert fake.requests("UNSUBSCRIBE") == []  # dropped, not unsubscribed
    await eventually(lambda: not feed.statistics().connected)
    assert feed.symbol_statistics("BTCUSDT").reconnects == 0

    feed.subscribe("ETHUSDT", Collector())
    await wait(fake, lambda: fake.connections == 1)
    assert fake.paths[-1] == "/stream?streams=ethusdt@bookTicker/ethusdt@depth5"


async def test_no_symbol_no_connection(nursery: trio.Nursery, fake: FakeBinance, clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake)
    await trio.sleep(3600)  # virtual: an hour
    assert fake.paths == [] and not feed.statistics().connected


# ---------------------------------------------------------------------------------------------------------------
# Keepalive and reconnects
# ---------------------------------------------------------------------------------------------------------------


async def test_server_close_reconnects_and_resumes(nursery: trio.Nursery, fake: FakeBinance,
                                                   clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake)
    btc = Collector()
    feed.subscribe("BTCUSDT", btc)
    await wait(fake, lambda: fake.connections == 1)
    await fake.book_ticker("BTCUSDT", "100", "101")
    await btc.next()

    assert await fake.close_all(code=1001) == 1
    await wait(fake, lambda: len(fake.paths) == 2 and fake.connections == 1)
    assert fake.paths[0] == fake.paths[1]  # the same streams again
    assert feed.backoff.attempts == 1  # it waited a backoff delay before reconnecting

    await fake.book_ticker("BTCUSDT", "102", "103")
    assert (await btc.next()).price == Decimal("102.5")
    assert feed.backoff.attempts == 0  # data arrived: the backoff starts afresh
    stats = feed.symbol_statistics("BTCUSDT")
    assert (stats.reconnects, stats.connected, stats.messages) == (1, True, 2)


async def test_silence_is_detected_and_the_connection_replaced(nursery: trio.Nursery, fake: FakeBinance,
                                                               clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake, silence_timeout=5)
    btc = Collector()
    feed.subscribe("BTCUSDT", btc)
    await wait(fake, lambda: fake.connections == 1)
    await fake.book_ticker("BTCUSDT", "100", "101")
    await btc.next()

    fake.silence = True
    silent_since = trio.current_time()
    await wait(fake, lambda: len(fake.paths) == 2)
    fake.silence = False
    assert trio.current_time() - silent_since >= 5  # not before silence_timeout

    await wait(fake, lambda: fake.connections == 1)
    await fake.book_ticker("BTCUSDT", "200", "201")
    assert (await btc.next()).price == Decimal("200.5")
    statistics = feed.statistics()
    assert (statistics.silence_reconnects, statistics.reconnects, statistics.connections) == (1, 1, 2)


async def test_server_pings_are_answered(nursery: trio.Nursery, fake: FakeBinance, clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake)
    feed.subscribe("BTCUSDT", Collector())
    await wait(fake, lambda: fake.connections == 1)
    with trio.fail_after(GUARD):
        assert await fake.ping_all() == 1  # returns only once the pong came back
    assert feed.statistics().connections == 1


async def test_connections_are_replaced_before_binance_cuts_them(nursery: trio.Nursery, fake: FakeBinance,
                                                                 clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake, max_connection_age=300, silence_timeout=100_000)
    btc = Collector()
    feed.subscribe("BTCUSDT", btc)
    await wait(fake, lambda: fake.connections == 1)
    opened = trio.current_time()

    await wait(fake, lambda: len(fake.paths) == 2 and fake.connections == 1)
    assert trio.current_time() - opened >= 300
    await fake.book_ticker("BTCUSDT", "100", "101")
    assert (await btc.next()).price == Decimal("100.5")
    statistics = feed.statistics()
    assert (statistics.age_reconnects, statistics.silence_reconnects, statistics.reconnects) == (1, 0, 1)
    assert feed.backoff.attempts == 0  # no backoff delay for a planned reconnect


async def test_connection_errors_are_retried_with_backoff(nursery: trio.Nursery, clock: trio.abc.Clock) -> None:
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    feed = BinanceFeed(BinanceFeed.Config(ws_url=f"ws://127.0.0.1:{port}", backoff_initial=1, backoff_max=8))
    await nursery.start(feed.run)
    feed.subscribe("BTCUSDT", Collector())
    await eventually(lambda: feed.statistics().connect_failures >= 5)
    statistics = feed.statistics()
    assert (statistics.connected, statistics.connections, statistics.reconnects) == (False, 0, 0)
    assert feed.backoff.attempts >= 5


async def test_an_error_reply_is_counted_and_the_connection_carries_on(nursery: trio.Nursery, fake: FakeBinance,
                                                                       clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake, streams=["bookTicker"])
    btc = Collector()
    feed.subscribe("BTCUSDT", btc)
    await wait(fake, lambda: fake.connections == 1)

    fake.reply_error(2, "Invalid request: too many parameters")
    feed.subscribe("ETHUSDT", Collector())
    await wait(fake, lambda: len(fake.requests("SUBSCRIBE")) == 1)
    await fake.book_ticker("BTCUSDT", "100", "101")  # after the error reply, on the same connection
    assert (await btc.next()).price == Decimal("100.5")

    statistics = feed.statistics()
    assert (statistics.error_replies, statistics.connections, statistics.connected) == (1, 1, True)
    assert feed.symbol_statistics("BTCUSDT").unattributed_rejected == 1


# ---------------------------------------------------------------------------------------------------------------
# Bad frames
# ---------------------------------------------------------------------------------------------------------------


def book(**data: Any) -> str:
    payload = {"u": 1, "s": "BTCUSDT", "b": "100.1", "B": "1", "a": "100.2", "A": "1", **data}
    return json.dumps({"stream": "btcusdt@bookTicker", "data": {k: v for k, v in payload.items() if v is not None}})


def depth(**data: Any) -> str:
    payload = {"lastUpdateId": 1, "bids": [["99", "1"]], "asks": [["101", "1"]], **data}
    return json.dumps({"stream": "btcusdt@depth5", "data": payload})


BAD_FRAMES: dict[str, tuple[str | bytes, bool]] = {  # id: (frame, counted against BTCUSDT rather than unattributed)
    "not JSON": ("hello", False),
    "truncated": (book()[:40], False),
    "not UTF-8": (b"\xff\xfe\xfd", False),
    "too deep": ("[" * 100_000, False),
    "an array": ("[1, 2]", False),
    "no stream": ('{"data": {}}', False),
    "stream not a string": ('{"stream": 7, "data": {}}', False),
    "unknown stream": ('{"stream": "nonsense", "data": {}}', False),
    "a stream never subscribed": ('{"stream": "btcusdt@kline_1m", "data": {}}', True),
    "no data": ('{"stream": "btcusdt@bookTicker"}', True),
    "data not an object": ('{"stream": "btcusdt@bookTicker", "data": [1]}', True),
    "price a number": (book(b=100.1), True),
    "price not a number": (book(a="abc"), True),
    "price negative": (book(b="-1"), True),
    "price zero": (book(b="0"), True),
    "price infinite": (book(a="Infinity"), True),
    "quantity missing": (book(A=None), True),
    "crossed": (book(b="100.3"), True),
    "locked": (book(b="100.2"), True),
    "symbol of another book": (book(s="ETHUSDT"), True),
    "depth: lastUpdateId a string": (depth(lastUpdateId="1"), True),
    "depth: bids not a list": (depth(bids="99"), True),
    "depth: level numbers": (depth(asks=[[101, 1]]), True),
    "depth: crossed": (depth(bids=[["102", "1"]]), True),
    "a reply with nothing": ('{"id": 99}', False),
}


@pytest.mark.parametrize("frame, attributed", list(BAD_FRAMES.values()), ids=list(BAD_FRAMES))
async def test_a_bad_frame_is_counted_and_skipped(nursery: trio.Nursery, fake: FakeBinance, clock: trio.abc.Clock,
                                                  frame: str | bytes, attributed: bool) -> None:
    feed = await start_feed(nursery, fake)
    btc = Collector()
    feed.subscribe("BTCUSDT", btc)
    await wait(fake, lambda: fake.connections == 1)

    assert await fake.send_raw(frame) == 1
    await fake.book_ticker("BTCUSDT", "100", "101")
    tick = await btc.next()  # the next good message gets through; the bad one produced nothing
    assert isinstance(tick, PriceTick) and tick.price == Decimal("100.5")
    assert btc.items == [tick]
    stats = feed.symbol_statistics("BTCUSDT")
    assert (stats.rejected, stats.unattributed_rejected) == ((1, 0) if attributed else (0, 1))
    assert feed.statistics().connections == 1  # the connection survived


async def test_a_trade_with_a_bad_price_is_rejected(nursery: trio.Nursery, fake: FakeBinance,
                                                    clock: trio.abc.Clock) -> None:
    feed = await start_feed(nursery, fake, streams=["trade"])
    btc = Collector()
    feed.subscribe("BTCUSDT", btc)
    await wait(fake, lambda: fake.connections == 1)
    await fake.trade("BTCUSDT", "0", "1")
    await fake.trade("BTCUSDT", "abc", "1")
    await fake.trade("BTCUSDT", "30000.01", "1")
    assert (await btc.next()).price == Decimal("30000.01")
    trade = await btc.next()
    assert isinstance(trade, Trade) and trade.side is Side.BUY and trade.price == Decimal("30000.01")
    assert btc.pending() == 0 and feed.symbol_statistics("BTCUSDT").rejected == 2


# ---------------------------------------------------------------------------------------------------------------
# REST snapshots
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
async def rest(nursery: trio.Nursery) -> FakeBinanceRest:
    server = FakeBinanceRest()
    await nursery.start(server.serve)
    return server


async def test_rest_snapshot_seeds_price_and_depth_before_the_stream(
    nursery: trio.Nursery, fake: FakeBinance, rest: FakeBinanceRest, clock: trio.abc.Clock
) -> None:
    rest.prices["BTCUSDT"] = "30000.50000000"
    rest.books["BTCUSDT"] = ([("30000.1", "2"), ("30000.0", "1")], [("30000.9", "3")])
    feed = await start_feed(nursery, fake, rest_snapshot=True, rest_url=rest.url)
    btc = Collector()
    feed.subscribe("BTCUSDT", btc)

    seeded = await btc.next()
    assert isinstance(seeded, PriceTick) and seeded.price == Decimal("30000.5") and seeded.exchange == "binance"
    book_ = await btc.next()
    assert isinstance(book_, DepthSnapshot) and book_.best_bid == Decimal("30000.1") and book_.sequence == 5001
    assert rest.requests == ["/api/v3/ticker/price?symbol=BTCUSDT", "/api/v3/depth?symbol=BTCUSDT&limit=5"]

    await wait(fake, lambda: fake.connections == 1)
    await fake.book_ticker("BTCUSDT", "30001", "30002")
    assert (await btc.next()).price == Decimal("30001.5")
    assert feed.statistics().rest_snapshots == 2


async def test_rest_snapshot_yields_to_the_stream(
    nursery: trio.Nursery, fake: FakeBinance, rest: FakeBinanceRest, clock: trio.abc.Clock
) -> None:
    rest.prices["BTCUSDT"] = "29000"
    rest.books["BTCUSDT"] = ([("28999", "1")], [("29001", "1")])
    rest.gate = trio.Event()  # hold the answers until the stream has delivered a price
    feed = await start_feed(nursery, fake, rest_snapshot=True, rest_url=rest.url, rest_timeout=100_000,
                            silence_timeout=100_000)
    btc = Collector()
    feed.subscribe("BTCUSDT", btc)
    await wait(fake, lambda: fake.connections == 1)
    await fake.book_ticker("BTCUSDT", "30000", "30001")
    assert (await btc.next()).price == Decimal("30000.5")

    rest.gate.set()
    depth_ = await btc.next()  # the price snapshot was dropped (the stream's is newer); no depth streamed yet
    assert isinstance(depth_, DepthSnapshot) and depth_.best_bid == Decimal("28999")
    assert [type(item) for item in btc.items] == [PriceTick, DepthSnapshot]
    assert feed.statistics().rest_snapshots == 1


async def test_rest_failures_are_counted_not_fatal(
    nursery: trio.Nursery, fake: FakeBinance, rest: FakeBinanceRest, clock: trio.abc.Clock
) -> None:
    rest.status = 503
    feed = await start_feed(nursery, fake, rest_snapshot=True, rest_url=rest.url)
    btc = Collector()
    feed.subscribe("BTCUSDT", btc)
    await eventually(lambda: feed.statistics().rest_failures == 2)
    assert len(rest.requests) == 2

    await wait(fake, lambda: fake.connections == 1)
    await fake.book_ticker("BTCUSDT", "100", "101")
    assert (await btc.next()).price == Decimal("100.5")
    assert btc.items[0].price == Decimal("100.5")  # type: ignore[union-attr]
    assert feed.symbol_statistics("BTCUSDT").rejected == 2


# ---------------------------------------------------------------------------------------------------------------
# Cancellation, configuration, registration
# ---------------------------------------------------------------------------------------------------------------


async def test_cancelling_run_returns_promptly(nursery: trio.Nursery, fake: FakeBinance, rest: FakeBinanceRest,
                                               clock: trio.abc.Clock) -> None:
    rest.prices["BTCUSDT"] = "99"
    feed = BinanceFeed(BinanceFeed.Config(ws_url=fake.url, rest_url=rest.url, rest_snapshot=True))
    btc = Collector()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as inner:
            await inner.start(feed.run)
            feed.subscribe("BTCUSDT", btc)
            await wait(fake, lambda: fake.connections == 1)
            assert (await btc.next()).price == Decimal("99")  # the HTTP client is open too
            await fake.book_ticker("BTCUSDT", "100", "101")
            assert (await btc.next()).price == Decimal("100.5")
            cancelled_at = trio.current_time()
            scope.cancel()
    assert trio.current_time() - cancelled_at < 0.1  # no timeout waited on: the clock never had to jump
    assert not feed.statistics().connected
    await wait(fake, lambda: fake.connections == 0)

    await nursery.start(feed.run)  # and it can run again
    await wait(fake, lambda: fake.connections == 1)


def test_subscribe_refuses_what_is_not_a_binance_symbol() -> None:
    feed = BinanceFeed()
    for symbol in ["", "BTC/USDT", "btc@usdt", "A" * 21]:
        with pytest.raises(ValueError, match="symbol"):
            feed.subscribe(symbol, Collector())


def test_config_defaults() -> None:
    config = structure_config({}, BinanceFeed.Config)
    assert config == BinanceFeed.Config(
        ws_url="wss://stream.binance.com:9443", rest_url="https://api.binance.com", streams=("bookTicker", "depth"),
        depth_levels=5, depth_speed="1000ms", silence_timeout=30, max_connection_age=23.5 * 3600,
        backoff_initial=0.5, backoff_max=30, rest_snapshot=False, rest_timeout=5,
    )
    assert structure_config({"streams": ["trade"], "ws_url": "ws://10.0.0.1:9000/"}, BinanceFeed.Config).streams == (
        "trade",
    )


@pytest.mark.parametrize(
    "options, key",
    [
        ({"ws_url": "https://stream.binance.com"}, "ws_url"),
        ({"ws_url": "wss://stream.binance.com/stream?streams=x"}, "ws_url"),
        ({"ws_url": "wss://host:port"}, "ws_url"),
        ({"rest_url": "ftp://api.binance.com"}, "rest_url"),
        ({"streams": ["bookTicker", "kline"]}, "streams"),
        ({"streams": "bookTicker"}, "streams"),
        ({"streams": []}, "streams"),
        ({"streams": ["trade", "trade"]}, "streams"),
        ({"depth_levels": 7}, "depth_levels"),
        ({"depth_levels": True}, "depth_levels"),
        ({"depth_speed": "500ms"}, "depth_speed"),
        ({"silence_timeout": 0}, "silence_timeout"),
        ({"silence_timeout": "soon"}, "silence_timeout"),
        ({"max_connection_age": -1}, "max_connection_age"),
        ({"backoff_initial": 0}, "backoff_initial"),
        ({"backoff_initial": 5, "backoff_max": 1}, "backoff_max"),
        ({"rest_snapshot": "yes"}, "rest_snapshot"),
        ({"rest_timeout": float("inf")}, "rest_timeout"),
        ({"wsurl": "wss://stream.binance.com:9443"}, "wsurl"),
    ],
)
def test_config_errors_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(mmframe.ConfigError, match=key):
        structure_config(options, BinanceFeed.Config)


def test_the_plugin_registers_the_feed_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMFRAME_LOAD_PLUGINS", raising=False)
    loaded = load_plugins()
    assert loaded.plugin("binance") is mmframe_binance
    assert loaded.feeds["binance"] is BinanceFeed


def test_the_feed_fits_the_protocol() -> None:
    assert isinstance(BinanceFeed(), mmframe.ExchangeFeed)
    assert BinanceFeed.name == "binance"
    assert mmframe_binance.__all__ == ["BinanceFeed", "BinanceFeedStatistics", "register_feeds"]


# ---------------------------------------------------------------------------------------------------------------
# The fake itself
# ---------------------------------------------------------------------------------------------------------------


async def test_the_fake_serves_only_combined_streams(fake: FakeBinance, clock: trio.abc.Clock) -> None:
    with pytest.raises(ConnectionRejected) as refused:
        async with open_websocket_url(fake.url + "/ws/btcusdt@bookTicker"):
            pass
    assert refused.value.status_code == 404
    assert fake.paths == ["/ws/btcusdt@bookTicker"]


async def test_the_fake_answers_like_binance(fake: FakeBinance, clock: trio.abc.Clock) -> None:
    async with open_websocket_url(fake.url + "/stream?streams=btcusdt@trade") as ws:
        await ws.send_message('{"method":"SUBSCRIBE","params":["ethusdt@trade"],"id":1}')
        assert json.loads(await ws.get_message()) == {"result": None, "id": 1}
        await ws.send_message('{"method":"LIST_SUBSCRIPTIONS","id":2}')
        assert json.loads(await ws.get_message()) == {"result": ["btcusdt@trade", "ethusdt@trade"], "id": 2}
        assert fake.subscriptions == {"btcusdt@trade", "ethusdt@trade"}
        await fake.trade("ETHUSDT", "2000.5", "0.1")
        message = json.loads(await ws.get_message())
        assert message["stream"] == "ethusdt@trade"
        assert {k: message["data"][k] for k in ("e", "s", "p", "q", "m")} == {
            "e": "trade", "s": "ETHUSDT", "p": "2000.5", "q": "0.1", "m": False,
        }
