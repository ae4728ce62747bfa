"""A config is validated before it is stored or run: the strategy's own checks and a dry build of its book at the
market's index (issue 13, reproduction 4). And a quote the engine cannot write at the market's precision is dropped
and counted, never a market failure."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs
import pytest
import trio

from mmframe import ConfigError
from mmframe._default_plugins.paper import PaperSink
from mmframe._engine.manager import StrategyManager
from mmframe._engine.risk import RiskLimits
from mmframe._engine.spec import MarketState
from mmframe._models import MarketKey
from mmframe._plugins import make_plugin_manager

from .engine_helpers import EnginePlugin, RecordingFeed, spec
from .engine_helpers import settle as engine_settle
from .seed_sql import SEED_CONFIG, apply_seed_sql
from .service_helpers import Running, running_service, settle

BTC = {"symbol": "BTC/USDT", "market_type": 1}


async def quote(running: Running, index_symbol: str, price: str) -> None:
    running.feed.push_price(index_symbol, price)
    await settle()


async def status(running: Running, body: dict[str, Any] = BTC) -> dict[str, Any]:
    return (await running.client.get("/api/v1/strategy/status", params=body)).json()["data"]  # type: ignore[no-any-return]


@attrs.define
class Engine:
    manager: StrategyManager
    sink: PaperSink

    @property
    def feed(self) -> RecordingFeed:
        return RecordingFeed.instances[-1]

    def book_orders(self, symbol: str = "AAA/USDT") -> list[Any]:
        return self.sink.book(symbol).open_orders()

    def status(self, symbol: str = "AAA/USDT") -> Any:
        return self.manager.status(MarketKey(symbol))[0]


async def start_engine(nursery: trio.Nursery) -> Engine:
    RecordingFeed.instances.clear()
    sink = PaperSink()
    manager = StrategyManager(sink, make_plugin_manager(load_entrypoints=False, plugins=(EnginePlugin(),)))
    await nursery.start(manager.run)
    return Engine(manager, sink)


# ---- the engine: a quote it cannot represent ---------------------------------------------------------------------


async def test_a_quote_beyond_the_decimal_precision_is_dropped_not_a_market_failure(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    engine = await start_engine(nursery)
    # The test ladder does not round its quantities: 1e27 at 2 decimals needs 30 digits, beyond the decimal context.
    await engine.manager.start_market(spec(strategy_config={"levels": 1, "quantity": "1e27"}))
    await engine.manager.start_market(spec("BBB/USDT", strategy_config={"levels": 1}))
    engine.feed.push_price("AAAUSDT", "100")
    engine.feed.push_price("BBBUSDT", "100")
    await engine_settle()
    await trio.sleep(2.5)  # a few refreshes: the same refusal each time, the market carries on
    aaa = engine.status("AAA/USDT")
    assert aaa.state is MarketState.RUNNING, aaa.error
    assert engine.book_orders("AAA/USDT") == []
    assert aaa.orders_vetoed >= 2 and "cannot be written" in aaa.last_veto
    assert len(engine.book_orders("BBB/USDT")) == 2


async def test_dry_build_checks_precision_minimum_and_risk_limits(nursery: trio.Nursery, autojump_clock: Any) -> None:
    engine = await start_engine(nursery)
    dry = engine.manager.dry_build
    # Nothing is known of AAA's price: a nominal price of 100,000 ticks, no price band.
    ok = dry(spec(strategy_config={"levels": 2}))
    assert (ok.source, ok.reference, len(ok.quotes)) == ("nominal", Decimal("1000.00"), 4)
    with pytest.raises(ConfigError, match="cannot be written with 2 price and 2 quantity decimals"):
        dry(spec(strategy_config={"quantity": "1e27"}))
    with pytest.raises(ConfigError, match=r"rounds to 0\.00, below the minimum 0\.01"):
        dry(spec(strategy_config={"quantity": "0.001"}))
    with pytest.raises(ConfigError, match=r"exceeds max_order_quantity 1\.5"):
        dry(spec(strategy_config={"quantity": "2"}, risk=RiskLimits(max_order_quantity="1.5")))
    with pytest.raises(ConfigError, match="beyond max_position 1"):
        dry(spec(strategy_config={"quantity": "2"}, risk=RiskLimits(max_position="1")))
    with pytest.raises(ConfigError, match="more than max_active_orders 3"):
        dry(spec(strategy_config={"levels": 2}, risk=RiskLimits(max_active_orders=3)))
    with pytest.raises(ConfigError, match=r"bids and asks cross \(best bid 1001\.00, best ask 999\.00\)"):
        dry(spec(strategy_config={"levels": 1, "step": "-1"}))
    with pytest.raises(ConfigError, match=r"cannot build its book at the nominal price 1000\.00: RuntimeError: boom"):
        dry(spec(strategy_config={"fail_at": "1"}))

    # Once the market has an index, the ladder is built there and the price band applies.
    await engine.manager.start_market(spec(strategy_config={"levels": 1}, risk=RiskLimits(price_band="0.15")))
    engine.feed.push_price("AAAUSDT", "100")
    await engine_settle()
    at_index = dry(spec(strategy_config={"levels": 1, "step": "10"}, risk=RiskLimits(price_band="0.15")))
    assert (at_index.source, at_index.reference) == ("index", Decimal("100"))
    assert sorted(q.price for q in at_index.quotes) == [Decimal("90.00"), Decimal("110.00")]
    with pytest.raises(ConfigError, match=r"at the index price 100 would fail: .*outside the price band of 0\.15"):
        dry(spec(strategy_config={"levels": 2, "step": "10"}, risk=RiskLimits(price_band="0.15")))
    # A dry build sends nothing.
    assert len(engine.book_orders("AAA/USDT")) == 2


# ---- the API: config/update and reload ---------------------------------------------------------------------------


@pytest.mark.parametrize("quantity", ["1e27", "1e309", 1e300])
async def test_a_config_that_would_kill_its_market_is_refused_naming_the_key(database_url: str, quantity: Any) -> None:
    """Reproduction 4: ``base_quantity`` 1e27 (or 1e309) was stored, and the reload that applied it killed the market
    with ``InvalidOperation``."""
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quote(running, "BTCUSDT", "45000")
        response = await running.post("/api/v1/strategy/config/update", {**BTC, "config": {"base_quantity": quantity}})
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert message.startswith("config.base_quantity: ") and "at the index price 45000" in message, message
        # (this test strategy rounds its own quantities, so the overflow is found in the strategy)
        assert "InvalidOperation: a value too large or too precise for exact decimal arithmetic" in message
        # Nothing was stored: a reload keeps the seed's config, and the market goes on quoting.
        reload = await running.post("/api/v1/strategy/reload", BTC)
        assert reload.status_code == 200, reload.text
        await quote(running, "BTCUSDT", "45000")
        await trio.sleep(0.3)
        data = await status(running)
        assert data["status"] == "running" and data["config"] == SEED_CONFIG
        assert {o.quantity for o in running.book("BTC/USDT")} == {Decimal("10.00")}


async def test_the_key_to_blame_is_named_among_several_changes(database_url: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quote(running, "BTCUSDT", "45000")
        changes = {"base_quantity": "0.001", "max_active_orders": 50, "price_change_amount": 2}
        response = await running.post("/api/v1/strategy/config/update", {**BTC, "config": changes})
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert message.startswith("config.base_quantity: ") and "below the minimum 0.01" in message, message
        # A change that builds is stored as before.
        good = await running.post("/api/v1/strategy/config/update", {**BTC, "config": {"base_quantity": "3"}})
        assert good.status_code == 200 and good.json()["data"]["config"]["base_quantity"] == "3"


async def test_a_reload_that_does_not_build_keeps_the_market_running_on_its_old_config(database_url: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        await quote(running, "BTCUSDT", "45000")
        before = sorted((o.client_order_id, o.quantity) for o in running.book("BTC/USDT"))
        assert [q for _, q in before] == [Decimal("10.00"), Decimal("10.00")]
        # Someone edits the database directly, past the API's checks.
        store = running.service.store
        await trio.to_thread.run_sync(store.save_override, 879, 1, {"base_quantity": "1e27"})
        reload = await running.post("/api/v1/strategy/reload", BTC)
        assert reload.status_code == 422, reload.text
        message = reload.json()["message"]
        assert "keeps running on its previous config" in message and "too large or too precise" in message, message
        await quote(running, "BTCUSDT", "45000")
        await trio.sleep(0.3)
        data = await status(running)
        assert data["status"] == "running" and data["error"] == "" and data["config"] == SEED_CONFIG
        # The very same orders rest: the market was not even stopped.
        assert sorted((o.client_order_id, o.quantity) for o in running.book("BTC/USDT")) == before
        # A fixed row reloads as usual.
        await trio.to_thread.run_sync(store.save_override, 879, 1, {"base_quantity": "2"})
        reload = await running.post("/api/v1/strategy/reload", BTC)
        assert reload.status_code == 200, reload.text
        await quote(running, "BTCUSDT", "45000")
        assert {o.quantity for o in running.book("BTC/USDT")} == {Decimal("2.00")}


async def test_a_reload_the_strategy_refuses_keeps_a_stopped_market_stopped_with_its_config(database_url: str) -> None:
    apply_seed_sql(database_url)
    async with running_service(database_url) as running:
        assert (await running.post("/api/v1/strategy/stop", BTC)).status_code == 200
        store = running.service.store
        await trio.to_thread.run_sync(store.save_override, 879, 1, {"base_quantity": "many"})
        reload = await running.post("/api/v1/strategy/reload", BTC)
        assert reload.status_code == 422, reload.text
        assert "stays stopped, with its previous config" in reload.json()["message"]
        assert "config.base_quantity" in reload.json()["message"]
        start = await running.post("/api/v1/strategy/start", BTC)  # on the config it had
        assert start.status_code == 200 and start.json()["data"]["status"] == "running"
