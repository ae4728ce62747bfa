"""Another account on the engine with our client ids (a squatter that read or guessed our next ids), on the real
reference engine over loopback HTTP (hypercorn on port 0): our orders are placed and tracked as ours, the
squatter's are never taken for ours, never cancelled by our reconciliation, and their events never reach us."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import trio
from mmframe_match_engine.server import Engine, StreamSubscription, serve_engine
from mmframe_match_engine.sink import MatchEngineSink

from mmframe import (
    Market,
    MarketKey,
    MarketSpec,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderType,
    RiskLimits,
    Side,
)
from mmframe.testing import start_engine

from .helpers import Feed, Plugin

SYMBOL = "AAA/USDT"
US = "mmframe"  # the sink's default account


async def eventually(check: Callable[[], Any], seconds: float = 5.0, what: str = "") -> None:
    with trio.move_on_after(seconds):
        while not check():  # noqa: ASYNC110 - polling the engine's and the market's plain state
            await trio.sleep(0.02)
        return
    raise AssertionError(f"not within {seconds}s: {what or check}")


def wire_order(coid: str, side: str, price: str, account: str, tif: str = "gtc") -> dict[str, Any]:
    return {"client_order_id": coid, "account": account, "symbol": SYMBOL, "side": side, "type": "limit",
            "time_in_force": tif, "post_only": False, "price": price, "quantity": "1"}


async def place_as(client: httpx.AsyncClient, *orders: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(orders), 100):
        answer = await client.post("/api/v1/orders/batch", json={"orders": list(orders[start : start + 100])})
        assert answer.status_code == 200, answer.text
        out += answer.json()["results"]
    return out


def on_engine(engine: Engine, prefix: str, account: str) -> list[Any]:
    """*account*'s open orders with *prefix*, as the engine's operator sees them."""
    return [o for o in engine.open_orders(SYMBOL, prefix) if o.account == account]


async def start_sink(nursery: trio.Nursery, engine: Engine, prefix: str) -> tuple[MatchEngineSink, list[OrderEvent],
                                                                                   httpx.AsyncClient]:
    binds = await nursery.start(serve_engine, engine, "127.0.0.1", 0)
    sink = MatchEngineSink(MatchEngineSink.Config(endpoint=binds[0], timeout=2.0, backoff=0.02, max_backoff=0.2))
    await nursery.start(sink.run)
    events: list[OrderEvent] = []
    sink.subscribe(SYMBOL, prefix, events.append)
    await eventually(lambda: not sink.degraded, what="the event stream connects")
    client = httpx.AsyncClient(base_url=binds[0], timeout=5)
    return sink, events, client


def kinds(events: list[OrderEvent], coid: str) -> list[OrderEventKind]:
    return [e.kind for e in events if e.client_order_id == coid]


def bid(coid: str, price: str = "99") -> OrderRequest:
    return OrderRequest(coid, SYMBOL, Side.BUY, OrderType.LIMIT, quantity="1", price=price)


# ---------------------------------------------------------------------------------------------------------------
# The sink
# ---------------------------------------------------------------------------------------------------------------


async def test_the_sink_places_its_own_order_where_a_squatter_holds_the_id(nursery: trio.Nursery) -> None:
    engine = Engine()
    sink, events, evil = await start_sink(nursery, engine, "t-X-")
    async with evil:
        squat = await place_as(evil, wire_order("t-X-1", "sell", "500", "evil"),
                               wire_order("t-X-2", "sell", "501", "evil"))
        assert [r["result"] for r in squat] == ["accepted", "accepted"]
        await sink.place([bid("t-X-1")])
        await eventually(lambda: kinds(events, "t-X-1") == [OrderEventKind.ACCEPTED], what="ours accepted")
        ours = on_engine(engine, "t-X-", US)
        assert [(o.client_order_id, o.side, o.price) for o in ours] == [("t-X-1", Side.BUY, Decimal("99"))]
        assert events[0].order_id == ours[0].order_id  # the order we track is ours, not the squatter's
        # a third account takes the squatter's t-X-1 and t-X-2: their fills are theirs, not ours
        await place_as(evil, wire_order("tk-1", "buy", "501", "tk", tif="ioc"),
                       wire_order("tk-2", "buy", "501", "tk", tif="ioc"))
        await eventually(lambda: not on_engine(engine, "t-X-", "evil"), what="the squatter's orders filled")
        await trio.sleep(0.3)  # time for any stray event to arrive
        assert kinds(events, "t-X-1") == [OrderEventKind.ACCEPTED] and kinds(events, "t-X-2") == []
        assert [(o.client_order_id, o.price) for o in await sink.open_orders(SYMBOL, "t-X-")] == [
            ("t-X-1", Decimal("99"))
        ]
        # the squatter's next order with our prefix is not ours to cancel
        await place_as(evil, wire_order("t-X-3", "sell", "502", "evil"))
        assert await sink.cancel_all(SYMBOL, "t-X-") == 1
        assert [o.client_order_id for o in on_engine(engine, "t-X-", "evil")] == ["t-X-3"]
        assert on_engine(engine, "t-X-", US) == []


class UnscopedEngine(Engine):
    """An engine as a client may meet one: client ids unique per engine (not per account), and an event stream that
    sends every account's events whatever the client asks (its events and orders still name their account)."""

    @staticmethod
    def order_key(account: str, client_order_id: str) -> str:
        return f"shared/{client_order_id}"

    def subscribe(self, since: int | None = None, epoch: str | None = None,
                  account: str | None = None) -> StreamSubscription:
        return super().subscribe(since, epoch)


