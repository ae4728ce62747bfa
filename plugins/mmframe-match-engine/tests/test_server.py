"""The reference match engine against the contract (docs/match-engine-api.md): a real hypercorn on a free port,
real httpx, no mocks. Timing-dependent parts without sockets (the simulated taker flow) run on trio's MockClock."""

from __future__ import annotations

import gc
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import attrs
import click
import httpx
import pytest
import trio
from click.testing import CliRunner
from mmframe_match_engine.server import Engine, serve_engine, stream_line
from mmframe_match_engine.wire import (
    WireError,
    WireOrder,
    decimal_from_wire,
    decimal_to_wire,
    error_body,
    event_from_wire,
    event_to_wire,
    json_dumps,
    json_loads,
    request_from_wire,
    request_to_wire,
)

from mmframe import Fill, Liquidity, OrderEvent, OrderEventKind, OrderRequest, OrderStatus, OrderType, Side
from mmframe.testing import load_plugins

BTC = "BTC/USDT"


@attrs.define
class Served:
    engine: Engine
    client: httpx.AsyncClient
    url: str

    async def place(self, *orders: dict[str, Any]) -> httpx.Response:
        return await self.client.post("/api/v1/orders/batch", json={"orders": list(orders)})


@asynccontextmanager
async def served(engine: Engine | None = None, port: int = 0) -> AsyncIterator[Served]:
    engine = engine if engine is not None else Engine(seed=1)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_engine, engine, "127.0.0.1", port)
        async with httpx.AsyncClient(base_url=binds[0], timeout=5) as client:
            yield Served(engine, client, binds[0])
        nursery.cancel_scope.cancel()


def order(
    coid: str,
    side: str,
    price: str | None,
    quantity: str,
    *,
    type: str = "limit",
    tif: str | None = None,
    post_only: bool = False,
    account: str | None = None,
    symbol: str = BTC,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "client_order_id": coid,
        "symbol": symbol,
        "side": side,
        "type": type,
        "time_in_force": tif if tif is not None else ("ioc" if type == "market" else "gtc"),
        "post_only": post_only,
        "price": price,
        "quantity": quantity,
    }
    if account is not None:
        out["account"] = account
    return out


