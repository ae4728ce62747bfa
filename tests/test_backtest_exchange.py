"""The backtester's simulated exchange: queue position, fills through our price, cancellations in the queue, taking
displayed liquidity, fees, latency — on hand-made sequences of depth snapshots and trades."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio

from mmframe import DepthSnapshot, Liquidity, OrderEvent, OrderEventKind, OrderRequest, OrderType, Side, Trade
from mmframe._backtest.exchange import ExchangeConfig, Latency, QueueModel, SimExchange, Timeline
from mmframe._errors import ConfigError

SYMBOL = "BTC/USDT"
D = Decimal


class Rig:
    def __init__(self, **config: object) -> None:
        self.timeline = Timeline()
        config_ = ExchangeConfig(**config)  # type: ignore[arg-type]
        self.exchange = SimExchange(config_, self.timeline, lambda: 1_700_000_000.0 + trio.current_time())
        self.events: list[OrderEvent] = []
        self.exchange.subscribe(SYMBOL, "", self.events.append)
        self.ids = 0

    async def place(self, side: Side, price: str, quantity: str = "1", type: OrderType = OrderType.LIMIT) -> str:
        self.ids += 1
        coid = f"o{self.ids}"
        await self.exchange.place([OrderRequest(coid, SYMBOL, side, type, D(quantity), D(price))])
        return coid

    def depth(self, bids: list[tuple[str, str]] = (), asks: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.exchange.on_depth(DepthSnapshot("x", SYMBOL, bids=bids, asks=asks))

    def trade(self, side: Side, quantity: str, price: str) -> None:
        self.exchange.on_trade(Trade("x", SYMBOL, price=price, quantity=quantity, side=side))

    def fills(self, coid: str | None = None) -> list[tuple[Decimal, Decimal]]:
        return [(e.fill.price, e.fill.quantity) for e in self.events
                if e.fill is not None and (coid is None or e.client_order_id == coid)]

    def kinds(self, coid: str) -> list[OrderEventKind]:
        return [e.kind for e in self.events if e.client_order_id == coid]


async def test_an_order_behind_five_lots_waits_for_them() -> None:
    rig = Rig()
    rig.depth(bids=[("100", "5"), ("99", "10")], asks=[("101", "5")])
    coid = await rig.place(Side.BUY, "100")
    assert rig.exchange.queue_ahead(SYMBOL, coid) == 5
    rig.trade(Side.SELL, "3", "100")  # 3 of the 5 ahead of us
    assert rig.fills(coid) == []
    assert rig.exchange.queue_ahead(SYMBOL, coid) == 2
    rig.trade(Side.SELL, "3", "100")  # the last 2 ahead, then 1 lot of ours
    assert rig.fills(coid) == [(D("100"), D("1"))]
    assert rig.kinds(coid) == [OrderEventKind.ACCEPTED, OrderEventKind.FILLED]
    assert rig.exchange.position(SYMBOL).base == 1


async def test_a_partial_fill_at_our_price_then_the_rest() -> None:
    rig = Rig()
    rig.depth(asks=[("101", "2")])
    coid = await rig.place(Side.SELL, "101", "5")
    rig.trade(Side.BUY, "4", "101")  # 2 ahead, then 2 of our 5
    rig.trade(Side.BUY, "10", "101")  # the other 3
    assert rig.fills(coid) == [(D("101"), D("2")), (D("101"), D("3"))]
    assert rig.kinds(coid)[-2:] == [OrderEventKind.PARTIALLY_FILLED, OrderEventKind.FILLED]
    assert [e.filled_quantity for e in rig.events if e.fill is not None] == [D("2"), D("5")]


async def test_a_trade_through_our_price_fills_us_at_our_price() -> None:
    rig = Rig()
    rig.depth(bids=[("100", "50")])
    coid = await rig.place(Side.BUY, "100", "2")
    rig.trade(Side.SELL, "1", "99.5")  # a sale below our bid: the seller met us first, whatever was ahead
    assert rig.fills(coid) == [(D("100"), D("2"))]
    fill = next(e.fill for e in rig.events if e.fill is not None)
    assert fill.liquidity is Liquidity.MAKER


async def test_trades_on_the_other_side_or_away_from_us_fill_nothing() -> None:
    rig = Rig()
    rig.depth(bids=[("100", "1")], asks=[("101", "1")])
    bid = await rig.place(Side.BUY, "100")
    ask = await rig.place(Side.SELL, "101")
    rig.trade(Side.BUY, "5", "100.5")  # a buyer above our bid, below our ask
    rig.trade(Side.SELL, "5", "100.5")  # a seller above our bid
    rig.trade(Side.BUY, "5", "100")  # a buyer at our bid's price: buyers do not meet bids
    assert rig.fills() == []
    assert rig.exchange.queue_ahead(SYMBOL, bid) == 1 and rig.exchange.queue_ahead(SYMBOL, ask) == 1


async def test_two_of_our_orders_at_one_price_fill_in_time_priority() -> None:
    rig = Rig()
    rig.depth(bids=[("100", "2")])
    first = await rig.place(Side.BUY, "100")
    rig.depth(bids=[("100", "4")])  # two more lots joined behind our first order
    second = await rig.place(Side.BUY, "100")
    assert rig.exchange.queue_ahead(SYMBOL, second) == 4
    rig.trade(Side.SELL, "3", "100")  # 2 ahead of the first, then the first
    assert rig.fills(first) == [(D("100"), D("1"))] and rig.fills(second) == []
    assert rig.exchange.queue_ahead(SYMBOL, second) == 2
    rig.trade(Side.SELL, "3", "100")
    assert rig.fills(second) == [(D("100"), D("1"))]


@pytest.mark.parametrize(
    ("model", "ahead_after"),
    [
        ("risk_averse", D("4")),  # cancellations all behind us: ahead unchanged (4 <= the new size 6)
        ("proportional", D("2.4")),  # 4 of 10 was ahead: 40 % of the 4 cancelled, 1.6, came from ahead
        ("power:2", D("4") - D("4") * D(repr(16 / (16 + 36)))),  # 4² / (4² + 6²) of the decrease
    ],
)
async def test_a_decrease_of_the_displayed_size_is_split_by_the_queue_model(model: str, ahead_after: Decimal) -> None:
    rig = Rig(queue_model=model)
    rig.depth(bids=[("100", "4")])
    coid = await rig.place(Side.BUY, "100")
    rig.depth(bids=[("100", "10")])  # 6 joined behind us
    rig.depth(bids=[("100", "6")])  # 4 cancelled, no trade at 100
    assert rig.exchange.queue_ahead(SYMBOL, coid) == pytest.approx(ahead_after)


async def test_a_decrease_the_trades_explain_is_not_counted_twice() -> None:
    rig = Rig(queue_model="proportional")
    rig.depth(bids=[("100", "5")])
    coid = await rig.place(Side.BUY, "100")
    rig.trade(Side.SELL, "3", "100")  # ahead 5 -> 2
    rig.depth(bids=[("100", "2")])  # the level shows the 3 traded: no cancellation
    assert rig.exchange.queue_ahead(SYMBOL, coid) == 2


async def test_ahead_never_exceeds_the_level_and_a_vanished_level_puts_us_first() -> None:
    rig = Rig(queue_model="risk_averse")
    rig.depth(bids=[("100", "8"), ("99", "1")])
    coid = await rig.place(Side.BUY, "100")
    rig.depth(bids=[("100", "3"), ("99", "1")])  # 5 cancelled: even risk-averse, at most 3 can be ahead
    assert rig.exchange.queue_ahead(SYMBOL, coid) == 3
    rig.depth(bids=[("100.5", "1"), ("99", "1")])  # 100 is within the snapshot's range and shows nothing
    assert rig.exchange.queue_ahead(SYMBOL, coid) == 0
    rig.trade(Side.SELL, "1", "100")
    assert rig.fills(coid) == [(D("100"), D("1"))]


async def test_an_order_beyond_the_snapshot_keeps_its_place() -> None:
    rig = Rig()
    rig.depth(bids=[("100", "1"), ("99", "7")])
    coid = await rig.place(Side.BUY, "99")
    rig.depth(bids=[("100", "1")])  # 99 is no longer within the snapshot: unknown, unchanged
    assert rig.exchange.queue_ahead(SYMBOL, coid) == 7


async def test_an_order_crossing_the_displayed_book_takes_it_at_the_displayed_prices() -> None:
    rig = Rig(maker_fee="0.0001", taker_fee="0.001")
    rig.depth(bids=[("99", "5")], asks=[("100", "1"), ("100.5", "1"), ("102", "5")])
    coid = await rig.place(Side.BUY, "101", "3")
    fills = [e.fill for e in rig.events if e.fill is not None]
    assert [(f.price, f.quantity, f.liquidity) for f in fills] == [
        (D("100"), D("1"), Liquidity.TAKER), (D("100.5"), D("1"), Liquidity.TAKER)]
    assert fills[0].fee == D("100") * D("0.001")
    # the third lot rests at 101, first in line, and the displayed asks it took are gone until the next snapshot
    assert rig.exchange.queue_ahead(SYMBOL, coid) == 0
    rig.trade(Side.SELL, "1", "101")
    maker = [e.fill for e in rig.events if e.fill is not None][-1]
    assert (maker.price, maker.liquidity, maker.fee) == (D("101"), Liquidity.MAKER, D("101") * D("0.0001"))
    assert rig.exchange.position(SYMBOL).base == 3


async def test_a_post_only_order_that_would_cross_is_rejected_and_an_ioc_rest_expires() -> None:
    rig = Rig()
    rig.depth(asks=[("100", "1")])
    post = await rig.place(Side.BUY, "100", type=OrderType.POST_ONLY)
    assert rig.kinds(post) == [OrderEventKind.REJECTED]
    ioc = await rig.place(Side.BUY, "100", "3", type=OrderType.IOC)
    assert rig.kinds(ioc) == [OrderEventKind.ACCEPTED, OrderEventKind.PARTIALLY_FILLED, OrderEventKind.EXPIRED]
    assert len(rig.exchange.book(SYMBOL)) == 0


async def test_our_own_orders_never_trade_with_each_other() -> None:
    rig = Rig()
    ask = await rig.place(Side.SELL, "100")
    bid = await rig.place(Side.BUY, "100.5")  # crosses our own ask: self-trade prevention, never a fill
    assert rig.fills() == []
    assert OrderEventKind.EXPIRED in rig.kinds(bid)
    assert rig.kinds(ask) == [OrderEventKind.ACCEPTED]


async def test_a_synthetic_hit_fills_the_best_order_first() -> None:
    rig = Rig()
    await rig.place(Side.BUY, "99")
    best = await rig.place(Side.BUY, "99.5")
    filled = rig.exchange.hit(SYMBOL, Side.SELL, D("1"))
    assert filled == 1 and rig.fills(best) == [(D("99.5"), D("1"))]


async def test_entry_latency_delays_the_order_and_response_latency_the_events(autojump_clock: object) -> None:
    rig = Rig(entry_latency="10ms", response_latency="5ms")
    rig.depth(bids=[("100", "0")])

    async def driver() -> None:
        await rig.timeline.run_until(1.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver)
        coid = await rig.place(Side.BUY, "100")
        await trio.sleep(0.005)
        rig.trade(Side.SELL, "1", "100")  # before the order reaches the exchange: it fills nothing
        assert rig.exchange.queue_ahead(SYMBOL, coid) is None
        await trio.sleep(0.006)  # t = 0.011: the order is on the book; its acceptance is 5 ms away
        assert rig.exchange.queue_ahead(SYMBOL, coid) == 0
        assert rig.events == []
        await trio.sleep(0.005)
        assert rig.kinds(coid) == [OrderEventKind.ACCEPTED]
        await rig.exchange.cancel(SYMBOL, [coid])
        rig.trade(Side.SELL, "1", "100")  # the cancel is still on its way: this fills us
        await trio.sleep(0.03)
        assert rig.kinds(coid) == [OrderEventKind.ACCEPTED, OrderEventKind.FILLED]
        nursery.cancel_scope.cancel()


def test_latency_forms_and_bad_values() -> None:
    assert Latency.parse("5ms") == Latency("constant", 0.005)
    assert Latency.parse(0.2) == Latency("constant", 0.2)
    assert Latency.parse({"dist": "uniform", "low": "1ms", "high": "3ms"}) == Latency("uniform", 0.001, 0.003)
    lognormal = Latency.parse({"dist": "lognormal", "median": "5ms", "sigma": 0.5})
    import random

    draws = [lognormal.sample(random.Random(1)) for _ in range(3)]
    assert all(d > 0 for d in draws)
    for bad in ({"dist": "cauchy", "scale": 1}, {"dist": "uniform", "low": "3ms"}, "-1s", True, {"dist": "uniform",
                "low": "5ms", "high": "1ms"}, float("nan")):
        with pytest.raises(ConfigError):
            Latency.parse(bad, "entry_latency")


def test_queue_model_and_fee_config_errors() -> None:
    assert QueueModel.parse("power:3").exponent == 3
    for bad in ("fifo", "power:x", "power:0", "power:inf"):
        with pytest.raises(ConfigError, match="queue_model"):
            QueueModel.parse(bad)
    with pytest.raises(ConfigError, match="maker_fee"):
        ExchangeConfig(maker_fee="0.5")
    with pytest.raises(ConfigError, match="fees"):
        ExchangeConfig(fees={"BTC/USDT": {"maker": "0", "rebate": "1"}})
    config = ExchangeConfig(maker_fee="-0.0001", fees={"ETH/USDT": {"maker": "0.0002", "taker": "0.0004"}})
    assert config.fee_rates("BTC/USDT") == (D("-0.0001"), D("0"))
    assert config.fee_rates("ETH/USDT") == (D("0.0002"), D("0.0004"))


async def test_a_snapshot_crossing_our_order_fills_it_for_up_to_the_displayed_quantity() -> None:
    rig = Rig()
    rig.depth(bids=[("99", "5")], asks=[("101", "5")])
    coid = await rig.place(Side.BUY, "100", "3")
    rig.depth(bids=[("99", "5")], asks=[("99.5", "1"), ("100", "1"), ("100.5", "9")])  # sellers at or below 100
    assert rig.fills(coid) == [(D("100"), D("1")), (D("100"), D("1"))]  # the ask at 100, then the one at 99.5
    assert rig.exchange.position(SYMBOL).base == 2
    # what met our bid is gone from the displayed book: a taker buy now starts at 100.5
    taker = await rig.place(Side.SELL, "98", "1")  # crosses the displayed bids at 99
    assert rig.fills(taker) == [(D("99"), D("1"))]


async def test_random_latencies_never_reorder_one_connection(autojump_clock: object) -> None:
    """A cancel never overtakes its place, an acceptance never arrives after its fill, whatever the draws."""
    rig = Rig(entry_latency={"dist": "exponential", "mean": "20ms"},
              response_latency={"dist": "exponential", "mean": "20ms"}, seed=3)

    async def driver() -> None:
        await rig.timeline.run_until(100.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver)
        placed = []
        for n in range(200):
            coid = await rig.place(Side.BUY if n % 2 else Side.SELL, "100" if n % 2 else "101")
            placed.append(coid)
            if n % 3 == 0:
                await rig.exchange.cancel(SYMBOL, [coid])  # at once: it must still arrive after the place
            if n % 7 == 0:
                rig.trade(Side.SELL, "1", "99")  # through every bid resting now
            await trio.sleep(0.001)
        await trio.sleep(5)
        cancelled = 0
        for coid in placed:
            kinds = rig.kinds(coid)
            assert kinds[0] is OrderEventKind.ACCEPTED, (coid, kinds)
            assert kinds.count(OrderEventKind.ACCEPTED) == 1
            if int(coid[1:]) % 3 == 1:  # cancelled right after it was sent: cancelled, unless a trade came first
                assert kinds in ([OrderEventKind.ACCEPTED, OrderEventKind.CANCELLED],
                                 [OrderEventKind.ACCEPTED, OrderEventKind.FILLED]), (coid, kinds)
                cancelled += kinds[-1] is OrderEventKind.CANCELLED
        assert cancelled > 30  # most of the 67 cancels arrived before a trade
        nursery.cancel_scope.cancel()


async def test_a_cancel_all_waits_its_turn_and_cancels_a_place_on_its_way(autojump_clock: object) -> None:
    rig = Rig(entry_latency="50ms")

    async def driver() -> None:
        await rig.timeline.run_until(10.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver)
        coid = await rig.place(Side.BUY, "100")
        assert await rig.exchange.cancel_all(SYMBOL) == 1  # the place arrived first, then the cancel-all
        assert trio.current_time() == pytest.approx(0.05)
        assert rig.kinds(coid) == [OrderEventKind.ACCEPTED, OrderEventKind.CANCELLED]
        assert await rig.exchange.open_orders(SYMBOL) == []
        nursery.cancel_scope.cancel()


async def test_finish_expires_orders_on_their_way_delivers_the_rest_and_acts_at_once_after(
    autojump_clock: object,
) -> None:
    rig = Rig(entry_latency="1s", response_latency="1s")
    rig.depth(asks=[("100", "5")])
    early = await rig.place(Side.BUY, "99")

    async def driver() -> None:
        await rig.timeline.run_until(1.5)  # the first order arrives (t = 1), its acceptance is on its way

    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver)
        await trio.sleep(1.2)
        late = await rig.place(Side.BUY, "100")  # would take the displayed ask, if it ever arrived
        await trio.sleep(0.1)
        assert rig.events == [] and len(rig.timeline) == 2
    rig.exchange.finish()
    # the order still on its way never reached the exchange within the data; the acceptance on its way arrives
    assert rig.kinds(early) == [OrderEventKind.ACCEPTED]
    assert rig.kinds(late) == [OrderEventKind.EXPIRED] and rig.exchange.position(SYMBOL).base == 0
    assert await rig.exchange.cancel_all(SYMBOL) == 1  # at once from now on
    assert rig.kinds(early) == [OrderEventKind.ACCEPTED, OrderEventKind.CANCELLED]



async def test_a_crossing_snapshot_fills_each_order_only_from_the_levels_that_reach_it() -> None:
    rig = Rig()
    top = await rig.place(Side.BUY, "100", "1.0")
    lower = await rig.place(Side.BUY, "99.8", "1.0")
    rig.depth(asks=[("99.5", "0.1"), ("99.9", "10")])  # 99.9 reaches only the bid at 100; 99.5 reaches both
    assert rig.fills(top) == [(D("100"), D("1.0"))]
    assert rig.fills(lower) == [(D("99.8"), D("0.1"))]
    assert rig.exchange.position(SYMBOL).base == D("1.1")


async def test_zero_levels_are_no_liquidity() -> None:
    rig = Rig()
    rig.depth(bids=[("99", "2")], asks=[("100", "0"), ("101", "3")])
    post = await rig.place(Side.BUY, "100", type=OrderType.POST_ONLY)
    assert rig.kinds(post) == [OrderEventKind.ACCEPTED]  # nothing at 100 to cross


async def test_fills_are_whole_lots_of_our_quantity_step() -> None:
    rig = Rig(queue_model="proportional")
    rig.depth(bids=[("100", "3")])
    coid = await rig.place(Side.BUY, "100", "5")  # whole units
    rig.depth(bids=[("100", "7")])  # 4 behind us
    rig.depth(bids=[("100", "6")])  # one cancelled: 3/7 of it from ahead of us, ahead = 2.571...
    rig.trade(Side.SELL, "3", "100")  # 2.571 ahead, then 0.43 of a lot: none of ours yet
    assert rig.fills(coid) == []
    rig.trade(Side.SELL, "2", "100")
    assert rig.fills(coid) == [(D("100"), D("2"))]
    assert all(e.fill is None or e.fill.quantity == e.fill.quantity.to_integral_value() for e in rig.events)


async def test_an_order_that_crossed_keeps_its_id_for_life() -> None:
    rig = Rig()
    rig.depth(asks=[("100", "1")])
    coid = await rig.place(Side.BUY, "100", "3")  # takes 1, rests 2
    rig.trade(Side.SELL, "1", "99")
    await rig.exchange.cancel(SYMBOL, [coid])
    ids = {e.order_id for e in rig.events if e.client_order_id == coid}
    assert len(ids) == 1, ids
    assert [e.filled_quantity for e in rig.events if e.client_order_id == coid][-1] == 3  # all filled: no cancel


async def test_a_client_order_id_used_again_is_ignored() -> None:
    rig = Rig()
    rig.depth(asks=[("100", "5")])
    coid = await rig.place(Side.BUY, "100", "1")  # filled at once as a taker
    again = OrderRequest(coid, SYMBOL, Side.BUY, OrderType.LIMIT, D("1"), D("100"))
    await rig.exchange.place([again])
    assert rig.exchange.position(SYMBOL).base == 1
    for n in range(1_200):  # the tape's own orders do not push ours out of memory
        rig.trade(Side.BUY, "1", str(200 + n))
    await rig.exchange.place([again])
    assert rig.exchange.position(SYMBOL).base == 1
