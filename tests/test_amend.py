"""Amend (issue 19): the reconciler pairs a moved order with the quote it becomes, the pipeline sends one amend through
the risk gate, the tracker shows the amended order and puts it back when the sink refuses, fills racing an amend are
understood, and the message budget sends the levels nearest the touch first."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from mmframe import (
    AmendRequest,
    Fill,
    InvalidTransition,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Quote,
    Side,
    Strategy,
    StrategyContext,
    hookimpl,
)
from mmframe._engine.budget import MessageBudget, ranked
from mmframe._engine.clientid import ClientIds
from mmframe._engine.pipeline import OrderPipeline
from mmframe._engine.reconcile import Plan, Reconciler, Tolerance
from mmframe._engine.risk import RiskGate, RiskLimits
from mmframe._engine.tracker import OrderTracker
from mmframe.protocols import AmendsOrders
from mmframe.testing import PaperSink, start_engine

from .engine_helpers import market
from .test_order_pipeline import RecordingSink

D = Decimal
K = OrderEventKind
S = OrderStatus
MARKET = market()
SYMBOL = MARKET.symbol


def always(order: Order) -> bool:
    return True


def live_order(coid: str, side: Side, price: str | Decimal, qty: str | Decimal = "1", filled: str = "0",
               order_type: OrderType = OrderType.LIMIT) -> Order:
    request = OrderRequest(coid, SYMBOL, side, order_type, quantity=qty, price=price)
    return Order(request, status=S.PARTIALLY_FILLED if D(filled) else S.OPEN, filled_quantity=D(filled))


# ---------------------------------------------------------------------------------------------------------------
# The reconciler
# ---------------------------------------------------------------------------------------------------------------

prices = st.integers(min_value=9000, max_value=11000).map(lambda n: Decimal(n) / 100)
quantities = st.integers(min_value=1, max_value=30).map(lambda n: Decimal(n) / 10)
sides = st.sampled_from([Side.BUY, Side.SELL])
quote_lists = st.lists(st.builds(Quote, sides, prices, quantities), max_size=12)
live_lists = st.lists(st.tuples(sides, prices, quantities), max_size=12)


@settings(max_examples=300, deadline=None)
@given(desired=quote_lists, live_spec=live_lists, ticks=st.integers(0, 3))
def test_cancels_amends_and_places_yield_the_desired_book_in_fewer_messages(
    desired: list[Quote], live_spec: list[tuple[Side, Decimal, Decimal]], ticks: int
) -> None:
    tolerance = Tolerance(price_ticks=ticks)
    live = [live_order(f"o{i}", side, price, qty) for i, (side, price, qty) in enumerate(live_spec)]
    plain = Reconciler(MARKET, tolerance).plan(desired, live)
    plan = Reconciler(MARKET, tolerance, amendable=always).plan(desired, live)
    # Apply it: cancels leave, amended orders take their quote's price and quantity, places arrive.
    gone = {o.client_order_id for o in plan.cancels}
    amended = {o.client_order_id: q for o, q in plan.amends}
    book = sorted(
        [(q.side, q.price, q.quantity) for q in amended.values()]
        + [(q.side, q.price, q.quantity) for q in plan.places]
        + [(o.side, o.price, o.remaining_quantity) for o in live
           if o.client_order_id not in gone and o.client_order_id not in amended]
    )
    kept = sorted([(q.side, q.price, q.quantity) for _, q in plan.kept])
    want = sorted((q.side, q.price, q.quantity) for q in desired)
    # Every desired quote is an amended order, a place or a kept order (kept ones within tolerance of theirs).
    assert sorted([(q.side, q.price, q.quantity) for q in amended.values()] + [
        (q.side, q.price, q.quantity) for q in plan.places] + kept) == want
    assert len(book) == len(desired)
    # Each amend stays on its side; nothing is both amended and cancelled or kept.
    assert all(o.side is q.side for o, q in plan.amends)
    assert gone.isdisjoint(amended) and {o.client_order_id for o, _ in plan.kept}.isdisjoint(amended)
    # The same keeps; every amend replaces exactly one cancel and one place.
    assert [o.client_order_id for o, _ in plan.kept] == [o.client_order_id for o, _ in plain.kept]
    assert len(plan.cancels) + len(plan.amends) == len(plain.cancels)
    assert len(plan.places) + len(plan.amends) == len(plain.places)
    assert plan.messages == plain.messages - len(plan.amends)
    # Leftovers on one side are paired as far as they go: a cancel and a place never remain on the same side.
    for side in (Side.BUY, Side.SELL):
        assert not (any(o.side is side for o in plan.cancels) and any(q.side is side for q in plan.places))


def test_a_shifted_ladder_is_amended_level_by_level_nearest_first() -> None:
    live = [live_order("b1", Side.BUY, "99"), live_order("b2", Side.BUY, "98"),
            live_order("a1", Side.SELL, "101"), live_order("a2", Side.SELL, "102")]
    desired = [Quote(Side.BUY, D("99.50"), D("1")), Quote(Side.BUY, D("98.50"), D("1")),
               Quote(Side.SELL, D("101.50"), D("1")), Quote(Side.SELL, D("102.50"), D("1"))]
    plan = Reconciler(MARKET, amendable=always).plan(desired, live)
    assert plan.cancels == () and plan.places == ()
    assert [(o.client_order_id, q.price) for o, q in plan.amends] == [
        ("b1", D("99.50")), ("b2", D("98.50")), ("a1", D("101.50")), ("a2", D("102.50"))
    ]
    assert plan.messages == 4 and bool(plan)


def test_an_order_that_cannot_be_amended_is_cancelled_and_its_quote_placed() -> None:
    pending = attrs.evolve(live_order("b1", Side.BUY, "99"), status=S.PENDING)
    post_only = live_order("b2", Side.BUY, "98", order_type=OrderType.POST_ONLY)
    tracker = OrderTracker()
    plan = Reconciler(MARKET, amendable=tracker.amendable).plan(
        [Quote(Side.BUY, D("99.50"), D("1")), Quote(Side.BUY, D("98.50"), D("1"))], [pending, post_only]
    )
    # Not resting yet; and a post-only order is not amended into a limit quote (another type).
    assert plan.amends == ()
    assert {o.client_order_id for o in plan.cancels} == {"b1", "b2"} and len(plan.places) == 2


def test_a_quantity_change_at_the_same_price_is_an_amend() -> None:
    plan = Reconciler(MARKET, amendable=always).plan([Quote(Side.BUY, D("99"), D("0.5"))],
                                                     [live_order("b1", Side.BUY, "99", "2")])
    assert [(o.client_order_id, q.quantity) for o, q in plan.amends] == [("b1", D("0.5"))]


# ---------------------------------------------------------------------------------------------------------------
# The tracker
# ---------------------------------------------------------------------------------------------------------------


def tracked(qty: str = "2", price: str = "100", side: Side = Side.BUY) -> OrderTracker:
    tracker = OrderTracker()
    tracker.add(OrderRequest("c1", SYMBOL, side, OrderType.LIMIT, quantity=qty, price=price), 0.0)
    tracker.mark_sent("c1", 0.0)
    tracker.apply(OrderEvent(K.ACCEPTED, "c1", SYMBOL), 0.0)
    return tracker


def fill(kind: OrderEventKind, qty: str, cumulative: str, price: str, side: Side = Side.BUY) -> OrderEvent:
    return OrderEvent(kind, "c1", SYMBOL, filled_quantity=cumulative,
                      fill=Fill(f"t{cumulative}", "c1", SYMBOL, side, price=price, quantity=qty))


def test_an_amend_shows_at_once_and_is_confirmed_by_the_sink() -> None:
    tracker = tracked()
    version = tracker.version
    order = tracker.mark_amend_requested("c1", D("99"), D("1.5"), 1.0)
    assert (order.price, order.quantity, order.status) == (D("99"), D("1.5"), S.OPEN)
    assert tracker.version > version and not tracker.amendable(order)  # one amend at a time
    assert tracker.amend_pending("c1") is not None
    tracker.apply(OrderEvent(K.AMENDED, "c1", SYMBOL, price="99", quantity="1.5"), 2.0)
    assert (order.price, order.quantity) == (D("99"), D("1.5"))
    assert tracker.amend_pending("c1") is None and tracker.amendable(order)


def test_a_refused_amend_puts_the_order_back_and_it_is_never_amended_again() -> None:
    tracker = tracked()
    order = tracker.mark_amend_requested("c1", D("99"), D("1.5"), 1.0)
    tracker.apply(OrderEvent(K.AMEND_REJECTED, "c1", SYMBOL, reason="would cross the book"), 2.0)
    assert (order.price, order.quantity, order.status) == (D("100"), D("2"), S.OPEN)
    assert order.reason == "would cross the book"
    assert not tracker.amendable(order)  # cancelled and placed from now on: no amend refused step after step


def test_a_fill_at_the_old_price_while_the_amend_is_under_way_is_understood() -> None:
    """Our bid moves from 100 down to 99; a fill at 100 that reached the book before the amend is no breach."""
    tracker = tracked()
    order = tracker.mark_amend_requested("c1", D("99"), D("2"), 1.0)
    tracker.apply(fill(K.PARTIALLY_FILLED, "0.5", "0.5", "100"), 1.5)
    tracker.apply(OrderEvent(K.AMENDED, "c1", SYMBOL, filled_quantity="0.5", price="99", quantity="2"), 2.0)
    # Even after the amend is confirmed, a late report of a fill at the price it had is understood...
    tracker.apply(fill(K.PARTIALLY_FILLED, "0.5", "1", "100"), 2.5)
    assert order.price == D("99") and order.filled_quantity == D("1")
    # ... but a fill worse than any price the order ever had is not.
    with pytest.raises(InvalidTransition, match=r"filled at 100\.5"):
        tracker.apply(fill(K.PARTIALLY_FILLED, "0.5", "1.5", "100.5"), 3.0)


def test_a_fill_of_the_old_quantity_means_the_amend_cannot_have_applied() -> None:
    tracker = tracked(qty="2")
    order = tracker.mark_amend_requested("c1", D("100"), D("1"), 1.0)  # a decrease to 1
    tracker.apply(fill(K.FILLED, "2", "2", "100"), 1.5)  # the whole 2 traded before the amend arrived
    assert order.status is S.FILLED and order.quantity == D("2")
    # Likewise a partial fill up to the new quantity: the amend will be refused; the order is back at 2.
    tracker = tracked(qty="2")
    order = tracker.mark_amend_requested("c1", D("100"), D("1"), 1.0)
    tracker.apply(fill(K.PARTIALLY_FILLED, "1.5", "1.5", "100"), 1.5)
    assert order.quantity == D("2") and tracker.amend_pending("c1") is None
    tracker.apply(OrderEvent(K.AMEND_REJECTED, "c1", SYMBOL, reason="already filled 1.5"), 2.0)
    assert order.quantity == D("2") and order.status is S.PARTIALLY_FILLED


def test_a_fill_of_the_new_quantity_completes_the_amended_order() -> None:
    tracker = tracked(qty="2")
    order = tracker.mark_amend_requested("c1", D("100"), D("1"), 1.0)
    tracker.apply(fill(K.FILLED, "1", "1", "100"), 1.5)
    assert order.status is S.FILLED and order.quantity == D("1")


def test_a_refused_amend_takes_back_the_price_it_would_have_allowed_a_fill_at() -> None:
    tracker = tracked()  # a bid at 100
    tracker.mark_amend_requested("c1", D("101"), D("2"), 1.0)
    tracker.apply(OrderEvent(K.AMEND_REJECTED, "c1", SYMBOL, reason="would cross the book"), 1.5)
    with pytest.raises(InvalidTransition, match=r"filled at 100\.5"):
        tracker.apply(fill(K.PARTIALLY_FILLED, "1", "1", "100.5"), 2.0)


def test_an_order_that_ends_with_its_amend_unanswered_ends_as_the_sink_last_confirmed_it() -> None:
    tracker = tracked()
    order = tracker.mark_amend_requested("c1", D("99"), D("1"), 1.0)
    tracker.apply(OrderEvent(K.CANCELLED, "c1", SYMBOL, reason="cancelled"), 1.5)
    assert (order.status, order.price, order.quantity) == (S.CANCELLED, D("100"), D("2"))


def test_a_late_amended_event_of_an_earlier_change_does_not_settle_the_amend_under_way() -> None:
    """Amended to 99 (told), then to 98 (under way); the sink's late report of the change to 99 arrives: the order
    still shows 98 until that amend is answered, and a refusal puts it back at 99, where it really is."""
    tracker = tracked()
    order = tracker.mark_amend_requested("c1", D("99"), D("2"), 1.0)
    tracker.apply(OrderEvent(K.AMENDED, "c1", SYMBOL, price="99", quantity="2"), 1.1)
    tracker.mark_amend_requested("c1", D("98"), D("2"), 1.2)
    tracker.apply(OrderEvent(K.AMENDED, "c1", SYMBOL, price="99", quantity="2"), 1.3)  # late, again
    assert order.price == D("98") and tracker.amend_pending("c1") is not None
    tracker.apply(OrderEvent(K.AMEND_REJECTED, "c1", SYMBOL, reason="refused"), 1.4)
    assert order.price == D("99") and tracker.amend_pending("c1") is None


@pytest.mark.parametrize(
    "event",
    [
        OrderEvent(K.AMENDED, "c1", SYMBOL),  # no price and quantity
        OrderEvent(K.AMENDED, "c1", SYMBOL, price="99", quantity="0.5"),  # below what has filled
    ],
    ids=["without values", "below filled"],
)
def test_an_amended_event_that_makes_no_sense_fails_loudly(event: OrderEvent) -> None:
    tracker = tracked()
    tracker.apply(fill(K.PARTIALLY_FILLED, "1", "1", "100"), 1.0)
    with pytest.raises(InvalidTransition):
        tracker.apply(event, 2.0)


def test_only_a_resting_order_is_amended() -> None:
    tracker = OrderTracker()
    tracker.add(OrderRequest("c1", SYMBOL, Side.BUY, OrderType.LIMIT, quantity="1", price="100"), 0.0)
    tracker.mark_sent("c1", 0.0)
    with pytest.raises(InvalidTransition, match="cannot be amended"):
        tracker.mark_amend_requested("c1", D("99"), D("1"), 1.0)  # pending: not on the book yet
    with pytest.raises(InvalidTransition, match="amended while it is pending"):
        tracker.apply(OrderEvent(K.AMENDED, "c1", SYMBOL, price="99", quantity="1"), 1.0)
    tracker.apply(OrderEvent(K.ACCEPTED, "c1", SYMBOL), 1.0)
    tracker.mark_cancel_requested("c1", 1.0)
    with pytest.raises(InvalidTransition, match="being cancelled"):
        tracker.mark_amend_requested("c1", D("99"), D("1"), 1.0)
    tracker = tracked()
    with pytest.raises(InvalidTransition, match="filled already"):
        tracker.apply(fill(K.PARTIALLY_FILLED, "1", "1", "100"), 1.0)
        tracker.mark_amend_requested("c1", D("99"), D("1"), 1.0)


# ---------------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------------


class AmendingSink(RecordingSink):
    """Records what it is sent, amends included; answers nothing (a test applies the events it wants)."""

    def __init__(self) -> None:
        super().__init__()
        self.amended: list[AmendRequest] = []

    async def amend(self, requests: Sequence[AmendRequest]) -> None:
        await trio.lowlevel.checkpoint()
        self.amended.extend(requests)


def pipeline(limits: RiskLimits | None = None) -> tuple[OrderPipeline, AmendingSink, OrderTracker]:
    sink, tracker = AmendingSink(), OrderTracker()
    assert isinstance(sink, AmendsOrders)
    gate = RiskGate(MARKET, limits if limits is not None else RiskLimits(price_band=D("0.5")))
    counters = dict.fromkeys(("placed", "cancelled", "amended", "vetoed", "deferred"), 0)
    orders = OrderPipeline(
        MARKET, sink, tracker, gate, ClientIds("t-AAAUSDT1-"),
        counters=counters, log=logging.LoggerAdapter(logging.getLogger("mmframe.market"), {}),
        rng=random.Random(1), drain=lambda: None,
    )
    return orders, sink, tracker


def resting(tracker: OrderTracker, side: Side, price: str, coid: str, qty: str = "1") -> Order:
    tracker.add(OrderRequest(coid, SYMBOL, side, OrderType.LIMIT, quantity=qty, price=price), 0.0)
    tracker.mark_sent(coid, 0.0)
    return tracker.apply(OrderEvent(K.ACCEPTED, coid, SYMBOL), 0.0)


async def test_orders_moving_away_are_amended_first_so_none_crosses_ours_on_the_way() -> None:
    """The index jumps up by more than our spread: the ask moves up first, then the bid moves to where the ask was.
    In the other order the bid's new price would cross our own ask, which is still there."""
    orders, sink, tracker = pipeline()
    bid = resting(tracker, Side.BUY, "99", "bid")
    ask = resting(tracker, Side.SELL, "101", "ask")
    refused = await orders.amend([(bid, Quote(Side.BUY, D("102"), D("1"))), (ask, Quote(Side.SELL, D("104"), D("1")))],
                                 1.0, reference=D("103"), position=Position())
    assert refused == []
    assert [(a.client_order_id, a.price) for a in sink.amended] == [("ask", D("104")), ("bid", D("102"))]
    assert orders.counters["amended"] == 2 and orders.counters["deferred"] == 0
    assert (bid.price, ask.price) == (D("102"), D("104"))  # shown at once


