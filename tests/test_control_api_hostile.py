"""No 500 from any client input (issue 13, reproductions 5 and 6 and the concurrency items): deep JSON, unpaired
surrogates, hostile query strings and headers, and concurrent commands on one market, over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
import trio.lowlevel

from mmframe._control.app import MAX_JSON_DEPTH, json_too_deep

from .seed_sql import apply_seed_sql
from .service_helpers import TOKEN, Running, running_service, settle

POSTS = (
    "/api/v1/strategy/start",
    "/api/v1/strategy/stop",
    "/api/v1/strategy/reload",
    "/api/v1/strategy/config/update",
    "/api/v1/kill",
)
AUTH = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
BTC = {"symbol": "BTC/USDT", "market_type": 1}


async def quoting(running: Running) -> None:
    running.feed.push_price("BTCUSDT", "45000")
    running.feed.push_price("ETHUSDT", "3000")
    await settle()
    for symbol in ("BTC/USDT", "ETH/USDT"):
        sides = sorted(str(o.side) for o in running.book(symbol))
        assert sides == ["buy", "sell"], (symbol, sides)


async def raw_request(url: str, request: bytes) -> bytes:
    """Send *request* as is and return the start of the answer (the server may close the connection at once)."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(request)
        answer = b""
        with trio.move_on_after(5):
            while b"\r\n" not in answer:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                answer += chunk
    return answer


