"""``POST /api/v1/orders/amend`` on the reference match engine (docs/match-engine-api.md, issue 19): a real hypercorn
on a free port, real httpx, no mocks. Queue priority is proven by who a later taker fills first; every refusal by
the order staying as it was and nothing being traded or published."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import attrs
import httpx
import pytest
import trio
from mmframe_match_engine.server import Engine, serve_engine, stream_line
from mmframe_match_engine.wire import (
    EVENT_KINDS,
    MAX_AMENDS,
    WireAmend,
    WireError,
    amends_from_wire,
    amends_to_wire,
    event_from_wire,
    event_to_wire,
    json_loads,
)

from mmframe import AmendRequest, OrderEvent, OrderEventKind, OrderRequest, OrderStatus, OrderType, Side

BTC = "BTC/USDT"
US = "mm"  # the account whose orders are amended
OTHER = "ot"  # another market maker
TAKER = "tk"  # another participant taking liquidity


@attrs.define
class Served:
    engine: Engine
    client: httpx.AsyncClient

    async def place(self, *orders: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await self.client.post("/api/v1/orders/batch", json={"orders": list(orders)})
        assert answer.status_code == 200, answer.text
        results: list[dict[str, Any]] = answer.json()["results"]
        assert all(r["result"] == "accepted" for r in results), results
        return results

    async def amend(self, *amends: dict[str, Any], account: str | None = US, symbol: str = BTC) -> httpx.Response:
        body: dict[str, Any] = {"symbol": symbol, "amends": list(amends)}
        if account is not None:
            body["account"] = account
        return await self.client.post("/api/v1/orders/amend", json=body)

    async def amended(self, *amends: dict[str, Any], account: str | None = US) -> list[dict[str, Any]]:
        """The results of an amend that must answer 200."""
        answer = await self.amend(*amends, account=account)
        assert answer.status_code == 200, answer.text
        results: list[dict[str, Any]] = answer.json()["results"]
        assert [r["client_order_id"] for r in results] == [a["client_order_id"] for a in amends]
        return results

    async def take(self, side: str, price: str, quantity: str, coid: str) -> dict[str, Any]:
        """Another account's IOC order; its final state."""
        return (await self.place(order(coid, side, price, quantity, account=TAKER, tif="ioc")))[0]["order"]

    async def query(self, *ids: str, account: str = US) -> list[dict[str, Any] | None]:
        answer = await self.client.post(
            "/api/v1/orders/query", json={"symbol": BTC, "account": account, "client_order_ids": list(ids)}
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["orders"]  # type: ignore[no-any-return]

    async def one(self, coid: str, account: str = US) -> dict[str, Any]:
        found = (await self.query(coid, account=account))[0]
        assert found is not None, coid
        return found

    async def open(self, account: str = US) -> list[dict[str, Any]]:
        answer = await self.client.get("/api/v1/orders/open", params={"symbol": BTC, "account": account})
        assert answer.status_code == 200, answer.text
        return answer.json()["orders"]  # type: ignore[no-any-return]

    async def depth(self) -> dict[str, Any]:
        answer = await self.client.get("/api/v1/depth", params={"symbol": BTC})
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def events(self) -> list[tuple[str, str, str]]:
        """Every stream event so far as ``(kind, account, client_order_id)`` (the engine's replay buffer)."""
        return [
            (e["kind"], e["account"], e["client_order_id"])
            for e in (stream_line(line)["event"] for line in self.engine.replay)
        ]


@asynccontextmanager
async def served() -> AsyncIterator[Served]:
    engine = Engine(seed=1)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_engine, engine, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=binds[0], timeout=5) as client:
            yield Served(engine, client)
        nursery.cancel_scope.cancel()


def order(
    coid: str, side: str, price: str, quantity: str, *, account: str = US, tif: str = "gtc"
) -> dict[str, Any]:
    return {
        "client_order_id": coid,
        "account": account,
        "symbol": BTC,
        "side": side,
        "type": "limit",
        "time_in_force": tif,
        "post_only": False,
        "price": price,
        "quantity": quantity,
    }


