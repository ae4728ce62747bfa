"""The order pipeline: every order through the risk gate exactly once, self-trade check included, and an order that
would cross one of our own resting orders never reaches the sink."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest
import trio

from mmframe import Order, OrderEvent, OrderRequest, OrderType, Position, Quote, Side, Subscription
from mmframe._engine import risk
from mmframe._engine.clientid import ClientIds
from mmframe._engine.pipeline import OrderPipeline
from mmframe._engine.risk import RiskGate, RiskLimits
from mmframe._engine.tracker import OrderTracker

from .engine_helpers import market

D = Decimal
MARKET = market()


class RecordingSink:
    def __init__(self) -> None:
        self.placed: list[OrderRequest] = []
        self.cancelled: list[str] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    def subscribe(self, symbol: str, prefix: str, listener: Callable[[OrderEvent], None]) -> Subscription:
        return Subscription(lambda: None)

    async def place(self, requests: Sequence[OrderRequest]) -> None:
        await trio.lowlevel.checkpoint()
        self.placed.extend(requests)

    async def cancel(self, symbol: str, client_order_ids: Sequence[str]) -> None:
        await trio.lowlevel.checkpoint()
        self.cancelled.extend(client_order_ids)

    async def cancel_all(self, symbol: str, prefix: str = "") -> int:
        raise NotImplementedError

    async def open_orders(self, symbol: str, prefix: str = "") -> list[Order]:
        raise NotImplementedError

    async def depth(self, symbol: str, limit: int = 20) -> Any:
        raise NotImplementedError


def pipeline(limits: RiskLimits | None = None) -> tuple[OrderPipeline, RecordingSink, OrderTracker]:
    sink, tracker = RecordingSink(), OrderTracker()
    gate = RiskGate(MARKET, limits if limits is not None else RiskLimits(price_band=D("0.5")))
    counters = dict.fromkeys(("placed", "cancelled", "vetoed", "deferred"), 0)
    orders = OrderPipeline(
        MARKET, sink, tracker, gate, ClientIds("t-AAAUSDT1-"),
        counters=counters, log=logging.LoggerAdapter(logging.getLogger("mmframe.market"), {}),
        rng=random.Random(1), drain=lambda: None,
    )
    return orders, sink, tracker


def resting(tracker: OrderTracker, side: Side, price: str, coid: str, *, cancelling: bool = False) -> Order:
    tracker.add(OrderRequest(coid, MARKET.symbol, side, OrderType.LIMIT, quantity="1", price=price), 0.0)
    tracker.mark_sent(coid, 0.0)
    if cancelling:
        tracker.mark_cancel_requested(coid, 0.0)
    order = tracker.get(coid)
    assert order is not None
    return order


@pytest.fixture
def self_trade_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = risk.self_trade_reason

    def counting(request: OrderRequest, live: Sequence[Order]) -> str | None:
        calls.append(request.client_order_id)
        return original(request, live)

    monkeypatch.setattr(risk, "self_trade_reason", counting)
    return calls


@pytest.mark.parametrize("cancelling", [False, True], ids=["resting", "being cancelled"])
async def test_a_desired_order_crossing_our_own_order_is_held_back_not_sent(
    self_trade_calls: list[str], cancelling: bool
) -> None:
    orders, sink, tracker = pipeline()
    resting(tracker, Side.SELL, "101", "t-AAAUSDT1-ask", cancelling=cancelling)
    await orders.place([Quote(Side.BUY, D("101"), D("1")), Quote(Side.BUY, D("100"), D("1"))], [], 1.0,
                       reference=D("100"), position=Position())
    assert [(r.side, r.price) for r in sink.placed] == [(Side.BUY, D("100"))]
    assert orders.counters["deferred"] == 1 and orders.counters["vetoed"] == 0 and orders.counters["placed"] == 1
    assert len(self_trade_calls) == 2  # once per order, not once more inside the gate


async def test_an_immediate_order_crossing_our_own_order_is_vetoed(self_trade_calls: list[str]) -> None:
    orders, sink, tracker = pipeline()
    resting(tracker, Side.SELL, "101", "t-AAAUSDT1-ask")
    sweep = Quote(Side.BUY, D("101"), D("1"), OrderType.IOC)
    await orders.place([], [("t-AAAUSDT1-sweep", sweep)], 1.0, reference=D("100"), position=Position())
    assert sink.placed == []
    assert orders.counters["vetoed"] == 1 and "self-trade prevention" in orders.last_veto
    assert self_trade_calls == ["t-AAAUSDT1-sweep"]


async def test_orders_of_one_batch_are_checked_against_each_other(self_trade_calls: list[str]) -> None:
    """A bid and an ask of the same batch that would cross: the second is held back (the first is live already)."""
    orders, sink, _ = pipeline()
    await orders.place([Quote(Side.BUY, D("100"), D("1")), Quote(Side.SELL, D("99.50"), D("1"))], [], 1.0,
                       reference=D("100"), position=Position())
    assert [(r.side, r.price) for r in sink.placed] == [(Side.BUY, D("100"))]
    assert orders.counters["deferred"] == 1
    assert len(self_trade_calls) == 2


async def test_the_self_trade_check_comes_first(self_trade_calls: list[str]) -> None:
    """An order of the desired book that would cross our own order and break another limit is deferred, as before the
    gate ran once: our opposite order is on its way out, the order is tried again on a later step."""
    orders, sink, tracker = pipeline(RiskLimits(price_band=D("0.5"), max_active_orders=1))
    resting(tracker, Side.SELL, "101", "t-AAAUSDT1-ask", cancelling=True)
    await orders.place([Quote(Side.BUY, D("101"), D("1"))], [], 1.0, reference=D("100"), position=Position())
    assert sink.placed == [] and orders.counters["deferred"] == 1 and orders.counters["vetoed"] == 0


async def test_every_order_runs_through_the_gate_once(self_trade_calls: list[str]) -> None:
    orders, sink, _ = pipeline()
    ladder = [Quote(Side.BUY, D(100) - i, D("1")) for i in range(5)] + [
        Quote(Side.SELL, D(101) + i, D("1")) for i in range(5)
    ]
    far = Quote(Side.SELL, D("500"), D("1"))  # outside the price band: vetoed
    await orders.place([*ladder, far], [], 1.0, reference=D("100"), position=Position())
    assert len(sink.placed) == 10 and orders.counters["vetoed"] == 1
    assert len(self_trade_calls) == 11 == len(set(self_trade_calls))


async def test_an_immediate_order_gets_the_first_reason_in_the_documented_order(self_trade_calls: list[str]) -> None:
    """Self-trade prevention is the gate's last built-in check for an immediate order: one that is also outside the
    price band is vetoed for the band (docs/architecture.md, the risk gate), the self-trade check still run once."""
    orders, sink, tracker = pipeline()
    resting(tracker, Side.SELL, "101", "t-AAAUSDT1-ask")
    sweep = Quote(Side.BUY, D("190"), D("1"), OrderType.IOC)
    await orders.place([], [("t-AAAUSDT1-sweep", sweep)], 1.0, reference=D("100"), position=Position())
    assert sink.placed == [] and "outside the price band" in orders.last_veto
    assert self_trade_calls == []  # the band refused it first: the self-trade check was not needed


def test_the_gate_says_which_refusal_was_the_self_trade_check() -> None:
    gate = RiskGate(MARKET, RiskLimits(price_band=D("0.1")))
    tracker = OrderTracker()
    ask = resting(tracker, Side.SELL, "101", "ask")
    crossing_far = OrderRequest("new", MARKET.symbol, Side.BUY, OrderType.LIMIT, quantity="1", price="150")
    context = risk.RiskContext(D("100"), [ask], Position())
    first = gate.refusal(crossing_far, context, self_trade_first=True)
    assert first is not None and first.self_trade and "self-trade prevention" in first.reason
    last = gate.refusal(crossing_far, context)
    assert last is not None and not last.self_trade and "price band" in last.reason
    crossing = OrderRequest("new2", MARKET.symbol, Side.BUY, OrderType.LIMIT, quantity="1", price="101")
    refusal = gate.refusal(crossing, context)
    assert refusal is not None and refusal.self_trade
    assert gate.check(crossing, context) == refusal.reason
