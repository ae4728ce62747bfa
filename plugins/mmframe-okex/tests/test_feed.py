"""The ``okex`` feed against :class:`~mmframe_okex.testing.FakeOkx` over real loopback WebSockets, on trio's
MockClock (the ``clock`` fixture): what each push becomes, subscriptions coming and going, keepalive, reconnects
with backoff, and every kind of bad frame counted and skipped."""

from __future__ import annotations

import itertools
import json
import math
import time
from decimal import Decimal
from typing import Any

import pytest
import trio
from mmframe_okex import OkexFeed
from mmframe_okex.testing import FakeOkx

from mmframe import DepthSnapshot, MarketData, PriceTick, structure_config

DEADLINE = 120.0  # mock seconds: a wait that never ends fails the test instead of hanging it
BOTH = ("tickers", "books5")
TICKER = {  # OKX's documented example
    "instType": "SPOT", "instId": "BTC-USDT", "last": "9999.99", "lastSz": "0.1", "askPx": "9999.99",
    "askSz": "11", "bidPx": "8888.88", "bidSz": "5", "open24h": "9000", "high24h": "10000", "low24h": "8888.88",
    "volCcy24h": "2222", "vol24h": "2222", "sodUtc0": "2222", "sodUtc8": "2222", "ts": "1597026383085",
}
BOOK = {  # OKX's documented example
    "asks": [["8476.98", "415", "0", "13"]], "bids": [["8476.97", "256", "0", "12"]], "instId": "BTC-USDT",
    "ts": "1597026383085", "seqId": 123456,
}


class Inbox:
    """A listener that keeps what it is given, in order; ``await inbox.next()`` waits for the next item."""

    def __init__(self) -> None:
        self.items: list[MarketData] = []
        self._send, self._receive = trio.open_memory_channel[MarketData](math.inf)

    def __call__(self, item: MarketData) -> None:
        self.items.append(item)
        self._send.send_nowait(item)

    async def next(self) -> MarketData:
        with trio.fail_after(DEADLINE):
            return await self._receive.receive()


async def start(nursery: trio.Nursery, server: FakeOkx | None = None, **config: Any) -> tuple[FakeOkx, OkexFeed]:
    server = server if server is not None else FakeOkx()
    url = await nursery.start(server.serve)
    feed = OkexFeed(structure_config({"ws_url": url, **config}, OkexFeed.Config))
    await nursery.start(feed.run)
    return server, feed


async def until(server: FakeOkx, predicate: Any) -> None:
    with trio.fail_after(DEADLINE):
        await server.wait_until(predicate)


def subscribed(server: FakeOkx, *inst_ids: str, channels: tuple[str, ...] = BOTH) -> Any:
    return lambda: {(channel, inst_id) for inst_id in inst_ids for channel in channels} <= server.subscriptions


def push(channel: str, entry: object, inst_id: str = "BTC-USDT") -> str:
    return json.dumps({"arg": {"channel": channel, "instId": inst_id}, "data": [entry]})


# ---------------------------------------------------------------------------------------------------------------
# The normal flow
# ---------------------------------------------------------------------------------------------------------------


async def test_a_ticker_becomes_a_price_tick_with_exact_decimals(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery)
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)
    await until(server, subscribed(server, "BTC-USDT"))

    before = trio.current_time()
    await server.send_raw(push("tickers", TICKER))
    tick = await inbox.next()

    assert isinstance(tick, PriceTick)
    assert (tick.exchange, tick.symbol) == ("okex", "BTCUSDT")
    assert (str(tick.price), str(tick.bid), str(tick.ask)) == ("9999.99", "8888.88", "9999.99")
    assert trio.current_time() == before  # no waiting anywhere on the way
    stats = feed.symbol_statistics("BTCUSDT")
    assert (stats.feed, stats.messages, stats.last_price, stats.rejected) == ("okex", 1, Decimal("9999.99"), 0)
    assert stats.connected and feed.connected and stats.reconnects == 0


