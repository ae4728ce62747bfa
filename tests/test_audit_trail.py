"""The audit trail: a market's step only queues, one writer writes in batches, and a store that is away or slower
than the markets holds new orders back instead of losing records (SQLite and MariaDB)."""

from __future__ import annotations

import logging
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from mmframe import (
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
)
from mmframe._models import MarketKey
from mmframe._plugins import make_plugin_manager
from mmframe._service.audit import HOLD_PLUGIN, HOLD_REASON, AuditTrail
from mmframe._store import FillRecord, OrderEventRecord, Store
from mmframe.testing import make_market

from .seed_sql import apply_seed_sql
from .service_helpers import running_service, settle

BTC = make_market()


def event(n: int, kind: OrderEventKind = OrderEventKind.ACCEPTED, **fields: Any) -> tuple[OrderEvent, Order]:
    request = OrderRequest(f"mmf-{n}", BTC.symbol, Side.BUY, OrderType.LIMIT, Decimal("1.00"), Decimal("100.00"))
    status = OrderStatus.CANCELLED if kind is OrderEventKind.CANCELLED else OrderStatus.OPEN
    return OrderEvent(kind, request.client_order_id, BTC.symbol, **fields), Order(request, status)


def fill(n: int) -> Fill:
    return Fill(f"t-{n}", f"mmf-{n}", BTC.symbol, Side.BUY, Decimal("100.00"), Decimal("0.50"), Liquidity.TAKER,
                Decimal("0.01"), timestamp=1_700_000_000.25)


