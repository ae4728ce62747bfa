"""Start-up that scales: the markets handed to the engine start concurrently with a bounded number in flight, the
control API answers while they do (showing them ``starting``), and a stop during start-up is heeded at once."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import attrs
import httpx
import pytest
import trio
import trio.abc
import trio.lowlevel
import trio.testing

from mmframe import Fill, Market, OrderRequest, OrderType, Side, hookimpl
from mmframe._control.serve import serve
from mmframe._default_plugins.paper import PaperSink
from mmframe._engine.manager import START_CONCURRENCY, StrategyManager
from mmframe._engine.spec import MarketSpec, MarketState
from mmframe._models import MarketKey
from mmframe._plugins import make_plugin_manager
from mmframe._service.service import Service
from mmframe._settings import Settings
from mmframe._store import Store
from mmframe.testing import ScriptedFeed

from . import service_helpers
from .engine_helpers import EnginePlugin, RecordingFeed, settle, spec
from .seed_sql import apply_seed_sql
from .service_helpers import TOKEN, plugin_manager


def symbols(count: int) -> list[str]:
    return [f"S{i}/USDT" for i in range(count)]


def feed_symbol(symbol: str) -> str:
    return symbol.replace("/", "")


@attrs.define
class SlowHistory:
    """A fill-history loader (every market's start awaits it) that the test holds: it counts the starts in flight
    and lets a start through after *delay* seconds, or once its market's gate is opened."""

    delay: float = 0.0
    gated: set[str] = attrs.field(factory=set)
    gates: dict[str, trio.Event] = attrs.field(factory=dict)
    asked: list[str] = attrs.field(factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    def gate(self, symbol: str) -> trio.Event:
        return self.gates.setdefault(symbol, trio.Event())

    async def __call__(self, market_spec: MarketSpec, prefix: str) -> Sequence[Fill]:
        symbol = market_spec.market.symbol
        self.asked.append(symbol)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if symbol in self.gated:
                await self.gate(symbol).wait()
            await trio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        return ()


class Lifecycle:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def engine_started(self, manager: StrategyManager) -> None:
        states = sorted({str(s.state) for s in manager.status()})
        self.calls.append(f"engine_started {states}")

    @hookimpl
    def engine_stopping(self, manager: StrategyManager) -> None:
        self.calls.append("engine_stopping")


def engine(
    history: SlowHistory, *, bound: int, lifecycle: Lifecycle | None = None
) -> tuple[StrategyManager, PaperSink]:
    RecordingFeed.instances.clear()
    plugins: tuple[object, ...] = (EnginePlugin(),) if lifecycle is None else (EnginePlugin(), lifecycle)
    sink = PaperSink()
    manager = StrategyManager(sink, make_plugin_manager(load_entrypoints=False, plugins=plugins), instance_id="t",
                              history=history, start_concurrency=bound)
    return manager, sink


def states(manager: StrategyManager) -> dict[str, str]:
    return {str(s.symbol): str(s.state) for s in manager.status()}


def our_orders(sink: PaperSink, names: Sequence[str]) -> int:
    return sum(len(sink.book(symbol).open_orders()) for symbol in names)


# ---- the engine ------------------------------------------------------------------------------------------------


def test_the_bound_is_a_documented_constant() -> None:
    assert START_CONCURRENCY == 64
    text = (Path(__file__).parent.parent / "docs" / "architecture.md").read_text()
    assert "`START_CONCURRENCY` (64" in text


async def test_markets_start_concurrently_with_no_more_than_the_bound_in_flight(autojump_clock: Any) -> None:
    history = SlowHistory(delay=1.0)
    lifecycle = Lifecycle()
    manager, _ = engine(history, bound=4, lifecycle=lifecycle)
    names = symbols(20)
    async with trio.open_nursery() as nursery:
        began = trio.current_time()
        await nursery.start(manager.run, [spec(name) for name in names])
        took = trio.current_time() - began
        assert set(states(manager).values()) == {"running"}
        assert history.most_in_flight == 4
        # in order: the first four together, then the next four, ... (within a batch, as the scheduler runs them)
        assert [set(history.asked[i:i + 4]) for i in range(0, 20, 4)] == [set(names[i:i + 4]) for i in range(0, 20, 4)]
        # 20 starts of 1 s each, 4 at a time: 5 s; one after another would take 20 s
        assert 5.0 <= took < 6.0
        assert lifecycle.calls == ["engine_started ['running']"]  # once every market has started
        assert manager.autostarted.is_set()
        await manager.aclose()


async def test_in_the_background_the_markets_show_starting_until_they_start(autojump_clock: Any) -> None:
    history = SlowHistory(gated={"S0/USDT"})
    lifecycle = Lifecycle()
    manager, _ = engine(history, bound=2, lifecycle=lifecycle)
    names = symbols(5)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: manager.run([spec(n) for n in names], background=True,
                                                           task_status=task_status))
        # reported at once: every market is there, none has started yet
        assert states(manager) == dict.fromkeys(names, "starting")
        assert all(manager.is_active(MarketKey(n)) for n in names)
        await settle()
        # S0 is held; the others went through the second place in flight, one after another
        assert states(manager) == {"S0/USDT": "starting", **dict.fromkeys(names[1:], "running")}
        assert not manager.autostarted.is_set() and lifecycle.calls == []
        history.gate("S0/USDT").set()
        await manager.autostarted.wait()
        assert set(states(manager).values()) == {"running"}
        assert lifecycle.calls == ["engine_started ['running']"]
        await manager.aclose()


async def test_one_market_failing_to_start_does_not_hold_up_the_others(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    history = SlowHistory(delay=1.0)
    manager, _ = engine(history, bound=2)
    names = symbols(6)
    specs = [spec(n) if n != "S1/USDT" else spec(n, feed="nosuch") for n in names]
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run, specs)
        assert states(manager) == {**dict.fromkeys(names, "running"), "S1/USDT": "failed"}
        assert "no feed named 'nosuch'" in manager.status(MarketKey("S1/USDT"))[0].error
        await manager.aclose()


async def test_a_stop_during_start_up_leaves_no_orders_and_starts_no_more(autojump_clock: Any) -> None:
    history = SlowHistory(gated={"S4/USDT", "S5/USDT"})
    lifecycle = Lifecycle()
    manager, sink = engine(history, bound=2, lifecycle=lifecycle)
    names = symbols(10)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: manager.run([spec(n) for n in names], background=True,
                                                           task_status=task_status))
        await settle()
        # S0..S3 started and quote; S4 and S5 fill the two places in flight; S6..S9 wait for their turn
        for name in names:
            RecordingFeed.instances[-1].push_price(feed_symbol(name), "100")
        await settle()
        assert our_orders(sink, names[:4]) == 16
        assert states(manager) == {**dict.fromkeys(names[:4], "running"), **dict.fromkeys(names[4:], "starting")}
        with trio.fail_after(5):  # in virtual time: the markets' cleanup, not the rest of the start-up
            await manager.aclose()
        assert our_orders(sink, names) == 0
        assert set(states(manager).values()) == {"stopped"}
        assert sorted(history.asked) == names[:6]  # the queued markets never began to start
        assert runners_built(manager, names) == names[:4]  # S4 and S5 were stopped in the middle of their start
        assert lifecycle.calls == ["engine_stopping"]  # the engine never finished starting
        assert manager.autostarted.is_set()
        nursery.cancel_scope.cancel()