async def test_an_amend_that_would_cross_our_own_order_is_not_sent_and_the_order_is_cancelled_instead() -> None:
    orders, sink, tracker = pipeline()
    bid = resting(tracker, Side.BUY, "99", "bid")
    resting(tracker, Side.SELL, "101", "ask")
    refused = await orders.amend([(bid, Quote(Side.BUY, D("101"), D("1")))], 1.0, reference=D("100"),
                                 position=Position())
    assert refused == [bid] and sink.amended == []
    assert orders.counters["deferred"] == 1 and bid.price == D("99")


async def test_an_amend_is_checked_against_the_old_price_of_an_order_whose_amend_is_under_way() -> None:
    """Our ask is being amended from 101 up to 103, no answer yet: until the sink says, it may still rest at 101,
    so a bid may not be moved to 101 (nor a new bid placed there)."""
    orders, sink, tracker = pipeline()
    bid = resting(tracker, Side.BUY, "99", "bid")
    ask = resting(tracker, Side.SELL, "101", "ask")
    tracker.mark_amend_requested("ask", D("103"), D("1"), 0.5)
    assert ask.price == D("103")
    refused = await orders.amend([(bid, Quote(Side.BUY, D("101"), D("1")))], 1.0, reference=D("100"),
                                 position=Position())
    assert refused == [bid] and sink.amended == []
    await orders.place([Quote(Side.BUY, D("101"), D("1"))], [], 1.0, reference=D("100"), position=Position())
    assert sink.placed == [] and orders.counters["deferred"] == 2