class Lines:
    """The NDJSON lines of an open stream response."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self, *, heartbeats: bool = False, seconds: float = 3) -> dict[str, Any]:
        with trio.fail_after(seconds):
            while True:
                line = json.loads(await self._lines.__anext__())
                if heartbeats or line["type"] != "heartbeat":
                    return line  # type: ignore[no-any-return]

    async def take(self, n: int) -> list[dict[str, Any]]:
        return [await self.next() for _ in range(n)]


async def until(condition: Callable[[], bool], seconds: float = 2) -> None:
    """Poll *condition* (state of the server, which has no event to wait on) until it holds."""
    with trio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.01)


def kinds(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(line["event"]["kind"], line["event"]["client_order_id"]) for line in lines]


# ---------------------------------------------------------------------------------------------------------------
# Endpoints in the contract's shapes
# ---------------------------------------------------------------------------------------------------------------


async def test_health_and_an_empty_depth() -> None:
    async with served() as s:
        health = (await s.client.get("/health")).json()
        assert health == {"status": "ok", "epoch": s.engine.epoch, "sequence": 0}
        assert len(s.engine.epoch) == 16 and int(s.engine.epoch, 16) >= 0
        depth = await s.client.get("/api/v1/depth", params={"symbol": BTC})
        assert depth.json() == {"symbol": BTC, "sequence": 0, "bids": [], "asks": []}
        assert BTC not in s.engine.books  # reading makes no book


async def test_place_returns_the_contract_shape() -> None:
    async with served() as s:
        body = {
            "orders": [
                {
                    "client_order_id": "mmf-BTCUSDT1-k3x9",
                    "account": "mmframe",
                    "symbol": BTC,
                    "side": "buy",
                    "type": "limit",
                    "time_in_force": "gtc",
                    "post_only": False,
                    "price": "59990.00",
                    "quantity": "0.0100",
                }
            ]
        }
        response = await s.client.post("/api/v1/orders/batch", json=body)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "results": [
                {
                    "client_order_id": "mmf-BTCUSDT1-k3x9",
                    "result": "accepted",
                    "reason": "",
                    "order": {
                        "client_order_id": "mmf-BTCUSDT1-k3x9",
                        "account": "mmframe",
                        "order_id": "1",
                        "symbol": BTC,
                        "side": "buy",
                        "type": "limit",
                        "time_in_force": "gtc",
                        "post_only": False,
                        "price": "59990.00",
                        "quantity": "0.0100",
                        "filled_quantity": "0",
                        "filled_notional": "0",
                        "status": "open",
                        "reason": "",
                        "amends": 0,
                    },
                }
            ]
        }


async def test_order_types_map_onto_type_time_in_force_and_post_only() -> None:
    async with served() as s:
        await s.place(order("mm-ask", "sell", "101", "1", account="mm"))
        response = await s.place(
            order("a-ioc", "buy", "101", "0.25", tif="ioc"),
            order("a-post", "buy", "99", "1", post_only=True),
            order("a-post-cross", "buy", "101", "1", post_only=True),
            order("a-mkt", "buy", None, "2", type="market"),
        )
        results = {r["client_order_id"]: r for r in response.json()["results"]}
        ioc = results["a-ioc"]["order"]
        shape = ("type", "time_in_force", "post_only", "status")
        assert [ioc[k] for k in shape] == ["limit", "ioc", False, "filled"]
        post = results["a-post"]["order"]
        assert [post[k] for k in shape] == ["limit", "gtc", True, "open"]
        assert results["a-post-cross"]["result"] == "rejected"
        assert results["a-post-cross"]["reason"] == "post-only order would cross the book"
        assert results["a-post-cross"]["order"]["status"] == "rejected"
        mkt = results["a-mkt"]["order"]
        assert (mkt["type"], mkt["time_in_force"], mkt["price"]) == ("market", "ioc", None)
        assert (mkt["status"], mkt["filled_quantity"], mkt["filled_notional"]) == ("expired", "0.75", "75.75")
        assert mkt["reason"] == "market order: no more liquidity in the book"


async def test_the_same_batch_twice_places_one_order() -> None:
    async with served() as s:
        batch = [order("mmf-1", "buy", "100", "1"), order("mmf-2", "sell", "110", "1")]
        first = await s.place(*batch)
        second = await s.place(*batch)
        assert [r["result"] for r in first.json()["results"]] == ["accepted", "accepted"]
        assert [r["result"] for r in second.json()["results"]] == ["duplicate", "duplicate"]
        assert second.json()["results"][0]["order"] == first.json()["results"][0]["order"]
        assert len(s.engine.books[BTC]) == 2
        # unique per engine, not per symbol
        other = await s.place(order("mmf-1", "buy", "100", "1", symbol="ETH/USDT"))
        result = other.json()["results"][0]
        assert result["result"] == "duplicate" and result["order"]["symbol"] == BTC
        assert "ETH/USDT" not in s.engine.books or len(s.engine.books["ETH/USDT"]) == 0


async def test_self_trade_prevention_per_account() -> None:
    async with served() as s:
        await s.place(order("x-1", "sell", "100", "1", account="alice"))
        # another account trades
        bob = (await s.place(order("x-2", "buy", "100", "0.4", account="bob"))).json()["results"][0]["order"]
        assert (bob["status"], bob["filled_quantity"], bob["filled_notional"]) == ("filled", "0.4", "40.0")
        # the same account never trades with itself: the incoming order's remainder expires
        alice = (await s.place(order("x-3", "buy", "100", "1", account="alice"))).json()["results"][0]["order"]
        assert (alice["status"], alice["filled_quantity"], alice["reason"]) == ("expired", "0", "self-trade prevention")
        # the account defaults to the client id's part before the first "-"
        carol = (await s.place(order("alice-9", "buy", "100", "1"))).json()["results"][0]["order"]
        assert carol["account"] == "alice" and carol["reason"] == "self-trade prevention"
        params = {"symbol": BTC, "account": "alice"}
        open_ = (await s.client.get("/api/v1/orders/open", params=params)).json()["orders"]
        assert [(o["client_order_id"], o["filled_quantity"], o["status"]) for o in open_] == [
            ("x-1", "0.4", "partially_filled")
        ]


async def test_cancel_cancel_all_open_query_and_depth() -> None:
    async with served() as s:
        await s.place(
            order("mmf-A-1", "buy", "99", "1"),
            order("mmf-A-2", "buy", "99", "2"),
            order("mmf-A-3", "buy", "98", "1"),
            order("mmf-B-1", "sell", "101", "1.5"),
            order("mmf-B-2", "sell", "102", "1"),
            order("mmf-B-3", "sell", "102", "0.5"),
        )
        depth = (await s.client.get("/api/v1/depth", params={"symbol": BTC, "limit": "2"})).json()
        assert depth == {
            "symbol": BTC,
            "sequence": 6,
            "bids": [["99", "3"], ["98", "1"]],
            "asks": [["101", "1.5"], ["102", "1.5"]],
        }
        # a taker fills mmf-B-1 completely
        await s.place(order("t-1", "buy", "101", "1.5", tif="ioc"))

        cancel = await s.client.post(
            "/api/v1/orders/cancel", json={"symbol": BTC, "client_order_ids": ["mmf-A-1", "mmf-B-1", "nope"]}
        )
        results = cancel.json()["results"]
        assert [(r["client_order_id"], r["result"]) for r in results] == [
            ("mmf-A-1", "cancelled"),
            ("mmf-B-1", "not_open"),
            ("nope", "unknown"),
        ]
        assert results[0]["order"]["status"] == "cancelled" and results[0]["order"]["reason"] == "cancelled"
        assert results[1]["order"]["status"] == "filled"
        assert results[2]["order"] is None
        again = await s.client.post("/api/v1/orders/cancel", json={"symbol": BTC, "client_order_ids": ["mmf-A-1"]})
        assert again.json()["results"][0]["result"] == "not_open"  # idempotent

        open_a = await s.client.get("/api/v1/orders/open", params={"symbol": BTC, "prefix": "mmf-A-"})
        assert [o["client_order_id"] for o in open_a.json()["orders"]] == ["mmf-A-2", "mmf-A-3"]
        open_all = await s.client.get("/api/v1/orders/open", params={"symbol": BTC, "account": "mmf"})
        assert [o["client_order_id"] for o in open_all.json()["orders"]] == ["mmf-A-2", "mmf-A-3", "mmf-B-2", "mmf-B-3"]

        cancel_all = await s.client.post("/api/v1/orders/cancel-all", json={"symbol": BTC, "prefix": "mmf-B-"})
        assert cancel_all.json() == {"cancelled": ["mmf-B-2", "mmf-B-3"]}

        query = await s.client.post(
            "/api/v1/orders/query",
            json={"symbol": BTC, "client_order_ids": ["mmf-B-1", "mmf-A-1", "mmf-B-3", "mmf-A-2", "ghost"]},
        )
        orders = query.json()["orders"]
        assert [None if o is None else o["status"] for o in orders] == [
            "filled",
            "cancelled",
            "cancelled",
            "open",
            None,
        ]
        assert orders[0]["filled_quantity"] == "1.5" and orders[0]["filled_notional"] == "151.5"

        rest = await s.client.post("/api/v1/orders/cancel-all", json={"symbol": BTC, "account": "mmf"})
        assert rest.json() == {"cancelled": ["mmf-A-2", "mmf-A-3"]}
        nothing = await s.client.post("/api/v1/orders/cancel-all", json={"symbol": "NO/BOOK", "account": "mmf"})
        assert nothing.json() == {"cancelled": []}


# ---------------------------------------------------------------------------------------------------------------
# Accounts: client order ids are scoped per account; every request acts on its own account's orders only
# ---------------------------------------------------------------------------------------------------------------


async def _squatted(s: Served) -> None:
    """"evil" holds mmf-A-1 (a sell at 500) and mmf-A-2, ids of "our" prefix; "mmframe" (us) holds mmf-A-1 (a bid
    at 99) and mmf-A-3."""
    squat = await s.place(order("mmf-A-1", "sell", "500", "1", account="evil"),
                          order("mmf-A-2", "sell", "501", "1", account="evil"))
    assert [r["result"] for r in squat.json()["results"]] == ["accepted", "accepted"]
    ours = await s.place(order("mmf-A-1", "buy", "99", "1", account="mmframe"),
                         order("mmf-A-3", "buy", "98", "1", account="mmframe"))
    assert [r["result"] for r in ours.json()["results"]] == ["accepted", "accepted"]


def _open_ids(s: Served, account: str) -> list[str]:
    return [o.client_order_id for o in s.engine.open_orders(BTC, account=account)]


async def test_a_client_order_id_is_per_account() -> None:
    async with served() as s:
        squat = (await s.place(order("mmf-A-1", "sell", "500", "1", account="evil"))).json()["results"][0]
        assert squat["result"] == "accepted" and squat["order"]["account"] == "evil"
        # the same id for another account is another order, not a duplicate of the squatter's
        ours = (await s.place(order("mmf-A-1", "buy", "99", "1", account="mmframe"))).json()["results"][0]
        assert ours["result"] == "accepted"
        assert (ours["order"]["account"], ours["order"]["side"], ours["order"]["price"]) == ("mmframe", "buy", "99")
        assert ours["order"]["order_id"] != squat["order"]["order_id"]
        # idempotency is per (account, client id): each account's retry finds its own order
        again = (await s.place(order("mmf-A-1", "buy", "99", "1", account="mmframe"))).json()["results"][0]
        assert again["result"] == "duplicate" and again["order"] == ours["order"]
        theirs = (await s.place(order("mmf-A-1", "sell", "500", "1", account="evil"))).json()["results"][0]
        assert theirs["result"] == "duplicate" and theirs["order"]["account"] == "evil"
        # unique per account across symbols, as before
        eth = (await s.place(order("mmf-A-1", "buy", "5", "1", account="mmframe", symbol="ETH/USDT"))).json()
        assert eth["results"][0]["result"] == "duplicate" and eth["results"][0]["order"]["symbol"] == BTC
        assert sorted((o.account, o.price) for o in s.engine.open_orders(BTC)) == [
            ("evil", Decimal("500")), ("mmframe", Decimal("99"))
        ]  # fmt: skip
        depth = (await s.client.get("/api/v1/depth", params={"symbol": BTC})).json()
        assert (depth["bids"], depth["asks"]) == ([["99", "1"]], [["500", "1"]])


async def test_cancel_acts_on_the_callers_account_only() -> None:
    async with served() as s:
        await _squatted(s)
        body = {"symbol": BTC, "account": "mmframe", "client_order_ids": ["mmf-A-1", "mmf-A-2"]}
        results = (await s.client.post("/api/v1/orders/cancel", json=body)).json()["results"]
        assert [(r["client_order_id"], r["result"]) for r in results] == [("mmf-A-1", "cancelled"),
                                                                           ("mmf-A-2", "unknown")]
        assert results[0]["order"]["account"] == "mmframe" and results[0]["order"]["price"] == "99"
        assert _open_ids(s, "evil") == ["mmf-A-1", "mmf-A-2"]  # the squatter's orders are untouched
        assert _open_ids(s, "mmframe") == ["mmf-A-3"]
        # without an account, each id acts for its default account ("mmf"), which holds none of these
        body = {"symbol": BTC, "client_order_ids": ["mmf-A-2", "mmf-A-3"]}
        results = (await s.client.post("/api/v1/orders/cancel", json=body)).json()["results"]
        assert [r["result"] for r in results] == ["unknown", "unknown"]
        assert _open_ids(s, "evil") == ["mmf-A-1", "mmf-A-2"] and _open_ids(s, "mmframe") == ["mmf-A-3"]
        bad = await s.client.post("/api/v1/orders/cancel", json={**body, "account": "a b"})
        assert bad.status_code == 400 and "account" in bad.json()["error"]["message"]


async def test_cancel_all_acts_on_the_callers_account_only() -> None:
    async with served() as s:
        await _squatted(s)
        body = {"symbol": BTC, "account": "mmframe", "prefix": "mmf-A-"}
        cancelled = (await s.client.post("/api/v1/orders/cancel-all", json=body)).json()
        assert cancelled == {"cancelled": ["mmf-A-1", "mmf-A-3"]}
        assert _open_ids(s, "evil") == ["mmf-A-1", "mmf-A-2"] and _open_ids(s, "mmframe") == []
        # without an account, the prefix names it (its part before the first "-"): "mmf" has nothing here
        none = await s.client.post("/api/v1/orders/cancel-all", json={"symbol": BTC, "prefix": "mmf-A-"})
        assert none.json() == {"cancelled": []} and _open_ids(s, "evil") == ["mmf-A-1", "mmf-A-2"]
        # ... and a request that names no account at all is refused, not executed for everybody
        for nameless in ({"symbol": BTC}, {"symbol": BTC, "prefix": "mmf"}):
            refused = await s.client.post("/api/v1/orders/cancel-all", json=nameless)
            assert refused.status_code == 400 and "account" in refused.json()["error"]["message"]
        assert _open_ids(s, "evil") == ["mmf-A-1", "mmf-A-2"]
        body = {"symbol": BTC, "account": "evil"}
        assert (await s.client.post("/api/v1/orders/cancel-all", json=body)).json() == {
            "cancelled": ["mmf-A-1", "mmf-A-2"]
        }


async def test_open_orders_list_the_callers_account_only() -> None:
    async with served() as s:
        await _squatted(s)

        async def open_(**params: str) -> Any:
            return await s.client.get("/api/v1/orders/open", params={"symbol": BTC, **params})

        ours = (await open_(account="mmframe", prefix="mmf-A-")).json()["orders"]
        assert [(o["client_order_id"], o["account"], o["price"]) for o in ours] == [
            ("mmf-A-1", "mmframe", "99"), ("mmf-A-3", "mmframe", "98")
        ]  # fmt: skip
        theirs = (await open_(account="evil")).json()["orders"]
        assert [(o["client_order_id"], o["price"]) for o in theirs] == [("mmf-A-1", "500"), ("mmf-A-2", "501")]
        assert (await open_(prefix="mmf-A-")).json()["orders"] == []  # the prefix's account "mmf" has none
        for nameless in ({}, {"prefix": "mmf"}):
            refused = await open_(**nameless)
            assert refused.status_code == 400 and "account" in refused.json()["error"]["message"]


async def test_query_answers_for_the_callers_account_only() -> None:
    async with served() as s:
        await _squatted(s)

        async def query(**extra: str) -> list[Any]:
            body = {"symbol": BTC, "client_order_ids": ["mmf-A-1", "mmf-A-2", "mmf-A-3"], **extra}
            return (await s.client.post("/api/v1/orders/query", json=body)).json()["orders"]  # type: ignore[no-any-return]

        ours = await query(account="mmframe")
        assert [None if o is None else (o["account"], o["price"]) for o in ours] == [
            ("mmframe", "99"), None, ("mmframe", "98")
        ]  # fmt: skip
        theirs = await query(account="evil")
        assert [None if o is None else (o["account"], o["price"]) for o in theirs] == [
            ("evil", "500"), ("evil", "501"), None
        ]  # fmt: skip
        assert await query() == [None, None, None]  # the ids' default account "mmf" has none of them


async def test_the_stream_names_each_events_account_and_filters_by_it() -> None:
    engine = Engine()
    engine.heartbeat_interval = 0.1
    async with served(engine) as s:
        async with s.client.stream("GET", "/api/v1/stream") as every, \
                s.client.stream("GET", "/api/v1/stream", params={"account": "mmframe"}) as mine:
            all_lines, my_lines = Lines(every), Lines(mine)
            await all_lines.next()
            await my_lines.next()
            await _squatted(s)
            # a third account trades with the squatter's mmf-A-1: its fill is the squatter's, not ours
            await s.place(order("tk-1", "buy", "500", "1", tif="ioc", account="tk"))
            seen = await all_lines.take(7)
            assert [(line["event"]["kind"], line["event"]["client_order_id"], line["event"]["account"])
                    for line in seen] == [
                ("accepted", "mmf-A-1", "evil"), ("accepted", "mmf-A-2", "evil"),
                ("accepted", "mmf-A-1", "mmframe"), ("accepted", "mmf-A-3", "mmframe"),
                ("accepted", "tk-1", "tk"), ("filled", "tk-1", "tk"), ("filled", "mmf-A-1", "evil"),
            ]  # fmt: skip
            assert seen[-1]["event"]["fill"]["price"] == "500"
            mine_now = await my_lines.take(2)
            assert [(line["seq"], line["event"]["account"]) for line in mine_now] == [(3, "mmframe"), (4, "mmframe")]
            # nothing else for us; the heartbeat then says every event up to the engine's is accounted for
            beat = await my_lines.next(heartbeats=True)
            assert beat == {"type": "heartbeat", "sequence": 7}
        # a resumed stream replays our account's events only
        params = {"account": "mmframe", "since": "0", "epoch": engine.epoch}
        async with s.client.stream("GET", "/api/v1/stream", params=params) as response:
            lines = Lines(response)
            assert (await lines.next())["resumed"] is True
            replayed = await lines.take(2)
            assert [line["event"]["account"] for line in replayed] == ["mmframe", "mmframe"]
            assert await lines.next(heartbeats=True) == {"type": "heartbeat", "sequence": 7}
        bad = await s.client.get("/api/v1/stream", params={"account": "no/slash"})
        assert bad.status_code == 400 and "account" in bad.json()["error"]["message"]


# ---------------------------------------------------------------------------------------------------------------
# The event stream
# ---------------------------------------------------------------------------------------------------------------


async def test_stream_events_in_causal_order() -> None:
    async with served() as s, s.client.stream("GET", "/api/v1/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = Lines(response)
        hello = await lines.next()
        assert hello == {"type": "hello", "epoch": s.engine.epoch, "sequence": 0, "resumed": False}
        await s.place(order("mk-1", "sell", "100", "1"), order("mk-2", "sell", "101", "1"))
        await s.place(order("tk-1", "buy", "101", "2.5", tif="ioc"))
        await s.client.post("/api/v1/orders/cancel", json={"symbol": BTC, "client_order_ids": ["mk-1", "mk-2"]})
        events = await lines.take(8)
        assert [line["seq"] for line in events] == list(range(1, 9))
        assert {line["epoch"] for line in events} == {s.engine.epoch}
        assert {line["type"] for line in events} == {"order"}
        assert kinds(events) == [
            ("accepted", "mk-1"),
            ("accepted", "mk-2"),
            ("accepted", "tk-1"),
            ("partially_filled", "tk-1"),  # the taker's fill first,
            ("filled", "mk-1"),  # then the maker's
            ("partially_filled", "tk-1"),
            ("filled", "mk-2"),
            ("expired", "tk-1"),
        ]
        taker_fill = events[3]["event"]
        assert taker_fill == {
            "kind": "partially_filled",
            "client_order_id": "tk-1",
            "account": "tk",
            "order_id": "3",
            "symbol": BTC,
            "side": "buy",
            "status": "partially_filled",
            "filled_quantity": "1",
            "reason": "",
            "timestamp": taker_fill["timestamp"],
            "fill": {"trade_id": "1", "price": "100", "quantity": "1", "liquidity": "taker"},
        }
        assert isinstance(taker_fill["timestamp"], float)
        assert events[4]["event"]["fill"] == {"trade_id": "1", "price": "100", "quantity": "1", "liquidity": "maker"}
        assert events[2]["event"]["status"] == "open" and "fill" not in events[2]["event"]
        assert events[7]["event"]["status"] == "expired" and events[7]["event"]["filled_quantity"] == "2"
        assert events[7]["event"]["reason"] == "immediate-or-cancel: no more liquidity at the limit price"
        # cancelling filled orders produces nothing; a rejected order produces no event either
        await s.place(order("mk-3", "sell", "105", "1"), order("mk-4", "buy", "106", "1", post_only=True))
        await s.client.post("/api/v1/orders/cancel", json={"symbol": BTC, "client_order_ids": ["mk-3"]})
        tail = await lines.take(2)
        assert kinds(tail) == [("accepted", "mk-3"), ("cancelled", "mk-3")]
        assert tail[1]["seq"] == 10 and tail[1]["event"]["status"] == "cancelled"


async def test_heartbeats_carry_the_latest_sequence() -> None:
    engine = Engine()
    engine.heartbeat_interval = 0.1
    async with served(engine) as s:
        await s.place(order("a-1", "buy", "1", "1"))
        async with s.client.stream("GET", "/api/v1/stream") as response:
            lines = Lines(response)
            assert (await lines.next(heartbeats=True))["type"] == "hello"
            start = trio.current_time()
            beats = [await lines.next(heartbeats=True, seconds=1) for _ in range(3)]
            assert beats == [{"type": "heartbeat", "sequence": 1}] * 3
            assert trio.current_time() - start < 1.0
            await s.place(order("a-2", "buy", "1", "1"))
            assert (await lines.next())["seq"] == 2
            assert await lines.next(heartbeats=True) == {"type": "heartbeat", "sequence": 2}


async def test_the_default_heartbeat_is_at_most_a_second() -> None:
    assert 0 < Engine().heartbeat_interval <= 1
    with pytest.raises(ValueError, match="heartbeat_interval"):
        Engine(heartbeat_interval=2)


async def test_resume_with_since_replays_within_one_epoch() -> None:
    engine = Engine(replay_size=3)
    async with served(engine) as s:
        await s.place(*(order(f"a-{i}", "buy", "1", "1") for i in range(1, 6)))  # seq 1..5; the buffer keeps 3..5

        async def hello_and_next(params: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            async with s.client.stream("GET", "/api/v1/stream", params=params) as response:
                lines = Lines(response)
                hello = await lines.next()
                live = f"live-{len(s.engine.requests)}"
                await s.place(order(live, "buy", "1", "1"))
                replayed = []
                while True:
                    line = await lines.next()
                    replayed.append(line)
                    if line["event"]["client_order_id"] == live:
                        return hello, replayed

        hello, lines = await hello_and_next({"since": "3", "epoch": engine.epoch})
        assert hello == {"type": "hello", "epoch": engine.epoch, "sequence": 5, "resumed": True}
        assert [line["seq"] for line in lines] == [4, 5, 6]
        assert kinds(lines)[:2] == [("accepted", "a-4"), ("accepted", "a-5")]

        # the buffer now holds 4..6: since=3 is the oldest it can resume from
        hello, lines = await hello_and_next({"since": "3"})
        assert hello["resumed"] is True and [line["seq"] for line in lines] == [4, 5, 6, 7]

        hello, lines = await hello_and_next({"since": "7"})  # up to date: nothing to replay
        assert hello["resumed"] is True and [line["seq"] for line in lines] == [8]

        hello, lines = await hello_and_next({"since": "4"})  # older than the buffer (6..8)
        assert hello["resumed"] is False and [line["seq"] for line in lines] == [9]

        hello, lines = await hello_and_next({"since": "8", "epoch": "0123456789abcdef"})  # another engine run
        assert hello["resumed"] is False and [line["seq"] for line in lines] == [10]

        hello, lines = await hello_and_next({"since": "999"})  # ahead of this run: from another one
        assert hello["resumed"] is False and [line["seq"] for line in lines] == [11]

        bad = await s.client.get("/api/v1/stream", params={"since": "-1"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
        assert "since" in bad.json()["error"]["message"]


async def test_a_stream_ends_when_the_client_goes_away() -> None:
    async with served() as s:
        async with s.client.stream("GET", "/api/v1/stream") as response:
            await Lines(response).next()
            assert s.engine.subscriber_count == 1
        await until(lambda: s.engine.subscriber_count == 0)


def _bid(coid: str) -> tuple[OrderRequest, str]:
    return OrderRequest(coid, BTC, Side.BUY, OrderType.LIMIT, Decimal(1), Decimal(1)), "a"


def test_a_slow_subscriber_is_dropped_not_waited_for() -> None:
    engine = Engine(subscriber_buffer=3)
    fast = engine.subscribe()
    slow = engine.subscribe()
    engine.place([_bid("a-1")])
    fast.receive.receive_nowait()
    engine.place([_bid("a-2"), _bid("a-3")])
    assert engine.subscriber_count == 2
    engine.place([_bid("a-4")])
    assert engine.subscriber_count == 1  # the slow one: 4 events, room for 3
    assert [stream_line(slow.receive.receive_nowait())["seq"] for _ in range(3)] == [1, 2, 3]
    with pytest.raises(trio.EndOfChannel):
        slow.receive.receive_nowait()
    assert [stream_line(fast.receive.receive_nowait())["seq"] for _ in range(3)] == [2, 3, 4]
    engine.unsubscribe(fast)
    assert engine.subscriber_count == 0


def _script() -> list[tuple[str, Any]]:
    """Places and cancels that produce every kind of result: accepted (resting, filled, expired), rejected (post
    only, an id used on another symbol), duplicate, cancelled, not_open, unknown."""

    def req(coid: str, side: Side, price: str | None, quantity: str, type: OrderType = OrderType.LIMIT,
            symbol: str = BTC) -> OrderRequest:
        return OrderRequest(coid, symbol, side, type, Decimal(quantity), None if price is None else Decimal(price))

    return [
        ("place", [(req("mm-1", Side.SELL, "100.50", "2"), "mm"), (req("mm-2", Side.BUY, "99", "1E+1"), "mm")]),
        ("place", [(req("tk-1", Side.BUY, "101", "0.5", OrderType.IOC), "tk")]),  # a partial fill of mm-1
        ("place", [(req("tk-2", Side.BUY, None, "5", OrderType.MARKET), "tk")]),  # fills mm-1, the rest expires
        ("place", [(req("mm-3", Side.BUY, "99.5", "1", OrderType.POST_ONLY), "mm"),
                   (req("mm-4", Side.SELL, "98", "1", OrderType.POST_ONLY), "mm")]),  # the second would cross
        ("place", [(req("mm-3", Side.BUY, "99.5", "1"), "mm")]),  # duplicate
        ("place", [(req("mm-3", Side.BUY, "5", "1", symbol="ETH/USDT"), "mm")]),  # used on BTC: duplicate
        ("place", [(req("mm-9", Side.SELL, "0.00000001", "1", symbol="ETH/USDT"), "mm")]),
        ("place", [(req("mm-9", Side.SELL, "200", "1"), "mm")]),  # used on ETH, not there any more: rejected
        ("cancel", (BTC, ["mm-3", "mm-1", "nobody-1", "mm-3"], None)),  # cancelled, not_open, unknown, not_open
        ("cancel", ("ETH/USDT", ["mm-9"], "tk")),  # another account's id: unknown
    ]


def test_the_http_answers_say_what_the_result_objects_say() -> None:
    """``place_wire``/``cancel_wire`` (what the HTTP API answers, built straight from the book) are exactly the
    result objects' ``to_wire()``: two engines, the same script."""
    objects, wire = Engine(seed=1), Engine(seed=1)
    for what, args in _script():
        if what == "place":
            assert wire.place_wire(args) == [r.to_wire() for r in objects.place(args)]
        else:
            assert wire.cancel_wire(*args) == [r.to_wire() for r in objects.cancel(*args)]
    fresh = Engine()
    results = {r["result"] for what, args in _script() if what == "place" for r in fresh.place_wire(args)}
    assert results == {"accepted", "rejected", "duplicate"}
    cancels = {r["result"] for what, args in _script() if what == "cancel" for r in fresh.cancel_wire(*args)}
    assert cancels == {"cancelled", "not_open", "unknown"}
    replayed = [stream_line(line) for line in wire.replay]
    assert {line["event"]["kind"] for line in replayed} == {"accepted", "partially_filled", "filled", "expired",
                                                            "cancelled"}
    assert [line["seq"] for line in replayed] == list(range(1, wire.seq + 1))
    assert all(line["epoch"] == wire.epoch for line in replayed)