def runners_built(manager: StrategyManager, names: Sequence[str]) -> list[str]:
    return [n for n in names if manager.runner(MarketKey(n)) is not None]


async def test_a_stop_of_a_queued_market_leaves_it_stopped_and_the_others_start(autojump_clock: Any) -> None:
    history = SlowHistory(gated={"S0/USDT"})
    manager, sink = engine(history, bound=1)
    names = symbols(4)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: manager.run([spec(n) for n in names], background=True,
                                                           task_status=task_status))
        await settle()
        # S0 holds the one place in flight; S2 is queued: its stop answers at once, without waiting for its turn
        with trio.fail_after(0.001):
            status = await manager.stop_market(MarketKey("S2/USDT"))
        assert status.state is MarketState.STOPPED and not manager.is_active(MarketKey("S2/USDT"))
        # a stop of the market being started cancels its start
        stopping = trio.Event()

        async def stop_s0() -> None:
            await manager.stop_market(MarketKey("S0/USDT"))
            stopping.set()

        nursery.start_soon(stop_s0)
        await stopping.wait()
        await manager.autostarted.wait()
        assert states(manager) == {"S0/USDT": "stopped", "S1/USDT": "running", "S2/USDT": "stopped",
                                   "S3/USDT": "running"}
        assert history.asked == ["S0/USDT", "S1/USDT", "S3/USDT"]
        for name in names:
            RecordingFeed.instances[-1].push_price(feed_symbol(name), "100")
        await settle()
        assert our_orders(sink, ["S0/USDT", "S2/USDT"]) == 0 and our_orders(sink, ["S1/USDT", "S3/USDT"]) == 8
        # a queued market stopped is started again by a start command, at once
        history.gated.clear()
        status = await manager.start_market(spec("S2/USDT"))
        assert status.state is MarketState.RUNNING
        await manager.aclose()