class BlockedStore:
    """The store, with its audit writes held (in the writer's thread) until :meth:`release`: a database that is away
    or far slower than the markets."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.open = threading.Event()
        self.writes = 0

    def record_rows(self, events: Any, fills: Any) -> None:
        self.open.wait(timeout=60)
        self.writes += 1
        self.store.record_rows(events, fills)

    def release(self) -> None:
        self.open.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
def store(database_url: str) -> Any:
    store = Store(database_url)
    store.init()
    yield store
    store.close()


async def test_a_step_only_queues_and_the_writer_writes_what_record_writes(store: Store) -> None:
    """The hooks keep the objects; the writer's rows are exactly what ``Store.record`` writes for the same records,
    whatever the event carries (a market order without a price, an engine id on the order only, a reason)."""
    trail = AuditTrail(store, {BTC.key: "1_1"})
    market_order = OrderRequest("mmf-m", BTC.symbol, Side.SELL, OrderType.MARKET, Decimal("2.50"))
    cases = [
        event(1),
        event(2, OrderEventKind.CANCELLED, reason="cancelled by us", order_id="E2"),
        (OrderEvent(OrderEventKind.FILLED, "mmf-m", BTC.symbol, filled_quantity=Decimal("2.50")),
         Order(market_order, OrderStatus.FILLED, filled_quantity=Decimal("2.50"), order_id="E3")),
    ]
    for e, o in cases:
        trail.order_event(BTC, e, o)
    other = make_market("ETH/USDT")  # a market the trail has no id for: its key stands in
    trail.order_filled(BTC, fill(1), None)  # type: ignore[arg-type]
    trail.order_filled(other, attrs.evolve(fill(2), symbol="ETH/USDT"), None)  # type: ignore[arg-type]
    assert trail.pending == 5 and trail.written == 0
    assert await trio.to_thread.run_sync(store.order_events) == []  # nothing written on the step

    assert await trail.flush() is True
    assert trail.pending == 0 and trail.written == 5 and trail.received == 5
    expected_events = [OrderEventRecord.from_event(e, o, market_id="1_1", market_type=1) for e, o in cases]
    expected_fills = [
        FillRecord.from_fill(fill(1), market_id="1_1", market_type=1),
        FillRecord.from_fill(attrs.evolve(fill(2), symbol="ETH/USDT"), market_id=str(other.key), market_type=1),
    ]
    assert await trio.to_thread.run_sync(store.order_events) == expected_events
    assert await trio.to_thread.run_sync(store.fills) == expected_fills

    # the slow path, for comparison: the same records through Store.record read back the same
    await trio.to_thread.run_sync(store.record, expected_events, expected_fills)
    events = await trio.to_thread.run_sync(store.order_events)  # oldest first: each twice, side by side
    assert events == [record for record in expected_events for _ in range(2)]


async def test_a_backlog_is_written_whole_in_few_transactions(store: Store) -> None:
    """12,345 records: two transactions of at most MAX_BATCH (SQLite: many rows per INSERT statement), every row."""
    counting = BlockedStore(store)
    counting.release()
    trail = AuditTrail(counting, {BTC.key: "1_1"})  # type: ignore[arg-type]
    for n in range(12_344):
        trail.order_event(BTC, *event(n))
    trail.order_filled(BTC, fill(1), None)  # type: ignore[arg-type]
    assert trail.pending == 12_345
    assert await trail.flush() is True
    assert counting.writes == 2 and trail.written == 12_345 and trail.pending == 0
    events = await trio.to_thread.run_sync(store.order_events)
    assert len(events) == 12_344 and {e.client_order_id for e in events} == {f"mmf-{n}" for n in range(12_344)}
    assert len(await trio.to_thread.run_sync(store.fills)) == 1


async def test_an_event_is_recorded_as_the_order_stood_when_it_was_applied(tmp_path: Path) -> None:
    """An ``Order`` is the tracker's record, updated in place: the trail takes its status and engine id when the
    event is applied, not when the batch is written."""
    store = Store.sqlite(tmp_path / "audit.sqlite")
    store.init()
    try:
        trail = AuditTrail(store, {BTC.key: "1_1"})
        accepted, order = event(1, order_id=None)
        object.__setattr__(order, "order_id", "E1")
        trail.order_event(BTC, accepted, order)
        # the order moves on (as the tracker moves it) before the writer runs
        object.__setattr__(order, "status", OrderStatus.CANCELLED)
        object.__setattr__(order, "order_id", "E1-changed")
        trail.order_event(BTC, OrderEvent(OrderEventKind.CANCELLED, "mmf-1", BTC.symbol), order)
        await trail.flush()
        rows = [(str(e.kind), str(e.status), e.order_id) for e in store.order_events()]
        assert rows == [("accepted", "open", "E1"), ("cancelled", "cancelled", "E1-changed")]
    finally:
        store.close()


async def test_nothing_is_registered_with_the_risk_gate_while_the_trail_keeps_up(tmp_path: Path) -> None:
    """The hold is a plugin registered only while the trail is behind: otherwise the risk gate's hook has no
    implementation of the trail's to call, so keeping up costs a market nothing per order."""
    store = Store.sqlite(tmp_path / "audit.sqlite")
    store.init()
    pm = make_plugin_manager(load_entrypoints=False)
    trail = AuditTrail(store, {BTC.key: "1_1"}, pm=pm)
    pm.register(trail, name="mmframe.audit")
    try:
        trail.HIGH_WATER, trail.LOW_WATER, trail.BATCH = 4, 2, 100
        hook = pm.hook.pre_trade_check
        assert hook.get_hookimpls() == []
        for n in range(3):
            pm.hook.order_event(market=BTC, event=event(n)[0], order=event(n)[1])
        assert not trail.holding and hook.get_hookimpls() == []
        pm.hook.order_event(market=BTC, event=event(3)[0], order=event(3)[1])  # the fourth: high water
        assert trail.holding and trail.holds == 1
        assert [i.plugin_name for i in hook.get_hookimpls()] == [HOLD_PLUGIN]
        request = event(9)[1].request
        reason = hook(market=BTC, request=request, context=None)
        assert reason == f"{HOLD_REASON}4" and trail.held == 1
        assert trail.status()["holding"] is True and trail.status()["held_orders"] == 1
        assert await trail.flush() is True  # written: below low water, released
        assert not trail.holding and hook.get_hookimpls() == [] and trail.hold_reason.endswith("4")
        assert hook(market=BTC, request=request, context=None) is None
        assert trail.written == 4 and trail.dropped == 0
    finally:
        store.close()


