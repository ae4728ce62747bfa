"""The service and its control API, end to end: a real database (MariaDB and SQLite), hypercorn on port 0,
real HTTP, the paper book checked for what the engine really did."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import attrs
import httpx
import pytest
import trio

from mmframe import ConfigError, Strategy, hookimpl
from mmframe._control.metrics import METRIC_NAMES
from mmframe._store import Store

from .seed_sql import SEED_CONFIG, apply_seed_sql
from .service_helpers import TOKEN, Running, running_service, settle


async def quote(running: Running, index_symbol: str, price: str) -> None:
    running.feed.push_price(index_symbol, price)
    await settle()


async def test_the_seed_database_loads_and_its_markets_run(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        response = await running.client.get("/api/v1/strategies")
        assert response.status_code == 200
        rows = {r["id"]: r for r in response.json()}
        assert set(rows) == {"879_1", "880_1"}
        btc = rows["879_1"]
        assert btc["currency_id"] == 879 and btc["market_type"] == 1 and btc["is_running"] is True
        assert btc["symbol"] == "BTC/USDT" and btc["index_symbol"] == "BTCUSDT"
        assert btc["metrics"] == {"total_orders": 0, "total_volume": "0"}
        # The seed's config drives the market: tick 0.1, first level 0.0001 around the index, quantity 10 times 1.0.
        await quote(running, "BTCUSDT", "45000")
        prices = sorted((str(o.side), o.price, o.quantity) for o in running.book("BTC/USDT"))
        assert prices == [
            ("buy", Decimal("44995.5000"), Decimal("10.00")),
            ("sell", Decimal("45004.5000"), Decimal("10.00")),
        ]
    text = caplog.text
    assert "Loaded 2 currencies from database" in text
    assert "Strategy [879_1] initialized successfully" in text and "Strategy [880_1] initialized successfully" in text
    assert "HTTP API server listening on 127.0.0.1:" in text


async def test_markets_with_status_0_wait_for_a_start_command(database_url: str) -> None:
    apply_seed_sql(database_url)
    _exec(database_url, "UPDATE strategy_currency SET market_status = 0 WHERE currency_id = 880")
    async with running_service(database_url) as running:
        rows = {r["id"]: r for r in (await running.client.get("/api/v1/strategies")).json()}
        assert rows["879_1"]["is_running"] and not rows["880_1"]["is_running"]
        assert rows["880_1"]["status"] == "stopped"
        response = await running.post("/api/v1/strategy/start", {"symbol": "ETH/USDT", "market_type": 1})
        assert response.status_code == 200, response.text
        assert response.json() == {
            "code": 0,
            "message": "Strategy started successfully",
            "data": {"strategy_id": "external_index_follow_ETH/USDT_1", "id": "880_1", "status": "running"},
        }
        await quote(running, "ETHUSDT", "3000")
        assert len(running.book("ETH/USDT")) == 2


def _exec(url: str, *statements: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


async def test_a_bad_config_fails_only_its_market_naming_the_key(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    apply_seed_sql(database_url)
    bad = json.dumps({**SEED_CONFIG, "sprad": 1})
    _exec(
        database_url,
        f"INSERT INTO strategy_strategy (strategy_name, config) VALUES ('external_index_follow', '{bad}')",
        "INSERT INTO strategy_currency (currency_id, index_symbol, index_source, market_status, market_type, "
        "default_strategy) VALUES (881, 'SOLUSDT', 1, 1, 1, 2)",
    )
    async with running_service(database_url) as running:
        rows = {r["id"]: r for r in (await running.client.get("/api/v1/strategies")).json()}
        assert rows["879_1"]["is_running"] and rows["880_1"]["is_running"]
        assert not rows["881_1"]["is_running"] and rows["881_1"]["status"] == "failed"
        assert "sprad" in rows["881_1"]["error"]
        response = await running.post("/api/v1/strategy/start", {"symbol": "SOLUSDT", "market_type": 1})
        assert response.status_code == 400 and "sprad" in response.json()["message"]
    assert "Strategy [881_1] failed to load" in caplog.text


async def test_every_endpoint_answers_in_the_seed_shape(database_url: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        c = running.client
        assert (await c.get("/health")).json() == {"status": "healthy", "service": "market-maker"}
        health = (await c.get("/api/v1/health")).json()
        assert health["status"] == "healthy"
        assert health["strategies"] == {"total": 2, "running": 2, "starting": 0, "stopped": 0, "degraded": 0}
        assert isinstance(health["uptime_seconds"], int)
        listing = (await c.get("/api/v1/strategy/list")).json()
        assert listing["code"] == 0 and listing["message"] == "Success"
        assert [(m["symbol"], m["market_type"], m["strategy_name"], m["status"]) for m in listing["data"]] == [
            ("BTC/USDT", 1, "external_index_follow", "running"),
            ("ETH/USDT", 1, "external_index_follow", "running"),
        ]
        await quote(running, "BTCUSDT", "45000")
        for symbol in ("BTC/USDT", "BTCUSDT", "btcusdt"):
            status = (await c.get("/api/v1/strategy/status", params={"symbol": symbol, "market_type": 1})).json()
            assert status["code"] == 0 and status["message"] == "Success"
            data = status["data"]
            assert data["strategy_id"] == "external_index_follow_BTC/USDT_1" and data["id"] == "879_1"
            assert data["status"] == "running" and data["current_price"] == "45000"
            assert data["metrics"]["total_orders"] == 2 and data["metrics"]["active_orders"] == 2
            assert data["strategy_status"]["first_spread"] == "0.0001"  # a Decimal, as an exact string
            assert set(data["metrics"]) >= {
                "total_orders",
                "success_orders",
                "failed_orders",
                "total_trades",
                "total_volume",
                "active_orders",
                "uptime_seconds",
            }
            assert data["config"] == SEED_CONFIG
        plugins = (await c.get("/api/v1/plugins")).json()
        assert plugins["code"] == 0 and any(p["name"] == "mmframe.default_plugins.paper" for p in plugins["data"])
        metrics = await c.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        for name in METRIC_NAMES:
            assert f"# TYPE {name} " in metrics.text, name
        assert 'strategy_orders_total{market="879_1",market_type="1",symbol="BTC/USDT"} 2.0' in metrics.text
        assert 'mmframe_market_state{market="879_1",market_type="1",state="running",symbol="BTC/USDT"} 1.0' in (
            metrics.text
        )
        assert 'mmframe_quote_latency_seconds_count{market="879_1",market_type="1",symbol="BTC/USDT"} 1.0' in (
            metrics.text
        )
        labels = 'market="879_1",market_type="1",symbol="BTC/USDT"'
        assert f'mmframe_strategy_status{{key="levels.configured",{labels}}} 10.0' in metrics.text
        assert f'mmframe_strategy_status{{key="quotes_made",{labels}}}' in metrics.text
        assert f'mmframe_strategy_status{{key="first_spread",{labels}}} 0.0001' in metrics.text
        assert 'key="mode"' not in metrics.text and 'key="enabled"' not in metrics.text


async def test_commands_change_what_the_engine_does(database_url: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quote(running, "BTCUSDT", "45000")
        await quote(running, "ETHUSDT", "3000")
        assert len(running.book("BTC/USDT")) == 2 and len(running.book("ETH/USDT")) == 2
        eth_before = running.book("ETH/USDT")
        body = {"symbol": "BTCUSDT", "market_type": 1}

        stop = await running.post("/api/v1/strategy/stop", body)
        assert stop.json() == {
            "code": 0,
            "message": "Strategy stopped successfully",
            "data": {"strategy_id": "external_index_follow_BTC/USDT_1", "id": "879_1", "status": "stopped"},
        }
        assert running.book("BTC/USDT") == []  # its orders left the book
        assert running.book("ETH/USDT") == eth_before  # the other market is untouched

        update = await running.post(
            "/api/v1/strategy/config/update",
            {
                **body,
                "config": {"base_quantity": 2, "depth_levels": [{"spread_percent": "0.001", "quantity_ratio": 1}]},
            },
        )
        assert update.status_code == 200, update.text
        assert update.json()["data"]["config"]["base_quantity"] == 2
        assert len(running.book("BTC/USDT")) == 0  # an update alone changes nothing: it applies on reload

        start = await running.post("/api/v1/strategy/start", body)
        assert start.json()["data"]["status"] == "running"
        await quote(running, "BTCUSDT", "45000")
        # start uses the configuration loaded at start-up; reload reads the override
        assert sorted(o.quantity for o in running.book("BTC/USDT")) == [Decimal("10.00"), Decimal("10.00")]
        reload = await running.post("/api/v1/strategy/reload", body)
        assert reload.json()["message"] == "Strategy reloaded successfully"
        await quote(running, "BTCUSDT", "45000")
        book = sorted((str(o.side), o.price, o.quantity) for o in running.book("BTC/USDT"))
        assert book == [
            ("buy", Decimal("44955.0000"), Decimal("2.00")),
            ("sell", Decimal("45045.0000"), Decimal("2.00")),
        ]
        status = (await running.client.get("/api/v1/strategy/status", params=body)).json()["data"]
        assert status["config"]["base_quantity"] == 2

    # The override was persisted: a new service on the same database quotes with it.
    async with running_service(database_url) as again:
        await quote(again, "BTCUSDT", "45000")
        assert {o.quantity for o in again.book("BTC/USDT")} == {Decimal("2.00")}


async def test_config_update_is_validated_against_the_strategy(database_url: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        body = {"symbol": "BTC/USDT", "market_type": 1}
        for config, key in [
            ({"base_quantitty": 1}, "base_quantitty"),
            ({"base_precision": "two"}, "config.base_precision"),
            ({"depth_levels": [{"spread_percent": 0.1}]}, "config.depth_levels[0].quantity_ratio"),
        ]:
            response = await running.post("/api/v1/strategy/config/update", {**body, "config": config})
            assert response.status_code == 400 and key in response.json()["message"], response.text
        status = (await running.client.get("/api/v1/strategy/status", params=body)).json()["data"]
        assert status["config"] == SEED_CONFIG  # nothing was persisted


async def test_mutating_endpoints_need_the_bearer_token(database_url: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quote(running, "BTCUSDT", "45000")
        body = {"symbol": "BTCUSDT", "market_type": 1}
        for path in (
            "/api/v1/strategy/stop",
            "/api/v1/strategy/start",
            "/api/v1/strategy/reload",
            "/api/v1/strategy/config/update",
            "/api/v1/kill",
        ):
            for token in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
                response = await running.post(path, body, token=token)
                assert response.status_code == 401, (path, token, response.text)
                assert response.json()["code"] == 401 and "bearer token" in response.json()["message"]
            basic = await running.client.post(path, json=body, headers={"Authorization": f"Basic {TOKEN}"})
            assert basic.status_code == 401
        assert len(running.book("BTC/USDT")) == 2  # nothing happened
    apply_seed_sql_again = None  # noqa: F841  (a second service below, with no token configured)
    async with running_service(database_url, token=None) as running:
        response = await running.post("/api/v1/strategy/stop", body, token="anything")
        assert response.status_code == 403 and "MMFRAME_API_TOKEN" in response.json()["message"]


BAD_REQUESTS: list[tuple[str, str, Any, dict[str, str], int, str]] = [
    # method, path, body (bytes or JSON), extra headers, status, part of the message
    ("POST", "/api/v1/strategy/start", b"{not json", {}, 400, "malformed JSON"),
    ("POST", "/api/v1/strategy/start", b"[1, 2]", {}, 400, "JSON object"),
    ("POST", "/api/v1/strategy/start", b"", {}, 400, "JSON object"),
    ("POST", "/api/v1/strategy/start", b'{"symbol": NaN}', {}, 400, "malformed JSON"),
    ("POST", "/api/v1/strategy/start", {"market_type": 1}, {}, 400, "symbol is required"),
    ("POST", "/api/v1/strategy/start", {"symbol": 5}, {}, 400, "symbol must be"),
    ("POST", "/api/v1/strategy/start", {"symbol": "BTCUSDT", "market_type": "spot"}, {}, 400, "market_type"),
    ("POST", "/api/v1/strategy/start", {"symbol": "BTCUSDT", "market_type": 7}, {}, 400, "market_type"),
    ("POST", "/api/v1/strategy/start", {"symbol": "BTCUSDT", "market_type": True}, {}, 400, "market_type"),
    ("POST", "/api/v1/strategy/start", {"symbol": "BTCUSDT", "extra": 1}, {}, 400, "unknown field(s): extra"),
    ("POST", "/api/v1/strategy/start", {"symbol": "DOGEUSDT", "market_type": 1}, {}, 404, "no market DOGEUSDT"),
    ("POST", "/api/v1/strategy/stop", {"symbol": "BTCUSDT", "market_type": 2}, {}, 404, "market_type 2"),
    ("POST", "/api/v1/strategy/config/update", {"symbol": "BTCUSDT"}, {}, 400, "config must be"),
    ("POST", "/api/v1/strategy/config/update", {"symbol": "BTCUSDT", "config": [1]}, {}, 400, "config must be"),
    ("POST", "/api/v1/strategy/start", b"x" * 70_000, {}, 413, "at most"),
    ("POST", "/api/v1/strategy/start", b'{"symbol": "BTCUSDT"}', {"content-type": "text/plain"}, 415, "json"),
    ("GET", "/api/v1/strategy/start", None, {}, 405, "GET is not allowed"),
    ("DELETE", "/api/v1/strategies", None, {}, 405, "not allowed"),
    ("GET", "/api/v1/nope", None, {}, 404, "no endpoint /api/v1/nope"),
    ("GET", "/api/v1/strategy/status", None, {}, 400, "symbol is required"),
    ("GET", "/api/v1/strategy/status?symbol=BTCUSDT&market_type=x", None, {}, 400, "market_type"),
    ("GET", "/api/v1/strategy/status?symbol=BTCUSDT&foo=1", None, {}, 400, "unknown field(s): foo"),
]


async def test_bad_requests_get_a_clear_4xx_and_the_service_stays_healthy(database_url: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quote(running, "BTCUSDT", "45000")
        for method, path, body, headers, status, message in BAD_REQUESTS:
            kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {TOKEN}", **headers}}
            if isinstance(body, bytes):
                kwargs["content"] = body
                kwargs["headers"].setdefault("content-type", "application/json")
            elif body is not None:
                kwargs["json"] = body
            response = await running.client.request(method, path, **kwargs)
            assert response.status_code == status, (method, path, response.text)
            data = response.json()
            assert data["code"] == status and message in data["message"], (method, path, data)
            assert (await running.client.get("/health")).status_code == 200
        assert len(running.book("BTC/USDT")) == 2  # still quoting

        # A body that lies about its length, and one far above the cap sent in chunks.
        async def chunks() -> Any:
            for _ in range(100):
                yield b"x" * 10_000

        response = await running.client.post(
            "/api/v1/strategy/start",
            content=chunks(),
            headers={"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
        )
        assert response.status_code == 413
        assert (await running.client.get("/health")).json()["status"] == "healthy"


async def test_secrets_never_reach_logs_or_responses(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        responses = [
            await running.client.get(p) for p in ("/api/v1/strategies", "/api/v1/plugins", "/metrics", "/api/v1/health")
        ]
        await running.post("/api/v1/strategy/stop", {"symbol": "BTCUSDT"}, token="wrong-guess")
    for response in responses:
        assert TOKEN not in response.text
    assert TOKEN not in caplog.text and "wrong-guess" not in caplog.text


async def test_kill_switch_stops_everything_and_cancels_our_orders(database_url: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quote(running, "BTCUSDT", "45000")
        await quote(running, "ETHUSDT", "3000")
        assert len(running.book("BTC/USDT")) == 2 and len(running.book("ETH/USDT")) == 2
        response = await running.post("/api/v1/kill", {})
        assert response.status_code == 200
        assert sorted(response.json()["data"]["stopped"]) == ["879_1", "880_1"]
        assert running.book("BTC/USDT") == [] and running.book("ETH/USDT") == []
        health = (await running.client.get("/api/v1/health")).json()
        assert health["strategies"] == {"total": 2, "running": 0, "starting": 0, "stopped": 2, "degraded": 0}
        await quote(running, "BTCUSDT", "45100")
        assert running.book("BTC/USDT") == []  # stopped markets stay stopped


async def test_non_loopback_without_a_token_refuses_to_start(tmp_path: Any) -> None:
    from mmframe._control.serve import serve
    from mmframe._default_plugins.paper import PaperSink
    from mmframe._service.service import Service
    from mmframe._settings import Settings

    from .service_helpers import plugin_manager

    settings = Settings(db_url=f"sqlite:///{tmp_path / 'x.sqlite'}", api_host="0.0.0.0", api_port=0)
    service = Service(settings, Store(settings.database_url), plugin_manager(), PaperSink())
    with pytest.raises(ConfigError, match="without MMFRAME_API_TOKEN"):
        await serve(service)
    assert service.records == {}  # refused before anything was loaded


async def _echo(request: Any) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"code": 0, "message": "echo", "data": dict(request.query_params)})


class RoutesPlugin:
    @hookimpl
    def register_routes(self, register: Any) -> None:
        register("/api/v1/echo", _echo, methods=("GET",))
        register("/api/v1/echo/write", _echo, methods=("POST",))


async def test_plugin_routes_are_served_and_mutating_ones_guarded(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    async with running_service(url, RoutesPlugin()) as running:
        response = await running.client.get("/api/v1/echo", params={"a": "1"})
        assert response.json() == {"code": 0, "message": "echo", "data": {"a": "1"}}
        assert (await running.post("/api/v1/echo/write", {}, token=None)).status_code == 401
        assert (await running.post("/api/v1/echo/write", {})).status_code == 200


async def test_audit_trail_records_orders_and_fills(database_url: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quote(running, "BTCUSDT", "45000")
        from mmframe import OrderType, Side

        running.sink.submit_external("BTC/USDT", side=Side.SELL, type=OrderType.MARKET, quantity=Decimal("3"))
        await settle()
        await running.service.audit.flush()
        store = running.service.store
        fills = await trio.to_thread.run_sync(store.fills, "BTC/USDT", 1)
        assert [(f.market_id, str(f.side), f.price, f.quantity) for f in fills] == [
            ("879_1", "buy", Decimal("44995.5000"), Decimal("3"))
        ]
        events = await trio.to_thread.run_sync(store.order_events)
        kinds = [(e.market_id, str(e.kind)) for e in events]
        assert kinds.count(("879_1", "accepted")) >= 2 and ("879_1", "partially_filled") in kinds
        assert all(e.client_order_id.startswith("mmf-BTCUSDT1-") for e in events if e.market_id == "879_1")


async def test_service_on_an_unreachable_database_fails_clearly() -> None:
    from mmframe._store import StoreError

    with pytest.raises(StoreError) as info:
        Store("mysql+pymysql://root:s3cret@127.0.0.1:1/nothing").init()
    assert "s3cret" not in str(info.value) and "127.0.0.1:1" in str(info.value)


def test_httpx_is_a_real_client() -> None:
    assert httpx.AsyncClient is not None


class NeedsMarket(Strategy):
    """Refuses, when built with its market, a step that is not a multiple of the market's tick."""

    name = "needs_market"

    @attrs.frozen
    class Config:
        step: Decimal
        tick_size: Decimal
        quote_precision: int
        base_precision: int

    def __init__(self, config: Any, market: Any) -> None:
        super().__init__(config, market)
        if config.step % market.tick_size:
            raise ConfigError(f"config.step {config.step} is not a multiple of the tick {market.tick_size}")


class NeedsMarketPlugin:
    @hookimpl
    def register_strategies(self, register: Any) -> None:
        register(NeedsMarket)


async def test_a_config_the_strategy_refuses_for_its_market_fails_at_load(database_url: str) -> None:
    apply_seed_sql(database_url)
    config = json.dumps({"step": 0.05, "tick_size": 0.1, "quote_precision": 1, "base_precision": 2})
    _exec(
        database_url,
        f"INSERT INTO strategy_strategy (strategy_name, config) VALUES ('needs_market', '{config}')",
        "INSERT INTO strategy_currency (currency_id, index_symbol, index_source, market_status, market_type, "
        "default_strategy) VALUES (881, 'SOLUSDT', 1, 1, 1, 2)",
    )
    async with running_service(database_url, NeedsMarketPlugin()) as running:
        record = running.service.records["881_1"]
        assert record.spec is None and "not a multiple of the tick 0.1" in record.error
        rows = {r["id"]: r for r in (await running.client.get("/api/v1/strategies")).json()}
        assert rows["881_1"]["status"] == "failed" and rows["879_1"]["is_running"]