async def test_the_tick_is_stamped_with_the_wall_clock_receive_time(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery)
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)
    await until(server, subscribed(server, "BTC-USDT"))

    before = time.time()
    await server.send_raw(push("tickers", TICKER))  # ts says 2020; the tick says now
    tick = await inbox.next()

    assert before <= tick.timestamp <= time.time()


async def test_an_empty_bid_or_ask_is_none(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery)
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)
    await until(server, subscribed(server, "BTC-USDT"))

    assert await server.ticker("BTC-USDT", "30000.10") == 1
    tick = await inbox.next()

    assert isinstance(tick, PriceTick)
    assert (tick.price, tick.bid, tick.ask) == (Decimal("30000.10"), None, None)


async def test_books5_becomes_a_sorted_depth_snapshot(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery)
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)
    await until(server, subscribed(server, "BTC-USDT"))

    await server.books5("BTC-USDT", bids=[("99.5", "1"), ("100", "2"), ("98", "0")],
                        asks=[("102", "1"), ("101.25", "3")], seq_id=7)
    await server.send_raw(push("books5", BOOK))
    first, second = await inbox.next(), await inbox.next()

    assert isinstance(first, DepthSnapshot) and isinstance(second, DepthSnapshot)
    assert (first.exchange, first.symbol, first.sequence) == ("okex", "BTCUSDT", 7)
    assert first.bids == ((Decimal("100"), Decimal("2")), (Decimal("99.5"), Decimal("1")))  # a size-0 level dropped
    assert first.asks == ((Decimal("101.25"), Decimal("3")), (Decimal("102"), Decimal("1")))
    assert (second.bids, second.asks, second.sequence) == (
        ((Decimal("8476.97"), Decimal("256")),), ((Decimal("8476.98"), Decimal("415")),), 123456)


async def test_books5_without_seq_id_has_sequence_zero(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery, channels=["books5"])
    inbox = Inbox()
    feed.subscribe("BTC-USDT", inbox)
    await until(server, subscribed(server, "BTC-USDT", channels=("books5",)))

    await server.books5("BTC-USDT", bids=[("1", "1")], asks=[("2", "1")])
    depth = await inbox.next()

    assert isinstance(depth, DepthSnapshot) and depth.sequence == 0 and depth.symbol == "BTC-USDT"


async def test_two_symbols_share_one_connection(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery)
    btc, eth = Inbox(), Inbox()
    feed.subscribe("BTCUSDT", btc)
    feed.subscribe("ETHBTC", eth)
    await until(server, subscribed(server, "BTC-USDT", "ETH-BTC"))

    await server.ticker("ETH-BTC", "0.05123", bid="0.0512", ask="0.0513")
    await server.ticker("BTC-USDT", "30000")

    assert (await eth.next()).price == Decimal("0.05123")
    assert (await btc.next()).price == Decimal("30000")
    assert server.connections_accepted == 1
    assert len(btc.items) == len(eth.items) == 1


async def test_both_spellings_of_one_instrument_get_its_data(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery, channels=["tickers"])
    plain, dashed = Inbox(), Inbox()
    feed.subscribe("BTCUSDT", plain)
    feed.subscribe("BTC-USDT", dashed)
    await until(server, subscribed(server, "BTC-USDT", channels=("tickers",)))

    await server.ticker("BTC-USDT", "30000")

    assert [(t.symbol, t.price) for t in (await plain.next(), await dashed.next())] == [
        ("BTCUSDT", Decimal("30000")), ("BTC-USDT", Decimal("30000"))]
    args = [arg for op in server.ops("subscribe") for arg in op]
    assert args == [{"channel": "tickers", "instId": "BTC-USDT"}]  # subscribed once


