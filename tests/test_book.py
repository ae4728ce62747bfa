"""The price-time matching book: examples for every rule, and hypothesis properties over random order flow."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmframe._book import SELF_TRADE_PREVENTION, OrderBook, OrderState, SubmitResult, SubmitStatus
from mmframe._models import OrderStatus, OrderType, Side

D = Decimal
BUY, SELL = Side.BUY, Side.SELL
LIMIT, POST_ONLY, IOC, MARKET = OrderType.LIMIT, OrderType.POST_ONLY, OrderType.IOC, OrderType.MARKET


def submit(
    book: OrderBook,
    coid: str,
    side: Side,
    price: str | None,
    quantity: str,
    *,
    type: OrderType = LIMIT,
    owner: str | None = None,
) -> SubmitResult:
    return book.submit(
        client_order_id=coid,
        owner=owner if owner is not None else coid.split("-")[0],
        side=side,
        type=type,
        price=D(price) if price is not None else None,
        quantity=D(quantity),
    )


# ---------------------------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------------------------


def test_limit_order_rests_and_shows_in_depth() -> None:
    book = OrderBook("BTC/USDT")
    result = submit(book, "a-1", BUY, "100", "1.5")
    assert result.status is SubmitStatus.ACCEPTED
    assert result.trades == ()
    assert result.resting_quantity == D("1.5")
    assert result.expired_quantity == 0
    assert result.order.status is OrderStatus.OPEN
    assert result.order.order_id
    assert book.best_bid == D("100")
    assert book.best_ask is None
    assert book.depth() == (((D("100"), D("1.5")),), ())
    assert [o.client_order_id for o in book.open_orders()] == ["a-1"]


def test_limit_order_trades_at_maker_price_and_rests_remainder() -> None:
    book = OrderBook("BTC/USDT")
    submit(book, "a-1", SELL, "101", "1")
    result = submit(book, "b-1", BUY, "102", "3")
    assert result.accepted
    assert [(t.price, t.quantity) for t in result.trades] == [(D("101"), D("1"))]
    trade = result.trades[0]
    assert (trade.maker.client_order_id, trade.taker.client_order_id) == ("a-1", "b-1")
    assert (trade.maker.side, trade.taker.side) == (SELL, BUY)
    assert trade.maker_filled
    assert trade.taker.filled_quantity == D("1")
    assert result.resting_quantity == D("2")
    assert result.order.status is OrderStatus.PARTIALLY_FILLED
    assert result.order.average_price == D("101")
    assert book.best_bid == D("102") and book.best_ask is None
    maker = book.get("a-1")
    assert maker is not None and maker.status is OrderStatus.FILLED


def test_price_time_priority_best_price_then_arrival() -> None:
    book = OrderBook("X")
    submit(book, "a-1", SELL, "101", "1")
    submit(book, "b-1", SELL, "100", "1")
    submit(book, "c-1", SELL, "100", "1")
    submit(book, "a-2", SELL, "100", "1")
    result = submit(book, "d-1", BUY, "101", "3.5")
    assert [(t.maker.client_order_id, t.price, t.quantity) for t in result.trades] == [
        ("b-1", D("100"), D("1")),
        ("c-1", D("100"), D("1")),
        ("a-2", D("100"), D("1")),
        ("a-1", D("101"), D("0.5")),
    ]
    assert result.order.status is OrderStatus.FILLED
    remaining = book.get("a-1")
    assert remaining is not None and remaining.remaining_quantity == D("0.5")
    assert remaining.status is OrderStatus.PARTIALLY_FILLED


def test_ioc_fills_up_to_limit_and_expires_rest() -> None:
    book = OrderBook("X")
    submit(book, "a-1", SELL, "100", "1")
    submit(book, "a-2", SELL, "102", "1")
    result = submit(book, "b-1", BUY, "101", "3", type=IOC)
    assert [(t.price, t.quantity) for t in result.trades] == [(D("100"), D("1"))]
    assert result.expired_quantity == D("2")
    assert result.resting_quantity == 0
    assert result.order.status is OrderStatus.EXPIRED
    assert "immediate-or-cancel" in result.reason
    assert book.best_bid is None and book.best_ask == D("102")


def test_market_order_takes_at_any_price_and_expires_rest() -> None:
    book = OrderBook("X")
    submit(book, "a-1", BUY, "100", "1")
    submit(book, "a-2", BUY, "90", "1")
    result = submit(book, "b-1", SELL, None, "2.5", type=MARKET)
    assert [(t.price, t.quantity) for t in result.trades] == [(D("100"), D("1")), (D("90"), D("1"))]
    assert result.expired_quantity == D("0.5")
    assert result.order.status is OrderStatus.EXPIRED
    assert result.order.price is None
    assert result.order.average_price == D("95")
    assert "market order" in result.reason
    assert book.best_bid is None and len(book) == 0


def test_market_order_fully_filled() -> None:
    book = OrderBook("X")
    submit(book, "a-1", SELL, "100", "5")
    result = submit(book, "b-1", BUY, None, "2", type=MARKET)
    assert result.order.status is OrderStatus.FILLED
    assert result.expired_quantity == 0 and result.resting_quantity == 0
    assert book.depth() == ((), ((D("100"), D("3")),))


def test_post_only_rests_when_it_does_not_cross() -> None:
    book = OrderBook("X")
    submit(book, "a-1", SELL, "101", "1")
    result = submit(book, "b-1", BUY, "100", "1", type=POST_ONLY)
    assert result.accepted and result.trades == ()
    assert result.resting_quantity == D("1")
    assert book.best_bid == D("100")


def test_post_only_that_would_cross_is_rejected_and_never_trades() -> None:
    book = OrderBook("X")
    submit(book, "a-1", SELL, "101", "1")
    sequence = book.sequence
    result = submit(book, "b-1", BUY, "101", "1", type=POST_ONLY)
    assert result.status is SubmitStatus.REJECTED
    assert result.reason == "post-only order would cross the book"
    assert result.trades == ()
    assert result.order.status is OrderStatus.REJECTED
    assert book.sequence == sequence
    assert book.depth() == ((), ((D("101"), D("1")),))
    # Even when the only crossing order is its own owner's.
    assert submit(book, "a-2", BUY, "102", "1", type=POST_ONLY).rejected


def test_self_trade_prevention_expires_taker() -> None:
    book = OrderBook("X")
    submit(book, "a-1", SELL, "100", "1")
    result = submit(book, "a-2", BUY, "100", "1")
    assert result.trades == ()
    assert result.expired_quantity == D("1")
    assert result.resting_quantity == 0
    assert result.reason == SELF_TRADE_PREVENTION
    assert result.order.status is OrderStatus.EXPIRED
    resting = book.get("a-1")
    assert resting is not None and resting.status is OrderStatus.OPEN and resting.remaining_quantity == D("1")
    assert book.best_bid is None


def test_self_trade_prevention_after_trading_better_other_orders() -> None:
    book = OrderBook("X")
    submit(book, "b-1", SELL, "100", "1")
    submit(book, "a-1", SELL, "100", "1")  # own order queued behind b-1
    submit(book, "b-2", SELL, "100", "1")  # another owner behind own: never reached
    result = submit(book, "a-2", BUY, "101", "5")
    assert [t.maker.client_order_id for t in result.trades] == ["b-1"]
    assert result.expired_quantity == D("4")
    assert result.reason == SELF_TRADE_PREVENTION
    assert {o.client_order_id for o in book.open_orders()} == {"a-1", "b-2"}


def test_self_trade_prevention_applies_to_market_and_ioc() -> None:
    book = OrderBook("X")
    submit(book, "a-1", BUY, "100", "1")
    for coid, type, price in (("a-2", MARKET, None), ("a-3", IOC, "99")):
        result = submit(book, coid, SELL, price, "1", type=type)
        assert result.trades == () and result.reason == SELF_TRADE_PREVENTION
    assert book.depth() == (((D("100"), D("1")),), ())


def test_duplicate_client_order_id_live_and_finished() -> None:
    book = OrderBook("X")
    first = submit(book, "a-1", BUY, "100", "1")
    sequence = book.sequence
    again = submit(book, "a-1", BUY, "100", "1")
    assert again.status is SubmitStatus.DUPLICATE and again.duplicate
    assert again.order == first.order
    assert again.trades == ()
    assert book.sequence == sequence and len(book) == 1
    # A different request under the same id is still the same order.
    other = submit(book, "a-1", SELL, "90", "7", owner="b")
    assert other.duplicate and other.order.side is BUY and len(book) == 1
    # Finished: filled.
    submit(book, "b-1", SELL, "100", "1")
    assert len(book) == 0
    replay = submit(book, "a-1", BUY, "100", "1")
    assert replay.duplicate and replay.order.status is OrderStatus.FILLED and len(book) == 0
    # Finished: cancelled; and rejected.
    submit(book, "a-2", BUY, "100", "1")
    book.cancel("a-2")
    assert submit(book, "a-2", BUY, "100", "1").order.status is OrderStatus.CANCELLED
    assert submit(book, "a-3", BUY, "100", "0").rejected
    assert submit(book, "a-3", BUY, "100", "1").duplicate
    assert len(book) == 0


def test_remembered_finished_ids_are_bounded() -> None:
    book = OrderBook("X", remember_finished=3)
    for i in range(5):
        submit(book, f"a-{i}", BUY, "100", "1", type=IOC)
    assert "a-0" not in book and "a-1" not in book
    assert all(f"a-{i}" in book for i in (2, 3, 4))
    assert book.get("a-4") is not None
    assert submit(book, "a-4", BUY, "100", "1").duplicate


@pytest.mark.parametrize(
    ("type", "price", "quantity", "reason"),
    [
        (LIMIT, "100", "0", "quantity must be positive"),
        (LIMIT, "100", "-1", "quantity must be positive"),
        (LIMIT, "100", "NaN", "quantity must be a finite decimal"),
        (LIMIT, "0", "1", "price must be positive"),
        (IOC, "-5", "1", "price must be positive"),
        (POST_ONLY, "Infinity", "1", "price must be a finite decimal"),
        (MARKET, "100", "1", "a market order must not have a price"),
        (LIMIT, None, "1", "a limit order needs a price"),
        (IOC, None, "1", "a ioc order needs a price"),
        (POST_ONLY, None, "1", "a post_only order needs a price"),
    ],
)
def test_bad_input_is_rejected_with_reason(type: OrderType, price: str | None, quantity: str, reason: str) -> None:
    book = OrderBook("X")
    result = submit(book, "a-1", BUY, price, quantity, type=type)
    assert result.status is SubmitStatus.REJECTED
    assert reason in result.reason
    assert result.order.status is OrderStatus.REJECTED
    assert len(book) == 0 and book.sequence == 0


def test_empty_client_order_id_is_rejected_and_not_remembered() -> None:
    book = OrderBook("X")
    result = book.submit(client_order_id="", owner="a", side=BUY, type=LIMIT, price=D(1), quantity=D(1))
    assert result.rejected and "client order id" in result.reason
    assert "" not in book


def test_cancel() -> None:
    book = OrderBook("X")
    submit(book, "a-1", BUY, "100", "2")
    submit(book, "b-1", SELL, "100", "0.5")
    sequence = book.sequence
    state = book.cancel("a-1")
    assert state is not None
    assert state.status is OrderStatus.CANCELLED
    assert (state.filled_quantity, state.cancelled_quantity, state.remaining_quantity) == (D("0.5"), D("1.5"), 0)
    assert book.sequence > sequence
    assert book.depth() == ((), ())
    assert book.cancel("a-1") is None  # finished
    assert book.cancel("nope") is None  # unknown
    assert book.sequence == sequence + 1


def test_cancel_in_the_middle_of_a_level_keeps_time_priority() -> None:
    book = OrderBook("X")
    for i in range(40):
        submit(book, f"a-{i}", SELL, "100", "1")
    for i in range(1, 39):
        assert book.cancel(f"a-{i}") is not None
    assert book.depth() == ((), ((D("100"), D("2")),))
    result = submit(book, "b-1", BUY, "100", "2")
    assert [t.maker.client_order_id for t in result.trades] == ["a-0", "a-39"]
    assert len(book) == 0 and book.best_ask is None


def test_cancel_all_by_prefix_and_owner() -> None:
    book = OrderBook("X")
    submit(book, "mm1-1", BUY, "99", "1", owner="us")
    submit(book, "mm1-2", SELL, "101", "1", owner="us")
    submit(book, "mm2-1", BUY, "98", "1", owner="us")
    submit(book, "mm1-3", BUY, "97", "1", owner="them")
    cancelled = book.cancel_all(owner="us", prefix="mm1-")
    assert sorted(s.client_order_id for s in cancelled) == ["mm1-1", "mm1-2"]
    assert all(s.status is OrderStatus.CANCELLED for s in cancelled)
    assert sorted(o.client_order_id for o in book.open_orders()) == ["mm1-3", "mm2-1"]
    assert [o.client_order_id for o in book.open_orders("mm1-")] == ["mm1-3"]
    assert [o.client_order_id for o in book.open_orders(owner="us")] == ["mm2-1"]
    assert [s.client_order_id for s in book.cancel_all(prefix="mm1-")] == ["mm1-3"]
    assert [s.client_order_id for s in book.cancel_all()] == ["mm2-1"]
    assert book.cancel_all() == []
    assert book.depth() == ((), ())


def test_depth_aggregates_levels_best_first_and_limits() -> None:
    book = OrderBook("X")
    for coid, side, price, qty in [
        ("a-1", BUY, "99", "1"),
        ("b-1", BUY, "99", "0.25"),
        ("a-2", BUY, "98.5", "2"),
        ("a-3", BUY, "99.5", "1"),
        ("a-4", SELL, "101", "1"),
        ("b-2", SELL, "100.5", "3"),
        ("b-3", SELL, "101", "0.75"),
    ]:
        submit(book, coid, side, price, qty)
    bids, asks = book.depth()
    assert bids == ((D("99.5"), D("1")), (D("99"), D("1.25")), (D("98.5"), D("2")))
    assert asks == ((D("100.5"), D("3")), (D("101"), D("1.75")))
    assert book.depth(1) == (((D("99.5"), D("1")),), ((D("100.5"), D("3")),))
    assert book.depth(0) == ((), ())
    assert (book.best_bid, book.best_ask) == (D("99.5"), D("100.5"))


def test_sequence_increases_on_every_change() -> None:
    book = OrderBook("X")
    seen = [book.sequence]
    submit(book, "a-1", BUY, "100", "1")
    seen.append(book.sequence)
    submit(book, "b-1", SELL, None, "0.5", type=MARKET)
    seen.append(book.sequence)
    book.cancel("a-1")
    seen.append(book.sequence)
    assert seen == sorted(set(seen))
    result = submit(book, "a-2", BUY, "100", "1")
    assert result.order.sequence == book.sequence


def test_payload_is_carried_on_the_order() -> None:
    book = OrderBook("X")
    marker = object()
    book.submit(client_order_id="a-1", owner="a", side=BUY, type=LIMIT, price=D(1), quantity=D(1), payload=marker)
    (state,) = book.open_orders()
    assert state.payload is marker


# ---------------------------------------------------------------------------------------------------------------
# Properties over random order flow
# ---------------------------------------------------------------------------------------------------------------

OWNERS = ("alice", "bob", "carol")
TICK = D("0.5")


@attrs.frozen
class SubmitOp:
    owner: str
    side: Side
    type: OrderType
    price: Decimal
    quantity: Decimal
    reuse: int | None  # resubmit an earlier client id (must be a duplicate)


@attrs.frozen
class CancelOp:
    index: int


@attrs.frozen
class CancelAllOp:
    owner: str | None
    prefix: str


@st.composite
def operation(draw: st.DrawFn) -> SubmitOp | CancelOp | CancelAllOp:
    """Mostly submits (of every type, a few re-using an earlier client id), some cancels, few cancel-alls."""
    kind = draw(st.integers(0, 19))
    if kind < 15:
        return SubmitOp(
            owner=draw(st.sampled_from(OWNERS)),
            side=draw(st.sampled_from(Side)),
            type=draw(st.sampled_from(OrderType)),
            price=draw(st.integers(196, 204)) * TICK,  # 98.0 .. 102.0, nine ticks
            quantity=D(draw(st.integers(1, 30))) / 10,
            reuse=draw(st.integers(0, 200)) if kind == 0 else None,
        )
    if kind < 19:
        return CancelOp(index=draw(st.integers(0, 200)))
    return CancelAllOp(
        owner=draw(st.none() | st.sampled_from(OWNERS)),
        prefix=draw(st.sampled_from(["", "alice-", "bob-", "carol-1", "nobody-"])),
    )


ops = st.lists(operation(), min_size=10, max_size=80)


def _priority(order: OrderState) -> tuple[Decimal, int]:
    """Smaller is better: price (lowest ask, highest bid), then arrival."""
    assert order.price is not None
    return (order.price if order.side is SELL else -order.price, order.sequence)


def _reachable(taker_side: Side, limit: Decimal | None, price: Decimal) -> bool:
    return limit is None or (price <= limit if taker_side is BUY else price >= limit)


class Ledger:
    """Independent bookkeeping of every accepted order, from the results the book returned."""

    def __init__(self) -> None:
        self.original: dict[str, Decimal] = {}
        self.filled: dict[str, Decimal] = defaultdict(Decimal)
        self.expired: dict[str, Decimal] = defaultdict(Decimal)
        self.cancelled: dict[str, Decimal] = defaultdict(Decimal)


def check_book(book: OrderBook, ledger: Ledger) -> None:
    bid, ask = book.best_bid, book.best_ask
    if bid is not None and ask is not None:
        assert bid < ask, f"crossed at rest: {bid} >= {ask}"

    open_orders = book.open_orders()
    bids, asks = book.depth(None)
    expected: dict[Side, dict[Decimal, Decimal]] = {BUY: defaultdict(Decimal), SELL: defaultdict(Decimal)}
    for o in open_orders:
        assert o.price is not None and o.remaining_quantity > 0 and o.is_open
        expected[o.side][o.price] += o.remaining_quantity
    assert dict(bids) == expected[BUY] and dict(asks) == expected[SELL]
    assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)
    assert len({p for p, _ in bids}) == len(bids) and len({p for p, _ in asks}) == len(asks)
    assert bid == (bids[0][0] if bids else None) and ask == (asks[0][0] if asks else None)

    live = {o.client_order_id: o for o in open_orders}
    for coid, original in ledger.original.items():
        rest = live[coid].remaining_quantity if coid in live else D(0)
        total = ledger.filled[coid] + rest + ledger.expired[coid] + ledger.cancelled[coid]
        assert total == original, f"{coid}: {ledger.filled[coid]} + {rest} + ... != {original}"
        state = book.get(coid)
        assert state is not None
        assert state.filled_quantity == ledger.filled[coid]
        assert state.quantity == original


def check_submit(book: OrderBook, op: SubmitOp, coid: str, before: list[OrderState], result: SubmitResult) -> None:
    taker_side = op.side
    limit = None if op.type is MARKET else op.price
    opposite = sorted((o for o in before if o.side is not taker_side), key=_priority)
    by_id = {o.client_order_id: o for o in before}
    traded: dict[str, Decimal] = defaultdict(Decimal)
    after = {o.client_order_id: o for o in book.open_orders()}

    if op.type is POST_ONLY:
        assert result.trades == ()
        would_cross = bool(opposite) and _reachable(taker_side, limit, opposite[0].price or D(0))
        assert result.rejected == would_cross
        if result.rejected:
            assert coid not in after
            return
    assert result.accepted

    keys = []
    for trade in result.trades:
        # Self-trade prevention: never the same owner on both sides.
        assert trade.maker.owner != trade.taker.owner
        assert trade.taker.client_order_id == coid and trade.taker.owner == op.owner
        maker = by_id[trade.maker.client_order_id]
        assert maker.side is not taker_side and trade.maker.side is maker.side and trade.taker.side is taker_side
        assert trade.price == maker.price
        assert _reachable(taker_side, limit, trade.price)
        assert trade.quantity > 0
        traded[maker.client_order_id] += trade.quantity
        keys.append(_priority(maker))
        # Price-time priority: every order ahead of this maker was another owner's and was used up.
        for ahead in opposite:
            if _priority(ahead) >= _priority(maker):
                break
            assert ahead.owner != op.owner, f"traded {maker.client_order_id} behind own order {ahead.client_order_id}"
            assert ahead.client_order_id not in after, f"{ahead.client_order_id} skipped for {maker.client_order_id}"
    assert keys == sorted(keys)
    for maker_id, quantity in traded.items():
        assert quantity <= by_id[maker_id].remaining_quantity
        finished = quantity == by_id[maker_id].remaining_quantity
        assert (maker_id not in after) == finished
    for trade in result.trades:
        assert trade.maker_filled == (trade.maker.client_order_id not in after)

    filled = sum((t.quantity for t in result.trades), D(0))
    assert filled + result.resting_quantity + result.expired_quantity == op.quantity
    if op.type in (MARKET, IOC):
        assert result.resting_quantity == 0 and coid not in after
    if result.resting_quantity:
        assert op.type in (LIMIT, POST_ONLY) and after[coid].remaining_quantity == result.resting_quantity
    left = result.resting_quantity + result.expired_quantity
    reachable_left = [
        o
        for o in sorted(after.values(), key=_priority)
        if o.side is not taker_side and _reachable(taker_side, limit, o.price or D(0))
    ]
    if result.reason == SELF_TRADE_PREVENTION:
        # Stopped at its own order: that is the best reachable opposite order now.
        assert left > 0 and result.resting_quantity == 0
        assert reachable_left and reachable_left[0].owner == op.owner
    elif left > 0:
        # Nothing it could have traded with is left.
        assert reachable_left == []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_random_order_flow_keeps_the_book_consistent(operations: list[object]) -> None:
    book = OrderBook("X")
    ledger = Ledger()
    issued: list[str] = []
    for n, op in enumerate(operations):
        sequence = book.sequence
        if isinstance(op, SubmitOp):
            if op.reuse is not None and issued:
                coid = issued[op.reuse % len(issued)]
                known = book.get(coid)
                result = book.submit(
                    client_order_id=coid, owner=op.owner, side=op.side, type=op.type,
                    price=None if op.type is MARKET else op.price, quantity=op.quantity,
                )
                assert result.duplicate and result.trades == ()
                assert result.order == known
                assert book.sequence == sequence
            else:
                coid = f"{op.owner}-{n}"
                before = book.open_orders()
                result = book.submit(
                    client_order_id=coid, owner=op.owner, side=op.side, type=op.type,
                    price=None if op.type is MARKET else op.price, quantity=op.quantity,
                )
                issued.append(coid)
                check_submit(book, op, coid, before, result)
                if result.accepted:
                    assert book.sequence > sequence
                    ledger.original[coid] = op.quantity
                    ledger.expired[coid] += result.expired_quantity
                    for trade in result.trades:
                        ledger.filled[trade.maker.client_order_id] += trade.quantity
                        ledger.filled[trade.taker.client_order_id] += trade.quantity
                else:
                    assert book.sequence == sequence
        elif isinstance(op, CancelOp):
            coid = issued[op.index % len(issued)] if issued else "none"
            open_before = {o.client_order_id: o for o in book.open_orders()}
            state = book.cancel(coid)
            if coid in open_before:
                assert state is not None and state.status is OrderStatus.CANCELLED
                assert state.cancelled_quantity == open_before[coid].remaining_quantity
                ledger.cancelled[coid] += state.cancelled_quantity
                assert book.sequence > sequence
            else:
                assert state is None and book.sequence == sequence
        else:
            assert isinstance(op, CancelAllOp)
            open_before = {o.client_order_id: o for o in book.open_orders()}
            cancelled = book.cancel_all(owner=op.owner, prefix=op.prefix)
            expected = {
                coid
                for coid, o in open_before.items()
                if coid.startswith(op.prefix) and (op.owner is None or o.owner == op.owner)
            }
            assert {s.client_order_id for s in cancelled} == expected
            for state in cancelled:
                assert state.cancelled_quantity == open_before[state.client_order_id].remaining_quantity
                ledger.cancelled[state.client_order_id] += state.cancelled_quantity
            remaining = {o.client_order_id for o in book.open_orders()}
            assert remaining == set(open_before) - expected
        check_book(book, ledger)