def fills(o: dict[str, Any] | None) -> tuple[str, str, str, str]:
    assert o is not None
    return o["price"], o["quantity"], o["filled_quantity"], o["status"]


class Lines:
    """The NDJSON lines of an open stream response, heartbeats skipped."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self, seconds: float = 3) -> dict[str, Any]:
        with trio.fail_after(seconds):
            while True:
                line = json.loads(await self._lines.__anext__())
                if line["type"] != "heartbeat":
                    return line  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------------------------
# Queue priority
# ---------------------------------------------------------------------------------------------------------------


async def test_a_smaller_quantity_at_the_same_price_keeps_the_queue_place() -> None:
    async with served() as s:
        await s.place(order("mm-a", "sell", "100", "2"), order("mm-b", "sell", "100", "2"))
        [result] = await s.amended({"client_order_id": "mm-a", "quantity": "1"})
        assert (result["result"], result["reason"], result["kept_priority"]) == ("amended", "", True)
        assert fills(result["order"]) == ("100", "1", "0", "open")
        assert (await s.depth())["asks"] == [["100", "3"]]
        # a taker of 1.5 at the level: A (first in the queue still) fills completely, B gets the rest
        taker = await s.take("buy", "100", "1.5", "tk-1")
        assert (taker["status"], taker["filled_quantity"]) == ("filled", "1.5")
        assert fills(await s.one("mm-a")) == ("100", "1", "1", "filled")
        assert fills(await s.one("mm-b")) == ("100", "2", "0.5", "partially_filled")
        makers = [e for e in s.events() if e[0] in ("partially_filled", "filled") and e[1] == US]
        assert makers == [("filled", US, "mm-a"), ("partially_filled", US, "mm-b")]


@pytest.mark.parametrize(
    ("a_price", "a_quantity", "amends"),
    [
        pytest.param("100", "1", [{"price": "101"}, {"price": "100"}], id="price-away-and-back"),
        pytest.param("101", "1", [{"price": "100"}], id="price-to-the-others-level"),
        pytest.param("100", "1", [{"quantity": "2"}], id="larger-quantity"),
        pytest.param("100", "1", [{"quantity": "2"}, {"quantity": "1"}], id="larger-then-smaller-again"),
    ],
)
async def test_anything_but_a_smaller_quantity_loses_the_queue_place(
    a_price: str, a_quantity: str, amends: list[dict[str, str]]
) -> None:
    async with served() as s:
        # A is ours and first; B, at 100, is another account's
        await s.place(order("mm-a", "sell", a_price, a_quantity))
        await s.place(order("ot-b", "sell", "100", "1", account=OTHER))
        kept = []
        for change in amends:
            [result] = await s.amended({"client_order_id": "mm-a", **change})
            assert result["result"] == "amended", result
            kept.append(result["kept_priority"])
        assert kept[0] is False  # the move that costs the place
        a = await s.one("mm-a")
        assert a["price"] == "100"
        # a taker of 1.5 at 100: B is now first in the queue and fills completely, A gets the rest
        await s.take("buy", "100", "1.5", "tk-1")
        assert fills(await s.one("ot-b", account=OTHER)) == ("100", "1", "1", "filled")
        a = await s.one("mm-a")
        assert (a["filled_quantity"], a["status"]) == ("0.5", "partially_filled")
        makers = [e for e in s.events() if e[0] in ("partially_filled", "filled") and e[1] != TAKER]
        assert makers == [("filled", OTHER, "ot-b"), ("partially_filled", US, "mm-a")]


# ---------------------------------------------------------------------------------------------------------------
# An amend never takes liquidity
# ---------------------------------------------------------------------------------------------------------------


async def test_an_amend_onto_our_own_order_is_refused_as_self_trade_prevention() -> None:
    async with served() as s:
        await s.place(order("mm-bid", "buy", "99", "1"), order("mm-ask", "sell", "101", "1"))
        before = (s.engine.seq, await s.depth(), await s.query("mm-bid", "mm-ask"))
        for price in ("101", "102"):
            [result] = await s.amended({"client_order_id": "mm-bid", "price": price})
            assert (result["result"], result["kept_priority"]) == ("rejected", False)
            assert result["reason"].startswith("self-trade prevention"), result["reason"]
            assert fills(result["order"]) == ("99", "1", "0", "open")  # unchanged
        assert (s.engine.seq, await s.depth(), await s.query("mm-bid", "mm-ask")) == before  # nothing traded


async def test_an_amend_onto_another_accounts_order_is_refused_as_crossing_the_book() -> None:
    async with served() as s:
        await s.place(order("ot-ask", "sell", "100", "1", account=OTHER))
        await s.place(order("mm-bid", "buy", "99", "1"), order("mm-ask", "sell", "101", "1"))
        before = (s.engine.seq, await s.depth(), await s.query("ot-ask", account=OTHER))
        # 100 reaches the other account's ask only; 100.5 too (our own ask at 101 is out of its reach)
        for price in ("100", "100.5"):
            [result] = await s.amended({"client_order_id": "mm-bid", "price": price, "quantity": "2"})
            assert (result["result"], result["kept_priority"]) == ("rejected", False)
            assert "cross the book" in result["reason"] and not result["reason"].startswith("self-trade")
            assert fills(result["order"]) == ("99", "1", "0", "open")
        assert (s.engine.seq, await s.depth(), await s.query("ot-ask", account=OTHER)) == before
        assert fills(await s.one("mm-bid")) == ("99", "1", "0", "open")
        # just below the ask it rests
        [result] = await s.amended({"client_order_id": "mm-bid", "price": "99.99"})
        assert result["result"] == "amended" and fills(result["order"]) == ("99.99", "1", "0", "open")
        assert (await s.depth())["bids"] == [["99.99", "1"]]


# ---------------------------------------------------------------------------------------------------------------
# Batches, idempotency, accounts
# ---------------------------------------------------------------------------------------------------------------


async def test_a_batch_applies_the_good_entries_and_reports_the_bad_ones_in_order() -> None:
    async with served() as s:
        await s.place(
            order("mm-1", "buy", "98", "1"),
            order("mm-2", "buy", "99", "2"),
            order("mm-3", "sell", "105", "1"),
            order("mm-4", "sell", "106", "1"),
        )
        await s.take("sell", "99", "1", "tk-1")  # mm-2: 1 of 2 filled
        await s.take("buy", "105", "1", "tk-2")  # mm-3: filled
        seq = s.engine.seq
        results = await s.amended(
            {"client_order_id": "mm-1", "price": "97.5"},
            {"client_order_id": "mm-ghost", "price": "97"},
            {"client_order_id": "mm-2", "quantity": "1"},  # not above the 1 filled
            {"client_order_id": "mm-3", "price": "107"},  # filled
            {"client_order_id": "mm-4", "quantity": "0.5"},
        )
        assert [(r["result"], r["kept_priority"]) for r in results] == [
            ("amended", False),
            ("unknown", False),
            ("rejected", False),
            ("rejected", False),
            ("amended", True),
        ]
        assert fills(results[0]["order"]) == ("97.5", "1", "0", "open")
        assert results[1]["order"] is None
        assert "already filled 1" in results[2]["reason"]
        assert fills(results[2]["order"]) == ("99", "2", "1", "partially_filled")
        assert results[3]["reason"] == "the order is not open (filled)"
        assert fills(results[3]["order"]) == ("105", "1", "1", "filled")
        assert fills(results[4]["order"]) == ("106", "0.5", "0", "open")
        # two changes, two events, in the entries' order
        assert s.engine.seq == seq + 2
        assert s.events()[-2:] == [("amended", US, "mm-1"), ("amended", US, "mm-4")]
        assert [fills(o) for o in await s.query("mm-1", "mm-2", "mm-3", "mm-4")] == [
            ("97.5", "1", "0", "open"),
            ("99", "2", "1", "partially_filled"),
            ("105", "1", "1", "filled"),
            ("106", "0.5", "0", "open"),
        ]


async def test_entries_apply_in_order_each_against_the_book_the_ones_before_left() -> None:
    async with served() as s:
        await s.place(order("mm-bid", "buy", "99", "1"), order("mm-ask", "sell", "101", "1"))
        # the bid first: it would meet our ask; then the ask moves away
        first = await s.amended(
            {"client_order_id": "mm-bid", "price": "101.5"}, {"client_order_id": "mm-ask", "price": "102"}
        )
        assert [r["result"] for r in first] == ["rejected", "amended"]
        assert first[0]["reason"].startswith("self-trade prevention")
        # the ask first (further still), then the bid: now the bid fits below it
        second = await s.amended(
            {"client_order_id": "mm-ask", "price": "103"}, {"client_order_id": "mm-bid", "price": "101.5"}
        )
        assert [r["result"] for r in second] == ["amended", "amended"]
        assert await s.depth() == {"symbol": BTC, "sequence": s.engine.books[BTC].sequence,
                                   "bids": [["101.5", "1"]], "asks": [["103", "1"]]}  # fmt: skip


async def test_the_same_amend_twice_changes_nothing_the_second_time() -> None:
    async with served() as s, s.client.stream("GET", "/api/v1/stream", params={"account": US}) as response:
        lines = Lines(response)
        assert (await lines.next())["type"] == "hello"
        # the queue at 100: mm-b, then mm-a (moved there by the amend), then another account's ot-c
        await s.place(order("mm-a", "sell", "101", "1"), order("mm-b", "sell", "100", "1"))
        amend = {"client_order_id": "mm-a", "price": "100"}
        [first] = await s.amended(amend)
        assert (first["result"], first["kept_priority"]) == ("amended", False)
        await s.place(order("ot-c", "sell", "100", "1", account=OTHER))
        seq, book_seq = s.engine.seq, s.engine.books[BTC].sequence
        [again] = await s.amended(amend)  # a client that timed out sends it again
        assert (again["result"], again["reason"], again["kept_priority"]) == ("amended", "", True)
        assert again["order"] == first["order"]
        # the same with the quantity spelled out, and with the price written differently
        [spelled] = await s.amended({"client_order_id": "mm-a", "price": "100.00", "quantity": "1"})
        assert (spelled["result"], spelled["kept_priority"], spelled["order"]) == ("amended", True, first["order"])
        assert (s.engine.seq, s.engine.books[BTC].sequence) == (seq, book_seq)  # no event, no change
        # the queue place kept: a taker of 2.5 fills mm-b, then mm-a, then part of ot-c
        await s.take("buy", "100", "2.5", "tk-1")
        assert fills(await s.one("mm-a")) == ("100", "1", "1", "filled")
        assert fills(await s.one("mm-b")) == ("100", "1", "1", "filled")
        assert fills(await s.one("ot-c", account=OTHER)) == ("100", "1", "0.5", "partially_filled")
        # our stream: one amended event only, between mm-a's accepted and its fill
        ours = [(await lines.next())["event"] for _ in range(5)]
        assert [(e["kind"], e["client_order_id"]) for e in ours] == [
            ("accepted", "mm-a"),
            ("accepted", "mm-b"),
            ("amended", "mm-a"),
            ("filled", "mm-b"),
            ("filled", "mm-a"),
        ]
        assert [e for e in s.events() if e[0] == "amended"] == [("amended", US, "mm-a")]


async def test_another_accounts_order_with_the_same_id_is_unknown_and_untouched() -> None:
    async with served() as s:
        await s.place(
            order("mm-1", "sell", "105", "1", account=OTHER), order("ot-9", "sell", "106", "1", account=OTHER)
        )
        await s.place(order("mm-1", "buy", "99", "1"))
        seq = s.engine.seq
        [theirs] = await s.amended({"client_order_id": "ot-9", "price": "107"})  # only the other account has it
        assert (theirs["result"], theirs["reason"], theirs["kept_priority"], theirs["order"]) == (
            "unknown",
            "",
            False,
            None,
        )
        assert s.engine.seq == seq
        # the id both accounts use: ours is amended, theirs is not touched (the account defaults to "mm", the
        # part of the id before its first "-")
        [ours] = await s.amended({"client_order_id": "mm-1", "price": "98", "quantity": "3"}, account=None)
        assert ours["result"] == "amended" and ours["order"]["account"] == US
        assert fills(await s.one("mm-1")) == ("98", "3", "0", "open")
        assert fills(await s.one("mm-1", account=OTHER)) == ("105", "1", "0", "open")
        assert fills(await s.one("ot-9", account=OTHER)) == ("106", "1", "0", "open")
        # an unknown symbol: no book, no order (and no book is made)
        answer = await s.amend({"client_order_id": "mm-1", "price": "1"}, symbol="NO/BOOK")
        assert [(r["result"], r["order"]) for r in answer.json()["results"]] == [("unknown", None)]
        assert "NO/BOOK" not in s.engine.books


async def test_a_partially_filled_order_cannot_shrink_to_what_has_filled() -> None:
    async with served() as s:
        await s.place(order("mm-1", "buy", "99", "2"))
        await s.take("sell", "99", "0.5", "tk-1")
        seq = s.engine.seq
        for quantity in ("0.5", "0.4", "0.50"):
            [result] = await s.amended({"client_order_id": "mm-1", "quantity": quantity})
            assert result["result"] == "rejected" and "must exceed it" in result["reason"], result
            assert fills(result["order"]) == ("99", "2", "0.5", "partially_filled")
        assert s.engine.seq == seq
        [result] = await s.amended({"client_order_id": "mm-1", "quantity": "0.6"})
        assert (result["result"], result["kept_priority"]) == ("amended", True)
        assert fills(result["order"]) == ("99", "0.6", "0.5", "partially_filled")
        assert (await s.depth())["bids"] == [["99", "0.1"]]


# ---------------------------------------------------------------------------------------------------------------
# What the amended order looks like everywhere
# ---------------------------------------------------------------------------------------------------------------


async def test_the_stream_query_open_orders_and_depth_show_the_new_price_and_quantity() -> None:
    async with served() as s, s.client.stream("GET", "/api/v1/stream", params={"account": US}) as response:
        lines = Lines(response)
        assert (await lines.next())["type"] == "hello"
        await s.place(order("mm-1", "buy", "99", "2"))
        await s.take("sell", "99", "0.5", "tk-1")
        [result] = await s.amended({"client_order_id": "mm-1", "price": "98.5", "quantity": "3"})
        assert (result["result"], result["kept_priority"]) == ("amended", False)
        amended = result["order"]
        assert fills(amended) == ("98.5", "3", "0.5", "partially_filled")
        assert amended["filled_notional"] == "49.5"  # the fill at 99 stays what it was
        assert await s.query("mm-1") == [amended]
        assert await s.open() == [amended]
        depth = await s.depth()
        assert (depth["bids"], depth["asks"]) == ([["98.5", "2.5"]], [])
        await s.take("sell", "98.5", "2.5", "tk-2")  # fills the rest at the new price

        events = [await lines.next() for _ in range(4)]
        assert [(line["event"]["kind"], line["event"]["client_order_id"]) for line in events] == [
            ("accepted", "mm-1"),
            ("partially_filled", "mm-1"),
            ("amended", "mm-1"),
            ("filled", "mm-1"),
        ]
        event = events[2]["event"]
        assert event == {
            "kind": "amended",
            "client_order_id": "mm-1",
            "account": US,
            "order_id": amended["order_id"],
            "symbol": BTC,
            "side": "buy",
            "status": "partially_filled",
            "filled_quantity": "0.5",
            "reason": "",
            "timestamp": event["timestamp"],
            "price": "98.5",
            "quantity": "3",
            "amends": 1,  # the order's first amend: a later report has more
        }
        assert amended["amends"] == 1
        parsed, side, status = event_from_wire(json_loads(json.dumps(event)))
        assert parsed == OrderEvent(
            OrderEventKind.AMENDED,
            "mm-1",
            BTC,
            Decimal("0.5"),
            amended["order_id"],
            timestamp=event["timestamp"],
            price=Decimal("98.5"),
            quantity=Decimal("3"),
        )
        assert (side, status) == (Side.BUY, OrderStatus.PARTIALLY_FILLED)
        assert events[3]["event"]["fill"]["price"] == "98.5" and events[3]["event"]["filled_quantity"] == "3.0"
        assert fills(await s.one("mm-1")) == ("98.5", "3", "3.0", "filled")
        assert (await s.one("mm-1"))["filled_notional"] == "295.75"  # 0.5 at 99, then 2.5 at 98.5
        assert await s.open() == []


# ---------------------------------------------------------------------------------------------------------------
# Refused requests
# ---------------------------------------------------------------------------------------------------------------

GOOD = {"client_order_id": "mm-1", "price": "98"}
MALFORMED: list[tuple[str, Any, str]] = [
    ("amends-missing", {"symbol": BTC, "account": US}, "amends: must be a list"),
    ("amends-not-a-list", {"symbol": BTC, "amends": GOOD}, "amends: must be a list"),
    ("symbol-missing", {"amends": [GOOD]}, "symbol: "),
    ("account-bad", {"symbol": BTC, "account": "a/b", "amends": [GOOD]}, "account: "),
    ("entry-not-an-object", {"symbol": BTC, "amends": [GOOD, "mm-2"]}, "amends[1]: must be a JSON object"),
    ("id-missing", {"symbol": BTC, "amends": [GOOD, {"price": "97"}]}, "amends[1].client_order_id: required"),
    ("id-bad", {"symbol": BTC, "amends": [GOOD, {"client_order_id": "mm 2", "price": "97"}]},
     "amends[1].client_order_id: must be"),
    ("price-a-number", {"symbol": BTC, "amends": [GOOD, {"client_order_id": "mm-2", "price": 97.5}]},
     "amends[1].price: not a decimal string: 97.5"),
    ("quantity-a-number", {"symbol": BTC, "amends": [GOOD, {"client_order_id": "mm-2", "quantity": 2}]},
     "amends[1].quantity: not a decimal string: 2"),
    ("price-zero", {"symbol": BTC, "amends": [GOOD, {"client_order_id": "mm-2", "price": "0"}]},
     "amends[1].price: must be positive"),
    ("quantity-negative", {"symbol": BTC, "amends": [GOOD, {"client_order_id": "mm-2", "quantity": "-1"}]},
     "amends[1].quantity: must be positive"),
    ("price-nan", {"symbol": BTC, "amends": [GOOD, {"client_order_id": "mm-2", "price": "NaN"}]},
     "amends[1].price: not a decimal string"),
    ("neither", {"symbol": BTC, "amends": [GOOD, {"client_order_id": "mm-2", "price": None}]},
     "amends[1]: price or quantity required"),
    ("duplicate-id", {"symbol": BTC, "amends": [GOOD, {"client_order_id": "mm-1", "quantity": "2"}]},
     "amends[1].client_order_id: \"mm-1\" is amended twice (also amends[0])"),
    ("malformed-json", b'{"symbol": "BTC/USDT", "amends": [', "malformed JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "fragment"), [pytest.param(*case[1:], id=case[0]) for case in MALFORMED])
async def test_a_malformed_amend_is_a_400_naming_the_field_and_nothing_is_amended(body: Any, fragment: str) -> None:
    async with served() as s:
        await s.place(order("mm-1", "buy", "99", "1"), order("mm-2", "buy", "97", "1"))
        seq, before = s.engine.seq, await s.query("mm-1", "mm-2")
        if isinstance(body, bytes):
            answer = await s.client.post(
                "/api/v1/orders/amend", content=body, headers={"content-type": "application/json"}
            )
        else:
            answer = await s.client.post("/api/v1/orders/amend", json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json() == {"error": {"code": "bad_request", "message": answer.json()["error"]["message"]}}
        assert fragment in answer.json()["error"]["message"]
        # the good first entry was not applied either
        assert (s.engine.seq, await s.query("mm-1", "mm-2")) == (seq, before)
        assert fills(before[0]) == ("99", "1", "0", "open")


async def test_more_than_100_amends_is_a_413_and_nothing_is_amended() -> None:
    async with served() as s:
        await s.place(order("mm-1", "buy", "99", "1"))
        seq = s.engine.seq
        many = [{"client_order_id": "mm-1", "price": "98"}] + [
            {"client_order_id": f"mm-{i}", "price": "98"} for i in range(2, MAX_AMENDS + 2)
        ]
        assert len(many) == 101
        answer = await s.amend(*many)
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "too_large" and "at most 100" in answer.json()["error"]["message"]
        assert s.engine.seq == seq and fills(await s.one("mm-1")) == ("99", "1", "0", "open")
        # 100 is fine (the unknown ones answer unknown)
        results = await s.amended(*many[:100])
        assert [r["result"] for r in results] == ["amended"] + ["unknown"] * 99


async def test_an_amend_is_a_mutating_request() -> None:
    async with served() as s:
        await s.place(order("mm-1", "buy", "99", "1"))
        s.engine.fail_next = 1
        answer = await s.amend({"client_order_id": "mm-1", "price": "98"})
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "unavailable"
        assert fills(await s.one("mm-1")) == ("99", "1", "0", "open")
        [result] = await s.amended({"client_order_id": "mm-1", "price": "98"})
        assert result["result"] == "amended"


def test_the_http_answer_says_what_the_result_objects_say() -> None:
    """``amend_wire`` (what the HTTP API answers, built straight from the book) is exactly ``amend``'s result
    objects' ``to_wire()``: two engines, the same script."""
    objects, wire = Engine(seed=1), Engine(seed=1)
    place = [
        (OrderRequest("mm-1", BTC, Side.BUY, OrderType.LIMIT, Decimal("2"), Decimal("99")), US),
        (OrderRequest("mm-2", BTC, Side.SELL, OrderType.LIMIT, Decimal("1"), Decimal("101")), US),
        (OrderRequest("tk-1", BTC, Side.SELL, OrderType.IOC, Decimal("0.5"), Decimal("99")), TAKER),
    ]
    amends = [
        WireAmend("mm-1", Decimal("98"), None),
        WireAmend("mm-2", None, Decimal("0.5")),
        WireAmend("mm-2", Decimal("98"), None),
        WireAmend("mm-9", Decimal("1"), None),
        WireAmend("mm-1", None, Decimal("0.5")),
        WireAmend("mm-1", Decimal("98"), Decimal("2")),
    ]
    for engine in (objects, wire):
        engine.place(place)
    answers = wire.amend_wire(BTC, amends, US)
    assert answers == [r.to_wire() for r in objects.amend(BTC, amends, US)]
    assert [(a["result"], a["kept_priority"]) for a in answers] == [
        ("amended", False),
        ("amended", True),
        ("rejected", False),
        ("unknown", False),
        ("rejected", False),
        ("amended", True),
    ]