async def test_markets_stopped_before_they_ran_cancel_what_an_earlier_run_left(autojump_clock: Any) -> None:
    # A process that died left an order under each market's prefix; its markets' starts would cancel them. A market
    # stopped while queued, one stopped in the middle of its start and those the engine's stop drops before their turn
    # never run: the engine cancels those orders for them, so nothing is left that no market tracks.
    history = SlowHistory(gated={"S0/USDT"})
    manager, sink = engine(history, bound=1)
    names = symbols(5)
    for name in names:
        await sink.place([OrderRequest(f"{manager.client_prefix(spec(name))}old1", name, Side.BUY, OrderType.LIMIT,
                                       Decimal("1"), Decimal("90"))])
    assert our_orders(sink, names) == 5
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: manager.run([spec(n) for n in names], background=True,
                                                           task_status=task_status))
        await settle()
        await manager.stop_market(MarketKey("S2/USDT"))  # queued
        assert our_orders(sink, ["S2/USDT"]) == 0
        await manager.stop_market(MarketKey("S0/USDT"))  # in the middle of its start (its history read)
        assert our_orders(sink, ["S0/USDT"]) == 0
        await settle()
        assert states(manager)["S1/USDT"] == "running" and our_orders(sink, ["S1/USDT"]) == 0  # its start did it
        history.gated.add("S3/USDT")  # S3 holds the one place in flight, S4 is still queued when the engine stops
        await manager.aclose()
        assert our_orders(sink, names) == 0
        assert set(states(manager).values()) == {"stopped"}
        nursery.cancel_scope.cancel()


async def test_a_queued_market_is_waited_for_not_started_twice(autojump_clock: Any) -> None:
    history = SlowHistory(gated={"S0/USDT"})
    manager, _ = engine(history, bound=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: manager.run([spec(n) for n in symbols(2)], background=True,
                                                           task_status=task_status))
        with pytest.raises(Exception, match="already running"):
            await manager.start_market(spec("S1/USDT"))
        answered: list[MarketState] = []

        async def wait() -> None:
            answered.append((await manager.wait_started(MarketKey("S1/USDT"))).state)

        nursery.start_soon(wait)
        await settle()
        assert answered == []
        history.gate("S0/USDT").set()
        await manager.autostarted.wait()
        await settle()
        assert answered == [MarketState.RUNNING] and history.asked == ["S0/USDT", "S1/USDT"]
        await manager.aclose()


class SlowFeed(ScriptedFeed):
    """A feed that reports started only once the test opens ``gate`` (or raises ``fail`` instead)."""

    name: ClassVar[str] = "slowstart"
    instances: ClassVar[list[SlowFeed]] = []
    gate: ClassVar[trio.Event]
    fail: ClassVar[BaseException | None] = None

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        SlowFeed.instances.append(self)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await SlowFeed.gate.wait()
        if SlowFeed.fail is not None:
            raise SlowFeed.fail
        await super().run(task_status=task_status)


class SlowFeedPlugin:
    @hookimpl
    def register_feeds(self, register: Any) -> None:
        register(SlowFeed)


class Passes(trio.abc.Instrument):
    """Counts the scheduler's passes (one wait for I/O each)."""

    def __init__(self) -> None:
        self.count = 0

    def before_io_wait(self, timeout: float) -> None:
        self.count += 1


