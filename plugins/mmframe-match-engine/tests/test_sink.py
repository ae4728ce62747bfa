"""The ``match-engine`` sink against the real reference engine on loopback (hypercorn on port 0): the ladder on
the engine's book, outages, unknown outcomes, rate limits, and restarts that leave no orphan."""

from __future__ import annotations

import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from mmframe_match_engine.server import Engine, serve_engine
from mmframe_match_engine.sink import MatchEngineSink

from mmframe import Market, MarketKey, MarketSpec, MarketState, RiskLimits, Side
from mmframe.testing import Harness, sink_metrics_text, start_engine

from .helpers import Feed, Plugin

MARKET = Market("AAA/USDT", tick_size="0.01", price_precision=2, quantity_precision=2)
SPEC = MarketSpec(market=MARKET, strategy="me_ladder", feed="me_feed", risk=RiskLimits(price_band="0.5"),
                  refresh_interval=0.2)
KEY = MarketKey("AAA/USDT")


async def eventually(check: Callable[[], Any], seconds: float = 5.0, what: str = "") -> None:
    with trio.move_on_after(seconds):
        while True:
            result = check()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await trio.sleep(0.02)
    raise AssertionError(f"not within {seconds}s: {what or check}")


@attrs.define
class Rig:
    engine: Engine
    url: str
    sink: MatchEngineSink
    harness: Harness
    server_scope: trio.CancelScope
    nursery: trio.Nursery
    port: int

    @property
    def feed(self) -> Feed:
        return Feed.instances[-1]

    def ours(self) -> list[Any]:
        return [o for o in self.engine.open_orders("AAA/USDT", "t-")]

    def prices(self) -> tuple[list[Decimal], list[Decimal]]:
        orders = self.ours()
        bids = sorted((o.price for o in orders if o.side is Side.BUY), reverse=True)
        asks = sorted(o.price for o in orders if o.side is Side.SELL)
        return bids, asks

    async def stop_server(self) -> None:
        self.server_scope.cancel()
        await trio.sleep(0.05)

    async def start_server(self) -> None:
        self.server_scope = trio.CancelScope()
        await self.nursery.start(_server, self.engine, self.port, self.server_scope)


async def _server(engine: Engine, port: int, scope: trio.CancelScope, *, task_status: Any) -> None:
    with scope:
        await serve_engine(engine, "127.0.0.1", port, task_status=task_status)


async def rig(nursery: trio.Nursery, **sink_options: Any) -> Rig:
    Feed.instances.clear()
    engine = Engine()
    scope = trio.CancelScope()
    binds = await nursery.start(_server, engine, 0, scope)
    url = binds[0]
    port = int(url.rsplit(":", 1)[1])
    options = {"endpoint": url, "timeout": 0.3, "backoff": 0.02, "max_backoff": 0.3, "breaker_cooldown": 0.1,
               "stream_stall": 1.5}
    options.update(sink_options)
    sink = MatchEngineSink(MatchEngineSink.Config(**options))
    harness = await start_engine(nursery, Plugin(), sink=sink, instance_id="t")
    return Rig(engine, url, sink, harness, scope, nursery, port)


def status(r: Rig) -> Any:
    return r.harness.status(KEY)


async def test_the_ladder_appears_on_the_engine_exactly(nursery: trio.Nursery) -> None:
    r = await rig(nursery)
    await r.harness.start(SPEC)
    await eventually(lambda: not r.sink.degraded, what="the stream connects")
    r.feed.push_price("AAAUSDT", "100")
    await eventually(lambda: len(r.ours()) == 4, what="four orders on the engine")
    async with httpx.AsyncClient(base_url=r.url) as client:
        depth = (await client.get("/api/v1/depth", params={"symbol": "AAA/USDT"})).json()
    assert depth["bids"] == [["99.00", "1.00"], ["98.00", "1.00"]]
    assert depth["asks"] == [["101.00", "1.00"], ["102.00", "1.00"]]
    await eventually(lambda: status(r).active_orders == 4 and status(r).bids == 2)
    r.feed.push_price("AAAUSDT", "105")
    await eventually(lambda: r.prices() == ([Decimal("104.00"), Decimal("103.00")],
                                            [Decimal("106.00"), Decimal("107.00")]), what="requote")