async def test_symbols_subscribed_before_run_are_sent_in_batches(nursery: trio.Nursery, clock: Any) -> None:
    server = FakeOkx()
    url = await nursery.start(server.serve)
    feed = OkexFeed(OkexFeed.Config(ws_url=url, max_subscribe_batch=3))
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDC", "OKBUSDT"):
        feed.subscribe(symbol, Inbox())
    await nursery.start(feed.run)

    await until(server, subscribed(server, "BTC-USDT", "ETH-USDT", "SOL-USDC", "OKB-USDT"))

    assert [len(args) for args in server.ops("subscribe")] == [3, 3, 2]
    assert len({(a["channel"], a["instId"]) for args in server.ops("subscribe") for a in args}) == 8


# ---------------------------------------------------------------------------------------------------------------
# Subscriptions coming and going
# ---------------------------------------------------------------------------------------------------------------


async def test_symbols_are_subscribed_and_unsubscribed_as_they_come_and_go(
    nursery: trio.Nursery, clock: Any
) -> None:
    server, feed = await start(nursery, channels=["tickers"])
    btc, eth = Inbox(), Inbox()
    feed.subscribe("BTCUSDT", btc)
    await until(server, subscribed(server, "BTC-USDT", channels=("tickers",)))
    eth_subscription = feed.subscribe("ETHUSDT", eth)
    await until(server, subscribed(server, "ETH-USDT", channels=("tickers",)))
    await server.ticker("ETH-USDT", "2000")
    assert (await eth.next()).price == Decimal("2000")

    eth_subscription.close()
    await server.send_raw(push("tickers", {**TICKER, "instId": "ETH-USDT"}, "ETH-USDT"))  # in flight meanwhile
    await until(server, lambda: ("tickers", "ETH-USDT") not in server.subscriptions)
    await server.ticker("BTC-USDT", "30000")

    assert (await btc.next()).price == Decimal("30000")
    assert len(eth.items) == 1  # nothing after the close
    assert feed.symbol_statistics("ETHUSDT").messages == 1
    assert server.ops("subscribe") == [[{"channel": "tickers", "instId": "BTC-USDT"}],
                                       [{"channel": "tickers", "instId": "ETH-USDT"}]]
    assert server.ops("unsubscribe") == [[{"channel": "tickers", "instId": "ETH-USDT"}]]
    assert server.connections_accepted == 1


async def test_a_closed_listener_gets_nothing_while_another_keeps_the_symbol(
    nursery: trio.Nursery, clock: Any
) -> None:
    server, feed = await start(nursery)
    kept, closed = Inbox(), Inbox()
    feed.subscribe("BTCUSDT", kept)
    subscription = feed.subscribe("BTCUSDT", closed)
    await until(server, subscribed(server, "BTC-USDT"))

    subscription.close()
    await server.ticker("BTC-USDT", "30000")

    assert (await kept.next()).price == Decimal("30000")
    assert closed.items == []
    assert server.ops("unsubscribe") == []  # the symbol still has a listener


async def test_the_connection_closes_with_the_last_symbol_and_opens_with_the_next(
    nursery: trio.Nursery, clock: Any
) -> None:
    server, feed = await start(nursery)
    subscription = feed.subscribe("BTCUSDT", Inbox())
    await until(server, subscribed(server, "BTC-USDT"))

    subscription.close()
    await until(server, lambda: not server.connections)
    assert not feed.connected
    inbox = Inbox()
    feed.subscribe("ETHUSDT", inbox)
    await until(server, subscribed(server, "ETH-USDT"))
    await server.ticker("ETH-USDT", "2000")

    assert (await inbox.next()).price == Decimal("2000")
    assert server.connections_accepted == 2
    assert feed.symbol_statistics("ETHUSDT").reconnects == 0  # closing for lack of symbols is no reconnect