async def test_markets_waiting_for_their_shared_feed_to_start_go_on_together(autojump_clock: Any) -> None:
    SlowFeed.instances.clear()
    SlowFeed.gate, SlowFeed.fail = trio.Event(), None
    pm = make_plugin_manager(load_entrypoints=False, plugins=(EnginePlugin(), SlowFeedPlugin()))
    manager = StrategyManager(PaperSink(), pm, instance_id="t", start_concurrency=40)
    names = symbols(40)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: manager.run([spec(n, feed="slowstart") for n in names],
                                                           background=True, task_status=task_status))
        await settle()
        assert len(SlowFeed.instances) == 1 and set(states(manager).values()) == {"starting"}
        passes = Passes()
        trio.lowlevel.add_instrument(passes)
        SlowFeed.gate.set()
        await manager.autostarted.wait()
        trio.lowlevel.remove_instrument(passes)
        assert set(states(manager).values()) == {"running"} and len(SlowFeed.instances) == 1
        # the 39 waiting markets went on together, in a few passes of the scheduler (8 when written), not one pass
        # each as they would in line for a lock (46)
        assert passes.count < 20
        await manager.aclose()


async def test_a_shared_feed_that_fails_to_start_fails_each_market_that_needs_it(autojump_clock: Any) -> None:
    SlowFeed.instances.clear()
    SlowFeed.gate, SlowFeed.fail = trio.Event(), OSError("the exchange is away")
    SlowFeed.gate.set()
    pm = make_plugin_manager(load_entrypoints=False, plugins=(EnginePlugin(), SlowFeedPlugin()))
    manager = StrategyManager(PaperSink(), pm, instance_id="t", start_concurrency=4)
    names = symbols(6)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run, [spec(n, feed="slowstart") for n in names] + [spec("OK/USDT")])
            assert states(manager) == {**dict.fromkeys(names, "failed"), "OK/USDT": "running"}
            assert all("the exchange is away" in s.error for s in manager.status() if s.symbol != "OK/USDT")
            assert len(SlowFeed.instances) == 6  # each market tried (none is left waiting for a start that failed)
            await manager.aclose()
    finally:
        SlowFeed.fail = None


# ---- the service and its control API ---------------------------------------------------------------------------


@attrs.define
class Served:
    service: Service
    sink: PaperSink
    client: httpx.AsyncClient
    gates: dict[str, trio.Event]

    async def post(self, path: str, body: Any) -> httpx.Response:
        return await self.client.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})

    def gate(self, symbol: str) -> trio.Event:
        return self.gates.setdefault(symbol, trio.Event())

    async def list(self) -> dict[str, str]:
        rows = (await self.client.get("/api/v1/strategy/list")).json()["data"]
        return {row["id"]: row["status"] for row in rows}


@asynccontextmanager
async def served_while_starting(tmp_path: Path, *plugins: object, bound: int) -> AsyncIterator[Served]:
    """The seed's two markets (879_1 BTC/USDT, then 880_1 ETH/USDT) served with the API bound before they start;
    each market's start waits (in its fill history) until the test opens its gate."""
    url = f"sqlite:///{tmp_path / 'mmframe.sqlite'}"
    apply_seed_sql(url)
    service_helpers.TestFeed.instances.clear()
    store = Store(url)
    store.init()
    sink = PaperSink()
    settings = Settings(db_url=url, api_port=0, api_token=TOKEN, feed="scripted")
    service = Service(settings, store, plugin_manager(*plugins), sink)
    service.manager.start_concurrency = bound
    gates: dict[str, trio.Event] = {}
    load = service.fill_history

    async def gated(market_spec: MarketSpec, prefix: str) -> Sequence[Fill]:
        await gates.setdefault(market_spec.market.symbol, trio.Event()).wait()
        return await load(market_spec, prefix)

    service.manager.history = gated
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(lambda task_status: serve(service, wait_for_markets=False,
                                                                      task_status=task_status))
                async with httpx.AsyncClient(base_url=binds[0], timeout=10) as client:
                    yield Served(service, sink, client, gates)
                await service.aclose()
    finally:
        store.close()


def market_states(metrics: str) -> dict[str, str]:
    """Each market's current state from ``mmframe_market_state``."""
    found = re.findall(r'mmframe_market_state\{([^}]*)\} 1\.0', metrics)
    out = {}
    for labels in found:
        values = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        out[values["market"]] = values["state"]
    return out


async def quote(served: Served, symbol: str, price: str) -> None:
    service_helpers.TestFeed.instances[-1].push_price(symbol, price)
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)