async def test_engine_down_then_back_degrades_and_restores_without_duplicates(nursery: trio.Nursery) -> None:
    r = await rig(nursery)
    await r.harness.start(SPEC)
    await eventually(lambda: not r.sink.degraded)
    r.feed.push_price("AAAUSDT", "100")
    await eventually(lambda: len(r.ours()) == 4)

    await r.stop_server()
    r.feed.push_price("AAAUSDT", "110")  # the index moves while the engine is away
    await eventually(lambda: status(r).state is MarketState.DEGRADED, what="degraded")
    before = r.sink.statistics["requests"]
    await trio.sleep(2.0)
    assert r.sink.statistics["requests"] - before < 40  # probing, not spinning
    assert status(r).state is MarketState.DEGRADED

    await r.start_server()
    back = trio.current_time()
    r.feed.push_price("AAAUSDT", "110")
    await eventually(lambda: r.prices() == ([Decimal("109.00"), Decimal("108.00")],
                                            [Decimal("111.00"), Decimal("112.00")]), seconds=5,
                     what="the full ladder within 5 s of the engine's return")
    assert trio.current_time() - back < 5
    assert len(r.ours()) == 4  # no duplicates
    assert status(r).state is MarketState.RUNNING


async def test_unknown_outcome_retry_creates_no_second_order(nursery: trio.Nursery) -> None:
    r = await rig(nursery)
    await r.harness.start(SPEC)
    await eventually(lambda: not r.sink.degraded)
    r.engine.delay_after_execute = 1.0  # executed, but answered after the client's 0.3 s timeout
    r.feed.push_price("AAAUSDT", "100")
    await eventually(lambda: any(path.endswith("/batch") for _, path in r.engine.requests), what="a batch")
    await eventually(lambda: len(r.ours()) == 4, what="the batch executed")
    await trio.sleep(0.5)
    r.engine.delay_after_execute = 0.0
    await eventually(lambda: status(r).bids == 2 and status(r).asks == 2, what="tracker knows its 4 orders")
    batches = [path for _, path in r.engine.requests if path.endswith("/batch")]
    assert len(batches) >= 2  # the ladder never changed: every batch after the first is a retry of it
    assert len(r.ours()) == 4  # ... and none of them made a second order
    live = r.harness.live_orders(include_cancelling=True, market=KEY)
    assert sorted(str(o.status) for o in live) == ["open"] * 4


async def test_429_is_honoured_and_nothing_is_lost(nursery: trio.Nursery) -> None:
    r = await rig(nursery, timeout=2.0)
    await r.harness.start(SPEC)
    await eventually(lambda: not r.sink.degraded)
    r.engine.force_429_next = 2
    r.engine.retry_after = 1.0
    r.feed.push_price("AAAUSDT", "100")
    await eventually(lambda: len(r.ours()) == 4, seconds=6, what="orders after the 429s")
    batches = [t for t, path in r.engine.requests if path.endswith("/batch")]
    assert len(batches) >= 3 and batches[-1] - batches[0] >= 1.9  # two waits of Retry-After: 1
    assert r.sink.statistics["rate_limited"] >= 2 and status(r).orders_rejected == 0


async def test_the_token_bucket_holds_under_a_burst(nursery: trio.Nursery) -> None:
    from mmframe import OrderRequest, OrderType

    r = await rig(nursery, max_batch=1, rate_limit=20.0, burst=5, timeout=2.0)
    await eventually(lambda: not r.sink.degraded)
    requests = [
        OrderRequest(f"burst-{i}", "BBB/USDT", Side.BUY, OrderType.LIMIT, quantity="1", price=str(100 + i))
        for i in range(30)
    ]
    start = len(r.engine.requests)
    await r.sink.place(requests)
    await eventually(lambda: len(r.engine.open_orders("BBB/USDT", "burst-")) == 30, seconds=5)
    stamps = [t for t, path in r.engine.requests[start:] if path.endswith("/batch")]
    assert len(stamps) == 30
    for i, t in enumerate(stamps):
        in_window = sum(1 for u in stamps[i:] if u - t < 1.0)
        assert in_window <= 20 + 5, f"{in_window} requests within 1 s"
    assert stamps[-1] - stamps[0] >= (30 - 5) / 20 * 0.9


