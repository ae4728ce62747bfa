"""The Redis market-data bus: its wire format, the ``redis`` feed and the publisher, against real Redis servers.

The machine's Redis (127.0.0.1:6379) serves the plain tests, each on channels of its own exchange name; the
restart tests run a private ``redis-server`` (:class:`mmframe.testing.RedisServer`) that they kill and start again.
Waiting here is for real I/O (Redis, its worker threads), so these tests run on the real clock, polling for a
condition with a deadline; nothing asserts how long something took except the 1 s promises the issue makes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import redis
import trio

from mmframe._bus import BusPublisher, RedisFeed, decode_depth, decode_price, encode
from mmframe._bus.link import Subscriber
from mmframe._models import DepthSnapshot, MarketData, PriceTick
from mmframe._settings import RedisSettings
from mmframe.feedtools import Backoff, BadMessage
from mmframe.testing import RedisServer

D = Decimal


async def eventually(predicate: Callable[[], object], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Poll *predicate* until it holds; fail after *timeout* seconds. (The state changes in worker threads and
    in Redis, which cannot set a trio.Event.)"""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.01)


def exchange_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def pump_threads() -> list[threading.Thread]:
    """Threads executing a Subscriber's pump right now."""
    frames = sys._current_frames()
    found = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        while frame is not None:
            if frame.f_code is Subscriber._pump.__code__:
                found.append(thread)
                break
            frame = frame.f_back
    return found


# ---- the wire format ----------------------------------------------------------------------------------------


def test_a_tick_round_trips_exactly_in_the_seeds_format() -> None:
    tick = PriceTick("binance", "BTCUSDT", D("45000.50"), timestamp=1699999999.999, bid="45000.4", ask="45000.6")
    channel, payload = encode("binance", tick)
    assert channel == "price:update:binance:BTCUSDT"
    body = json.loads(payload)
    assert body == {"exchange": "binance", "symbol": "BTCUSDT", "price": "45000.50", "timestamp": 1699999999999,
                    "bid": "45000.4", "ask": "45000.6"}
    back = decode_price(payload.encode(), "binance", "BTCUSDT")
    assert (back.price, back.bid, back.ask) == (D("45000.50"), D("45000.4"), D("45000.6"))
    assert str(back.price) == "45000.50" and back.timestamp == pytest.approx(1699999999.999)


def test_the_seeds_json_numbers_are_read_exactly() -> None:
    payload = b'{"exchange":"binance","symbol":"BTCUSDT","price":45000.10,"timestamp":1699999999999}'
    tick = decode_price(payload, "binance", "BTCUSDT")
    assert tick.price == D("45000.10") and str(tick.price) == "45000.10"  # not 45000.099999...
    depth = b'{"bids":[[45000.50,1.2],[45000.00,2.5]],"asks":[[45001.00,1.1]],"timestamp":1699999999999}'
    snap = decode_depth(depth, "binance", "BTCUSDT")
    assert snap.bids == ((D("45000.50"), D("1.2")), (D("45000.00"), D("2.5")))
    assert snap.asks == ((D("45001.00"), D("1.1")),)


def test_depth_round_trips_and_is_sorted_best_first() -> None:
    snap = DepthSnapshot("okex", "ETHUSDT", bids=[("99", "1"), ("100", "2")], asks=[("102", "3"), ("101", "4")],
                         timestamp=1.5)
    channel, payload = encode("okex", snap)
    assert channel == "depth:update:okex:ETHUSDT"
    back = decode_depth(payload, "okex", "ETHUSDT")
    assert back.best_bid == D("100") and back.best_ask == D("101")
    assert json.loads(payload)["bids"] == [["99", "1"], ["100", "2"]]


BAD_PRICE_PAYLOADS = [
    b"garbage",
    b'{"symbol":"BTCUSDT","price":"1',  # truncated
    b"[1, 2]",
    b'{"symbol":"ETHUSDT","price":"1","timestamp":1}',  # another symbol's tick on this channel
    b'{"price":"abc","timestamp":1}',
    b'{"price":"-1","timestamp":1}',
    b'{"price":0,"timestamp":1}',
    b'{"price":true,"timestamp":1}',
    b'{"price":NaN,"timestamp":1}',
    b'{"price":"Infinity","timestamp":1}',
    b'{"price":"1"}',
    b'{"price":"1","timestamp":"soon"}',
    b'{"price":"1","timestamp":1,"exchange":7}',
    b'{"price":"10","bid":"11","ask":"9","timestamp":1}',  # crossed
    b'\xff\xfe{"price":"1"}',
    b'{"price":"1","timestamp":1,"pad":"' + b"x" * 70_000 + b'"}',
]


@pytest.mark.parametrize("payload", BAD_PRICE_PAYLOADS, ids=range(len(BAD_PRICE_PAYLOADS)))
def test_a_bad_price_payload_is_refused(payload: bytes) -> None:
    with pytest.raises(BadMessage):
        decode_price(payload, "binance", "BTCUSDT")