async def test_the_api_answers_while_the_markets_start_and_shows_them_starting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with served_while_starting(tmp_path, bound=32) as served:
        c = served.client
        assert (await c.get("/health")).json() == {"status": "healthy", "service": "market-maker"}
        assert await served.list() == {"879_1": "starting", "880_1": "starting"}
        rows = {r["id"]: r for r in (await c.get("/api/v1/strategies")).json()}
        assert [(rows[i]["status"], rows[i]["is_running"]) for i in ("879_1", "880_1")] == [("starting", False)] * 2
        status = (await c.get("/api/v1/strategy/status", params={"symbol": "BTCUSDT"})).json()["data"]
        assert status["status"] == "starting" and status["error"] == ""
        health = (await c.get("/api/v1/health")).json()
        assert health["strategies"] == {"total": 2, "running": 0, "starting": 2, "stopped": 0, "degraded": 0}
        assert market_states((await c.get("/metrics")).text) == {"879_1": "starting", "880_1": "starting"}
        assert not served.service.started_up.is_set()

        served.gate("BTC/USDT").set()
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert await served.list() == {"879_1": "running", "880_1": "starting"}
        served.gate("ETH/USDT").set()
        with trio.fail_after(5):
            await served.service.started_up.wait()
        assert await served.list() == {"879_1": "running", "880_1": "running"}
        assert market_states((await c.get("/metrics")).text) == {"879_1": "running", "880_1": "running"}
        health = (await c.get("/api/v1/health")).json()
        assert health["strategies"] == {"total": 2, "running": 2, "starting": 0, "stopped": 0, "degraded": 0}
        await quote(served, "BTCUSDT", "45000")
        assert len(served.sink.book("BTC/USDT").open_orders()) == 2
    assert "did not start" not in caplog.text


