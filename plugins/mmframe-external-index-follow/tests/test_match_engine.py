"""The strategy on the reference match engine (mmframe-match-engine): hypercorn on port 0, the ``match-engine`` sink
over real HTTP, the real clock. The seed's config must put its 20 orders on the engine's book at the right prices."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio

pytest.importorskip("mmframe_match_engine", reason="the reference match engine is its own plugin")

from mmframe_match_engine.server import Engine, serve_engine
from mmframe_match_engine.sink import MatchEngineSink

from mmframe import MarketState, Side
from mmframe.testing import start_engine

from .helpers import KEY, expected_ladder, plugins, seed_levels, spec


async def eventually(check: Callable[[], bool], seconds: float = 5.0, what: str = "") -> None:
    with trio.move_on_after(seconds):
        while True:
            if check():
                return
            await trio.sleep(0.02)
    raise AssertionError(f"not within {seconds}s: {what}")


async def test_the_seed_ladder_on_the_reference_match_engine(nursery: trio.Nursery) -> None:
    engine = Engine()
    binds = await nursery.start(serve_engine, engine, "127.0.0.1", 0)
    url = binds[0]
    sink = MatchEngineSink(MatchEngineSink.Config(endpoint=url, timeout=2.0, backoff=0.02, breaker_cooldown=0.1))
    harness = await start_engine(nursery, *plugins(), sink=sink, instance_id="t")
    status = await harness.start(spec())
    assert status.state is MarketState.RUNNING
    await eventually(lambda: not sink.degraded, what="the sink connects to the engine")

    def ours() -> list[Any]:
        return engine.open_orders("BTC/USDT", "t-")

    harness.push_tick("45000.00")
    await eventually(lambda: len(ours()) == 20, what="20 orders on the engine's book")
    want_bids, want_asks = expected_ladder("45000.00", seed_levels(), 10)
    orders = ours()
    bids = sorted(((o.price, o.quantity) for o in orders if o.side is Side.BUY), reverse=True)
    asks = sorted((o.price, o.quantity) for o in orders if o.side is Side.SELL)
    assert [p for p, _ in bids] == [p for p, _ in want_bids]
    assert [p for p, _ in asks] == [p for p, _ in want_asks]
    for (_, quantity), (_, nominal) in zip(bids + asks, want_bids + want_asks, strict=True):
        assert nominal * Decimal("0.8") <= quantity <= nominal
    # The engine's own depth endpoint shows them too, prices and quantities as exact decimal strings.
    async with httpx.AsyncClient(base_url=url) as client:
        depth = (await client.get("/api/v1/depth", params={"symbol": "BTC/USDT", "limit": 20})).json()
    assert [Decimal(p) for p, _ in depth["bids"]] == [p for p, _ in want_bids]
    assert [Decimal(p) for p, _ in depth["asks"]] == [p for p, _ in want_asks]
    assert all(len(p.split(".")[1]) == 4 for p, _ in depth["bids"] + depth["asks"])  # the price precision
    await eventually(lambda: harness.status(KEY).active_orders == 20, what="the tracker knows the 20 orders")
    # A move of at least price_change_amount: the ladder follows on the engine.
    harness.push_tick("45100.00")
    moved_bids, moved_asks = expected_ladder("45100.00", seed_levels(), 10)
    await eventually(
        lambda: sorted(o.price for o in ours() if o.side is Side.SELL) == [p for p, _ in moved_asks]
        and sorted((o.price for o in ours() if o.side is Side.BUY), reverse=True) == [p for p, _ in moved_bids],
        what="the ladder moved to 45100",
    )
    await harness.aclose()
    assert ours() == []
