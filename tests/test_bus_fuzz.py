"""Fuzz of the bus feed: random and hostile payloads mixed into a good price stream.

Every payload goes through the ``redis`` feed's own message handling (``RedisFeed._on_message``: the seed's wire
format decoded, the feed hub's checks and counters), then the market's index screen, strategy, reconciler, risk gate
and the paper exchange's matching book — on trio's MockClock, so hypothesis can try many streams. (The same path
over a real Redis and the reference match engine is ``plugins/mmframe-match-engine/tests/test_index_on_the_bus.py``.)

The hostile messages are everything a broken or malicious publisher can send: prices times 10 or 0.1, 1e-400, zero,
negative, NaN; future and stale timestamps; bursts of one wrong price; non-JSON, non-UTF-8, deeply nested and
oversized payloads, wrong types, wrong symbols. What must hold: our orders on the book are never further than the
configured band from the good price, and within one refresh of the hostile stream stopping the book holds exactly
the ladder around the good price. (A publisher sending a *plausible* wrong price — within ``max_tick_jump`` — is what
a composite index is for: ``tests/test_index_safety.py``.)
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, ClassVar

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmframe import Market, Side, hookimpl
from mmframe._bus.feed import RedisFeed
from mmframe._default_plugins.paper import PaperSink
from mmframe._engine.manager import StrategyManager
from mmframe._engine.risk import RiskLimits
from mmframe._engine.spec import MarketSpec, MarketState
from mmframe._models import MarketKey
from mmframe._plugins import make_plugin_manager

from .engine_helpers import EnginePlugin

D = Decimal
GOOD = D("45000")
BAND = D("0.001")  # our ladder is index ± 1 and ± 2: anything beyond 0.1 % of the good price came from a bad tick
CHANNEL = "price:update:binance:BTCUSDT"
DEPTH_CHANNEL = "depth:update:binance:BTCUSDT"


class OfflineBus(RedisFeed):
    """The ``redis`` feed with its connection left out: the test hands payloads to its message handler, as the
    connection's pump does."""

    name: ClassVar[str] = "offline_bus"
    instances: ClassVar[list[OfflineBus]] = []

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        OfflineBus.instances.append(self)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.hub.connected()
        task_status.started()
        await trio.sleep_forever()

    def publish(self, channel: str, payload: bytes) -> None:
        for symbol in self.hub.symbols():
            self._routes.update(self._channels(symbol))
        self._on_message(channel.encode(), payload)


class BusPlugin:
    @hookimpl
    def register_feeds(self, register: Any) -> None:
        register(OfflineBus)


MARKET = Market("BTC/USDT", tick_size="0.01", price_precision=2, quantity_precision=4, min_quantity="0.0001")
SPEC = MarketSpec(
    market=MARKET,
    strategy="test_ladder",
    strategy_config={"levels": 2, "step": "1", "quantity": "0.01"},
    feed="offline_bus",
    feed_config={"exchange": "binance"},
    index_symbol="BTCUSDT",
    risk=RiskLimits(price_band="0.05", settled_band="0.02", settled_after=2),
    refresh_interval=1.0,
    stale_after=10.0,
)


def tick_payload(price: object, timestamp_ms: object, **extra: object) -> bytes:
    body = {"exchange": "binance", "symbol": "BTCUSDT", "price": price, "timestamp": timestamp_ms, **extra}
    return json.dumps(body).encode()


def now_ms(offset: float = 0.0) -> int:
    return round((time.time() + offset) * 1000)


FAR = [D(10), D("0.1"), D(100), D("0.01"), D(2), D("0.5"), D("1.5"), D("0.75"), D("1.2"), D("0.85"), D("1.11")]


