"""A hypothesis fuzz test of the control API: random requests of any shape to every endpoint of a live service
with two markets on the paper book, over real HTTP. No 5xx ever; afterwards the service is up and, once started
again, both markets quote (a request the API accepted, a config update included, never leaves a market unable to)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import httpx
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .seed_sql import apply_seed_sql
from .service_helpers import TOKEN, Running, running_service

GETS = ["/health", "/api/v1/health", "/api/v1/strategies", "/api/v1/strategy/list", "/api/v1/strategy/status",
        "/api/v1/plugins", "/metrics"]
POSTS = ["/api/v1/strategy/start", "/api/v1/strategy/stop", "/api/v1/strategy/reload",
         "/api/v1/strategy/config/update", "/api/v1/kill"]
MARKETS = (("BTC/USDT", "BTCUSDT", "45000"), ("ETH/USDT", "ETHUSDT", "3000"))

# ---- what a client may send ----------------------------------------------------------------------------------

surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.lists(st.one_of(st.characters(), surrogates), max_size=12).map("".join)
numbers_as_text = st.sampled_from(["1e27", "1e309", "-0", "1e-400", "0.001", "3", "NaN", "Infinity", "1" * 60, "2"])
field_names = st.one_of(
    st.sampled_from(["symbol", "market_type", "config", "base_quantity", "depth_levels", "spread_percent",
                     "quantity_ratio", "tick_size", "base_precision", "quote_precision", "max_active_orders"]),
    texts,
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(10**60), 10**60), st.floats(), texts, numbers_as_text
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(field_names, children, max_size=4)),
    max_leaves=16,
)
symbols = st.one_of(
    st.sampled_from(["BTC/USDT", "BTCUSDT", "eth/usdt", "ETHUSDT", "879_1", "DOGEUSDT", "", "\ud800", "BTC\udfffUSDT"]),
    texts,
)
market_types = st.one_of(st.sampled_from([1, 2, "1", " 2 ", "²", "9" * 5000, True, None, 1.0]), scalars)
levels = st.lists(
    st.fixed_dictionaries({"spread_percent": st.one_of(numbers_as_text, st.sampled_from(["0.001", "0.01", "-0.01"])),
                           "quantity_ratio": st.one_of(numbers_as_text, st.sampled_from(["1", "0.5", "-1"]))}),
    min_size=0, max_size=3,
)
configs = st.one_of(
    st.dictionaries(field_names, json_values, max_size=4),
    st.fixed_dictionaries({}, optional={"base_quantity": st.one_of(numbers_as_text, scalars), "depth_levels": levels,
                                        "tick_size": numbers_as_text, "base_precision": st.integers(-2, 40),
                                        "quote_precision": st.integers(-2, 40), "max_active_orders": scalars}),
)
commands = st.fixed_dictionaries(
    {"symbol": symbols}, optional={"market_type": market_types, "config": configs, "extra": json_values}
)
plain_commands = st.fixed_dictionaries(
    {"symbol": st.sampled_from(["BTC/USDT", "ETHUSDT", "879_1"])}, optional={"market_type": st.just(1)}
)
plausible_updates = st.fixed_dictionaries(  # a config update that may well pass: the market must then still run
    {
        "symbol": st.sampled_from(["BTC/USDT", "ETHUSDT"]),
        "config": st.fixed_dictionaries({}, optional={
            "base_quantity": st.one_of(
                st.sampled_from(["1", "2.5", "0.5", 3]), st.decimals(0, 10**30, places=3).map(str), numbers_as_text
            ),
            "depth_levels": st.one_of(levels, st.lists(st.fixed_dictionaries(
                {"spread_percent": st.sampled_from(["0.001", "0.002", 0.01]), "quantity_ratio": st.just(1)}
            ), min_size=1, max_size=3)),
            "max_active_orders": st.integers(-1, 500),
            "base_precision": st.integers(0, 20),
        }),
    },
    optional={"market_type": st.just(1)},
)


def nested(depth: int, kind: int) -> str:
    return [
        "[" * depth + "]" * depth,
        '{"a":' * depth + "1" + "}" * depth,
        '{"symbol":"BTCUSDT","config":{"depth_levels":' + "[" * depth + "]" * depth + "}}",
        '{"symbol":"' + "[" * depth + '"}',
        "[" * depth,
    ][kind]


def as_json(value: Any) -> bytes:
    # ensure_ascii: a lone surrogate goes out as a \udXXX escape, as a real client can send it
    return json.dumps(value, ensure_ascii=True).encode()


bodies = st.one_of(
    st.none(),
    commands.map(as_json),
    plausible_updates.map(as_json),
    plain_commands.map(as_json),
    json_values.map(as_json),
    st.tuples(st.one_of(st.integers(1, 64), st.integers(900, 6000)), st.integers(0, 4)).map(
        lambda t: nested(*t).encode()
    ),
    st.binary(max_size=200),
    texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
)
queries = st.one_of(
    st.none(),
    st.dictionaries(st.one_of(st.sampled_from(["symbol", "market_type"]), texts),
                    st.one_of(symbols, market_types.map(str), texts), max_size=3),
)
tokens = st.sampled_from([TOKEN] * 12 + [None, "wrong", "\u00e9\u00ff", "x" * 9000])
content_types = st.sampled_from([None, "application/json", "application/json", "application/json", "text/plain",
                                 "application/json; charset=utf-16", "multipart/form-data; boundary=x", "\u00e9"])


@attrs.frozen
class Request:
    method: str
    path: str
    query: dict[str, str] | None
    body: bytes | None
    token: str | None
    content_type: str | None


endpoints = st.sampled_from([("GET", p) for p in GETS] + [("POST", p) for p in POSTS] * 3)
anything = st.tuples(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
                     st.sampled_from([*GETS, *POSTS, "/api/v1/strategy", "/nope", "/api/v1/kill/x"]))
routes = st.tuples(st.integers(0, 9), endpoints, anything).map(lambda t: t[1] if t[0] < 8 else t[2])
requests = st.builds(
    lambda route, **fields: Request(method=route[0], path=route[1], **fields),
    route=routes,
    query=queries,
    body=bodies,
    token=tokens,
    content_type=content_types,
)


def encode_query(query: dict[str, str] | None) -> str:
    """Percent-encoded as bytes, surrogates included (a client can send any bytes)."""
    if not query:
        return ""

    def quoted(text: str) -> str:
        return urllib.parse.quote(text.encode("utf-8", "surrogatepass"))

    return "?" + "&".join(f"{quoted(k)}={quoted(v)}" for k, v in query.items())


# ---- a live service on its own trio thread -------------------------------------------------------------------


@contextmanager
def live_service(url: str) -> Iterator[tuple[Running, Any]]:
    """The service of :func:`running_service` run by ``trio.run`` on a thread; yields it and a function that runs a
    synchronous callable on its trio thread."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with running_service(url) as running:
            box["running"], box["token"], box["done"] = running, trio.lowlevel.current_trio_token(), trio.Event()
            ready.set()
            await box["done"].wait()

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the test below
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert ready.wait(30), "the service did not start"
    if "error" in box:
        raise box["error"]

    def call(fn: Any, *args: Any) -> Any:
        return trio.from_thread.run_sync(fn, *args, trio_token=box["token"])

    try:
        yield box["running"], call
    finally:
        call(box["done"].set)
        thread.join(30)
        assert not thread.is_alive(), "the service did not stop"
    if "error" in box:
        raise box["error"]