async def test_a_blocked_store_holds_new_orders_back_then_writes_every_record(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The real service with its store's audit writes blocked: the backlog reaches high water and the market's new
    orders are held (vetoed with the trail's reason) while its cancels go through; nothing is dropped. Once the store
    answers, the trail writes everything, releases the hold, and the market quotes again. Every order event and fill
    the market applied is in the database, each with the order's status right after it."""
    apply_seed_sql(database_url)
    caplog.set_level(logging.WARNING, logger="mmframe.service")
    async with running_service(database_url) as running:
        trail = running.service.audit
        blocked = BlockedStore(running.service.store)
        trail.store = blocked  # type: ignore[assignment]
        trail.BATCH, trail.HIGH_WATER, trail.LOW_WATER = 2, 10, 4
        trail._retarget()
        try:
            price = 45_000
            running.feed.push_price("BTCUSDT", str(price))
            await settle()
            # another participant sells 3 into our bid: a fill, waiting behind the blocked write
            running.sink.submit_external("BTC/USDT", side=Side.SELL, type=OrderType.MARKET, quantity=Decimal("3"))
            await settle()
            # what a market starting now adds to the fills it reads from the store
            [pending_fill] = trail.pending_fills("BTC/USDT", 1, "mmf-BTCUSDT1-")
            assert trail.pending_fills("BTC/USDT", 1) == [pending_fill]
            assert trail.pending_fills("BTC/USDT", 1, "other-") == trail.pending_fills("ETH/USDT", 1) == []
            assert pending_fill.market_id == "879_1" and pending_fill.quantity == Decimal("3")
            for _ in range(8):  # each move: two amends (the paper sink can amend), two events
                price += 100
                running.feed.push_price("BTCUSDT", str(price))
                await settle()
                if trail.holding:
                    break
            assert trail.holding and trail.holds == 1 and trail.dropped == 0
            status = running.service.status_of(running.service.find("BTC/USDT"))
            assert status is not None
            vetoed_before = status.orders_vetoed
            # the next move: whatever quotes are left are cancelled (cancels are never held), the new ones are held:
            # an amend is held like a new order (its order is cancelled instead), and so is the place after it
            running.feed.push_price("BTCUSDT", str(price + 100))
            await settle()
            assert running.book("BTC/USDT") == []
            status = running.service.status_of(running.service.find("BTC/USDT"))
            assert status is not None
            assert status.orders_vetoed >= vetoed_before + 2 and status.last_veto.startswith(HOLD_REASON)
            assert trail.held >= 2 and trail.pending >= trail.HIGH_WATER and trail.written == 0
            health = (await running.client.get("/api/v1/health")).json()["audit"]
            assert health["holding"] is True and health["pending"] == trail.pending and health["written"] == 0
            assert health["held_orders"] == trail.held and health["holds"] == 1 and health["dropped"] == 0
            metrics = (await running.client.get("/metrics")).text
            assert "mmframe_audit_holding 1.0" in metrics and "mmframe_audit_holds_total 1.0" in metrics
            assert f"mmframe_audit_pending {float(trail.pending)}" in metrics
        finally:
            blocked.release()
        with trio.fail_after(10):
            while trail.holding or trail.pending:  # noqa: ASYNC110 - the writer catching up, polled
                await trio.sleep(0.05)
        # released: the next move quotes again
        running.feed.push_price("BTCUSDT", str(price + 300))
        await settle()
        assert len(running.book("BTC/USDT")) == 2
        await trail.flush()
        assert trail.dropped == 0 and trail.pending == 0 and trail.written == trail.received
        assert blocked.writes >= 2
        events = await trio.to_thread.run_sync(running.service.store.order_events)
        assert len(events) == trail.written_events and trail.written_fills == 1
        [recorded_fill] = await trio.to_thread.run_sync(running.service.store.fills)
        assert recorded_fill == pending_fill
        statuses = {"accepted": {"open"}, "cancelled": {"cancelled"}, "partially_filled": {"partially_filled"},
                    "amended": {"open", "partially_filled"}}  # an amend leaves the status as it was
        assert all(str(e.status) in statuses[str(e.kind)] for e in events)
        assert any(str(e.kind) == "amended" for e in events)
        # what the market itself counted (the paper sink accepts every order and confirms every cancel at once)
        status = running.service.status_of(running.service.find("BTC/USDT"))
        assert status is not None and status.orders_placed >= 4 and status.fills == 1
        kinds = [str(e.kind) for e in events]
        assert kinds.count("accepted") == status.orders_placed and kinds.count("cancelled") == status.orders_cancelled
        assert kinds.count("partially_filled") == status.fills and len(kinds) == trail.received - 1
    logged = [r.getMessage() for r in caplog.records]
    assert any("new orders are held" in m for m in logged) and any("new orders released" in m for m in logged)


async def test_past_the_memory_bound_the_oldest_go_counted_and_logged(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Beyond MAX_PENDING (orders that never passed the risk gate, here: a trail with no plugin manager to hold
    them) the oldest order events are dropped, then fills; counted, logged once per interval, never silently."""
    store = Store.sqlite(tmp_path / "audit.sqlite")
    store.init()
    try:
        trail = AuditTrail(store, {BTC.key: "1_1"})
        trail.MAX_PENDING, trail.HIGH_WATER, trail.BATCH = 10, 8, 100
        trail.order_filled(BTC, fill(0), None)  # type: ignore[arg-type]
        with caplog.at_level(logging.ERROR, logger="mmframe.service"):
            for n in range(25):
                trail.order_event(BTC, *event(n))
        assert trail.pending == 10 and trail.dropped == 16 and trail.dropped_events == 16
        assert trail.holding  # reached high water, but with nothing to hold through
        assert trail.received == 26 == trail.pending + trail.dropped + trail.written
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "dropped 1 of the oldest" in errors[0]  # once per interval, not per record
        await trail.flush()
        assert trail.pending == 0 and trail.written == 10
        assert [e.client_order_id for e in store.order_events()] == [f"mmf-{n}" for n in range(16, 25)]
        assert [f.trade_id for f in store.fills()] == ["t-0"]  # order events went first
    finally:
        store.close()


async def test_a_failed_write_keeps_the_records_in_order_for_the_next(tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "audit.sqlite")
    trail = AuditTrail(store, {BTC.key: "1_1"})
    for n in range(3):
        trail.order_event(BTC, *event(n))
    assert await trail.flush() is False  # no tables yet: the write fails
    assert trail.pending == 3 and trail.written == 0 and trail.write_errors == 1
    store.init()
    trail.order_event(BTC, *event(3))
    assert await trail.flush() is True
    try:
        assert [e.client_order_id for e in store.order_events()] == ["mmf-0", "mmf-1", "mmf-2", "mmf-3"]
    finally:
        store.close()


async def test_the_oldest_record_waiting_has_an_age(tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "audit.sqlite")
    store.init()
    try:
        trail = AuditTrail(store, {BTC.key: "1_1"})
        assert trail.oldest_pending_age(100.0) == 0.0
        trail.order_event(BTC, *event(1))
        trail._mark(100.0)  # the writer notes arrivals every TICK seconds
        trail.order_filled(BTC, fill(2), None)  # type: ignore[arg-type]
        trail._mark(102.0)
        trail.order_event(BTC, *event(3))
        assert trail.oldest_pending_age(105.0) == 5.0
        await trail.flush()
        assert trail.oldest_pending_age(106.0) == 0.0
    finally:
        store.close()


async def test_the_way_out_writes_what_waits_and_says_what_was_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.sqlite(tmp_path / "audit.sqlite")
    store.init()
    try:
        trail = AuditTrail(store, {BTC.key: "1_1"})
        with caplog.at_level(logging.INFO, logger="mmframe.service"):
            async with trio.open_nursery() as nursery:
                await nursery.start(trail.run)
                for n in range(3):
                    trail.order_event(BTC, *event(n))
                trail.order_filled(BTC, fill(0), None)  # type: ignore[arg-type]
                nursery.cancel_scope.cancel()
        assert len(store.order_events()) == 3 and len(store.fills()) == 1
        assert "audit trail: all 3 order events and 1 fills received were written" in caplog.text

        broken = AuditTrail(Store.sqlite(tmp_path / "no-tables.sqlite"), {BTC.key: "1_1"})
        broken.FINAL_FLUSH = 0.5
        with caplog.at_level(logging.INFO, logger="mmframe.service"):
            async with trio.open_nursery() as nursery:
                await nursery.start(broken.run)
                broken.order_event(BTC, *event(9))
                nursery.cancel_scope.cancel()
        assert "1 records NOT written (0 dropped, 1 still waiting at exit)" in caplog.text
        broken.store.close()
    finally:
        store.close()


def test_market_ids_are_read_when_a_batch_is_written() -> None:
    """A market id comes from the service's mapping at write time; a market it does not know by its key."""
    trail = AuditTrail(Store("sqlite://"), {MarketKey("BTC/USDT"): "879_1"})
    assert trail._market_id(BTC) == "879_1"
    assert trail._market_id(make_market("ETH/USDT")) == str(MarketKey("ETH/USDT"))