@pytest.mark.parametrize(
    "payload",
    [b'{"bids":"x","asks":[],"timestamp":1}', b'{"bids":[["1"]],"asks":[],"timestamp":1}',
     b'{"bids":[["100","1"]],"asks":[["99","1"]],"timestamp":1}', b'{"bids":[["1","-2"]],"asks":[],"timestamp":1}'],
)
def test_a_bad_depth_payload_is_refused(payload: bytes) -> None:
    with pytest.raises(BadMessage):
        decode_depth(payload, "binance", "BTCUSDT")


# ---- the redis feed -----------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.items: list[MarketData] = []

    def __call__(self, item: MarketData) -> None:
        self.items.append(item)

    @property
    def prices(self) -> list[Decimal]:
        return [i.price for i in self.items if isinstance(i, PriceTick)]


def numsub(client: redis.Redis, channel: str) -> int:
    return int(client.pubsub_numsub(channel)[0][1])


async def test_the_redis_feed_delivers_ticks_and_depth_and_counts_bad_payloads(redis_address: RedisSettings) -> None:
    exchange = exchange_name()
    feed = RedisFeed(RedisFeed.Config(exchange=exchange))
    client = redis.Redis(host=redis_address.host, port=redis_address.port)
    got = Recorder()
    channel = f"price:update:{exchange}:BTCUSDT"
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        feed.subscribe("BTCUSDT", got)
        await eventually(lambda: numsub(client, channel) == 1 and feed.symbol_statistics("BTCUSDT").connected)
        now_ms = int(time.time() * 1000)
        client.publish(channel, json.dumps({"exchange": exchange, "symbol": "BTCUSDT", "price": "30000.10",
                                            "timestamp": now_ms}))
        for bad in (b"not json", b'{"price":"-5","timestamp":1}', b'{"symbol":"ETHUSDT","price":"1","timestamp":1}'):
            client.publish(channel, bad)
        client.publish(f"depth:update:{exchange}:BTCUSDT",
                       json.dumps({"bids": [["29999", "1"]], "asks": [["30001", "2"]], "timestamp": now_ms}))
        client.publish(channel, json.dumps({"price": "30000.20", "timestamp": now_ms + 1}))
        await eventually(lambda: len(got.items) == 3)
        assert got.prices == [D("30000.10"), D("30000.20")]
        depth = [i for i in got.items if isinstance(i, DepthSnapshot)]
        assert depth[0].bids == ((D("29999"), D("1")),) and depth[0].exchange == exchange
        stats = feed.symbol_statistics("BTCUSDT")
        assert (stats.messages, stats.rejected, stats.last_price) == (3, 3, D("30000.20"))
        assert stats.feed == "redis" and stats.reconnects == 0
        nursery.cancel_scope.cancel()
    client.close()


async def test_closing_a_subscription_unsubscribes_within_a_second(redis_address: RedisSettings) -> None:
    exchange = exchange_name()
    feed = RedisFeed(RedisFeed.Config(exchange=exchange, depth=False))
    client = redis.Redis(host=redis_address.host, port=redis_address.port)
    btc, eth = Recorder(), Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        sub = feed.subscribe("BTCUSDT", btc)
        feed.subscribe("ETHUSDT", eth)
        await eventually(lambda: numsub(client, f"price:update:{exchange}:BTCUSDT") == 1
                         and numsub(client, f"price:update:{exchange}:ETHUSDT") == 1)
        sub.close()
        closed_at = trio.current_time()
        await eventually(lambda: numsub(client, f"price:update:{exchange}:BTCUSDT") == 0, timeout=1.0)
        assert trio.current_time() - closed_at < 1.0
        client.publish(f"price:update:{exchange}:BTCUSDT", json.dumps({"price": "1", "timestamp": time.time()}))
        client.publish(f"price:update:{exchange}:ETHUSDT", json.dumps({"price": "2", "timestamp": time.time()}))
        await eventually(lambda: eth.prices == [D("2")])
        assert btc.items == []  # nothing after the close, and the other market is untouched
        nursery.cancel_scope.cancel()
    client.close()


async def test_cancelling_the_feed_leaves_no_thread_behind(redis_address: RedisSettings) -> None:
    feed = RedisFeed(RedisFeed.Config(exchange=exchange_name()))
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(feed.run)
            feed.subscribe("BTCUSDT", Recorder())
            await eventually(lambda: feed.symbol_statistics("BTCUSDT").connected and pump_threads())
            cancelled_at = trio.current_time()
            scope.cancel()
    assert trio.current_time() - cancelled_at < 1.0
    assert pump_threads() == []  # run() returned only once its thread had finished
    assert not feed.symbol_statistics("BTCUSDT").connected