async def test_a_listener_that_raises_is_dropped_and_the_others_carry_on(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery)
    calls = []

    def broken(item: MarketData) -> None:
        calls.append(item)
        raise RuntimeError("boom")

    inbox = Inbox()
    feed.subscribe("BTCUSDT", broken)
    feed.subscribe("BTCUSDT", inbox)
    await until(server, subscribed(server, "BTC-USDT"))

    await server.ticker("BTC-USDT", "1")
    await server.ticker("BTC-USDT", "2")

    assert [(await inbox.next()).price, (await inbox.next()).price] == [Decimal(1), Decimal(2)]
    assert len(calls) == 1
    assert server.connections_accepted == 1


def test_a_symbol_that_maps_to_no_instrument_is_refused_at_subscribe() -> None:
    feed = OkexFeed()
    for symbol in ("USDT", "FOOBAR", "BTC--USDT", "", "BTC/USDT"):
        with pytest.raises(ValueError, match="okex feed"):
            feed.subscribe(symbol, Inbox())


# ---------------------------------------------------------------------------------------------------------------
# Reconnects and keepalive
# ---------------------------------------------------------------------------------------------------------------


async def test_a_server_close_reconnects_and_resubscribes(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery)
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)
    await until(server, subscribed(server, "BTC-USDT"))

    await server.close_all(1001)
    await until(server, lambda: server.connections_accepted == 2 and subscribed(server, "BTC-USDT")())
    await server.ticker("BTC-USDT", "30000")

    assert (await inbox.next()).price == Decimal("30000")
    assert feed.symbol_statistics("BTCUSDT").reconnects == 1
    assert len(server.ops("subscribe")) == 2


async def test_after_ping_interval_of_silence_the_feed_pings_and_carries_on_with_the_pong(
    nursery: trio.Nursery, clock: Any
) -> None:
    server, feed = await start(nursery)
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)
    await until(server, subscribed(server, "BTC-USDT"))

    await trio.sleep(19)
    assert server.pings_received == 0  # not before ping_interval (20 s) of silence
    await until(server, lambda: server.pings_received == 1)
    await trio.sleep(25)  # past the pong timeout, and one more ping 20 s after the pong
    await server.ticker("BTC-USDT", "30000")

    assert (await inbox.next()).price == Decimal("30000")
    assert server.pings_received == 2
    assert server.connections_accepted == 1
    assert feed.symbol_statistics("BTCUSDT").reconnects == 0
    assert feed.symbol_statistics("BTCUSDT").rejected == 0  # pong is not data and not a reject


@pytest.mark.parametrize("mode", ["no pongs", "silent"])
async def test_without_a_pong_the_feed_reconnects(nursery: trio.Nursery, clock: Any, mode: str) -> None:
    server, feed = await start(nursery)
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)
    await until(server, subscribed(server, "BTC-USDT"))
    started = trio.current_time()

    if mode == "silent":
        server.silent = True
    else:
        server.answer_pings = False
    await until(server, lambda: server.connections_accepted == 2)
    elapsed = trio.current_time() - started
    server.silent, server.answer_pings = False, True
    await until(server, lambda: len(server.connections) == 1 and subscribed(server, "BTC-USDT")())
    await server.ticker("BTC-USDT", "30000")

    assert (await inbox.next()).price == Decimal("30000")
    assert server.pings_received == 1
    assert 30 <= elapsed <= 30.5  # ping_interval + pong_timeout, then a first backoff of at most 0.5 s
    assert feed.symbol_statistics("BTCUSDT").reconnects == 1


async def test_any_message_after_a_ping_keeps_the_connection(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery)
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)
    await until(server, subscribed(server, "BTC-USDT"))
    server.answer_pings = False

    await until(server, lambda: server.pings_received == 1)
    await server.ticker("BTC-USDT", "30000")
    assert (await inbox.next()).price == Decimal("30000")
    await trio.sleep(15)  # past the first ping's pong timeout, before the second ping's

    assert server.connections_accepted == 1
    assert feed.symbol_statistics("BTCUSDT").reconnects == 0