def test_no_request_gets_a_5xx_and_the_markets_keep_quoting(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'fuzz.sqlite'}"
    apply_seed_sql(url)
    with live_service(url) as (running, call), httpx.Client(
        # A new connection per request: the server may close a connection after a request whose body it did not
        # read (a GET with a body, a 401 or 413 answered first), and that close can race the client's next request
        # on a pooled connection ("Server disconnected without sending a response", never a 5xx).
        base_url=running.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:

        def push_prices() -> None:
            for _, index_symbol, price in MARKETS:
                call(running.feed.push_price, index_symbol, price)

        def quoting() -> None:
            for symbol, _, _ in MARKETS:
                for _ in range(100):
                    sides = {str(o.side) for o in call(running.book, symbol)}
                    if sides == {"buy", "sell"}:
                        break
                    threading.Event().wait(0.02)
                assert sides == {"buy", "sell"}, (symbol, sides)

        push_prices()
        quoting()
        seen: dict[int, int] = {}

        @settings(max_examples=300, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(request=requests)
        def one(request: Request) -> None:
            headers: dict[str, Any] = {}
            if request.token is not None:
                headers["Authorization"] = f"Bearer {request.token}".encode("latin-1")
            if request.content_type is not None:
                headers["Content-Type"] = request.content_type.encode("latin-1")
            response = client.request(
                request.method, request.path + encode_query(request.query), content=request.body, headers=headers
            )
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (request, response.status_code, response.text[:300])
            if response.status_code >= 400 and response.content:
                error = response.json()  # every error of ours is the seed's JSON shape, whatever was sent
                assert error["code"] == response.status_code and error["message"], error

        one()
        assert client.get("/health").status_code == 200
        assert seen.get(200, 0) > 10 and sum(n for code, n in seen.items() if 400 <= code < 500) > 50, seen
        # Whatever the fuzz did (a kill, stops, config updates the API accepted): a reload of each market works on
        # what is stored, and both markets quote again.
        for symbol, _, _ in MARKETS:
            response = client.post("/api/v1/strategy/reload", json={"symbol": symbol},
                                   headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 200 and response.json()["data"]["status"] == "running", response.text
        push_prices()
        call(lambda: None)
        quoting()
        health = client.get("/api/v1/health").json()
        assert health["strategies"]["running"] == 2, health