def _wait_line(proc: subprocess.Popen[str], needle: str, seconds: float, lines: list[str]) -> str:
    deadline = time.monotonic() + seconds
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not seen:\n{''.join(lines)}")


def _open(url: str, prefix: str) -> list[str]:
    out = []
    for symbol in ("BTC/USDT", "ETH/USDT"):
        params = {"symbol": symbol, "account": "mmframe", "prefix": prefix}
        data = httpx.get(f"{url}/api/v1/orders/open", params=params).json()
        out += [o["client_order_id"] for o in data["orders"]]
    return out


def _wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds}s: {what}")


@pytest.mark.skipif(
    not any(ep.name == "external_index_follow" for ep in importlib.metadata.entry_points(group="mmframe")),
    reason="the demo strategy's plugin is not installed",
)
def test_kill_restart_leaves_no_orphans_and_sigterm_leaves_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMFRAME_", "DB_", "API_PORT"))}
    env["PYTHONUNBUFFERED"] = "1"
    engine = subprocess.Popen([sys.executable, "-m", "mmframe", "match-engine", "serve", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    procs = [engine]
    try:
        lines: list[str] = []
        line = _wait_line(engine, "Match engine listening on", 15, lines)
        url = line.split("listening on ", 1)[1].strip()
        env["MATCH_ENGINE_ENDPOINT"] = url

        def serve() -> subprocess.Popen[str]:
            proc = subprocess.Popen([sys.executable, "-m", "mmframe", "serve", "--demo", "--api-port", "0"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
            procs.append(proc)
            return proc

        first = serve()
        _wait_for(lambda: len(_open(url, "mmf-")) == 40, 40, "the first process's two 10+10 ladders")
        first.kill()  # no graceful shutdown: its orders stay on the engine
        first.wait(10)
        orphans = set(_open(url, "mmf-"))
        assert len(orphans) >= 20  # (a ladder may have been half requoted when the process died)

        second = serve()
        _wait_for(lambda: len(_open(url, "mmf-")) == 40 and not orphans & set(_open(url, "mmf-")), 40,
                  "the second process cancelled every orphan and quotes its own ladder")
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=15)
        assert second.returncode == 0, out
        assert _open(url, "mmf-") == []  # a graceful stop leaves none of our orders
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _sink_exposition(sink: Any) -> str:
    """The Prometheus text mmframe serves for *sink* (the part of /metrics that describes the sink)."""
    return sink_metrics_text(sink)


async def test_the_sinks_health_and_request_latency_reach_prometheus(nursery: trio.Nursery) -> None:
    r = await rig(nursery, breaker_threshold=2)
    await r.harness.start(SPEC)
    await eventually(lambda: not r.sink.degraded)
    r.feed.push_price("AAAUSDT", "100")
    await eventually(lambda: len(r.ours()) == 4)
    text = _sink_exposition(r.sink)
    assert 'mmframe_sink_degraded{sink="match-engine"} 0.0' in text
    assert 'mmframe_sink_circuit_open{sink="match-engine"} 0.0' in text
    count = re.search(r'mmframe_sink_request_seconds_count\{sink="match-engine"\} (\d+)', text)
    assert count is not None and int(count.group(1)) == r.sink.request_latency.count > 0
    requests = r.sink.statistics["requests"]
    assert f'mmframe_sink_operations_total{{kind="requests",sink="match-engine"}} {requests}.0' in text
    await r.stop_server()
    r.feed.push_price("AAAUSDT", "101")
    await eventually(lambda: r.sink.circuit_open, what="the circuit opens")
    text = _sink_exposition(r.sink)
    assert 'mmframe_sink_circuit_open{sink="match-engine"} 1.0' in text
    assert 'mmframe_sink_degraded{sink="match-engine"} 1.0' in text
    assert 'mmframe_sink_operations_total{kind="breaker_opened",sink="match-engine"} 1.0' in text


def test_the_sink_bounds_its_request_time_for_a_clusters_lease_margin() -> None:
    """``BoundsRequestTime``: one attempt's timeout, which a cluster keeps as the margin before a lease can expire."""
    from mmframe.protocols import BoundsRequestTime

    sink = MatchEngineSink(MatchEngineSink.Config(endpoint="http://127.0.0.1:9", timeout=2.0))
    assert isinstance(sink, BoundsRequestTime)
    assert sink.request_timeout == 3.0  # one attempt, connecting included


async def test_a_closed_gate_stops_queued_places_retries_and_cancels(nursery: trio.Nursery) -> None:
    """``GatesRequests``: the sink asks a market's gate before every attempt, so a batch waiting out a 429 is not
    sent again once the market may not send (a cluster's lease ended meanwhile), nor is a cancel."""
    from mmframe import OrderEvent, OrderRequest, OrderType
    from mmframe.protocols import GatesRequests

    engine = Engine()
    binds = await nursery.start(_server, engine, 0, trio.CancelScope())
    sink = MatchEngineSink(MatchEngineSink.Config(endpoint=binds[0], timeout=2.0, backoff=0.02, max_backoff=0.2))
    await nursery.start(sink.run)
    assert isinstance(sink, GatesRequests)
    allowed = {"open": True}
    sink.set_gate("t-AAAUSDT1-x.", lambda: allowed["open"])
    events: list[OrderEvent] = []
    sink.subscribe("AAA/USDT", "t-", events.append)

    def order(coid: str, price: str) -> OrderRequest:
        return OrderRequest(coid, "AAA/USDT", Side.BUY, OrderType.LIMIT, Decimal(price), Decimal("1"))

    # a batch that meets two 429s: the gate closes while it waits, so the retry is never sent
    engine.force_429_next = 2
    engine.retry_after = 0.5
    await sink.place([order("t-AAAUSDT1-x.1", "99")])
    await eventually(lambda: engine.requests, what="the first attempt")
    allowed["open"] = False
    await trio.sleep(1.5)
    assert len([path for _, path in engine.requests if path.endswith("/batch")]) == 1
    assert engine.open_orders("AAA/USDT", "t-") == []
    assert [(e.kind.value, e.reason) for e in events] == [("expired", "not sent: the market may not send now")]

    # placed while open, then the gate closes: neither a cancel nor a cancel-all under the prefix goes out
    allowed["open"] = True
    await sink.place([order("t-AAAUSDT1-x.2", "98")])
    await eventually(lambda: len(engine.open_orders("AAA/USDT", "t-")) == 1, what="the second order")
    allowed["open"] = False
    sent = len(engine.requests)
    await sink.cancel("AAA/USDT", ["t-AAAUSDT1-x.2"])
    assert await sink.cancel_all("AAA/USDT", "t-AAAUSDT1-x.") == 0
    await sink.place([order("t-AAAUSDT1-x.3", "97")])  # refused at once
    await trio.sleep(0.3)
    assert len(engine.requests) == sent
    assert [o.client_order_id for o in engine.open_orders("AAA/USDT", "t-")] == ["t-AAAUSDT1-x.2"]
    # an open gate on the market's whole prefix (a sweep under way) does not open what the run's own gate closed
    sink.set_gate("t-AAAUSDT1-", lambda: True)
    await sink.cancel("AAA/USDT", ["t-AAAUSDT1-x.2"])
    await sink.place([order("t-AAAUSDT1-x.4", "96")])
    await trio.sleep(0.3)
    assert len(engine.requests) == sent
    sink.set_gate("t-AAAUSDT1-", None)
    # another market's orders (no gate, or its own open gate) go as before
    await sink.place([order("t-BBBUSDT1-y.1", "97")])
    await eventually(lambda: len(engine.open_orders("AAA/USDT", "t-")) == 2, what="the ungated order")
    sink.set_gate("t-AAAUSDT1-x.", None)  # gate removed: the market's orders go again
    assert await sink.cancel_all("AAA/USDT", "t-") == 2