async def test_an_upgrade_notice_makes_the_feed_reconnect(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery)
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)
    await until(server, subscribed(server, "BTC-USDT"))

    await server.notice("64008")
    await until(server, lambda: server.connections_accepted == 2 and len(server.connections) == 1
                and subscribed(server, "BTC-USDT")())
    await server.ticker("BTC-USDT", "30000")

    assert (await inbox.next()).price == Decimal("30000")
    assert feed.symbol_statistics("BTCUSDT").reconnects == 1
    assert feed.symbol_statistics("BTCUSDT").rejected == 0


async def test_reconnect_delays_grow_exponentially_and_reset_after_data(nursery: trio.Nursery, clock: Any) -> None:
    server = FakeOkx()
    server.refuse = True
    server, feed = await start(nursery, server)
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)

    await until(server, lambda: len(server.handshake_times) == 5)
    times = server.handshake_times
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    for attempt, gap in enumerate(gaps):
        delay = 0.5 * 2**attempt  # backoff_initial doubling; jitter takes up to half off
        assert delay / 2 - 0.01 <= gap <= delay + 0.01, (attempt, gaps)

    server.refuse = False
    await until(server, subscribed(server, "BTC-USDT"))
    await server.ticker("BTC-USDT", "30000")
    await inbox.next()
    closed_at = trio.current_time()
    await server.close_all()
    await until(server, lambda: server.connections_accepted == 2)

    assert server.handshake_times[-1] - closed_at <= 0.5 + 0.01  # the backoff started again from 0.5 s
    assert feed.symbol_statistics("BTCUSDT").reconnects == 1  # one outage (the close), not the 5 refused attempts


@pytest.mark.parametrize("while_", ["connected", "waiting to reconnect"])
async def test_cancelling_run_returns_promptly(clock: Any, while_: str) -> None:
    server = FakeOkx()
    async with trio.open_nursery() as outer:
        url = await outer.start(server.serve)
        feed = OkexFeed(OkexFeed.Config(ws_url=url))
        server.refuse = while_ != "connected"
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as inner:
                await inner.start(feed.run)
                feed.subscribe("BTCUSDT", Inbox())
                if while_ == "connected":
                    await until(server, subscribed(server, "BTC-USDT"))
                else:
                    await until(server, lambda: len(server.handshake_times) == 3)
                inner.cancel_scope.cancel()
                cancelled_at = trio.current_time()
        assert trio.current_time() - cancelled_at < 1
        await until(server, lambda: not server.connections)
        assert not feed.connected
        outer.cancel_scope.cancel()


async def test_run_refuses_to_run_twice(nursery: trio.Nursery, clock: Any) -> None:
    _, feed = await start(nursery)

    with pytest.raises(RuntimeError, match="already running"):
        await feed.run()


# ---------------------------------------------------------------------------------------------------------------
# Error events and bad frames
# ---------------------------------------------------------------------------------------------------------------


async def test_error_events_are_counted_and_the_connection_survives(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery, FakeOkx(instruments={"BTC-USDT"}))
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)
    feed.subscribe("FOOUSDT", Inbox())  # no such instrument: one 60018 error per channel
    await until(server, subscribed(server, "BTC-USDT"))

    await server.send_raw(json.dumps({"event": "error", "code": "60012", "msg": "Invalid request: {}",
                                      "connId": "a4d3ae55"}))
    await server.ticker("BTC-USDT", "30000")

    assert (await inbox.next()).price == Decimal("30000")
    foo, btc = feed.symbol_statistics("FOOUSDT"), feed.symbol_statistics("BTCUSDT")
    assert (foo.rejected, btc.rejected, btc.unattributed_rejected) == (2, 0, 1)
    assert server.connections_accepted == 1 and btc.reconnects == 0 and feed.connected


def _without(entry: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != key}