async def test_commands_for_markets_still_starting(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with served_while_starting(tmp_path, bound=1) as served:
        # BTC holds the one place in flight; ETH waits for its turn
        assert await served.list() == {"879_1": "starting", "880_1": "starting"}
        # A stop of the queued market: answered at once, it never starts
        response = await served.post("/api/v1/strategy/stop", {"symbol": "ETHUSDT"})
        assert response.status_code == 200, response.text
        assert response.json()["data"]["status"] == "stopped"
        # A start of the market being started: answered once it has started, as any start is
        answers: list[httpx.Response] = []

        async def start() -> None:
            answers.append(await served.post("/api/v1/strategy/start", {"symbol": "BTCUSDT"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(start)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert answers == []
            served.gate("BTC/USDT").set()
        assert answers[0].status_code == 200, answers[0].text
        assert answers[0].json()["data"]["status"] == "running"
        with trio.fail_after(5):
            await served.service.started_up.wait()
        assert await served.list() == {"879_1": "running", "880_1": "stopped"}
        await quote(served, "ETHUSDT", "3000")
        await quote(served, "BTCUSDT", "45000")
        assert served.sink.book("ETH/USDT").open_orders() == []
        assert len(served.sink.book("BTC/USDT").open_orders()) == 2
        # and it starts on a start command, like any stopped market
        served.gate("ETH/USDT").set()
        response = await served.post("/api/v1/strategy/start", {"symbol": "ETHUSDT"})
        assert response.status_code == 200 and response.json()["data"]["status"] == "running", response.text
    assert "did not start" not in caplog.text  # a market stopped by a command did not fail to start


async def test_a_reload_of_a_queued_market_starts_it_at_once(tmp_path: Path) -> None:
    async with served_while_starting(tmp_path, bound=1) as served:
        # BTC holds the one place in flight; ETH waits for its turn, and is reloaded: it starts now, once
        served.gate("ETH/USDT").set()
        response = await served.post("/api/v1/strategy/reload", {"symbol": "ETHUSDT"})
        assert response.status_code == 200 and response.json()["data"]["status"] == "running", response.text
        assert await served.list() == {"879_1": "starting", "880_1": "running"}
        served.gate("BTC/USDT").set()
        with trio.fail_after(5):
            await served.service.started_up.wait()
        assert await served.list() == {"879_1": "running", "880_1": "running"}
        await quote(served, "ETHUSDT", "3000")
        assert len(served.sink.book("ETH/USDT").open_orders()) == 2  # one ladder: it was not started twice


async def test_the_kill_switch_during_start_up_stops_every_market(tmp_path: Path) -> None:
    async with served_while_starting(tmp_path, bound=1) as served:
        response = await served.post("/api/v1/kill", {})
        assert response.status_code == 200, response.text
        assert sorted(response.json()["data"]["stopped"]) == ["879_1", "880_1"]
        with trio.fail_after(5):
            await served.service.started_up.wait()
        assert await served.list() == {"879_1": "stopped", "880_1": "stopped"}
        served.gate("BTC/USDT").set()
        served.gate("ETH/USDT").set()
        await quote(served, "BTCUSDT", "45000")
        await quote(served, "ETHUSDT", "3000")
        assert served.sink.book("BTC/USDT").open_orders() == [] and served.sink.book("ETH/USDT").open_orders() == []


class FailsOnEth:
    @hookimpl
    def market_started(self, market: Market, strategy: str) -> None:
        if market.symbol == "ETH/USDT":
            raise RuntimeError("no ETH today")


async def test_a_market_failing_to_start_fails_alone_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with served_while_starting(tmp_path, FailsOnEth(), bound=1) as served:
        served.gate("ETH/USDT").set()  # ETH is first to be let through, but BTC is first in line
        served.gate("BTC/USDT").set()
        with trio.fail_after(5):
            await served.service.started_up.wait()
        assert await served.list() == {"879_1": "running", "880_1": "failed"}
        await quote(served, "BTCUSDT", "45000")
        assert len(served.sink.book("BTC/USDT").open_orders()) == 2
    assert "Strategy [880_1] did not start: RuntimeError: no ETH today" in caplog.text
    assert "Strategy [879_1] did not start" not in caplog.text


async def test_the_service_stopped_during_start_up_opens_and_closes_cleanly(tmp_path: Path) -> None:
    async with served_while_starting(tmp_path, bound=1) as served:
        await quote(served, "BTCUSDT", "45000")
        with trio.fail_after(5):
            await served.service.aclose()
        assert served.service.started_up.is_set() and served.service.closed.is_set()
        assert states_of(served) == {"879_1": "stopped", "880_1": "stopped"}
        assert served.sink.book("BTC/USDT").open_orders() == [] and served.sink.book("ETH/USDT").open_orders() == []


def states_of(served: Served) -> dict[str, str]:
    return {r.id: served.service.state_of(r) for r in served.service.records.values()}


async def test_start_up_reads_the_stored_fills_once_for_every_market(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each market's first start takes its fills from one read of every fill of ours: hundreds of markets reading
    their own would queue one by one for the store's one thread, behind the audit trail's writes."""
    from decimal import Decimal

    from mmframe import OrderType, Side

    from .service_helpers import running_service

    url = f"sqlite:///{tmp_path / 'mmframe.sqlite'}"
    apply_seed_sql(url)
    async with running_service(url, instance_id="mmA") as first:
        first.feed.push_price("BTCUSDT", "45000")
        first.feed.push_price("ETHUSDT", "3000")
        await settle()
        first.sink.submit_external("BTC/USDT", side=Side.SELL, type=OrderType.MARKET, quantity=Decimal("3"))
        first.sink.submit_external("ETH/USDT", side=Side.BUY, type=OrderType.MARKET, quantity=Decimal("1"))
        await settle()
    reads: list[tuple[Any, ...]] = []
    fills = Store.fills

    def counted(self: Store, symbol: str | None = None, market_type: int | None = None, **kwargs: Any) -> Any:
        reads.append((symbol, market_type, kwargs.get("client_prefix")))
        return fills(self, symbol, market_type, **kwargs)

    monkeypatch.setattr(Store, "fills", counted)
    async with running_service(url, instance_id="mmA") as second:
        assert reads == [(None, None, "mmA-")]
        positions = {s.symbol: s.position for s in second.service.manager.status()}
        assert positions == {"BTC/USDT": Decimal("3"), "ETH/USDT": Decimal("-1")}
        # after start-up, a market started again reads its own
        await second.post("/api/v1/strategy/stop", {"symbol": "BTCUSDT"})
        response = await second.post("/api/v1/strategy/start", {"symbol": "BTCUSDT"})
        assert response.status_code == 200, response.text
        assert reads[1:] == [("BTC/USDT", 1, "mmA-BTCUSDT1-")]
        runner = second.service.manager.runner(MarketKey("BTC/USDT"))
        assert runner is not None and [(f.side, f.quantity) for f in runner.ctx.fill_history] == [
            (Side.BUY, Decimal("3"))
        ]