async def test_an_amend_the_gate_vetoes_is_counted_and_the_order_cancelled_instead() -> None:
    orders, sink, tracker = pipeline(RiskLimits(price_band=D("0.01")))
    bid = resting(tracker, Side.BUY, "99.50", "bid")
    refused = await orders.amend([(bid, Quote(Side.BUY, D("90"), D("1")))], 1.0, reference=D("100"),
                                 position=Position())
    assert refused == [bid] and sink.amended == []
    assert orders.counters["vetoed"] == 1 and "price band" in orders.last_veto


async def test_the_amend_keeps_what_has_filled_and_asks_for_the_quote_on_top() -> None:
    orders, sink, tracker = pipeline()
    resting(tracker, Side.BUY, "99", "bid", qty="3")
    bid = tracker.apply(OrderEvent(K.PARTIALLY_FILLED, "bid", SYMBOL, filled_quantity="1",
                                   fill=Fill("t1", "bid", SYMBOL, Side.BUY, price="99", quantity="1")), 0.5)
    await orders.amend([(bid, Quote(Side.BUY, D("99.50"), D("2")))], 1.0, reference=D("100"), position=Position())
    assert [(a.price, a.quantity) for a in sink.amended] == [(D("99.50"), D("3"))]
    assert bid.remaining_quantity == D("2")