# ---------------------------------------------------------------------------------------------------------------
# The wire format
# ---------------------------------------------------------------------------------------------------------------


def test_amended_events_round_trip_through_the_wire() -> None:
    assert OrderEventKind.AMENDED in EVENT_KINDS and OrderEventKind.AMEND_REJECTED not in EVENT_KINDS
    event = OrderEvent(
        OrderEventKind.AMENDED, "mmf-1", BTC, Decimal("0.0040"), "17", timestamp=5.0,
        price=Decimal("59991.00"), quantity=Decimal("0.0100"),
    )  # fmt: skip
    wire = event_to_wire(event, Side.BUY, OrderStatus.PARTIALLY_FILLED, "mmframe")
    assert wire == {
        "kind": "amended", "client_order_id": "mmf-1", "account": "mmframe", "order_id": "17", "symbol": BTC,
        "side": "buy", "status": "partially_filled", "filled_quantity": "0.0040", "reason": "", "timestamp": 5.0,
        "price": "59991.00", "quantity": "0.0100",
    }  # fmt: skip
    back = event_from_wire(json_loads(json.dumps(wire)))
    assert back == (event, Side.BUY, OrderStatus.PARTIALLY_FILLED)
    assert (back[0].price, back[0].quantity) == (Decimal("59991.00"), Decimal("0.0100"))
    # only an amended event carries them
    cancelled = OrderEvent(OrderEventKind.CANCELLED, "mmf-1", BTC, Decimal(0), "17", reason="cancelled", timestamp=5.0)
    assert "price" not in event_to_wire(cancelled, Side.BUY, OrderStatus.CANCELLED)
    parsed = event_from_wire({**wire, "kind": "cancelled", "status": "cancelled"})[0]
    assert (parsed.price, parsed.quantity) == (None, None)
    with pytest.raises(ValueError, match="new price and quantity"):
        event_to_wire(attrs.evolve(event, quantity=None), Side.BUY, OrderStatus.OPEN)
    with pytest.raises(WireError, match=r"^event\.kind: "):
        event_from_wire({**wire, "kind": "amend_rejected"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"price": None}, r"^event\.price: required"),
        ({"quantity": None}, r"^event\.quantity: required"),
        ({"price": 59991.5}, r"^event\.price: not a decimal string: 59991\.5"),
        ({"price": "0"}, r"^event\.price: must be positive"),
        ({"quantity": "-0.01"}, r"^event\.quantity: must be positive"),
        ({"quantity": "lots"}, r"^event\.quantity: not a decimal string"),
    ],
)
def test_an_amended_event_needs_a_positive_price_and_quantity(change: dict[str, Any], message: str) -> None:
    wire = {
        "kind": "amended", "client_order_id": "mmf-1", "order_id": "17", "symbol": BTC, "side": "buy",
        "status": "open", "filled_quantity": "0", "reason": "", "timestamp": 5.0, "price": "1", "quantity": "1",
    }  # fmt: skip
    data = {k: v for k, v in {**wire, **change}.items() if v is not None}
    with pytest.raises(WireError, match=message):
        event_from_wire(json_loads(json.dumps(data)))


