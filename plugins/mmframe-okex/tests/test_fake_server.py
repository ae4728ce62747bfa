"""FakeOkx answers a plain WebSocket client the way OKX documents."""

from __future__ import annotations

import json
from typing import Any

import trio
from mmframe_okex.testing import FakeOkx
from trio_websocket import ConnectionRejected, open_websocket_url


async def test_the_fake_answers_like_okx(nursery: trio.Nursery, clock: Any) -> None:
    server = FakeOkx(instruments={"BTC-USDT"})
    url = await nursery.start(server.serve)
    async with open_websocket_url(url) as ws:
        await ws.send_message("ping")
        pong = await ws.get_message()
        await ws.send_message(json.dumps({"op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"},
                                                                      {"channel": "tickers", "instId": "NO-SUCH"}]}))
        ok, unknown = json.loads(await ws.get_message()), json.loads(await ws.get_message())
        await ws.send_message(json.dumps({"op": "subscribe", "argss": []}))
        invalid = json.loads(await ws.get_message())
        sent = await server.ticker("BTC-USDT", "30000", bid="29999", ask="30001")
        ticker = json.loads(await ws.get_message())
        await ws.send_message(json.dumps({"op": "unsubscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}]}))
        unsubscribed = json.loads(await ws.get_message())

    assert pong == "pong" and server.pings_received == 1
    assert ok == {"event": "subscribe", "arg": {"channel": "tickers", "instId": "BTC-USDT"}, "connId": ok["connId"]}
    assert (unknown["event"], unknown["code"]) == ("error", "60018") and "instId:NO-SUCH" in unknown["msg"]
    assert (invalid["event"], invalid["code"]) == ("error", "60012") and invalid["msg"].startswith("Invalid request:")
    assert sent == 1
    assert ticker["arg"] == {"channel": "tickers", "instId": "BTC-USDT"}
    assert (ticker["data"][0]["last"], ticker["data"][0]["bidPx"], ticker["data"][0]["askPx"]) == (
        "30000", "29999", "30001")
    assert unsubscribed["event"] == "unsubscribe"
    assert server.subscriptions == set()
    assert len(server.ops("subscribe")) == 1 and len(server.ops("unsubscribe")) == 1  # the invalid one is not an op


async def test_the_fake_serves_only_the_public_path_and_can_refuse(nursery: trio.Nursery, clock: Any) -> None:
    server = FakeOkx()
    url = await nursery.start(server.serve)
    statuses = []
    for target in (url.replace("/ws/v5/public", "/ws/v5/private"), url):
        server.refuse = target == url
        try:
            async with open_websocket_url(target):
                pass
        except ConnectionRejected as exc:
            statuses.append(exc.status_code)

    assert statuses == [404, 503]
    assert server.connections_accepted == 0
