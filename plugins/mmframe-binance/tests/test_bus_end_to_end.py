"""End to end through the Redis bus, as an operator runs it: a FakeBinance on loopback, a ``mmframe feed publish``
process feeding a private ``redis-server``, and a ``mmframe serve`` process whose markets follow the bus.

Both processes follow the same prices; the Redis server is killed and started again in the middle of the run and
both recover on their own; a bad payload on the channel is rejected and counted by the serving side. Real
processes and real sockets: this test runs on the real clock, waiting for conditions with deadlines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trio
from mmframe_binance.testing import FakeBinance

from mmframe.testing import RedisServer, run_sql, seed_sql

# `mmframe serve` here runs the seed's markets, on the seed's strategy.
pytest.importorskip("mmframe_external_index_follow", reason="the seed's markets run external_index_follow")

PRICE_CHANNEL = "price:update:binance:BTCUSDT"


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except FileNotFoundError:
        if os.environ.get("MMFRAME_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server is required (MMFRAME_REQUIRE_SERVICES=1) but not installed")
        pytest.skip("redis-server is not installed")
    with server:
        yield server


def start(args: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "mmframe", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd)


async def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:  # noqa: ASYNC109
    """Poll *predicate* (state in other processes cannot wake us) until it returns something true."""
    deadline = trio.current_time() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if trio.current_time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await trio.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=15)


async def test_a_publisher_and_a_server_follow_binance_through_redis_and_survive_its_restart(
    tmp_path: Path, nursery: trio.Nursery, private_redis: RedisServer
) -> None:
    fake = FakeBinance()
    ws_url = await nursery.start(fake.serve)
    run_sql(f"sqlite:///{tmp_path / 'mm.sqlite'}", seed_sql())  # the seed's markets: BTCUSDT and ETHUSDT
    env = {**os.environ, "MARKET_REDIS_HOST": "127.0.0.1", "MARKET_REDIS_PORT": str(private_redis.port),
           "MMFRAME_API_TOKEN": "e2e-token"}
    env.pop("MMFRAME_FEED", None)
    publisher_log, server_log = tmp_path / "publish.log", tmp_path / "serve.log"
    publisher = start(["feed", "publish", "--exchange", "binance", "--symbols", "BTCUSDT,ETHUSDT", "--ws-url",
                       ws_url, "--report-interval", "1"], publisher_log, env, tmp_path)
    server = start(["serve", "--sqlite", str(tmp_path / "mm.sqlite"), "--api-port", "0", "--status-interval", "1"],
                   server_log, env, tmp_path)
    reader = redis.Redis(port=private_redis.port)
    try:
        listening = await wait_for(
            lambda: re.search(r"HTTP API server listening on (127\.0\.0\.1:\d+)", server_log.read_text()),
            "the server's API",
        )
        api = f"http://{listening.group(1)}"
        await wait_for(lambda: {"btcusdt@bookTicker", "ethusdt@bookTicker"} <= fake.subscriptions,
                       "the publisher's subscription on the fake Binance")
        # the server's markets subscribed to the bus (the publisher is the other side of the same channel)
        await wait_for(lambda: reader.pubsub_numsub(PRICE_CHANNEL)[0][1] >= 1, "the server's subscription")

        async with httpx.AsyncClient(base_url=api, timeout=5) as client:

            async def btc() -> dict[str, Any]:
                response = await client.get("/api/v1/strategy/status", params={"symbol": "BTC/USDT"})
                return response.json()["data"]

            async def follow(bid: str, ask: str, mid: str) -> dict[str, Any]:
                """Push the quote until the server quotes off its mid (messages sent while a side reconnects are
                lost, as pub/sub loses them, so keep sending as a live exchange would)."""
                deadline = trio.current_time() + 30
                while True:
                    await fake.book_ticker("BTCUSDT", bid, ask)
                    status = await btc()
                    if status["current_price"] == mid:
                        return status
                    assert trio.current_time() < deadline, f"the server never followed {mid}: {status}"
                    await trio.sleep(0.1)

            status = await follow("45000.00", "45001.00", "45000.50")
            assert status["status"] == "running" and status["feed"]["feed"] == "redis"
            assert status["feed"]["last_price"] == "45000.50" and status["feed"]["connected"] is True
            assert status["metrics"]["bids"] > 0 and status["metrics"]["asks"] > 0  # quoting off the bus price

            private_redis.restart()  # both processes lose their connection; neither is restarted

            status = await follow("45100.00", "45101.00", "45100.50")
            assert status["feed"]["reconnects"] >= 1 and status["feed"]["connected"] is True
            # 45100.50 can only have come from the publisher, through the restarted Redis: both recovered
            assert publisher.poll() is None and server.poll() is None

            rejected = status["feed"]["rejected"]
            reader.publish(PRICE_CHANNEL, "{this is not json")
            reader.publish(PRICE_CHANNEL, json.dumps({"symbol": "BTCUSDT", "price": "-1", "timestamp": time.time()}))

            async def counted() -> bool:
                return (await btc())["feed"]["rejected"] == rejected + 2

            deadline = trio.current_time() + 10
            while not await counted():
                assert trio.current_time() < deadline, "the bad payloads were not counted"
                await trio.sleep(0.05)
            assert (await btc())["current_price"] == "45100.50"  # and they changed nothing
            metrics = (await client.get("/metrics")).text
            assert re.search(r'mmframe_feed_rejected_total\{feed="redis",market="879_1",[^}]*\} [1-9]', metrics)
    finally:
        reader.close()
        codes = (stop(publisher), stop(server))
    assert codes == (0, 0), (publisher_log.read_text()[-2000:], server_log.read_text()[-2000:])
    assert "Open orders left on the paper book: BTC/USDT 0, ETH/USDT 0" in server_log.read_text()