@st.composite
def hostile(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """One hostile message, or a burst of them: ``(channel, payload)`` pairs, built at send time."""
    kind = draw(st.sampled_from([
        "far", "far_burst", "literal", "future", "past", "bad_timestamp", "structure", "binary", "text", "depth",
    ]))
    if kind == "far":
        return [(CHANNEL, tick_payload(str(GOOD * draw(st.sampled_from(FAR))), now_ms()))]
    if kind == "far_burst":
        price = str(GOOD * draw(st.sampled_from(FAR)))
        return [(CHANNEL, tick_payload(price, now_ms()))] * draw(st.integers(2, 8))
    if kind == "literal":
        price = draw(st.sampled_from(["1e-400", "1e14", "-45000", "0", "NaN", "Infinity", "", "abc", "4.5e4x"]))
        return [(CHANNEL, tick_payload(price, now_ms()))]
    if kind == "future":
        return [(CHANNEL, tick_payload(draw(st.sampled_from(["45000", "60600.00", "450000"])),
                                       now_ms(draw(st.sampled_from([3.0, 60.0, 86400.0, 1e7])))))]
    if kind == "past":
        return [(CHANNEL, tick_payload(draw(st.sampled_from(["45000", "4500", "60600.00"])),
                                       now_ms(-draw(st.sampled_from([11.0, 3600.0, 86400.0])))))]
    if kind == "bad_timestamp":
        stamp = draw(st.sampled_from(["NaN", "soon", -1, None, 1e400, [1], {"t": 1}, True]))
        return [(CHANNEL, tick_payload("450000", stamp if stamp != 1e400 else "1e400"))]
    if kind == "structure":
        payload = draw(st.sampled_from([
            b"[" * 5000 + b"]" * 5000,
            b'{"price": ' + b"[" * 3000 + b"]" * 3000 + b"}",
            b"null", b"[]", b"42", b'"45000"', b"{",
            b'{"exchange":"binance","symbol":"ETHUSDT","price":"3000","timestamp":1}',
            b'{"exchange":7,"symbol":"BTCUSDT","price":"450000","timestamp":1}',
            b'{"exchange":"binance","symbol":"BTCUSDT","price":[1,2],"timestamp":1}',
            b'{"exchange":"binance","symbol":"BTCUSDT","price":{"v":1},"timestamp":1}',
            b'{"exchange":"binance","symbol":"BTCUSDT","price":true,"timestamp":1}',
            b'{"exchange":"binance","symbol":"BTCUSDT","price":null,"timestamp":1}',
            b'{"exchange":"binance","symbol":"BTCUSDT","timestamp":1}',
            b'{"exchange":"binance","symbol":"BTCUSDT","price":450000.5,"timestamp":1}',
            b'{"exchange":"binance","symbol":"BTCUSDT","price":"450000","timestamp":1,"bid":"x"}',
            b"x" * 70_000,
        ]))
        return [(CHANNEL, payload)]
    if kind == "binary":
        return [(CHANNEL, draw(st.binary(max_size=200)))]
    if kind == "text":
        return [(CHANNEL, draw(st.text(max_size=100)).encode("utf-8", "surrogatepass"))]
    # depth: crossed, wrong shapes, absurd levels
    depth = draw(st.sampled_from([
        {"bids": [["45010", "1"]], "asks": [["45000", "1"]]},
        {"bids": [["-1", "1"]], "asks": []},
        {"bids": "x", "asks": []},
        {"bids": [["1e400", "1"]], "asks": [["NaN", "1"]]},
        {"bids": [[str(GOOD * 10), "5"]], "asks": [[str(GOOD * 11), "5"]]},
    ]))
    return [(DEPTH_CHANNEL, json.dumps({"exchange": "binance", "symbol": "BTCUSDT", "timestamp": now_ms(),
                                        **depth}).encode())]


# A stream: 24 good ticks 250 ms apart (six seconds at 4 Hz, ±0.08 % jitter); after each, hostile messages at
# offsets within the gap.
streams = st.lists(
    st.tuples(
        st.integers(-8, 8),  # the good tick's jitter, in 0.01 %
        st.lists(st.tuples(st.integers(0, 240), hostile()), max_size=4),
    ),
    min_size=24,
    max_size=24,
)


def ours(sink: PaperSink) -> list[Any]:
    return [o for o in sink.book("BTC/USDT").open_orders() if o.client_order_id.startswith("t-")]


def check_band(sink: PaperSink, good: Decimal) -> None:
    for order in ours(sink):
        assert abs(order.price - good) <= good * BAND, f"{order.side} at {order.price} while the price is {good}"


def ladder(good: Decimal) -> list[tuple[Side, Decimal]]:
    bids = [(Side.BUY, MARKET.round_price(good - i, Side.BUY)) for i in (1, 2)]
    asks = [(Side.SELL, MARKET.round_price(good + i, Side.SELL)) for i in (1, 2)]
    return sorted(bids + asks)


@contextlib.asynccontextmanager
async def bus_market() -> AsyncIterator[tuple[StrategyManager, PaperSink, OfflineBus]]:
    """The market of SPEC running on the paper exchange, following an offline bus; stopped on the way out."""
    OfflineBus.instances.clear()
    pm = make_plugin_manager(load_entrypoints=False, plugins=(EnginePlugin(), BusPlugin()))
    sink = PaperSink()
    manager = StrategyManager(sink, pm, instance_id="t")
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        await manager.start_market(SPEC)
        yield manager, sink, OfflineBus.instances[0]
        await manager.aclose()
        nursery.cancel_scope.cancel()


async def run_stream(stream: list[tuple[int, list[tuple[int, list[tuple[str, bytes]]]]]]) -> None:
    async with bus_market() as (manager, sink, bus):
        good = GOOD
        for jitter, gap in stream:
            good = GOOD * (1 + D(jitter) / 10_000)
            bus.publish(CHANNEL, tick_payload(str(good), now_ms()))
            await trio.testing.wait_all_tasks_blocked()
            check_band(sink, good)
            elapsed = 0
            for offset, messages in sorted(gap, key=lambda item: item[0]):
                await trio.sleep((offset - elapsed) / 1000)
                elapsed = offset
                for channel, payload in messages:
                    bus.publish(channel, payload)
                    await trio.testing.wait_all_tasks_blocked()
                    check_band(sink, good)
            await trio.sleep((250 - elapsed) / 1000)
            check_band(sink, good)
        # The hostile stream stops. Within one refresh, exactly the ladder around the good price.
        for _ in range(4):
            bus.publish(CHANNEL, tick_payload(str(good), now_ms()))
            await trio.sleep(0.25)
        status = manager.status(MarketKey("BTC/USDT"))[0]
        assert status.state is MarketState.RUNNING, status.error
        assert status.index_price == good
        assert sorted((o.side, o.price) for o in ours(sink)) == ladder(good)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams)
