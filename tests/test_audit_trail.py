"""The audit trail under a database that is away or slower than the markets: bounded, never silently lossy."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest

from mmframe import Order, OrderEvent, OrderEventKind, OrderRequest, OrderStatus, OrderType, Side
from mmframe._service.audit import AuditTrail
from mmframe._store import Store
from mmframe.testing import make_market

BTC = make_market()


def event(n: int) -> tuple[OrderEvent, Order]:
    request = OrderRequest(f"mmf-{n}", BTC.symbol, Side.BUY, OrderType.LIMIT, Decimal("1"), Decimal("100.00"))
    return OrderEvent(OrderEventKind.ACCEPTED, request.client_order_id, BTC.symbol), Order(request, OrderStatus.OPEN)


async def test_beyond_its_limit_the_oldest_go_counted_and_logged(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    store = Store.sqlite(tmp_path / "audit.sqlite")
    store.init()
    try:
        trail = AuditTrail(store, {BTC.key: "1_1"})
        trail.MAX_PENDING = 10
        with caplog.at_level(logging.ERROR, logger="mmframe.service"):
            for n in range(25):
                trail.order_event(BTC, *event(n))
        assert trail.pending == 10 and trail.dropped == 15
        assert [r.client_order_id for r in trail.events] == [f"mmf-{n}" for n in range(15, 25)]  # the newest, in order
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "dropped 1 of the oldest" in errors[0]  # once per interval, not per record

        await trail.flush()
        assert trail.pending == 0 and trail.written == 10
        assert [e.client_order_id for e in store.order_events()] == [f"mmf-{n}" for n in range(15, 25)]
    finally:
        store.close()


async def test_a_failed_write_keeps_the_records_in_order_for_the_next(tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "audit.sqlite")
    trail = AuditTrail(store, {BTC.key: "1_1"})
    for n in range(3):
        trail.order_event(BTC, *event(n))
    await trail.flush()  # no tables yet: the write fails
    assert trail.pending == 3 and trail.written == 0
    store.init()
    trail.order_event(BTC, *event(3))
    await trail.flush()
    try:
        assert [e.client_order_id for e in store.order_events()] == ["mmf-0", "mmf-1", "mmf-2", "mmf-3"]
    finally:
        store.close()