# (frame, attributed to BTCUSDT?)
BAD_FRAMES: dict[str, tuple[str | bytes, bool]] = {
    "not JSON": ("hello", False),
    "truncated JSON": (push("tickers", TICKER)[:60], False),
    "non-UTF-8 binary frame": (b'{"arg": \xff\xfe}', False),
    "a JSON array": ("[1, 2]", False),
    "deeply nested JSON": ("[" * 100_000, False),
    "a push without instId": (json.dumps({"arg": {"channel": "tickers"}, "data": [TICKER]}), False),
    "arg not an object": (json.dumps({"arg": "tickers", "data": [TICKER]}), False),
    "event not a string": ('{"event": 5}', False),
    "price a JSON number": (push("tickers", {**TICKER, "last": 9999.99}), True),
    "price a bare NaN": (push("tickers", {**TICKER, "last": "X"}).replace('"X"', "NaN"), True),
    "price abc": (push("tickers", {**TICKER, "last": "abc"}), True),
    "price -1": (push("tickers", {**TICKER, "last": "-1"}), True),
    "price 0": (push("tickers", {**TICKER, "last": "0"}), True),
    "price Infinity": (push("tickers", {**TICKER, "last": "Infinity"}), True),
    "price missing": (push("tickers", _without(TICKER, "last")), True),
    "bid not a number": (push("tickers", {**TICKER, "bidPx": "x"}), True),
    "crossed ticker": (push("tickers", {**TICKER, "bidPx": "10000", "askPx": "9999"}), True),
    "data not a list": (json.dumps({"arg": {"channel": "tickers", "instId": "BTC-USDT"}, "data": TICKER}), True),
    "data empty": (json.dumps({"arg": {"channel": "tickers", "instId": "BTC-USDT"}, "data": []}), True),
    "data entry not an object": (push("tickers", "9999.99"), True),
    "entry for another instrument": (push("tickers", {**TICKER, "instId": "ETH-USDT"}), True),
    "unknown channel": (push("trades", TICKER), True),
    "level price a JSON number": (push("books5", {**BOOK, "asks": [[8476.98, "415", "0", "13"]]}), True),
    "level too short": (push("books5", {**BOOK, "bids": [["8476.97"]]}), True),
    "asks not a list": (push("books5", {**BOOK, "asks": "8476.98"}), True),
    "crossed book": (push("books5", {**BOOK, "bids": [["8477", "1", "0", "1"]]}), True),
    "seqId a string": (push("books5", {**BOOK, "seqId": "123456"}), True),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
async def test_a_bad_frame_is_counted_and_skipped(nursery: trio.Nursery, clock: Any, name: str) -> None:
    frame, attributed = BAD_FRAMES[name]
    server, feed = await start(nursery)
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)
    await until(server, subscribed(server, "BTC-USDT"))

    await server.send_raw(frame)
    await server.ticker("BTC-USDT", "30000.5")

    assert (await inbox.next()).price == Decimal("30000.5")  # the bad frame produced nothing
    stats = feed.symbol_statistics("BTCUSDT")
    assert (stats.rejected, stats.unattributed_rejected) == ((1, 0) if attributed else (0, 1))
    assert stats.messages == 1
    assert server.connections_accepted == 1 and stats.reconnects == 0


async def test_data_for_an_instrument_nobody_follows_is_ignored(nursery: trio.Nursery, clock: Any) -> None:
    server, feed = await start(nursery)
    inbox = Inbox()
    feed.subscribe("BTCUSDT", inbox)
    await until(server, subscribed(server, "BTC-USDT"))

    await server.send_raw(push("tickers", {**TICKER, "instId": "ETH-USDT"}, "ETH-USDT"))
    await server.ticker("BTC-USDT", "1")

    assert [item.price for item in [await inbox.next()]] == [Decimal(1)]
    stats = feed.symbol_statistics("BTCUSDT")
    assert (stats.rejected, stats.unattributed_rejected, feed.symbol_statistics("ETH-USDT").messages) == (0, 0, 0)