def test_amend_bodies_round_trip_through_the_wire() -> None:
    requests = [AmendRequest("mmf-1", BTC, Decimal("1E+2"), Decimal("0.0100")), AmendRequest("mmf-2", BTC, 5, 1)]
    body = amends_to_wire(BTC, "mmframe", requests)
    assert body == {
        "symbol": BTC,
        "account": "mmframe",
        "amends": [
            {"client_order_id": "mmf-1", "price": "100", "quantity": "0.0100"},
            {"client_order_id": "mmf-2", "price": "5", "quantity": "1"},
        ],
    }
    assert amends_from_wire(json_loads(json.dumps(body))["amends"]) == [
        WireAmend("mmf-1", Decimal("100"), Decimal("0.0100")),
        WireAmend("mmf-2", Decimal("5"), Decimal("1")),
    ]
    # either may be left out (or null); unknown fields are ignored
    entries = [{"client_order_id": "a-1", "quantity": "2", "x": 1}, {"client_order_id": "a-2", "price": "3",
                                                                    "quantity": None}]  # fmt: skip
    assert amends_from_wire(entries) == [WireAmend("a-1", None, Decimal("2")), WireAmend("a-2", Decimal("3"), None)]
    with pytest.raises(WireError, match=r"^amends\[0\]: price or quantity required"):
        amends_from_wire([{"client_order_id": "a-1"}])
