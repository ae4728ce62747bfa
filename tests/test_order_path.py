"""Issue 15's order path: one tracker record per order, acknowledgements that cost no new decision, a refresh that
wakes nobody who is busy anyway, a book whose memory the collector does not walk, and client ids made cheaply."""

from __future__ import annotations

import gc
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import attrs
import pytest
import trio

from mmframe import (
    Market,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    StrategyContext,
    hookimpl,
)
from mmframe._book import OrderBook
from mmframe._engine.clientid import ClientIds, base36
from mmframe._engine.reconcile import Plan, Reconciler
from mmframe._engine.tracker import OrderTracker
from mmframe._models import OrderRequest

from .engine_helpers import Ladder, settle, spec
from .test_engine import start_engine


def request(coid: str = "t-1", side: Side = Side.BUY, price: str = "100", quantity: str = "1") -> OrderRequest:
    return OrderRequest(coid, "AAA/USDT", side, OrderType.LIMIT, Decimal(quantity), Decimal(price))


def test_an_order_is_one_record_for_its_whole_life_read_only_to_everyone_else() -> None:
    tracker = OrderTracker()
    order = tracker.add(request(), 1.0, status=OrderStatus.PENDING)
    assert order.status is OrderStatus.PENDING
    kept = attrs.evolve(order)  # how a plugin remembers a state
    assert tracker.apply(OrderEvent(OrderEventKind.ACCEPTED, "t-1", "AAA/USDT", order_id="9"), 2.0) is order
    assert tracker.mark_cancel_requested("t-1", 3.0) is order
    assert tracker.apply(OrderEvent(OrderEventKind.CANCELLED, "t-1", "AAA/USDT", reason="asked"), 4.0) is order
    assert (order.status, order.order_id, order.cancel_requested, order.reason, order.updated_at) == (
        OrderStatus.CANCELLED, "9", True, "asked", 4.0
    )
    assert kept.status is OrderStatus.PENDING and kept.order_id is None and kept == kept
    assert kept != order
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        order.status = OrderStatus.OPEN  # type: ignore[misc]
    with pytest.raises(TypeError, match="unhashable"):
        hash(order)
    assert tracker.live_count() == 0 and tracker.finished() == [order]


def test_a_refused_transition_changes_nothing_in_the_record() -> None:
    tracker = OrderTracker()
    order = tracker.add(request(quantity="1"), 1.0, status=OrderStatus.PENDING)
    tracker.apply(OrderEvent(OrderEventKind.ACCEPTED, "t-1", "AAA/USDT"), 2.0)
    before = attrs.evolve(order)
    from mmframe import Fill, InvalidTransition

    too_much = Fill("x", "t-1", "AAA/USDT", Side.BUY, price=Decimal("100"), quantity=Decimal("2"))
    with pytest.raises(InvalidTransition):
        tracker.apply(OrderEvent(OrderEventKind.FILLED, "t-1", "AAA/USDT", filled_quantity=Decimal("2"),
                                 fill=too_much), 3.0)
    assert order == before


def test_a_new_order_is_new_or_pending_only() -> None:
    from mmframe import InvalidTransition

    with pytest.raises(InvalidTransition, match="new or pending"):
        OrderTracker().add(request(), 1.0, status=OrderStatus.OPEN)


class CountingLadder(Ladder):
    """The test ladder, counting its decisions and the events it was told of."""

    name = "counting_ladder"
    decisions = 0
    events: list[OrderEventKind] = []
    times: list[float] = []

    def desired_orders(self, ctx: StrategyContext) -> Iterable[Quote]:
        CountingLadder.decisions += 1
        CountingLadder.times.append(trio.current_time())
        return super().desired_orders(ctx)

    def on_order_event(self, event: OrderEvent, order: Order, ctx: StrategyContext) -> None:
        CountingLadder.events.append(event.kind)