def test_the_depth_check_counts_brackets_outside_strings_only() -> None:
    assert not json_too_deep("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    assert json_too_deep("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    assert json_too_deep('{"a":' * 40 + "1" + "}" * 40)
    assert json_too_deep("[" * 5000)  # unterminated: still refused before parsing
    assert not json_too_deep(json.dumps({"symbol": "[" * 5000, "x": "\\\"[[[[" * 100}))
    assert not json_too_deep('"unterminated [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[')
    assert json_too_deep('["a\\\\"' + "[" * 40)  # an escaped backslash ends the string: the brackets count


async def test_deeply_nested_json_is_a_400_on_every_post_endpoint(database_url: str) -> None:
    """Reproduction 5: 5,000 ``[`` and 5,000 ``]`` answered 500 with a RecursionError."""
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quoting(running)
        bodies = [
            b"[" * 5000 + b"]" * 5000,
            b'{"symbol": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            b'{"a":' * 5000 + b"1" + b"}" * 5000,
            b"[" * 60_000,
        ]
        for path in POSTS[:4]:  # (the kill switch reads no body: it works whatever is sent)
            for body in bodies:
                response = await running.client.post(path, content=body, headers=AUTH)
                assert response.status_code == 400, (path, response.text[:200])
                assert f"more than {MAX_JSON_DEPTH} deep" in response.json()["message"]
        # Brackets inside a string are text, not depth: this is an ordinary unknown market.
        response = await running.client.post(POSTS[0], content=json.dumps({"symbol": "[" * 40}), headers=AUTH)
        assert response.status_code == 404, response.text
        assert (await running.client.get("/health")).status_code == 200
        await quoting(running)


async def test_unpaired_surrogates_get_a_400_that_renders(database_url: str) -> None:
    """Reproduction 6: ``{"symbol":"\\ud800"}`` answered 500 (UnicodeEncodeError while building the reply)."""
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quoting(running)
        # A lone surrogate anywhere (a key or a value, at any depth) is refused before anything sees it: no
        # database, log or engine can take it (a free-form string like external_exchange reached the store: 500).
        cases = [
            (POSTS[0], b'{"symbol":"\\ud800"}', "symbol is not valid Unicode text"),
            (POSTS[0], b'{"symbol":"BTC\\udfff/USDT"}', "symbol is not valid Unicode text"),
            (POSTS[0], b'{"\\ud800":1,"symbol":"BTCUSDT"}', "a key in the body is not valid Unicode text"),
            (POSTS[0], b'{"symbol":"BTCUSDT","market_type":"\\udc80"}', "market_type is not valid Unicode text"),
            (POSTS[3], b'{"symbol":"BTCUSDT","config":{"\\ud83d":1}}', "a key in config is not valid Unicode"),
            (POSTS[3], b'{"symbol":"BTCUSDT","config":{"base_quantity":"\\ud83d"}}', "config.base_quantity is not"),
            (POSTS[3], b'{"symbol":"BTCUSDT","config":{"external_exchange":"\\ud800"}}',
             "config.external_exchange is not valid Unicode text"),
            (POSTS[3], b'{"symbol":"BTCUSDT","config":{"depth_levels":[{"spread_percent":"\\ud800"}]}}',
             "config.depth_levels[0].spread_percent is not valid Unicode text"),
            (POSTS[0], b'{"symbol":"\xed\xa0\x80"}', "must be UTF-8"),  # a surrogate encoded as UTF-8 bytes
        ]
        for path, body, message in cases:
            response = await running.client.post(path, content=body, headers=AUTH)
            assert response.status_code == 400, (body, response.text)
            assert message in response.json()["message"], (body, response.json())
        assert (await running.client.get("/health")).status_code == 200
        await quoting(running)


async def test_hostile_query_strings_and_headers_get_a_4xx(database_url: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quoting(running)
        status = "/api/v1/strategy/status"
        for query, expected in [
            ("symbol=BTCUSDT&market_type=%C2%B2", 400),  # "²": a digit to str.isdigit(), not to int()
            ("symbol=BTCUSDT&market_type=" + "9" * 5000, 400),  # more digits than int() converts
            ("symbol=BTCUSDT&market_type=%D9%A1", 400),  # an Arabic-Indic one
            ("symbol=%ED%A0%80", 404),  # a surrogate's UTF-8 bytes: decoded with replacement characters
            ("symbol=%FF%FE&market_type=1", 404),
            ("symbol=" + "A" * 51, 400),
            ("symbol=BTCUSDT&symbol=ETHUSDT", 200),
            ("symbol=BTCUSDT&market_type=", 400),
            ("symbol=%00", 404),
        ]:
            response = await running.client.get(f"{status}?{query}")
            assert response.status_code == expected, (query[:80], response.text[:200])
        for headers in [
            {"Authorization": "Bearer " + "\u00e9" * 10},  # non-ASCII (latin-1 on the wire)
            {"Authorization": "Bearer " + "x" * 12_000},
            {"Authorization": "Bearer " + "x" * 200_000},
            {"Authorization": "\u00ff"},
        ]:
            wire = {k: v.encode("latin-1") for k, v in headers.items()}
            response = await running.client.post(POSTS[1], json=BTC, headers=wire)
            assert response.status_code in (401, 431), (headers.keys(), response.status_code)
        # What httpx refuses to send: a Content-Length that is not ASCII digits, raw on the socket.
        for length in (b"\xb2", b"9" * 5000, b"-1"):
            head = b"POST /api/v1/strategy/stop HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
            answer = await raw_request(running.url, head + auth + b"Content-Length: " + length + b"\r\n\r\n{}")
            assert answer.startswith(b"HTTP/1.1 4"), (length[:10], answer[:100])
        assert (await running.client.get("/health")).status_code == 200
        await quoting(running)  # none of them stopped a market


async def test_concurrent_commands_on_one_market_get_the_sequential_answers(database_url: str) -> None:
    """Concurrent starts answered 409 "already running" (200 when sequential), and some starts and reloads 422
    ``did not start: `` with no reason."""
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quoting(running)
        assert (await running.post("/api/v1/strategy/stop", BTC)).status_code == 200
        answers: list[tuple[str, int, dict[str, Any]]] = []

        async def send(path: str) -> None:
            response = await running.post(path, BTC)
            answers.append((path, response.status_code, response.json()))

        async with trio.open_nursery() as nursery:
            for path in ["start"] * 6 + ["reload"] * 3 + ["start"] * 3:
                nursery.start_soon(send, f"/api/v1/strategy/{path}")
        assert len(answers) == 12
        for path, code, body in answers:
            assert code == 200 and body["data"]["status"] == "running", (path, code, body)
        await quoting(running)
        assert len(running.book("BTC/USDT")) == 2  # one ladder, not one per start

        # Mixed with stops: every answer is a success or a 4xx that says why; the last command decides the state.
        answers.clear()
        async with trio.open_nursery() as nursery:
            for path in ["start", "stop", "reload", "start", "stop", "reload", "start"] * 2:
                nursery.start_soon(send, f"/api/v1/strategy/{path}")
                await trio.lowlevel.checkpoint()
        for path, code, body in answers:
            assert code == 200, (path, code, body)
        final = await running.post("/api/v1/strategy/start", BTC)
        assert final.status_code == 200 and final.json()["data"]["status"] == "running"
        await quoting(running)


async def test_a_start_that_fails_says_why(database_url: str) -> None:
    """A market the feed cannot serve fails to start: the 422 names the error, never an empty reason."""
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quoting(running)
        record = running.service.records["879_1"]
        assert record.spec is not None
        await running.post("/api/v1/strategy/stop", BTC)
        import attrs

        record.spec = attrs.evolve(record.spec, strategy="nosuch")
        response = await running.post("/api/v1/strategy/start", BTC)
        assert response.status_code == 422, response.text
        message = response.json()["message"]
        assert message.startswith("strategy 879_1 did not start: ") and "nosuch" in message, message


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
async def test_wrong_content_types_are_a_415(database_url: str, content_type: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        response = await running.client.post(
            POSTS[0], content=b'{"symbol":"BTCUSDT"}', headers={**AUTH, "content-type": content_type}
        )
        assert response.status_code == 415 and content_type in response.json()["message"]
