"""The reconciler: applying its plan to the live orders yields the desired book, with the fewest messages."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmframe import Market, Order, OrderRequest, OrderStatus, OrderType, Quote, Side
from mmframe._engine.reconcile import Reconciler, Tolerance

MARKET = Market("AAA/USDT", tick_size="0.5", price_precision=1, quantity_precision=1)


def live_order(i: int, side: Side, price: Decimal, qty: Decimal, filled: Decimal = Decimal(0)) -> Order:
    request = OrderRequest(f"o{i}", MARKET.symbol, side, OrderType.LIMIT, quantity=qty, price=price)
    status = OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.OPEN
    return Order(request, status=status, filled_quantity=filled)


prices = st.integers(min_value=180, max_value=220).map(lambda n: Decimal(n) / 2)
quantities = st.integers(min_value=1, max_value=30).map(lambda n: Decimal(n) / 10)
sides = st.sampled_from([Side.BUY, Side.SELL])
quotes = st.lists(st.builds(Quote, sides, prices, quantities), max_size=12)
lives = st.lists(st.tuples(sides, prices, quantities), max_size=12)
tolerances = st.builds(
    Tolerance,
    price_ticks=st.integers(0, 4),
    price_fraction=st.sampled_from([Decimal(0), Decimal("0.001"), Decimal("0.01")]),
    quantity_fraction=st.sampled_from([Decimal(0), Decimal("0.1"), Decimal("0.5")]),
)


def apply(
    plan_cancels: tuple[Order, ...], places: tuple[Quote, ...], live: list[Order]
) -> list[tuple[Side, Decimal, Decimal]]:
    cancelled = {o.client_order_id for o in plan_cancels}
    kept = [(o.side, o.price, o.remaining_quantity) for o in live if o.client_order_id not in cancelled]
    return kept + [(q.side, q.price, q.quantity) for q in places]


def matches_within(reconciler: Reconciler, result: list[tuple[Side, Decimal, Decimal]], desired: list[Quote]) -> bool:
    """A perfect matching exists between the resulting book and the desired quotes, each pair within tolerance."""
    if len(result) != len(desired):
        return False
    orders = [live_order(i, side, price, qty) for i, (side, price, qty) in enumerate(result)]
    # Bipartite matching by augmenting paths (small sizes).
    match: dict[int, int] = {}

    def try_assign(q: int, seen: set[int]) -> bool:
        for o, order in enumerate(orders):
            if o in seen or not reconciler.within(order, desired[q]):
                continue
            seen.add(o)
            if o not in match or try_assign(match[o], seen):
                match[o] = q
                return True
        return False

    return all(try_assign(q, set()) for q in range(len(desired)))


@settings(max_examples=300, deadline=None)
@given(desired=quotes, live_spec=lives, tolerance=tolerances)
def test_applying_the_plan_yields_the_desired_book(
    desired: list[Quote], live_spec: list[tuple[Side, Decimal, Decimal]], tolerance: Tolerance
) -> None:
    reconciler = Reconciler(MARKET, tolerance)
    live = [live_order(i, *spec) for i, spec in enumerate(live_spec)]
    plan = reconciler.plan(desired, live)
    assert matches_within(reconciler, apply(plan.cancels, plan.places, live), desired)
    # Nothing is both kept and cancelled, and every kept order is within tolerance of its quote.
    kept_ids = {o.client_order_id for o, _ in plan.kept}
    assert kept_ids.isdisjoint(o.client_order_id for o in plan.cancels)
    assert all(reconciler.within(o, q) for o, q in plan.kept)
    assert len(plan.kept) + len(plan.places) == len(desired)
    assert len(plan.kept) + len(plan.cancels) == len(live)


@settings(max_examples=200, deadline=None)
@given(desired=quotes, tolerance=tolerances)
def test_an_unchanged_target_yields_no_action(desired: list[Quote], tolerance: Tolerance) -> None:
    reconciler = Reconciler(MARKET, tolerance)
    first = reconciler.plan(desired, [])
    assert first.cancels == () and len(first.places) == len(desired)
    live = [live_order(i, q.side, q.price, q.quantity) for i, q in enumerate(first.places)]
    again = reconciler.plan(desired, live)
    assert not again and again.cancels == () and again.places == ()


@settings(max_examples=200, deadline=None)
@given(desired=quotes, live_spec=lives, tolerance=tolerances)
def test_the_plan_is_never_worse_than_exact_matching(
    desired: list[Quote], live_spec: list[tuple[Side, Decimal, Decimal]], tolerance: Tolerance
) -> None:
    """Tolerance only ever saves messages: never more places than an exact reconciler would send."""
    live = [live_order(i, *spec) for i, spec in enumerate(live_spec)]
    loose = Reconciler(MARKET, tolerance).plan(desired, live)
    exact = Reconciler(MARKET, Tolerance()).plan(desired, live)
    assert len(loose.places) <= len(exact.places)


def test_tolerance_keeps_queue_priority_and_partial_fills() -> None:
    reconciler = Reconciler(MARKET, Tolerance(price_ticks=2, quantity_fraction=Decimal("0.5")))
    live = [live_order(1, Side.BUY, Decimal("99.5"), Decimal("2"), filled=Decimal("0.5"))]
    plan = reconciler.plan([Quote(Side.BUY, Decimal("100"), Decimal("2"))], live)
    assert not plan and plan.kept[0][0].client_order_id == "o1"
    far = reconciler.plan([Quote(Side.BUY, Decimal("101.5"), Decimal("2"))], live)
    assert [o.client_order_id for o in far.cancels] == ["o1"] and len(far.places) == 1


def test_exact_tolerance_replaces_a_partially_filled_order() -> None:
    reconciler = Reconciler(MARKET)
    live = [live_order(1, Side.SELL, Decimal("101"), Decimal("2"), filled=Decimal("1"))]
    plan = reconciler.plan([Quote(Side.SELL, Decimal("101"), Decimal("2"))], live)
    assert len(plan.cancels) == 1 and len(plan.places) == 1


def test_empty_target_cancels_everything_and_takers_are_refused() -> None:
    reconciler = Reconciler(MARKET)
    live = [
        live_order(1, Side.SELL, Decimal("101"), Decimal("2")),
        live_order(2, Side.BUY, Decimal("99"), Decimal("1")),
    ]
    assert len(reconciler.plan([], live).cancels) == 2
    with pytest.raises(ValueError, match="must rest on the book"):
        reconciler.plan([Quote(Side.BUY, Decimal("100"), Decimal("1"), OrderType.IOC)], [])
