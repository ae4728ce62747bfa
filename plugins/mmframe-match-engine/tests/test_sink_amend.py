"""The ``match-engine`` sink amends (``AmendsOrders``) against the real reference engine on loopback: a moving ladder
is amended in place, each amend ends in exactly one event, a lost answer is settled by asking the engine, and an
amend the engine refuses becomes a cancel and a place."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import trio

from mmframe import AmendRequest, OrderEvent, OrderEventKind, OrderRequest, OrderType, Side
from mmframe.protocols import AmendsOrders

from .test_sink import SPEC, eventually, rig, status

D = Decimal


def collect(r: Any) -> list[OrderEvent]:
    events: list[OrderEvent] = []
    r.sink.subscribe("AAA/USDT", "t-", events.append)
    return events


async def quoting(r: Any, price: str = "100") -> None:
    await r.harness.start(SPEC)
    await eventually(lambda: not r.sink.degraded, what="the stream connects")
    r.feed.push_price("AAAUSDT", price)
    await eventually(lambda: len(r.ours()) == 4 and status(r).bids == 2 and status(r).asks == 2,
                     what="four orders, acknowledged")


async def test_a_moving_ladder_is_amended_in_place_with_one_event_per_amend(nursery: trio.Nursery) -> None:
    r = await rig(nursery)
    assert isinstance(r.sink, AmendsOrders)
    events = collect(r)
    await quoting(r)
    ids = sorted(o.client_order_id for o in r.ours())
    r.feed.push_price("AAAUSDT", "100.50")
    await eventually(lambda: r.prices() == ([D("99.50"), D("98.50")], [D("101.50"), D("102.50")]),
                     what="the ladder moved")
    await eventually(lambda: status(r).bids == 2 and status(r).asks == 2)
    await trio.sleep(0.3)  # the stream's amended events arrive too
    s = status(r)
    assert (s.orders_placed, s.orders_cancelled, s.orders_amended, s.amends_rejected) == (4, 0, 4, 0)
    assert sorted(o.client_order_id for o in r.ours()) == ids  # the very same orders, moved
    amended = Counter(e.client_order_id for e in events if e.kind is OrderEventKind.AMENDED)
    assert amended == Counter(dict.fromkeys(ids, 1))  # the answer and the stream said it: told once
    assert r.sink.statistics["amends"] == 4
    # The tracker shows what the engine has.
    live = r.harness.live_orders(market=SPEC.key)
    assert sorted(o.price for o in live) == sorted(o.price for o in r.ours())


async def test_an_amend_whose_answer_is_lost_still_ends_in_one_event(nursery: trio.Nursery) -> None:
    """The engine executes the amend but answers after the sink gave up: its retries are the same absolute amend
    (a no-op), the stream or a query tells the outcome, and nothing is doubled."""
    r = await rig(nursery)
    events = collect(r)
    await quoting(r)
    r.engine.delay_after_execute = 1.0
    r.feed.push_price("AAAUSDT", "100.50")
    await eventually(lambda: r.prices() == ([D("99.50"), D("98.50")], [D("101.50"), D("102.50")]),
                     what="the amends executed")
    r.engine.delay_after_execute = 0.0
    await eventually(lambda: status(r).orders_amended == 4 and not r.sink._amends_awaited and not r.sink._amending,
                     seconds=10, what="every amend settled, and its request over")
    await trio.sleep(0.3)
    kinds = Counter((e.client_order_id, e.kind) for e in events
                    if e.kind in (OrderEventKind.AMENDED, OrderEventKind.AMEND_REJECTED))
    assert sorted(kinds.values()) == [1, 1, 1, 1] and {k for _, k in kinds} == {OrderEventKind.AMENDED}
    assert len(r.ours()) == 4 and status(r).amends_rejected == 0
    assert sum(path.endswith("/amend") for _, path in r.engine.requests) >= 2  # sent again: a no-op the 2nd time
    live = r.harness.live_orders(market=SPEC.key)
    assert sorted(o.price for o in live) == [D("98.50"), D("99.50"), D("101.50"), D("102.50")]


async def test_an_amend_that_never_reached_the_engine_is_refused_and_the_market_catches_up(
    nursery: trio.Nursery,
) -> None:
    """Every attempt of the amend fails (503, nothing executed): the sink asks the engine, which shows the old price,
    so the amend is refused; the market cancels and places instead and reaches the ladder, with no duplicate."""
    r = await rig(nursery, max_retries=1, breaker_threshold=10)
    events = collect(r)
    await quoting(r)
    r.engine.fail_next = 2  # the amend and its one retry
    r.feed.push_price("AAAUSDT", "100.50")
    await eventually(lambda: r.prices() == ([D("99.50"), D("98.50")], [D("101.50"), D("102.50")]), seconds=10,
                     what="the ladder, by cancels and places")
    await eventually(lambda: status(r).bids == 2 and status(r).asks == 2 and status(r).cancelling == 0)
    s = status(r)
    assert s.amends_rejected == 4 and s.orders_cancelled == 4 and s.orders_placed == 8
    rejected = [e for e in events if e.kind is OrderEventKind.AMEND_REJECTED]
    assert len(rejected) == 4 and all("did not reach" in e.reason for e in rejected)
    assert len(r.ours()) == 4


async def test_an_amend_the_engine_refuses_becomes_a_cancel_and_a_place(nursery: trio.Nursery) -> None:
    """Another account's ask rests at 100.40; our bid at 99 asked to 100.50 would take it, and an amend never takes
    liquidity: refused, then cancelled and placed as a new order (which trades, as any new bid there would)."""
    r = await rig(nursery)
    events = collect(r)
    await quoting(r)
    other = OrderRequest("other-1", "AAA/USDT", Side.SELL, OrderType.LIMIT, quantity="1", price="100.40")
    r.engine.place([(other, "other")])
    r.feed.push_price("AAAUSDT", "101.50")  # our bids want 100.50 and 99.50: one of them would cross 100.40
    await eventually(lambda: status(r).fills >= 1, seconds=5, what="the new bid traded")
    s = status(r)
    assert s.amends_rejected >= 1
    refused = [e for e in events if e.kind is OrderEventKind.AMEND_REJECTED]
    assert refused and all("cross" in e.reason or "self-trade" in e.reason for e in refused)
    await eventually(lambda: r.prices()[0][:1] == [D("100.50")], what="the top bid where the strategy wants it")


async def test_an_amend_for_an_order_the_sink_has_not_seen_acknowledged_is_refused_at_once(
    nursery: trio.Nursery,
) -> None:
    r = await rig(nursery)
    events: list[OrderEvent] = []
    r.sink.subscribe("AAA/USDT", "x-", events.append)
    await eventually(lambda: not r.sink.degraded)
    await r.sink.amend([AmendRequest("x-never-placed", "AAA/USDT", price="100", quantity="1")])
    assert [(e.kind, e.client_order_id) for e in events] == [(OrderEventKind.AMEND_REJECTED, "x-never-placed")]
    assert not any(path.endswith("/amend") for _, path in r.engine.requests)


async def test_an_amend_of_unknown_outcome_is_settled_even_when_the_orders_news_comes_first(
    nursery: trio.Nursery,
) -> None:
    """The amend's outcome is unknown (every attempt failed, the circuit opens); before the sink can ask the engine,
    a fill of the order arrives on the stream. The amend is still settled by asking the engine — which shows the old
    price: refused — and the tracker ends up agreeing with the engine about every order."""
    r = await rig(nursery, max_retries=1, breaker_threshold=2, breaker_cooldown=1.0)
    await quoting(r)
    bid = next(o.client_order_id for o in r.ours() if o.price == D("99"))
    r.engine.fail_next = 2
    r.feed.push_price("AAAUSDT", "100.50")
    await eventually(lambda: bid in r.sink._amends_awaited and bid not in r.sink._amending, what="outcome unknown")
    other = OrderRequest("other-1", "AAA/USDT", Side.SELL, OrderType.LIMIT, quantity="0.5", price="99")
    r.engine.place([(other, "other")])
    await eventually(lambda: status(r).fills >= 1, what="the fill reached the market")
    await eventually(lambda: not r.sink._amends_awaited, seconds=10, what="every amend settled")
    await eventually(lambda: r.prices() == ([D("99.50"), D("98.50")], [D("101.50"), D("102.50")]), seconds=10,
                     what="the ladder")
    await eventually(lambda: status(r).cancelling == 0 and status(r).bids == 2 and status(r).asks == 2)
    engine_view = {o.client_order_id: (o.price, o.quantity) for o in r.ours()}
    tracker_view = {o.client_order_id: (o.price, o.quantity) for o in r.harness.live_orders(market=SPEC.key)}
    assert tracker_view == engine_view
    assert status(r).amends_rejected >= 1


async def test_a_late_stream_report_of_an_earlier_amend_is_not_news(nursery: trio.Nursery) -> None:
    """The answers of two amends came first; the stream's report of the first arrives after them: it is older news
    (fewer amends), so the market never sees the order go back to the first amend's price."""
    r = await rig(nursery)
    events = collect(r)
    await quoting(r)
    bid = next(o for o in r.ours() if o.price == D("99"))
    mirror = r.sink._mirror[bid.client_order_id]
    first = OrderEvent(OrderEventKind.AMENDED, bid.client_order_id, "AAA/USDT", price="98.90", quantity="1")
    r.sink._amended(bid.client_order_id, mirror, D("98.80"), D("1"), D(0), None, 2)  # the newer answer, first
    r.sink._stream_event(first, Side.BUY, bid.status, amends=1)  # the older report, late
    told = [(e.price, e.client_order_id) for e in events if e.kind is OrderEventKind.AMENDED]
    assert told == [(D("98.80"), bid.client_order_id)] and mirror.price == D("98.80")


async def test_a_retried_place_answered_duplicate_after_an_amend_is_a_repeat(nursery: trio.Nursery) -> None:
    """A place batch whose first answer was lost is sent again; meanwhile the stream acknowledged the order and the
    market amended it. The engine's duplicate answer shows the amended price: it is our order, told again, not
    another order holding our id (which would have rejected an order the market holds open)."""
    r = await rig(nursery)
    events = collect(r)
    await quoting(r)
    bid = next(o for o in r.ours() if o.price == D("99"))
    r.feed.push_price("AAAUSDT", "100.50")
    await eventually(lambda: r.prices()[0][:1] == [D("99.50")], what="amended")
    request = OrderRequest(bid.client_order_id, "AAA/USDT", Side.BUY, OrderType.LIMIT, quantity="1", price="99")
    answer = {"results": r.engine.place_wire([(request, "mmframe")])}
    assert answer["results"][0]["result"] == "duplicate"
    r.sink._batch_results([request], answer)
    assert not [e for e in events if e.kind is OrderEventKind.REJECTED]
    assert bid.client_order_id in r.sink._mirror
    assert status(r).error == ""