async def test_the_gate_judges_what_an_amend_adds_not_what_has_filled() -> None:
    """A bid of 10 with 6 filled, max_position 8: amending it to 2 more at a better price adds what placing that quote
    would (position 8), so it passes like the place; the filled 6 is not counted twice."""
    orders, sink, tracker = pipeline(RiskLimits(price_band=D("0.5"), max_position=D("8")))
    resting(tracker, Side.BUY, "99", "bid", qty="10")
    bid = tracker.apply(OrderEvent(K.PARTIALLY_FILLED, "bid", SYMBOL, filled_quantity="6",
                                   fill=Fill("t1", "bid", SYMBOL, Side.BUY, price="99", quantity="6")), 0.5)
    refused = await orders.amend([(bid, Quote(Side.BUY, D("99.50"), D("2")))], 1.0, reference=D("100"),
                                 position=Position(base=D("6")))
    assert refused == [] and [(a.price, a.quantity) for a in sink.amended] == [(D("99.50"), D("8"))]
    # ... and 3 more would take it beyond: vetoed, and the order cancelled instead.
    orders, sink, tracker = pipeline(RiskLimits(price_band=D("0.5"), max_position=D("8")))
    resting(tracker, Side.BUY, "99", "bid", qty="10")
    bid = tracker.apply(OrderEvent(K.PARTIALLY_FILLED, "bid", SYMBOL, filled_quantity="6",
                                   fill=Fill("t1", "bid", SYMBOL, Side.BUY, price="99", quantity="6")), 0.5)
    refused = await orders.amend([(bid, Quote(Side.BUY, D("99.50"), D("3")))], 1.0, reference=D("100"),
                                 position=Position(base=D("6")))
    assert refused == [bid] and "max_position" in orders.last_veto