def test_the_replay_buffer_keeps_the_last_lines_in_order() -> None:
    engine = Engine(replay_size=3)
    subscription = engine.subscribe()
    engine.place([_bid(f"a-{i}") for i in range(1, 6)])  # seq 1..5; the buffer keeps 3..5
    live = [subscription.receive.receive_nowait() for _ in range(5)]
    assert engine.replay == live[2:]
    assert [seq for seq, _, _ in engine.replay] == [3, 4, 5]
    assert [stream_line(line)["event"]["client_order_id"] for line in engine.replay] == ["a-3", "a-4", "a-5"]
    assert all(line[1] == "a" and line[2].endswith(b"\n") and line[2].count(b"\n") == 1 for line in live)
    assert engine.subscribe(since=3).replay == live[3:]
    assert engine.subscribe(since=3, account="b").replay == []  # another account's lines are not replayed
    assert engine.subscribe(since=2).replay == live[2:]
    assert engine.subscribe(since=1).hello["resumed"] is False  # line 2 is gone


def test_what_the_engine_remembers_gives_the_collector_nothing_to_walk() -> None:
    """Thousands of orders placed and cancelled: the replay buffer's lines and the client ids the engine remembers
    add no object the garbage collector tracks (the book here remembers no finished order: its memory is the
    book's business)."""
    engine = Engine(remember_finished=0)
    engine.place([_bid("a-0")])
    engine.cancel(BTC, ["a-0"], "a")
    gc.collect()
    before = len(gc.get_objects())
    for start in range(0, 3000, 100):
        engine.place([_bid(f"a-{i}") for i in range(start + 1, start + 101)])
        engine.cancel(BTC, [f"a-{i}" for i in range(start + 1, start + 101)], "a")
    gc.collect()
    assert len(engine.replay) == 6002 and engine.seq == 6002
    assert len(gc.get_objects()) - before < 100