async def test_the_sink_checks_the_account_of_what_the_engine_answers(nursery: trio.Nursery) -> None:
    engine = UnscopedEngine()
    sink, events, evil = await start_sink(nursery, engine, "t-Y-")
    async with evil:
        await place_as(evil, wire_order("t-Y-1", "sell", "500", "evil"), wire_order("t-Y-2", "sell", "501", "evil"))
        # the engine answers "duplicate" with the squatter's order: not our acceptance
        await sink.place([bid("t-Y-1"), bid("t-Y-3", "98")])
        await eventually(lambda: kinds(events, "t-Y-3") == [OrderEventKind.ACCEPTED], what="t-Y-3 accepted")
        await eventually(lambda: kinds(events, "t-Y-1") == [OrderEventKind.REJECTED], what="t-Y-1 refused")
        assert "another account" in next(e for e in events if e.client_order_id == "t-Y-1").reason
        # the engine lists the squatter's orders with ours: the sink keeps ours
        assert [o.client_order_id for o in await sink.open_orders(SYMBOL, "t-Y-")] == ["t-Y-3"]
        # the squatter's fills are sent to us too: the sink drops them
        await place_as(evil, wire_order("tk-1", "buy", "501", "tk", tif="ioc"))
        await eventually(lambda: len(on_engine(engine, "t-Y-", "evil")) == 1, what="the squatter's t-Y-1 filled")
        await trio.sleep(0.3)
        assert kinds(events, "t-Y-1") == [OrderEventKind.REJECTED] and kinds(events, "t-Y-2") == []
        assert [o.client_order_id for o in on_engine(engine, "t-Y-", US)] == ["t-Y-3"]


# ---------------------------------------------------------------------------------------------------------------
# A market against a squatter that pre-placed its next ids
# ---------------------------------------------------------------------------------------------------------------


_DIGITS36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _DIGITS36[r] + out
    return out or "0"


async def test_a_squatter_on_our_next_ids_is_neither_ours_nor_cancelled(nursery: trio.Nursery) -> None:
    """The reproduction: another account reads our newest client id and places our next 300 ids as sells far off
    the market. The market's requote must place its own orders (the engine scopes ids per account), track exactly
    those, and its periodic reconciliation must leave every one of the squatter's orders alone."""
    Feed.instances.clear()
    engine = Engine()
    binds = await nursery.start(serve_engine, engine, "127.0.0.1", 0)
    sink = MatchEngineSink(MatchEngineSink.Config(endpoint=binds[0], timeout=2.0, backoff=0.02, max_backoff=0.2))
    harness = await start_engine(nursery, Plugin(), sink=sink, instance_id="t")
    market = Market(SYMBOL, tick_size="0.01", price_precision=2, quantity_precision=2)
    spec = MarketSpec(market=market, strategy="me_ladder", strategy_config={"levels": 5}, feed="me_feed",
                      risk=RiskLimits(price_band="0.5"),
                      refresh_interval=0.2, reconcile_interval=0.3, reconcile_grace=0.2,
                      amend=False)  # the requote places new orders (with amends it would move its own instead)
    await harness.start(spec)
    key = MarketKey(SYMBOL)
    prefix = harness.client_prefix(key)
    await eventually(lambda: not sink.degraded, what="the event stream connects")
    Feed.instances[-1].push_price("AAAUSDT", "100")
    await eventually(lambda: len(on_engine(engine, prefix, US)) == 10, what="our first ladder")

    # the squatter learns our newest id (the open orders by prefix, or a guess) and takes the next 300
    newest = max(int(o.client_order_id[len(prefix):], 36) for o in on_engine(engine, prefix, US))
    squat_ids = [f"{prefix}{_base36(newest + i)}" for i in range(1, 301)]
    async with httpx.AsyncClient(base_url=binds[0], timeout=5) as evil:
        results = await place_as(evil, *(wire_order(coid, "sell", "500", "evil") for coid in squat_ids))
    assert {r["result"] for r in results} == {"accepted"}

    Feed.instances[-1].push_price("AAAUSDT", "105")  # the requote uses the squatted ids

    def ours() -> tuple[list[Decimal], list[Decimal]]:
        orders = on_engine(engine, prefix, US)
        return (sorted((o.price for o in orders if o.side is Side.BUY), reverse=True),
                sorted(o.price for o in orders if o.side is Side.SELL))

    ladder = ([Decimal(105 - i) for i in range(1, 6)], [Decimal(105 + i) for i in range(1, 6)])
    await eventually(lambda: ours() == ladder, what="our own ladder at 105 on the engine")
    placed = harness.status(key).reconciliations
    await eventually(lambda: harness.status(key).reconciliations >= placed + 3, what="three reconciliations")
    assert ours() == ladder
    assert sorted(o.client_order_id for o in on_engine(engine, prefix, "evil")) == sorted(squat_ids)
    assert harness.status(key).reconcile_cancelled == 0
    # what the market tracks is exactly our orders on the engine (the engine's own order ids), none of theirs
    live = harness.live_orders(include_cancelling=True, market=key)
    tracked = {o.order_id: (o.side, o.price) for o in live}
    assert tracked == {o.order_id: (o.side, o.price) for o in on_engine(engine, prefix, US)}
    status = harness.status(key)
    assert (status.active_orders, status.bids, status.asks) == (10, 5, 5)
    assert any(o.client_order_id in set(squat_ids) for o in live)  # the requote used those ids