async def test_the_redis_feed_survives_a_redis_restart(private_redis: RedisServer) -> None:
    address = RedisSettings(port=private_redis.port)
    feed = RedisFeed(RedisFeed.Config(port=private_redis.port, exchange="binance", backoff_initial=0.05,
                                      backoff_max=0.5))
    got = Recorder()
    channel = "price:update:binance:BTCUSDT"

    def publish(price: str) -> None:
        with redis.Redis(host=address.host, port=address.port) as client:
            client.publish(channel, json.dumps({"price": price, "timestamp": time.time()}))

    def subscribed() -> bool:
        with redis.Redis(host=address.host, port=address.port) as client:
            return numsub(client, channel) == 1

    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        feed.subscribe("BTCUSDT", got)
        await eventually(subscribed)
        publish("100")
        await eventually(lambda: got.prices == [D("100")])
        private_redis.stop()
        await eventually(lambda: not feed.symbol_statistics("BTCUSDT").connected)
        private_redis.start()
        await eventually(subscribed)  # reconnected and subscribed again, with no help
        publish("101")
        await eventually(lambda: got.prices == [D("100"), D("101")])
        stats = feed.symbol_statistics("BTCUSDT")
        assert stats.reconnects == 1 and stats.connected  # one outage, however many attempts it took
        nursery.cancel_scope.cancel()


# ---- the publisher ------------------------------------------------------------------------------------------


class ChannelReader:
    """A plain redis-py subscriber, polled without blocking, to see what reached Redis."""

    def __init__(self, port: int, *channels: str) -> None:
        self.port = port
        self.channels = channels
        self.received: list[dict[str, Any]] = []
        self._connect()

    def _connect(self) -> None:
        self.client = redis.Redis(port=self.port)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(*self.channels)
        deadline = time.monotonic() + 5
        while any(numsub(self.client, channel) == 0 for channel in self.channels):  # the server has it
            assert time.monotonic() < deadline, "the reader's SUBSCRIBE never took effect"
            self.pubsub.get_message(timeout=0.01)

    def poll(self) -> list[dict[str, Any]]:
        while (message := self.pubsub.get_message(timeout=0)) is not None:
            self.received.append(json.loads(message["data"]))
        return self.received

    def reconnect(self) -> None:
        self.close()
        self._connect()

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


async def test_the_publisher_sends_the_seeds_format_and_conflates(redis_address: RedisSettings) -> None:
    exchange = exchange_name()
    reader = ChannelReader(redis_address.port, f"price:update:{exchange}:BTCUSDT", f"depth:update:{exchange}:BTCUSDT")
    publisher = BusPublisher(redis_address)
    now = time.time()
    for price in ("100.10", "100.20", "100.30"):  # before run starts: only the newest leaves
        publisher.publish(exchange, PriceTick("x", "BTCUSDT", D(price), timestamp=now))
    publisher.publish(exchange, DepthSnapshot("x", "BTCUSDT", bids=[("100", "1")], asks=[("101", "2")], timestamp=now))
    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run)
        await eventually(lambda: len(reader.poll()) == 2)
        assert reader.received[0] == {"exchange": exchange, "symbol": "BTCUSDT", "price": "100.30",
                                      "timestamp": round(now * 1000)}
        assert reader.received[1]["bids"] == [["100", "1"]] and reader.received[1]["asks"] == [["101", "2"]]
        stats = publisher.statistics()
        assert (stats.published, stats.conflated, stats.connected) == (2, 2, True)
        nursery.cancel_scope.cancel()
    reader.close()


async def test_the_publisher_survives_a_redis_restart_and_sends_the_newest_price(private_redis: RedisServer) -> None:
    # A fixed 2 s between attempts: the reader is subscribed again long before the publisher's next try.
    publisher = BusPublisher(RedisSettings(port=private_redis.port), backoff=Backoff(2.0, 2.0, jitter=0))
    reader = ChannelReader(private_redis.port, "price:update:binance:BTCUSDT")

    def tick(price: str) -> PriceTick:
        return PriceTick("binance", "BTCUSDT", D(price), timestamp=time.time())

    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run)
        publisher.publish("binance", tick("1"))
        await eventually(lambda: [m["price"] for m in reader.poll()] == ["1"])
        private_redis.stop()
        publisher.publish("binance", tick("2"))
        await eventually(lambda: publisher.statistics().failures >= 1)
        publisher.publish("binance", tick("3"))  # Redis is still away: "3" replaces the unsent "2"
        assert publisher.statistics().pending == 1 and not publisher.statistics().connected
        private_redis.start()
        reader.reconnect()
        await eventually(lambda: [m["price"] for m in reader.poll()] == ["1", "3"])  # "2" never left
        # the reader can see "3" before the publisher's task is back from the sending thread to note it
        await eventually(lambda: publisher.statistics().connected)
        stats = publisher.statistics()
        assert stats.connected and stats.reconnects == 1 and stats.pending == 0
        nursery.cancel_scope.cancel()
    reader.close()