def test_serving_freezes_start_up_and_sets_the_collectors_thresholds() -> None:
    import mmframe_match_engine

    thresholds = gc.get_threshold()
    try:
        mmframe_match_engine.tune_gc()
        assert gc.get_threshold() == mmframe_match_engine.GC_THRESHOLDS
        assert gc.get_freeze_count() > 1000  # the modules, the app: everything start-up built
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


# ---------------------------------------------------------------------------------------------------------------
# Trouble on purpose: rate limit, forced failures, late answers, restarts
# ---------------------------------------------------------------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after() -> None:
    engine = Engine(rate_limit=3)
    async with served(engine) as s:
        statuses = [(await s.client.get("/api/v1/depth", params={"symbol": BTC})).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = await s.place(order("a-1", "buy", "1", "1"))
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "1"
        assert limited.json()["error"]["code"] == "rate_limited"
        assert BTC not in engine.books
        assert (await s.client.get("/health")).status_code == 200  # not an API path
        await trio.sleep(1.05)  # the window slides
        assert (await s.place(order("a-1", "buy", "1", "1"))).status_code == 200
        assert [path for _, path in engine.requests].count("/api/v1/orders/batch") == 2


async def test_forced_429_says_when_to_retry() -> None:
    async with served() as s:
        s.engine.force_429_next = 1
        s.engine.retry_after = 0.25
        params = {"symbol": BTC, "account": "a"}
        assert (await s.client.get("/api/v1/orders/open", params=params)).status_code == 200  # not mutating
        limited = await s.place(order("a-1", "buy", "1", "1"))
        assert limited.status_code == 429 and limited.headers["retry-after"] == "0.25"
        assert limited.json() == error_body("rate_limited", "rate limited (forced)")
        assert BTC not in s.engine.books
        assert (await s.place(order("a-1", "buy", "1", "1"))).json()["results"][0]["result"] == "accepted"


async def test_fail_next_answers_503_without_executing() -> None:
    async with served() as s:
        await s.place(order("a-1", "buy", "1", "1"))
        s.engine.fail_next = 3
        assert (await s.client.get("/api/v1/depth", params={"symbol": BTC})).status_code == 200  # not mutating
        failed = [
            await s.place(order("a-2", "buy", "1", "1")),
            await s.client.post("/api/v1/orders/cancel", json={"symbol": BTC, "client_order_ids": ["a-1"]}),
            await s.client.post("/api/v1/orders/cancel-all", json={"symbol": BTC}),
        ]
        assert [r.status_code for r in failed] == [503, 503, 503]
        assert {r.json()["error"]["code"] for r in failed} == {"unavailable"}
        assert [o.client_order_id for o in s.engine.open_orders(BTC)] == ["a-1"]  # nothing executed
        assert s.engine.seq == 1
        again = await s.place(order("a-2", "buy", "1", "1"))
        assert again.status_code == 200 and again.json()["results"][0]["result"] == "accepted"


async def test_delay_after_execute_executes_before_answering() -> None:
    async with served() as s:
        s.engine.delay_after_execute = 3.0
        with pytest.raises(httpx.ReadTimeout):
            await s.client.post("/api/v1/orders/batch", json={"orders": [order("a-1", "buy", "1", "1")]}, timeout=1.0)
        # the order is on the book although the client never got the answer
        query = await s.client.post("/api/v1/orders/query", json={"symbol": BTC, "client_order_ids": ["a-1"]})
        assert query.json()["orders"][0] is not None and query.json()["orders"][0]["status"] == "open"
        s.engine.delay_after_execute = 0
        retry = await s.place(order("a-1", "buy", "1", "1"))
        assert retry.json()["results"][0]["result"] == "duplicate"
        assert len(s.engine.books[BTC]) == 1


async def test_a_restarted_server_on_the_same_port_keeps_the_engine_state() -> None:
    engine = Engine()
    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve_engine, engine, "127.0.0.1", 0)
            url = binds[0]
            port = int(url.rsplit(":", 1)[1])
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                await client.post("/api/v1/orders/batch", json={"orders": [order("a-1", "buy", "1", "1")]})
                stream_ended = trio.Event()

                async def follow() -> None:
                    try:
                        async with client.stream("GET", "/api/v1/stream") as response:
                            async for _ in response.aiter_lines():
                                pass
                    except httpx.HTTPError:
                        pass
                    stream_ended.set()

                outer.start_soon(follow)
                await until(lambda: engine.subscriber_count == 1)
                # the outage: the server goes away with a stream open
                nursery.cancel_scope.cancel()
                with trio.fail_after(2):
                    await stream_ended.wait()
        assert engine.subscriber_count == 0
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(base_url=url, timeout=1) as client:
                await client.get("/health")

        async with served(engine, port=port) as s:
            assert s.url == url
            assert (await s.client.get("/health")).json() == {"status": "ok", "epoch": engine.epoch, "sequence": 1}
            query = await s.client.post("/api/v1/orders/query", json={"symbol": BTC, "client_order_ids": ["a-1"]})
            assert query.json()["orders"][0]["status"] == "open"
            async with s.client.stream("GET", "/api/v1/stream", params={"since": 0, "epoch": engine.epoch}) as r:
                lines = Lines(r)
                assert (await lines.next())["resumed"] is True
                assert kinds([await lines.next()]) == [("accepted", "a-1")]


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------