async def test_an_order_with_an_amend_under_way_is_one_order_for_max_active_orders() -> None:
    orders, sink, tracker = pipeline(RiskLimits(price_band=D("0.5"), max_active_orders=3))
    resting(tracker, Side.BUY, "99", "b1")
    resting(tracker, Side.SELL, "101", "a1")
    tracker.mark_amend_requested("a1", D("101.50"), D("1"), 0.5)  # no answer yet
    await orders.place([Quote(Side.BUY, D("98"), D("1"))], [], 1.0, reference=D("100"), position=Position())
    assert len(sink.placed) == 1 and orders.counters["vetoed"] == 0


# ---------------------------------------------------------------------------------------------------------------
# The message budget
# ---------------------------------------------------------------------------------------------------------------


def test_the_budget_is_a_sliding_window_of_one_second() -> None:
    budget = MessageBudget(10)
    assert budget.room(0.0) == 10
    budget.spend(0.0, 6)
    budget.spend(0.5, 4)
    assert budget.room(0.9) == 0 and budget.next_room_at(0.9) == 1.0
    assert budget.room(1.0) == 6 and budget.room(1.5) == 10
    with pytest.raises(ValueError, match="at least 1"):
        MessageBudget(0)


def test_the_budget_spends_on_own_cancels_then_the_plan_nearest_the_touch_then_immediate_orders() -> None:
    near_bid = live_order("nb", Side.BUY, "99.90")
    far_bid = live_order("fb", Side.BUY, "95")
    far_ask = live_order("fa", Side.SELL, "106")
    stale_bid = live_order("sb", Side.BUY, "100.50")  # the index fell to 100: this bid is above it
    plan = Plan(
        cancels=(far_bid, stale_bid),
        places=(Quote(Side.SELL, D("100.10"), D("1")), Quote(Side.SELL, D("104"), D("1"))),
        amends=((near_bid, Quote(Side.BUY, D("99.80"), D("1"))), (far_ask, Quote(Side.SELL, D("105"), D("1")))),
    )
    sweep = ("sweep", Quote(Side.BUY, D("100"), D("1"), OrderType.IOC))
    actions = ranked(plan, ["x1"], [sweep], D("100"))
    names = [
        value if kind in ("own_cancel",) else
        value[0] if kind == "immediate" else
        value.client_order_id if kind == "cancel" else
        value[0].client_order_id if kind == "amend" else
        str(value.price)
        for kind, value in actions
    ]
    # The strategy's cancel; the stale bid through the index; then by distance behind the touch (0.10: the amend
    # before the place); the far cancel before the far amend (both 5 behind); the sweep last.
    assert names == ["x1", "sb", "nb", "100.10", "104", "fb", "fa", "sweep"]
    assert [kind for kind, _ in actions] == ["own_cancel", "cancel", "amend", "place", "place", "cancel", "amend",
                                             "immediate"]