async def test_acknowledgements_alone_cost_no_new_decision_but_a_fill_does(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start_engine(nursery, OrderPathPlugin())
    await engine.manager.start_market(spec(strategy="counting_ladder", strategy_config={"levels": 2}))
    await settle()
    CountingLadder.decisions, CountingLadder.events = 0, []
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    # One tick: one decision; its four orders were acknowledged (the strategy heard of each), no second decision.
    assert CountingLadder.decisions == 1
    assert CountingLadder.events == [OrderEventKind.ACCEPTED] * 4
    engine.feed.push_price("AAAUSDT", "101")
    await settle()
    # The ladder moved a level on each side: the order no longer wanted is amended to the new level (the paper sink
    # can amend), and an amend acknowledged is no more news than a place acknowledged: still one decision.
    assert CountingLadder.decisions == 2
    assert CountingLadder.events.count(OrderEventKind.AMENDED) == 2
    assert CountingLadder.events.count(OrderEventKind.ACCEPTED) == 4
    # A fill is news: the market decides again at once, and puts the filled level back.
    engine.sink.submit_external("AAA/USDT", side=Side.SELL, type=OrderType.MARKET, quantity=Decimal("1"))
    await settle()
    assert CountingLadder.decisions == 3
    # Every event the market applied is counted, as the audit trail's completeness check needs.
    status = engine.status()
    assert status.order_events == len(CountingLadder.events)
    assert status.order_events == status.orders_placed + status.orders_cancelled + status.orders_amended + status.fills
    bids, asks = engine.prices()
    assert bids == [Decimal("100.00"), Decimal("99.00")] and asks == [Decimal("102.00"), Decimal("103.00")]


async def test_confirmed_cancels_are_news_but_accepted_places_are_not(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start_engine(nursery, OrderPathPlugin())
    await engine.manager.start_market(spec(strategy="counting_ladder", strategy_config={"levels": 2}, amend=False))
    await settle()
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    CountingLadder.decisions, CountingLadder.events = 0, []
    engine.feed.push_price("AAAUSDT", "101")
    await settle()
    # Confirmed cancels are news (room freed, a deferred order placeable): one more decision, which sends nothing.
    assert CountingLadder.decisions == 2
    # The ladder moved a level: two cancels (confirmed) and two places (accepted).
    assert CountingLadder.events.count(OrderEventKind.CANCELLED) == 2
    assert CountingLadder.events.count(OrderEventKind.ACCEPTED) == 2


async def test_a_busy_market_does_not_wake_for_its_refresh(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery, OrderPathPlugin())
    await engine.manager.start_market(spec(strategy="counting_ladder", refresh_interval=1.0, reconcile_interval=0))
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    CountingLadder.decisions, CountingLadder.times = 0, []
    for _ in range(10):  # a tick every 0.6 s: each step is within a refresh interval of the one before
        await trio.sleep(0.6)
        engine.feed.push_price("AAAUSDT", "100")
        await settle()
    assert CountingLadder.decisions == 10, repr(CountingLadder.times)  # no reconciliation (0) either
    CountingLadder.decisions = 0
    await trio.sleep(3.05)  # quiet: the refresh decides once a second
    assert CountingLadder.decisions == 3


def test_the_book_remembers_finished_orders_in_a_form_the_collector_does_not_walk() -> None:
    book = OrderBook("AAA/USDT", remember_finished=10)
    for n in range(20):
        book.submit(client_order_id=f"c{n}", owner="me", side=Side.BUY, type=OrderType.LIMIT,
                    price=Decimal("100"), quantity=Decimal("1"), payload=object())
        book.cancel(f"c{n}")
    gc.collect()
    remembered = list(book._finished.values())
    assert len(remembered) == 10
    assert not any(gc.is_tracked(entry) for entry in remembered)
    state = book.get("c19")
    assert state is not None and state.status is OrderStatus.CANCELLED and state.side is Side.BUY
    assert state.cancelled_quantity == Decimal("1") and state.payload is None
    assert book.get("c0") is None  # forgotten, oldest first
    duplicate = book.submit(client_order_id="c19", owner="me", side=Side.BUY, type=OrderType.LIMIT,
                            price=Decimal("100"), quantity=Decimal("1"))
    assert duplicate.duplicate and duplicate.order == state


def test_the_book_names_an_open_orders_owner_and_nothing_else() -> None:
    book = OrderBook("AAA/USDT")
    book.submit(client_order_id="a", owner="them", side=Side.SELL, type=OrderType.LIMIT, price=Decimal("101"),
                quantity=Decimal("1"))
    assert book.owner("a") == "them" and book.owner("b") is None
    book.cancel("a")
    assert book.owner("a") is None


@pytest.mark.parametrize("start", [0, 1, 35, 36, 1295, 1296, 46655, 46656, 1_764_000_000_000_000])
def test_client_ids_are_the_prefix_and_the_counter_in_base36(start: int) -> None:
    ids = ClientIds("mmf-AAAUSDT1-")
    ids._seq = start - 1
    assert [ids.next() for _ in range(3000)] == [f"mmf-AAAUSDT1-{base36(start + k)}" for k in range(3000)]


def _market() -> Market:
    return Market("AAA/USDT", tick_size="0.01", price_precision=2, quantity_precision=2)


class SteadyLadder(Ladder):
    """The test ladder, handing back the very same quotes while the index stays within a step of where it was."""

    name = "steady_ladder"

    def __init__(self, config: Any, market: Market) -> None:
        super().__init__(config, market)
        self.quotes: list[Quote] = []
        self.anchor: Decimal | None = None

    def desired_orders(self, ctx: StrategyContext) -> Iterable[Quote]:
        mid = ctx.index_price
        if mid is not None and (self.anchor is None or abs(mid - self.anchor) >= self.config.step):
            self.anchor, self.quotes = mid, list(super().desired_orders(ctx))
        return list(self.quotes)


class OrderPathPlugin:
    """This module's test strategies."""

    @hookimpl
    def register_strategies(self, register: Any) -> None:
        register(CountingLadder)
        register(SteadyLadder)


async def test_an_unchanged_ladder_over_unchanged_orders_is_not_diffed_again(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start_engine(nursery, OrderPathPlugin())
    await engine.manager.start_market(spec(strategy="steady_ladder", strategy_config={"levels": 2}))
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    runner = engine.manager.runner(next(iter(engine.manager.markets)))
    assert runner is not None
    plans: list[int] = []

    class CountingReconciler(Reconciler):
        def plan(self, desired: Any, live: Any) -> Plan:
            quotes = list(desired)
            plans.append(len(quotes))
            return super().plan(quotes, live)

    runner.reconciler = CountingReconciler(runner.market, runner.reconciler.tolerance)
    for price in ("100.1", "100.2", "100.3", "100.2"):  # within a step: the same quotes every time
        engine.feed.push_price("AAAUSDT", price)
        await settle()
    # The first tick diffs once (the acknowledgements since the last plan changed our orders); it finds nothing to
    # do, so the next three are not diffed at all.
    assert plans == [4]
    before = engine.prices()
    # A fill changes our orders: the very same quotes are diffed again, and the filled level is put back.
    engine.sink.submit_external("AAA/USDT", side=Side.SELL, type=OrderType.MARKET, quantity=Decimal("1"))
    await settle()
    assert len(plans) >= 2 and engine.prices() == before
    engine.feed.push_price("AAAUSDT", "101.5")  # a step away: new quotes, a new plan that moves the ladder
    await settle()
    assert engine.prices() == ([Decimal("100.50"), Decimal("99.50")], [Decimal("102.50"), Decimal("103.50")])


class InFlightLimit:
    """A plugin that lets at most two orders be sent and not yet acknowledged (an exchange's rate limit)."""

    @hookimpl
    def pre_trade_check(self, market: Any, request: OrderRequest, context: Any) -> str | None:
        pending = sum(1 for o in context.live_orders if o.status is OrderStatus.PENDING)
        return "too many orders in flight" if pending >= 2 else None


async def test_an_order_held_back_is_asked_for_again_once_the_acknowledgements_are_in(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    # Acknowledgements alone cost no new decision, unless the step held something back that they may let through.
    engine = await start_engine(nursery, InFlightLimit())
    await engine.manager.start_market(spec(strategy_config={"levels": 2}, refresh_interval=3.0, reconcile_interval=0))
    engine.feed.push_price("AAAUSDT", "100")
    await settle()
    assert len(engine.book_orders()) == 4  # two, acknowledged, then the other two: no refresh interval's wait
    assert engine.status().orders_vetoed == 2
