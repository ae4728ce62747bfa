"""The built-in ``paper`` sink: events in causal order, routing by symbol and prefix, and the simulated taker flow."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
import trio
import trio.testing

from mmframe._default_plugins.paper import PaperSink
from mmframe._errors import ConfigError
from mmframe._models import (
    Liquidity,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
)
from mmframe._plugins import get_sinks, make_plugin_manager
from mmframe.config import structure_config
from mmframe.protocols import OrderSink

D = Decimal
SYMBOL = "BTC/USDT"
K = OrderEventKind
BUY, SELL = Side.BUY, Side.SELL


def req(
    coid: str,
    side: Side,
    price: str | None,
    quantity: str,
    type: OrderType = OrderType.LIMIT,
    symbol: str = SYMBOL,
) -> OrderRequest:
    return OrderRequest(
        client_order_id=coid,
        symbol=symbol,
        side=side,
        type=type,
        quantity=D(quantity),
        price=D(price) if price is not None else None,
    )


def recorder(sink: PaperSink, symbol: str = SYMBOL, prefix: str = "") -> list[OrderEvent]:
    events: list[OrderEvent] = []
    sink.subscribe(symbol, prefix, events.append)
    return events


def kinds(events: list[OrderEvent]) -> list[tuple[str, OrderEventKind]]:
    return [(e.client_order_id, e.kind) for e in events]


def external(sink: PaperSink, side: Side, price: str | None, quantity: str, type: OrderType = OrderType.LIMIT) -> None:
    sink.submit_external(
        SYMBOL, side=side, type=type, quantity=D(quantity), price=D(price) if price is not None else None, owner="other"
    )


# ---------------------------------------------------------------------------------------------------------------
# Plugin and configuration
# ---------------------------------------------------------------------------------------------------------------


def test_paper_sink_registers_through_the_hook() -> None:
    assert get_sinks(make_plugin_manager(load_entrypoints=False))["paper"] is PaperSink


def test_paper_sink_is_an_order_sink() -> None:
    assert isinstance(PaperSink(PaperSink.Config()), OrderSink)
    assert PaperSink.name == "paper"


def test_config_structures_and_names_bad_fields() -> None:
    config = structure_config({"taker_flow_rate": 2, "taker_size_fraction": "0.5", "seed": 7}, PaperSink.Config)
    assert (config.taker_flow_rate, config.taker_size_fraction, config.seed) == (2.0, 0.5, 7)
    assert (config.owner, config.taker_owner) == ("mmframe", "sim-taker")
    for bad, field in [
        ({"taker_flow_rate": -1}, "taker_flow_rate"),
        ({"taker_size_fraction": 0}, "taker_size_fraction"),
        ({"taker_size_fraction": 1.5}, "taker_size_fraction"),
        ({"owner": ""}, "owner"),
        ({"taker_owner": "mmframe"}, "taker_owner"),
        ({"seed": "abc"}, "seed"),
    ]:
        with pytest.raises(ConfigError, match=field):
            structure_config(bad, PaperSink.Config)


# ---------------------------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------------------------


async def test_limit_order_is_accepted_and_listed() -> None:
    sink = PaperSink(PaperSink.Config())
    events = recorder(sink)
    request = req("mm-1", BUY, "100", "1.5")
    await sink.place([request])
    assert kinds(events) == [("mm-1", K.ACCEPTED)]
    assert events[0].order_id and events[0].symbol == SYMBOL
    (order,) = await sink.open_orders(SYMBOL)
    assert order.request == request
    assert order.status is OrderStatus.OPEN
    assert order.order_id == events[0].order_id
    assert order.filled_quantity == 0


async def test_ioc_taker_events_accepted_fills_expired_in_order() -> None:
    sink = PaperSink(PaperSink.Config())
    external(sink, SELL, "100", "1")
    external(sink, SELL, "101", "0.5")
    events = recorder(sink)
    await sink.place([req("mm-1", BUY, "101", "3", OrderType.IOC)])
    assert kinds(events) == [
        ("mm-1", K.ACCEPTED),
        ("mm-1", K.PARTIALLY_FILLED),
        ("mm-1", K.PARTIALLY_FILLED),
        ("mm-1", K.EXPIRED),
    ]
    accepted, first, second, expired = events
    assert {e.order_id for e in events} == {accepted.order_id}
    assert first.fill is not None and second.fill is not None
    assert (first.fill.price, first.fill.quantity, first.filled_quantity) == (D("100"), D("1"), D("1"))
    assert (second.fill.price, second.fill.quantity, second.filled_quantity) == (D("101"), D("0.5"), D("1.5"))
    for fill in (first.fill, second.fill):
        assert fill.liquidity is Liquidity.TAKER
        assert (fill.client_order_id, fill.symbol, fill.side) == ("mm-1", SYMBOL, BUY)
    assert first.fill.trade_id != second.fill.trade_id
    assert expired.filled_quantity == D("1.5")
    assert "immediate-or-cancel" in expired.reason
    assert await sink.open_orders(SYMBOL) == []


async def test_limit_order_fully_filled_ends_with_filled() -> None:
    sink = PaperSink(PaperSink.Config())
    external(sink, BUY, "100", "2")
    events = recorder(sink)
    await sink.place([req("mm-1", SELL, "99", "2")])
    assert kinds(events) == [("mm-1", K.ACCEPTED), ("mm-1", K.FILLED)]
    assert events[1].fill is not None and events[1].fill.price == D("100")
    assert events[1].filled_quantity == D("2")


async def test_market_order_fills_and_expires_remainder() -> None:
    sink = PaperSink(PaperSink.Config())
    external(sink, BUY, "100", "1")
    events = recorder(sink)
    await sink.place([req("mm-1", SELL, None, "1.25", OrderType.MARKET)])
    assert kinds(events) == [("mm-1", K.ACCEPTED), ("mm-1", K.PARTIALLY_FILLED), ("mm-1", K.EXPIRED)]
    assert events[2].filled_quantity == D("1")
    assert "market order" in events[2].reason


async def test_limit_order_partially_filled_rests_remainder() -> None:
    sink = PaperSink(PaperSink.Config())
    external(sink, SELL, "100", "0.4")
    events = recorder(sink)
    await sink.place([req("mm-1", BUY, "100", "1")])
    assert kinds(events) == [("mm-1", K.ACCEPTED), ("mm-1", K.PARTIALLY_FILLED)]
    (order,) = await sink.open_orders(SYMBOL)
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert (order.filled_quantity, order.remaining_quantity, order.average_price) == (D("0.4"), D("0.6"), D("100"))


async def test_maker_fills_go_to_the_resting_orders_subscriber() -> None:
    sink = PaperSink(PaperSink.Config())
    events = recorder(sink, prefix="mm-")
    await sink.place([req("mm-1", BUY, "100", "1"), req("mm-2", BUY, "99", "1")])
    external(sink, SELL, None, "0.4", OrderType.MARKET)
    external(sink, SELL, None, "1", OrderType.MARKET)
    assert kinds(events) == [
        ("mm-1", K.ACCEPTED),
        ("mm-2", K.ACCEPTED),
        ("mm-1", K.PARTIALLY_FILLED),
        ("mm-1", K.FILLED),
        ("mm-2", K.PARTIALLY_FILLED),
    ]
    fills = [e.fill for e in events[2:]]
    assert all(f is not None and f.liquidity is Liquidity.MAKER and f.side is BUY for f in fills)
    expected = [(D("100"), D("0.4")), (D("100"), D("0.6")), (D("99"), D("0.4"))]
    assert [(f.price, f.quantity) for f in fills if f] == expected
    assert [e.filled_quantity for e in events[2:]] == [D("0.4"), D("1"), D("0.4")]
    (left,) = await sink.open_orders(SYMBOL)
    assert left.client_order_id == "mm-2" and left.filled_quantity == D("0.4")


async def test_self_trade_prevention_expires_our_crossing_order() -> None:
    sink = PaperSink(PaperSink.Config())
    events = recorder(sink)
    await sink.place([req("mm-1", SELL, "100", "1")])
    await sink.place([req("mm-2", BUY, "101", "1")])
    assert kinds(events) == [("mm-1", K.ACCEPTED), ("mm-2", K.ACCEPTED), ("mm-2", K.EXPIRED)]
    assert events[2].reason == "self-trade prevention"
    assert [o.client_order_id for o in await sink.open_orders(SYMBOL)] == ["mm-1"]


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (req("mm-1", BUY, "101", "1", OrderType.POST_ONLY), "post-only order would cross"),
        (req("mm-1", BUY, "0", "1"), "price must be positive"),
        (req("mm-1", BUY, "-3", "1", OrderType.IOC), "price must be positive"),
        (req("mm-1", BUY, "100", "1", OrderType.MARKET), "market order must not have a price"),
    ],
)
async def test_rejected_orders_get_rejected_with_reason(request_: OrderRequest, reason: str) -> None:
    sink = PaperSink(PaperSink.Config())
    external(sink, SELL, "100", "1")
    events = recorder(sink)
    await sink.place([request_])
    assert kinds(events) == [("mm-1", K.REJECTED)]
    assert reason in events[0].reason
    assert await sink.open_orders(SYMBOL) == []


async def test_duplicate_client_order_id_produces_no_events() -> None:
    sink = PaperSink(PaperSink.Config())
    events = recorder(sink)
    await sink.place([req("mm-1", BUY, "100", "1")])
    await sink.place([req("mm-1", BUY, "100", "1"), req("mm-1", SELL, "90", "5")])
    assert kinds(events) == [("mm-1", K.ACCEPTED)]
    assert len(await sink.open_orders(SYMBOL)) == 1
    # Finished orders too.
    await sink.cancel(SYMBOL, ["mm-1"])
    await sink.place([req("mm-1", BUY, "100", "1")])
    assert kinds(events) == [("mm-1", K.ACCEPTED), ("mm-1", K.CANCELLED)]
    assert await sink.open_orders(SYMBOL) == []


async def test_client_order_id_used_on_another_symbol_is_rejected() -> None:
    sink = PaperSink(PaperSink.Config())
    eth = recorder(sink, "ETH/USDT")
    await sink.place([req("mm-1", BUY, "100", "1")])
    await sink.place([req("mm-1", BUY, "100", "1", symbol="ETH/USDT")])
    assert kinds(eth) == [("mm-1", K.REJECTED)]
    assert SYMBOL in eth[0].reason
    assert await sink.open_orders("ETH/USDT") == []


async def test_an_id_another_participant_holds_is_never_taken_for_ours() -> None:
    """A squatter's order with one of our next client ids: our place is rejected (not silently taken for theirs),
    and neither cancel nor cancel_all nor open_orders touches or lists it."""
    sink = PaperSink(PaperSink.Config())
    events = recorder(sink, prefix="mm-")
    squat = sink.submit_external(SYMBOL, side=SELL, type=OrderType.LIMIT, quantity=D(1), price=D(500),
                                 owner="evil", client_order_id="mm-1")
    assert squat.accepted
    await sink.place([req("mm-1", BUY, "99", "1"), req("mm-2", BUY, "98", "1")])
    assert kinds(events) == [("mm-1", K.REJECTED), ("mm-2", K.ACCEPTED)]
    assert "another participant" in events[0].reason
    await sink.cancel(SYMBOL, ["mm-1"])
    assert await sink.cancel_all(SYMBOL, "mm-") == 1  # mm-2 only
    assert kinds(events)[2:] == [("mm-2", K.CANCELLED)]
    assert await sink.open_orders(SYMBOL, "mm-") == []
    left = sink.book(SYMBOL).get("mm-1")
    assert left is not None and left.is_open and left.owner == "evil" and left.price == D(500)


async def test_events_are_routed_by_symbol_and_prefix() -> None:
    sink = PaperSink(PaperSink.Config())
    a = recorder(sink, prefix="a-")
    b = recorder(sink, prefix="b-")
    everything = recorder(sink)
    eth = recorder(sink, "ETH/USDT")
    closed: list[OrderEvent] = []
    sink.subscribe(SYMBOL, "", closed.append).close()
    await sink.place([req("a-1", BUY, "100", "1"), req("b-1", BUY, "99", "1"), req("a-2", SELL, "101", "1")])
    assert [e.client_order_id for e in a] == ["a-1", "a-2"]
    assert [e.client_order_id for e in b] == ["b-1"]
    assert [e.client_order_id for e in everything] == ["a-1", "b-1", "a-2"]
    assert eth == [] and closed == []
    await sink.place([req("a-3", BUY, "100", "1", symbol="ETH/USDT")])
    assert [e.client_order_id for e in eth] == ["a-3"]
    assert [e.client_order_id for e in a] == ["a-1", "a-2"]


async def test_cancel_emits_cancelled_once() -> None:
    sink = PaperSink(PaperSink.Config())
    external(sink, SELL, "100", "0.25")
    events = recorder(sink)
    await sink.place([req("mm-1", BUY, "100", "1"), req("mm-2", BUY, "99", "1")])
    await sink.cancel(SYMBOL, ["mm-1", "unknown"])
    await sink.cancel(SYMBOL, ["mm-1"])  # already finished: nothing
    await sink.cancel("NO/SUCH", ["mm-2"])  # no book: nothing
    assert kinds(events) == [
        ("mm-1", K.ACCEPTED),
        ("mm-1", K.PARTIALLY_FILLED),
        ("mm-2", K.ACCEPTED),
        ("mm-1", K.CANCELLED),
    ]
    cancelled = events[-1]
    assert cancelled.filled_quantity == D("0.25")
    assert cancelled.order_id == events[0].order_id
    assert cancelled.reason
    assert [o.client_order_id for o in await sink.open_orders(SYMBOL)] == ["mm-2"]


async def test_cancel_all_by_prefix_emits_cancelled_and_counts() -> None:
    sink = PaperSink(PaperSink.Config())
    external(sink, BUY, "90", "1")  # another participant's order: never ours to cancel
    events = recorder(sink)
    await sink.place([req("a-1", BUY, "100", "1"), req("a-2", SELL, "101", "1"), req("b-1", BUY, "99", "1")])
    events.clear()
    assert await sink.cancel_all(SYMBOL, "a-") == 2
    assert sorted(kinds(events)) == [("a-1", K.CANCELLED), ("a-2", K.CANCELLED)]
    assert [o.client_order_id for o in await sink.open_orders(SYMBOL)] == ["b-1"]
    assert await sink.cancel_all(SYMBOL) == 1
    assert await sink.cancel_all(SYMBOL) == 0
    assert await sink.cancel_all("NO/SUCH") == 0
    assert await sink.open_orders(SYMBOL) == []
    assert len(sink.book(SYMBOL)) == 1  # the other participant's bid is still there


async def test_open_orders_filters_by_prefix_and_symbol() -> None:
    sink = PaperSink(PaperSink.Config())
    await sink.place([req("a-1", BUY, "100", "1"), req("b-1", BUY, "99", "1")])
    await sink.place([req("a-2", BUY, "5", "1", symbol="ETH/USDT")])
    assert [o.client_order_id for o in await sink.open_orders(SYMBOL, "a-")] == ["a-1"]
    assert [o.client_order_id for o in await sink.open_orders(SYMBOL)] == ["a-1", "b-1"]
    assert [o.request.symbol for o in await sink.open_orders("ETH/USDT")] == ["ETH/USDT"]
    assert await sink.open_orders("NO/SUCH") == []


async def test_depth_snapshot() -> None:
    sink = PaperSink(PaperSink.Config())
    empty = await sink.depth(SYMBOL)
    assert (empty.bids, empty.asks, empty.exchange, empty.symbol) == ((), (), "paper", SYMBOL)
    await sink.place(
        [
            req("mm-1", BUY, "99", "1"),
            req("mm-2", BUY, "99", "0.5"),
            req("mm-3", BUY, "98", "2"),
            req("mm-4", SELL, "101", "1"),
        ]
    )
    depth = await sink.depth(SYMBOL, limit=1)
    assert depth.bids == ((D("99"), D("1.5")),)
    assert depth.asks == ((D("101"), D("1")),)
    assert depth.sequence > empty.sequence
    assert depth.mid == D("100")
    full = await sink.depth(SYMBOL)
    assert full.bids == ((D("99"), D("1.5")), (D("98"), D("2")))


async def test_raising_listener_is_dropped_and_others_still_served(caplog: pytest.LogCaptureFixture) -> None:
    sink = PaperSink(PaperSink.Config())
    calls: list[OrderEvent] = []

    def broken(event: OrderEvent) -> None:
        calls.append(event)
        raise RuntimeError("boom")

    subscription = sink.subscribe(SYMBOL, "", broken)
    good = recorder(sink)
    with caplog.at_level(logging.ERROR, logger="mmframe.paper"):
        await sink.place([req("mm-1", BUY, "100", "1")])
        await sink.place([req("mm-2", BUY, "99", "1")])
    assert len(calls) == 1
    assert subscription.closed
    assert kinds(good) == [("mm-1", K.ACCEPTED), ("mm-2", K.ACCEPTED)]
    assert any(r.name == "mmframe.paper" and "dropping" in r.getMessage() for r in caplog.records)


async def test_listener_may_close_another_subscription_during_delivery() -> None:
    sink = PaperSink(PaperSink.Config())
    later: list[OrderEvent] = []
    first: list[OrderEvent] = []

    def closer(event: OrderEvent) -> None:
        first.append(event)
        later_subscription.close()

    sink.subscribe(SYMBOL, "", closer)
    later_subscription = sink.subscribe(SYMBOL, "", later.append)
    await sink.place([req("mm-1", BUY, "100", "1")])
    assert kinds(first) == [("mm-1", K.ACCEPTED)]
    assert later == []


async def test_every_async_method_checkpoints() -> None:
    sink = PaperSink(PaperSink.Config())
    with trio.testing.assert_checkpoints():
        await sink.place([])
    with trio.testing.assert_checkpoints():
        await sink.cancel("NO/SUCH", [])
    with trio.testing.assert_checkpoints():
        await sink.cancel_all("NO/SUCH")
    with trio.testing.assert_checkpoints():
        await sink.open_orders("NO/SUCH")
    with trio.testing.assert_checkpoints():
        await sink.depth("NO/SUCH")


def test_external_order_cannot_use_our_owner() -> None:
    sink = PaperSink(PaperSink.Config())
    with pytest.raises(ValueError, match="owner"):
        sink.submit_external(SYMBOL, side=BUY, type=OrderType.LIMIT, quantity=D(1), price=D(1), owner="mmframe")


# ---------------------------------------------------------------------------------------------------------------
# The simulated taker flow
# ---------------------------------------------------------------------------------------------------------------


async def test_run_without_flow_starts_and_idles(autojump_clock: trio.testing.MockClock) -> None:
    sink = PaperSink(PaperSink.Config())
    events = recorder(sink)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        await sink.place([req("mm-1", BUY, "100", "1"), req("mm-2", SELL, "101", "1")])
        await trio.sleep(3600)
        nursery.cancel_scope.cancel()
    assert kinds(events) == [("mm-1", K.ACCEPTED), ("mm-2", K.ACCEPTED)]


async def _run_flow(seed: int, seconds: float) -> tuple[list[OrderEvent], PaperSink]:
    sink = PaperSink(PaperSink.Config(taker_flow_rate=2.0, taker_size_fraction=0.5, seed=seed))
    # Prefix "": these would see the simulated takers' own events, if there were any.
    events: list[OrderEvent] = []
    sink.subscribe(SYMBOL, "", events.append)
    sink.subscribe("ETH/USDT", "", events.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        await sink.place([req("mm-b1", BUY, "99", "1.000"), req("mm-a1", SELL, "101", "0.005")])
        await sink.place([req("mm-e1", BUY, "5", "3", symbol="ETH/USDT")])
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return events, sink


async def test_simulated_taker_flow_fills_our_resting_orders(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    events, sink = await _run_flow(seed=42, seconds=30)
    assert trio.current_time() - start == pytest.approx(30)
    fills = [e for e in events if e.kind in (K.PARTIALLY_FILLED, K.FILLED)]
    # 2 arrivals per second per symbol with resting orders: 30 virtual seconds give plenty of fills.
    assert len(fills) >= 10
    assert {e.client_order_id for e in events} <= {"mm-b1", "mm-a1", "mm-e1"}  # nothing about sim-taker orders
    assert {e.symbol for e in fills} == {SYMBOL, "ETH/USDT"}
    filled: dict[str, Decimal] = {}
    for event in fills:
        fill = event.fill
        assert fill is not None and fill.liquidity is Liquidity.MAKER
        assert isinstance(fill.quantity, Decimal) and fill.quantity > 0
        assert fill.quantity.as_tuple().exponent >= -8
        filled[event.client_order_id] = filled.get(event.client_order_id, D(0)) + fill.quantity
        assert event.filled_quantity == filled[event.client_order_id]
    # Each fill takes at most half the level (but at least one unit of its precision).
    sizes = {"mm-b1": D("1.000"), "mm-a1": D("0.005"), "mm-e1": D("3")}
    for coid, total in filled.items():
        assert total <= sizes[coid]
    if "mm-a1" in filled:
        assert all(e.fill and e.fill.quantity.as_tuple().exponent >= -3 for e in fills if e.client_order_id == "mm-a1")
    # Our books only ever lose quantity to the flow; the flow's own orders never rest.
    for symbol in (SYMBOL, "ETH/USDT"):
        assert all(o.owner == "mmframe" for o in sink.book(symbol).open_orders())


async def test_simulated_taker_flow_is_reproducible_with_a_seed(autojump_clock: trio.testing.MockClock) -> None:
    def summary(events: list[OrderEvent]) -> list[tuple[str, str, Decimal, Decimal]]:
        return [(e.client_order_id, e.kind, e.fill.price, e.fill.quantity) for e in events if e.fill is not None]

    first, _ = await _run_flow(seed=7, seconds=20)
    second, _ = await _run_flow(seed=7, seconds=20)
    assert summary(first) and summary(first) == summary(second)


async def test_simulated_taker_flow_waits_for_resting_orders(autojump_clock: trio.testing.MockClock) -> None:
    sink = PaperSink(PaperSink.Config(taker_flow_rate=5.0, seed=1))
    events = recorder(sink)
    got_fill = trio.Event()
    sink.subscribe(SYMBOL, "", lambda e: got_fill.set() if e.fill is not None else None)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        await trio.sleep(100)  # nothing rests: nothing happens
        assert events == []
        await sink.place([req("mm-1", SELL, "101", "2")])
        with trio.fail_after(60):
            await got_fill.wait()
        nursery.cancel_scope.cancel()
    fill = events[1].fill
    assert fill is not None and fill.price == D("101") and fill.liquidity is Liquidity.MAKER and fill.side is SELL


def test_simulated_taker_quantity_is_never_zero_and_never_too_precise() -> None:
    sink = PaperSink(PaperSink.Config(seed=3, taker_size_fraction=0.01))
    for level, exponent in [(D("0.001"), -3), (D("1E+2"), 0), (D("0.123456789012"), -8), (D("7"), 0)]:
        for _ in range(50):
            quantity = sink._takers.quantity(level)
            assert 0 < quantity <= level
            assert quantity.as_tuple().exponent >= min(exponent, 0)
            assert quantity == quantity.quantize(D(1).scaleb(exponent))


async def test_simulate_taker_on_an_empty_or_unknown_book_does_nothing() -> None:
    sink = PaperSink(PaperSink.Config(seed=1))
    assert sink.simulate_taker("NO/SUCH") is None
    await sink.place([req("mm-1", BUY, "1", "1")])
    await sink.cancel_all(SYMBOL)
    assert sink.simulate_taker(SYMBOL) is None