# ---------------------------------------------------------------------------------------------------------------
# A market on the paper sink
# ---------------------------------------------------------------------------------------------------------------


class Puppet(Strategy):
    """Quotes whatever the test puts in ``want``."""

    name = "puppet"
    want: list[Quote] = []

    @attrs.frozen
    class Config:
        pass

    def desired_orders(self, ctx: StrategyContext) -> Iterable[Quote]:
        return list(Puppet.want)


async def puppet(nursery: trio.Nursery, sink: PaperSink, **spec: Any) -> Any:
    Puppet.want = []
    engine = await start_engine(nursery, sink=sink, strategies=[Puppet])
    await engine.start(market=MARKET, strategy="puppet", risk=RiskLimits(price_band=D("0.5")), **spec)
    return engine


async def test_a_smaller_quantity_at_the_same_price_keeps_the_queue_place_through_the_market(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    sink = PaperSink()
    engine = await puppet(nursery, sink)
    Puppet.want = [Quote(Side.BUY, D("99"), D("2"))]
    engine.push_tick("100")
    await engine.settle()
    # Another participant's bid joins behind ours at 99.
    sink.submit_external(SYMBOL, side=Side.BUY, type=OrderType.LIMIT, quantity=D("2"), price=D("99"), owner="other")
    Puppet.want = [Quote(Side.BUY, D("99"), D("1"))]
    engine.push_tick("100.01")
    await engine.settle()
    status = engine.status()
    assert status.orders_amended == 1 and status.orders_placed == 1 and status.orders_cancelled == 0
    # A seller of 1 meets ours first: we kept our place in front of the other bid.
    result = sink.submit_external(SYMBOL, side=Side.SELL, type=OrderType.LIMIT, quantity=D("1"), price=D("99"),
                                  owner="seller")
    await engine.settle()
    assert [trade.maker.owner for trade in result.trades] == [sink.config.owner]
    assert engine.status().fills == 1


async def test_an_amend_the_sink_refuses_becomes_a_cancel_and_a_place_without_a_loop(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    """Another participant's ask sits at 99.50; our bid asked to move from 99 to 99.60 would cross it. The paper
    sink refuses the amend (an amend never takes liquidity); the market then cancels and places, once."""
    sink = PaperSink()
    engine = await puppet(nursery, sink)
    Puppet.want = [Quote(Side.BUY, D("99"), D("1"))]
    engine.push_tick("100")
    await engine.settle()
    sink.submit_external(SYMBOL, side=Side.SELL, type=OrderType.LIMIT, quantity=D("1"), price=D("99.50"),
                         owner="other")
    Puppet.want = [Quote(Side.BUY, D("99.60"), D("1"))]
    engine.push_tick("100.01")
    await engine.settle()
    status = engine.status()
    assert status.orders_amended == 1 and status.amends_rejected == 1
    # Then a cancel and a place: the place trades with the other ask, as a new limit order would; the next one
    # rests where the strategy wants it.
    assert status.orders_cancelled == 1 and status.fills == 1 and status.orders_placed == 3
    assert engine.prices() == ([D("99.60")], [])
    await trio.sleep(5)
    assert engine.status().orders_amended == 1  # no amend after amend refused, step after step


async def test_with_amend_off_a_move_is_a_cancel_and_a_place(nursery: trio.Nursery, autojump_clock: Any) -> None:
    sink = PaperSink()
    engine = await puppet(nursery, sink, amend=False)
    Puppet.want = [Quote(Side.BUY, D("99"), D("1"))]
    engine.push_tick("100")
    await engine.settle()
    Puppet.want = [Quote(Side.BUY, D("99.10"), D("1"))]
    engine.push_tick("100.01")
    await engine.settle()
    status = engine.status()
    assert (status.orders_amended, status.orders_cancelled, status.orders_placed) == (0, 1, 2)
    assert engine.prices() == ([D("99.10")], [])


class Sweeper(Strategy):
    """On every tick, sends ``sweeps`` IOC buys far below the book (they expire), and counts its decisions."""

    name = "sweeper"
    sweeps = 15
    decisions = 0

    @attrs.frozen
    class Config:
        pass

    def on_tick(self, tick: Any, ctx: StrategyContext) -> None:
        for _ in range(Sweeper.sweeps):
            ctx.submit(Quote(Side.BUY, tick.price - 1, D("1"), OrderType.IOC))

    def desired_orders(self, ctx: StrategyContext) -> Iterable[Quote]:
        Sweeper.decisions += 1
        return []


async def test_immediate_orders_beyond_the_budget_are_dropped_not_sent_late(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    """An immediate order (a sweep) was meant for this moment's book: what the budget has no room for is dropped and
    counted, never sent a second later; and the market does not spin meanwhile."""
    sink = PaperSink()
    Sweeper.decisions = 0
    engine = await start_engine(nursery, sink=sink, strategies=[Sweeper])
    await engine.start(market=MARKET, strategy="sweeper", risk=RiskLimits(price_band=D("0.5")),
                       max_messages_per_second=10, refresh_interval=30.0)
    engine.push_tick("100")
    await engine.settle()
    status = engine.status()
    assert status.orders_placed == 10 and status.orders_vetoed == 5 and status.messages_held == 0
    assert "message budget" in status.last_veto
    decisions = Sweeper.decisions
    await trio.sleep(5)
    assert Sweeper.decisions == decisions and engine.status().orders_placed == 10


async def test_an_order_the_strategy_cancels_in_the_step_that_would_amend_it_is_cancelled_not_amended() -> None:
    orders, sink, tracker = pipeline()
    bid = resting(tracker, Side.BUY, "99", "bid")
    await orders.cancel([], ["bid"], 1.0)  # the strategy's own cancel, sent first
    refused = await orders.amend([(bid, Quote(Side.BUY, D("99.50"), D("1")))], 1.0, reference=D("100"),
                                 position=Position())
    assert refused == [] and sink.amended == [] and sink.cancelled == ["bid"]
    assert bid.price == D("99") and bid.cancel_requested


class Counted(Puppet):
    """A puppet that counts its decisions."""

    name = "counted"
    decisions = 0

    def desired_orders(self, ctx: StrategyContext) -> Iterable[Quote]:
        Counted.decisions += 1
        return list(Puppet.want)


@pytest.mark.parametrize("amend", [False, True], ids=["cancel-and-place", "amend"])
async def test_a_refused_order_never_keeps_the_budget_from_the_orders_behind_it(
    amend: bool, nursery: trio.Nursery, autojump_clock: Any
) -> None:
    """The index drops through our bid with a budget of 1 a second: the new ask would cross our stale bid, so it is
    deferred until that bid is gone; the refusal costs nothing, and the cancel (or amend) of the stale bid goes out
    in the same step. (Ranking alone once sent the deferred ask first, every step, for ever.)"""
    sink = PaperSink()
    engine = await start_engine(nursery, sink=sink, strategies=[Counted])
    Puppet.want = [Quote(Side.BUY, D("99"), D("1")), Quote(Side.SELL, D("101"), D("1"))]
    await engine.start(market=MARKET, strategy="counted", risk=RiskLimits(price_band=D("0.5")),
                       max_messages_per_second=1, amend=amend, refresh_interval=30.0)
    engine.push_tick("100")
    await trio.sleep(3)
    assert engine.prices() == ([D("99")], [D("101")])
    Puppet.want = [Quote(Side.BUY, D("97"), D("1")), Quote(Side.SELL, D("98.50"), D("1"))]
    engine.push_tick("98")
    await engine.settle()
    assert D("99") not in engine.prices()[0]  # the bid above the index went first
    for i in range(10):
        engine.push_tick("98.00" if i % 2 else "98.01")
        await trio.sleep(0.5)
    assert engine.prices() == ([D("97")], [D("98.50")])
    assert engine.status().messages_held == 0


async def test_a_held_back_step_does_not_spin_while_the_sink_is_degraded(nursery: trio.Nursery) -> None:
    class FlakySink(PaperSink):
        degraded = False

    sink = FlakySink()
    engine = await start_engine(nursery, sink=sink, strategies=[Counted])
    Puppet.want = [Quote(Side.BUY, D("99") - D("0.10") * i, D("1")) for i in range(6)]
    await engine.start(market=MARKET, strategy="counted", risk=RiskLimits(price_band=D("0.5")),
                       max_messages_per_second=2, refresh_interval=30.0)
    engine.push_tick("100")
    await trio.sleep(0.05)
    assert engine.status().messages_held == 4
    sink.degraded = True
    before = Counted.decisions
    await trio.sleep(1.5)  # real time: a spinning loop would decide thousands of times
    assert Counted.decisions - before < 10


def test_a_fill_that_undoes_an_amend_takes_back_the_price_the_amend_would_have_allowed() -> None:
    tracker = tracked(qty="2")  # a bid at 100
    order = tracker.mark_amend_requested("c1", D("101"), D("1"), 1.0)  # up to 101, down to 1
    tracker.apply(fill(K.PARTIALLY_FILLED, "1.5", "1.5", "100"), 1.5)  # 1.5 filled: the amend cannot apply
    assert (order.price, order.quantity) == (D("100"), D("2"))
    with pytest.raises(InvalidTransition, match=r"filled at 100\.5"):
        tracker.apply(fill(K.FILLED, "0.5", "2", "100.5"), 2.0)


async def test_an_order_the_sink_rejects_every_time_is_not_sent_again_at_once(nursery: trio.Nursery) -> None:
    """A post-only bid the book has moved through is rejected by the sink; deciding again at once would send it
    again as fast as the sink answers (20,000 a second on the paper sink). The market waits for its next tick or
    refresh instead. Real clock: a spin shows as thousands."""
    sink = PaperSink()
    Puppet.want = []
    engine = await start_engine(nursery, sink=sink, strategies=[Puppet])
    await engine.start(market=MARKET, strategy="puppet", risk=RiskLimits(price_band=D("0.5")), refresh_interval=0.5)
    sink.submit_external(SYMBOL, side=Side.SELL, type=OrderType.LIMIT, quantity=D("5"), price=D("99.30"),
                         owner="other")
    Puppet.want = [Quote(Side.BUY, D("99.50"), D("1"), type=OrderType.POST_ONLY)]
    engine.push_tick("100")
    await trio.sleep(1.0)
    status = engine.status()
    assert 1 <= status.orders_rejected <= status.orders_placed <= 4


class RacySink(PaperSink):
    """Answers amends, and meanwhile (as a remote sink's stream would during the round trip) another participant
    lifts our ask."""

    lift = False

    async def amend(self, requests: Sequence[AmendRequest]) -> None:
        await super().amend(requests)
        if self.lift:
            self.lift = False
            self.submit_external(SYMBOL, side=Side.BUY, type=OrderType.LIMIT, quantity=D("1"), price=D("101"),
                                 owner="other")


async def test_an_order_refused_an_amend_and_filled_meanwhile_is_not_cancelled(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    """The ask's amend is refused by the gate (too large), so it is to be cancelled after the batch; but it filled
    during the batch's round trip. Cancelling a filled order would fail the market; it is simply left out."""
    sink = RacySink()
    Puppet.want = [Quote(Side.BUY, D("99"), D("1")), Quote(Side.SELL, D("101"), D("1"))]
    engine = await start_engine(nursery, sink=sink, strategies=[Puppet])
    await engine.start(market=MARKET, strategy="puppet",
                       risk=RiskLimits(price_band=D("0.5"), max_order_quantity=D("5")))
    engine.push_tick("100")
    await engine.settle()
    Puppet.want = [Quote(Side.BUY, D("99.10"), D("1")), Quote(Side.SELL, D("101.10"), D("9"))]
    sink.lift = True
    engine.push_tick("100.05")
    await engine.settle()
    status = engine.status()
    assert status.error == "" and status.state.value == "running"
    assert status.fills == 1 and status.orders_amended == 1 and status.orders_cancelled == 0


async def test_a_cancel_the_budget_keeps_holding_back_goes_first_after_a_second(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    """Places the sink rejects every time (post-only bids the book is through) rank nearest the touch and would take
    the whole budget at every step; the cancel of the ask the strategy no longer wants, held back for a second,
    then goes before them."""
    sink = PaperSink()
    Puppet.want = [Quote(Side.SELL, D("101"), D("1"))]
    engine = await start_engine(nursery, sink=sink, strategies=[Puppet])
    await engine.start(market=MARKET, strategy="puppet", risk=RiskLimits(price_band=D("0.5")),
                       max_messages_per_second=2, amend=False)
    engine.push_tick("100")
    await engine.settle()
    sink.submit_external(SYMBOL, side=Side.SELL, type=OrderType.LIMIT, quantity=D("5"), price=D("99.30"),
                         owner="other")
    Puppet.want = [Quote(Side.BUY, D("99.50"), D("1"), type=OrderType.POST_ONLY),
                   Quote(Side.BUY, D("99.40"), D("1"), type=OrderType.POST_ONLY)]
    for i in range(10):
        engine.push_tick("100.00" if i % 2 else "100.01")
        await trio.sleep(0.5)
    assert engine.prices()[1] == []
    assert engine.status().orders_cancelled == 1


class OneBid:
    """A pre_trade_check allowing at most one resting bid."""

    @hookimpl
    def pre_trade_check(self, market: Any, request: OrderRequest, context: Any) -> str | None:
        bids = [o for o in context.live_orders if o.side is Side.BUY and not o.cancel_requested]
        return "at most one resting bid" if request.side is Side.BUY and bids else None


async def test_a_pre_trade_check_sees_the_market_without_the_order_being_amended(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    sink = PaperSink()
    Puppet.want = [Quote(Side.BUY, D("99"), D("1"))]
    engine = await start_engine(nursery, OneBid(), sink=sink, strategies=[Puppet])
    await engine.start(market=MARKET, strategy="puppet", risk=RiskLimits(price_band=D("0.5")))
    engine.push_tick("100")
    await engine.settle()
    Puppet.want = [Quote(Side.BUY, D("99.10"), D("1"))]
    engine.push_tick("100.05")
    await engine.settle()
    status = engine.status()
    assert (status.orders_amended, status.orders_cancelled, status.orders_vetoed) == (1, 0, 0)