GOOD = order("a-1", "buy", "100", "1")

BAD_REQUESTS: list[tuple[str, str, str, Any, int, str, str]] = [
    # (id, method, path, json body or raw bytes, status, code, message fragment)
    (
        "number-price",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [GOOD, {**GOOD, "price": 12.5}]},
        400,
        "bad_request",
        "orders[1].price: not a decimal string: 12.5",
    ),
    (
        "number-quantity",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{**GOOD, "quantity": 1}]},
        400,
        "bad_request",
        "orders[0].quantity: not a decimal string: 1",
    ),
    (
        "nan-quantity",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{**GOOD, "quantity": "NaN"}]},
        400,
        "bad_request",
        "orders[0].quantity: not a decimal string",
    ),
    (
        "zero-quantity",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{**GOOD, "quantity": "0"}]},
        400,
        "bad_request",
        "orders[0].quantity: must be positive",
    ),
    (
        "negative-price",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{**GOOD, "price": "-1"}]},
        400,
        "bad_request",
        "orders[0].price: must be positive",
    ),
    (
        "bad-side",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{**GOOD, "side": "hold"}]},
        400,
        "bad_request",
        "orders[0].side",
    ),
    (
        "market-with-price",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{**GOOD, "type": "market", "time_in_force": "ioc"}]},
        400,
        "bad_request",
        "orders[0].price",
    ),
    (
        "market-gtc",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{**GOOD, "type": "market", "price": None}]},
        400,
        "bad_request",
        "orders[0].time_in_force",
    ),
    (
        "post-only-ioc",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{**GOOD, "post_only": True, "time_in_force": "ioc"}]},
        400,
        "bad_request",
        "orders[0].post_only",
    ),
    (
        "limit-without-price",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{**GOOD, "price": None}]},
        400,
        "bad_request",
        "orders[0].price: required",
    ),
    (
        "bad-client-id",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{**GOOD, "client_order_id": "a b"}]},
        400,
        "bad_request",
        "orders[0].client_order_id",
    ),
    (
        "long-client-id",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{**GOOD, "client_order_id": "a" * 65}]},
        400,
        "bad_request",
        "orders[0].client_order_id",
    ),
    (
        "missing-symbol",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{k: v for k, v in GOOD.items() if k != "symbol"}]},
        400,
        "bad_request",
        "orders[0].symbol: required",
    ),
    ("orders-not-a-list", "POST", "/api/v1/orders/batch", {"orders": {}}, 400, "bad_request", "orders"),
    (
        "101-orders",
        "POST",
        "/api/v1/orders/batch",
        {"orders": [{**GOOD, "client_order_id": f"a-{i}"} for i in range(101)]},
        413,
        "too_large",
        "at most 100",
    ),
    ("malformed-json", "POST", "/api/v1/orders/batch", b'{"orders": [', 400, "bad_request", "malformed JSON"),
    ("json-array", "POST", "/api/v1/orders/batch", b"[]", 400, "bad_request", "JSON object"),
    ("nan-literal", "POST", "/api/v1/orders/batch", b'{"orders": [], "x": NaN}', 400, "bad_request", "malformed"),
    ("huge-body", "POST", "/api/v1/orders/batch", b" " * (1 << 20 + 1), 413, "too_large", "at most"),
    (
        "cancel-ids-not-list",
        "POST",
        "/api/v1/orders/cancel",
        {"symbol": BTC, "client_order_ids": "a-1"},
        400,
        "bad_request",
        "client_order_ids",
    ),
    ("cancel-without-symbol", "POST", "/api/v1/orders/cancel", {"client_order_ids": []}, 400, "bad_request", "symbol"),
    (
        "query-id-number",
        "POST",
        "/api/v1/orders/query",
        {"symbol": BTC, "client_order_ids": [7]},
        400,
        "bad_request",
        "client_order_ids[0]",
    ),
    ("open-without-symbol", "GET", "/api/v1/orders/open", None, 400, "bad_request", "symbol"),
    ("depth-bad-limit", "GET", "/api/v1/depth?symbol=BTC/USDT&limit=x", None, 400, "bad_request", "limit"),
    ("unknown-path", "GET", "/api/v1/nothing", None, 404, "not_found", "/api/v1/nothing"),
    ("wrong-method", "GET", "/api/v1/orders/batch", None, 405, "method_not_allowed", "GET"),
    ("wrong-method-post", "POST", "/api/v1/depth", {}, 405, "method_not_allowed", "POST"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
async def test_bad_requests_get_the_error_format(
    method: str, path: str, body: Any, status: int, code: str, fragment: str
) -> None:
    async with served() as s:
        kwargs: dict[str, Any] = {}
        if isinstance(body, bytes):
            kwargs["content"] = body
            kwargs["headers"] = {"content-type": "application/json"}
        elif body is not None:
            kwargs["json"] = body
        response = await s.client.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert set(response.json()) == {"error"} and set(error) == {"code", "message"}
        assert error["code"] == code
        assert fragment in error["message"]
        assert s.engine.seq == 0 and not any(len(book) for book in s.engine.books.values())  # nothing placed


# ---------------------------------------------------------------------------------------------------------------
# The simulated taker flow (no sockets: trio's MockClock)
# ---------------------------------------------------------------------------------------------------------------


async def _flow(seed: int) -> list[tuple[str, str, str, str]]:
    engine = Engine(taker_flow_rate=2, seed=seed)
    subscription = engine.subscribe()
    engine.place(
        [
            (OrderRequest("mm-1", BTC, Side.BUY, OrderType.LIMIT, Decimal("5.000"), Decimal("99")), "mm"),
            (OrderRequest("mm-2", BTC, Side.SELL, OrderType.LIMIT, Decimal("5.000"), Decimal("101")), "mm"),
        ]
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.run)
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    out = []
    while True:
        try:
            event = stream_line(subscription.receive.receive_nowait())["event"]
        except trio.WouldBlock:
            break
        liquidity = event["fill"]["liquidity"] if "fill" in event else ""
        out.append((event["kind"], event["client_order_id"], event["filled_quantity"], liquidity))
    return out


async def test_simulated_takers_hit_the_best_levels(autojump_clock: trio.testing.MockClock) -> None:
    events = await _flow(seed=7)
    sim = [e for e in events if e[1].startswith("sim-")]
    ours = [e for e in events if e[1].startswith("mm-")]
    assert len({e[1] for e in sim}) >= 10  # about 2 per second for 20 s, while orders rest
    assert all(e[0] in ("accepted", "partially_filled", "filled", "expired") for e in sim)
    assert any(e[3] == "maker" for e in ours)
    fills = [e for e in sim if e[3] == "taker"]
    assert fills and all(Decimal(e[2]) > 0 for e in fills)
    assert events == await _flow(seed=7)  # reproducible with a seed


async def test_simulated_takers_use_the_sim_account() -> None:
    engine = Engine(seed=3)
    assert engine.simulate_taker(BTC) is None
    engine.place([(OrderRequest("mm-1", BTC, Side.SELL, OrderType.LIMIT, Decimal("2.00"), Decimal("100")), "mm")])
    engine.place([(OrderRequest("sim-1", BTC, Side.SELL, OrderType.LIMIT, Decimal("1"), Decimal("200")), "sim")])
    result = engine.simulate_taker(BTC)
    assert result is not None and result.order is not None
    assert result.client_order_id == "sim-2"  # the sim account's sim-1 was taken (ids are per account)
    assert result.order.account == "sim" and result.order.side is Side.BUY
    assert Decimal(0) < result.order.filled_quantity <= Decimal("0.6")


# ---------------------------------------------------------------------------------------------------------------
# The wire format
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order_type", list(OrderType))
def test_requests_round_trip_through_the_wire(order_type: OrderType) -> None:
    price = None if order_type is OrderType.MARKET else Decimal("1E-8")
    request = OrderRequest("mmf-BTCUSDT1-1", BTC, Side.SELL, order_type, Decimal("0.0100"), price)
    wire = request_to_wire(request, "mmframe")
    assert wire["quantity"] == "0.0100" and wire["price"] == (None if price is None else "0.00000001")
    assert json.loads(json.dumps(wire)) == wire
    back, account = request_from_wire(wire, "orders[0]")
    assert (back, account) == (request, "mmframe")
    del wire["account"]
    assert request_from_wire(wire, "orders[0]")[1] == "mmf"


def test_orders_round_trip_through_the_wire() -> None:
    wire_order = WireOrder(
        client_order_id="mmf-1",
        account="mmframe",
        order_id="17",
        symbol=BTC,
        side=Side.BUY,
        type=OrderType.POST_ONLY,
        price=Decimal("59990.00"),
        quantity=Decimal("0.0100"),
        filled_quantity=Decimal("0.0040"),
        filled_notional=Decimal("239.96"),
        status=OrderStatus.PARTIALLY_FILLED,
    )
    data = json_loads(json.dumps(wire_order.to_wire()))
    assert WireOrder.from_wire(data) == wire_order
    converted = wire_order.to_order()
    assert converted.request == OrderRequest(
        "mmf-1", BTC, Side.BUY, OrderType.POST_ONLY, Decimal("0.0100"), Decimal("59990.00")
    )
    assert (converted.status, converted.filled_quantity, converted.order_id) == (
        OrderStatus.PARTIALLY_FILLED,
        Decimal("0.0040"),
        "17",
    )
    assert converted.average_price == Decimal("59990")
    with pytest.raises(WireError, match=r"^order\.status: "):
        WireOrder.from_wire({**data, "status": "new"})
    with pytest.raises(WireError, match=r"^results\[2\]\.order\.filled_quantity: not a decimal string"):
        WireOrder.from_wire({**data, "filled_quantity": 0.004}, "results[2].order")


def test_events_round_trip_through_the_wire() -> None:
    fill = Fill(
        "T88", "mmf-1", BTC, Side.BUY, Decimal("59990.00"), Decimal("0.0040"), Liquidity.MAKER, timestamp=1732240000.123
    )
    event = OrderEvent(
        OrderEventKind.PARTIALLY_FILLED, "mmf-1", BTC, Decimal("0.0040"), "17", fill, timestamp=1732240000.123
    )
    wire = event_to_wire(event, Side.BUY, OrderStatus.PARTIALLY_FILLED)
    assert wire == {
        "kind": "partially_filled", "client_order_id": "mmf-1", "order_id": "17", "symbol": BTC, "side": "buy",
        "status": "partially_filled", "filled_quantity": "0.0040", "reason": "", "timestamp": 1732240000.123,
        "fill": {"trade_id": "T88", "price": "59990.00", "quantity": "0.0040", "liquidity": "maker"},
    }  # fmt: skip
    assert event_from_wire(json_loads(json.dumps(wire))) == (event, Side.BUY, OrderStatus.PARTIALLY_FILLED)
    assert event_from_wire(json.loads(json.dumps(wire)))[0] == event
    cancelled = OrderEvent(
        OrderEventKind.CANCELLED, "mmf-1", BTC, Decimal("0.0040"), "17", reason="cancelled", timestamp=5.0
    )
    wire = event_to_wire(cancelled, Side.BUY, OrderStatus.CANCELLED)
    assert "fill" not in wire
    assert event_from_wire(wire) == (cancelled, Side.BUY, OrderStatus.CANCELLED)
    with pytest.raises(WireError, match=r"event\.fill: required"):
        event_from_wire({**wire, "kind": "filled"})
    with pytest.raises(WireError, match=r"event\.kind"):
        event_from_wire({**wire, "kind": "rejected"})


@pytest.mark.parametrize("value", [12.5, 1, True, None, "NaN", "Infinity", "1_000", " 1", "0x10", "", "1e999", []])
def test_decimal_from_wire_takes_decimal_strings_only(value: object) -> None:
    with pytest.raises(WireError, match=r"^orders\[3\]\.price: "):
        decimal_from_wire(value, "orders[3].price")


def test_decimal_from_wire_is_exact() -> None:
    assert decimal_from_wire("60000.10", "p") == Decimal("60000.10")
    assert str(decimal_from_wire("0.0100", "p")) == "0.0100"
    assert decimal_from_wire("-1e-8", "p") == Decimal("-0.00000001")  # the sign is the caller's business
    assert str(WireError("x")) == "x" and isinstance(WireError("x"), ValueError)
    with pytest.raises(WireError, match=r"^orders\[3\]\.price: not a decimal string: 12\.5$"):
        decimal_from_wire(json_loads('{"p": 12.5}')["p"], "orders[3].price")


@pytest.mark.parametrize(
    "text", ["0", "-0", "0.0100", "60000.10", "1E-8", "1E+2", "1.5E+3", "123456789E-4", "1E-6", "1E-7", "-2.50E-9"]
)
def test_decimals_go_on_the_wire_in_plain_notation(text: str) -> None:
    assert decimal_to_wire(Decimal(text)) == format(Decimal(text), "f")
    assert "E" not in decimal_to_wire(Decimal(text)) and Decimal(decimal_to_wire(Decimal(text))) == Decimal(text)


def test_json_reads_numbers_as_written_and_writes_compact_utf8() -> None:
    data = json_loads(b'{"price": 12.50, "quantity": 1, "big": 100000000000000000000000, "t": 1.5e3}')
    assert data == {"price": Decimal("12.50"), "quantity": 1, "big": 10**23, "t": Decimal("1.5e3")}
    assert str(data["price"]) == "12.50"
    for bad in (b"NaN", b'{"x": Infinity}', b'{"x": 1}x', b"", b"\xff", b"[" * 100_000):
        with pytest.raises(WireError, match=r"^malformed JSON"):
            json_loads(bad)
    line = {"type": "order", "seq": 7, "event": {"reason": "caf\u00e9", "timestamp": 1732240000.123, "fill": None}}
    assert json_dumps(line) == json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------------------------------------------------------
# Packaging: the entry point and the command
# ---------------------------------------------------------------------------------------------------------------


def test_the_plugin_entry_point_is_installed() -> None:
    assert "match_engine" in [ep.name for ep in importlib.metadata.entry_points(group="mmframe")]


def test_the_serve_command_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMFRAME_LOAD_PLUGINS", raising=False)
    cli = click.Group("mmframe")  # the mmframe command's group, as its plugins find it at start
    load_plugins().register_commands(cli)  # the installed entry points, as the mmframe command loads them
    result = CliRunner().invoke(cli, ["match-engine", "serve", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--host", "--port", "--taker-flow-rate", "--rate-limit", "--seed", "--log-level"):
        assert option in result.output
    bad = CliRunner().invoke(cli, ["match-engine", "serve", "--taker-flow-rate", "nan"])
    assert bad.exit_code == 2 and "taker_flow_rate" in bad.output


async def test_mmframe_match_engine_serve_runs_until_sigint() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMFRAME_")}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "mmframe", "match-engine", "serve", "--port", "0", "--taker-flow-rate", "1"],
        stderr=subprocess.PIPE,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    output = b""
    try:
        with trio.fail_after(15):
            while b"Match engine listening on http://" not in output or not output.endswith(b"\n"):
                chunk = await process.stderr.receive_some()
                assert chunk, output.decode()
                output += chunk
        url = output.decode().split("Match engine listening on ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            health = (await client.get("/health")).json()
            assert health["status"] == "ok" and health["sequence"] == 0
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            code = await process.wait()
        assert code == 0, output.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
