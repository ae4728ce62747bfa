"""What a market held survives the process: fills recorded by the audit trail come back as the next process's fill
history and position, on SQLite and MariaDB."""

from __future__ import annotations

from decimal import Decimal

from mmframe import OrderType, Side
from mmframe._models import MarketKey

from .seed_sql import apply_seed_sql
from .service_helpers import running_service, settle


async def test_a_new_process_starts_with_the_fills_and_position_of_the_last(database_url: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url, instance_id="mmA") as first:
        first.feed.push_price("BTCUSDT", "45000")
        await settle()
        # another participant sells 3 into our bid, and buys 1 from our ask
        first.sink.submit_external("BTC/USDT", side=Side.SELL, type=OrderType.MARKET, quantity=Decimal("3"))
        first.sink.submit_external("BTC/USDT", side=Side.BUY, type=OrderType.MARKET, quantity=Decimal("1"))
        await settle()
        status = next(s for s in first.service.manager.status() if s.symbol == "BTC/USDT")
        assert status.position == Decimal("2") and status.fills == 2
    # the audit trail was flushed on the way out: a new process (new sink, new engine) reads it back
    async with running_service(database_url, instance_id="mmA") as second:
        status = next(s for s in second.service.manager.status() if s.symbol == "BTC/USDT")
        assert status.position == Decimal("2")
        runner = second.service.manager.runner(MarketKey("BTC/USDT"))
        assert runner is not None
        history = runner.ctx.fill_history
        assert [(f.side, f.quantity) for f in history] == [(Side.BUY, Decimal("3")), (Side.SELL, Decimal("1"))]
        assert all(f.client_order_id.startswith("mmA-BTCUSDT1-") for f in history)
        eth = next(s for s in second.service.manager.status() if s.symbol == "ETH/USDT")
        assert eth.position == 0  # another market's fills are not this one's
    # another instance id is another book of orders: it does not inherit mmA's position
    async with running_service(database_url, instance_id="mmB") as third:
        status = next(s for s in third.service.manager.status() if s.symbol == "BTC/USDT")
        assert status.position == 0