def test_hostile_messages_in_a_good_stream_never_put_an_order_far_from_the_price(stream: Any) -> None:
    trio.run(run_stream, stream, clock=trio.testing.MockClock(autojump_threshold=0))


def test_every_hostile_message_is_counted_somewhere() -> None:
    """One of each kind: the feed counts what it cannot read, the market counts what it will not believe."""

    async def main() -> None:
        async with bus_market() as (manager, _, bus):
            bus.publish(CHANNEL, tick_payload("45000", now_ms()))
            await trio.testing.wait_all_tasks_blocked()
            unreadable = [b"[" * 5000 + b"]" * 5000, b"\xff\xfe", b"null", tick_payload("NaN", now_ms()),
                          tick_payload("45000", "soon"), b"x" * 70_000]
            for payload in unreadable:
                bus.publish(CHANNEL, payload)
            bus.publish(CHANNEL, tick_payload("60600.00", now_ms(86400)))  # future: the feed refuses it
            await trio.sleep(0.1)
            unbelievable = [tick_payload("450000", now_ms()), tick_payload("1e-400", now_ms()),
                            tick_payload("45000", now_ms(-11))]
            for payload in unbelievable:
                bus.publish(CHANNEL, payload)
                await trio.sleep(0.1)
            feed = bus.hub.statistics("BTCUSDT")
            status = manager.status(MarketKey("BTC/USDT"))[0]
            assert feed.rejected == len(unreadable) + 1
            assert status.ticks_rejected_by_reason == {"jump": 2, "older": 1}  # -11 s: older than the last good one
            assert status.index_price == GOOD and status.state is MarketState.RUNNING

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
