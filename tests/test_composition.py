"""How ``mmframe serve`` is put together: the service runs markets and knows nothing of HTTP, the CLI runs the
control API beside it, and the sink's defaults come from configuration and from what the sink declares."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import httpx
import pytest
import trio

from mmframe import ConfigError, hookimpl
from mmframe._cli import _make_sink, choose_sink
from mmframe._control.serve import serve
from mmframe._default_plugins.paper import PaperSink
from mmframe._service.service import Service
from mmframe._settings import Settings
from mmframe._store import Store
from mmframe.protocols import KeepsLocalBooks

from .seed_sql import apply_seed_sql
from .service_helpers import TOKEN, plugin_manager


async def test_the_service_alone_serves_no_api_and_serve_adds_it_until_the_service_closes(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    apply_seed_sql(url)
    store = Store(url)
    store.init()
    settings = Settings(db_url=url, api_port=0, api_token=TOKEN, feed="scripted")
    try:
        alone = Service(settings, store, plugin_manager(), PaperSink())
        async with trio.open_nursery() as nursery:
            assert await nursery.start(alone.run) is alone
            assert sorted(alone.records) == ["879_1", "880_1"] and not hasattr(alone, "binds")
            await alone.aclose()
        assert alone.closed.is_set()

        service = Service(settings, store, plugin_manager(), PaperSink())
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(serve, service)
                async with httpx.AsyncClient(base_url=binds[0], timeout=5) as client:
                    assert (await client.get("/health")).json() == {"status": "healthy", "service": "market-maker"}
                await service.aclose()  # the API stops with the service: the nursery ends on its own
    finally:
        store.close()


class EndpointSink(PaperSink):
    name: ClassVar[str] = "remote"

    @attrs.frozen
    class Config:
        endpoint: str
        account: str = "mm"

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.remote = config


class SinkPlugin:
    @hookimpl
    def register_sinks(self, register: Any) -> None:
        register(EndpointSink)


def test_the_endpoint_goes_to_a_sink_that_takes_one_and_the_demo_takers_to_the_paper_sink() -> None:
    pm = plugin_manager(SinkPlugin())
    remote = _make_sink(Settings(sink="remote", match_engine_endpoint="http://engine:8080",
                                 sink_config={"account": "a1"}), pm, demo=True, seed=3)
    assert remote.remote == EndpointSink.Config(endpoint="http://engine:8080", account="a1")
    paper = _make_sink(Settings(sink="paper", match_engine_endpoint="http://engine:8080"), pm, demo=True, seed=3)
    assert isinstance(paper, PaperSink) and paper.config.taker_flow_rate == 0.5 and paper.config.seed == 3
    plain = _make_sink(Settings(), pm, demo=False, seed=None)
    assert plain.config == PaperSink.Config()


class NoEndpointSink(PaperSink):
    name: ClassVar[str] = "no-endpoint"


def test_an_endpoint_a_chosen_sink_cannot_take_is_refused_not_dropped() -> None:
    class Plugin:
        @hookimpl
        def register_sinks(self, register: Any) -> None:
            register(NoEndpointSink)

    pm = plugin_manager(Plugin())
    with pytest.raises(ConfigError, match="MATCH_ENGINE_ENDPOINT is set, but the sink 'no-endpoint' takes no endpoint"):
        _make_sink(Settings(sink="no-endpoint", match_engine_endpoint="http://engine:8080"), pm, demo=False, seed=None)


def test_a_sink_keeping_its_books_here_is_recognised_by_what_it_declares() -> None:
    class Remote:
        async def open_orders(self, symbol: str, prefix: str = "") -> list[Any]:
            return []

    assert isinstance(PaperSink(), KeepsLocalBooks)
    assert not isinstance(Remote(), KeepsLocalBooks)


def _sink_class(*fields: str) -> type:
    config = attrs.make_class("Config", {name: attrs.field(default=None) for name in fields})
    return type("Sink", (), {"Config": config})


def test_the_sink_is_chosen_by_what_is_installed_not_by_name() -> None:
    paper, engine, other = _sink_class("owner"), _sink_class("endpoint", "account"), _sink_class("url")
    installed = {"paper": paper, "my-engine": engine, "other": other}
    assert choose_sink(Settings(), installed) == "paper"
    assert choose_sink(Settings(match_engine_endpoint="http://127.0.0.1:8080"), installed) == "my-engine"
    assert choose_sink(Settings(sink="other", match_engine_endpoint="http://x:1"), installed) == "other"
    with pytest.raises(ConfigError, match=r"no installed sink takes an endpoint.*installed: other, paper"):
        choose_sink(Settings(match_engine_endpoint="http://x:1"), {"paper": paper, "other": other})
    with pytest.raises(ConfigError, match=r"several installed sinks take an endpoint \(a, b\).*MMFRAME_SINK"):
        choose_sink(Settings(match_engine_endpoint="http://x:1"), {"paper": paper, "a": engine, "b": engine})


def test_a_configured_match_engine_is_never_silently_dropped() -> None:
    pm = plugin_manager(SinkPlugin())
    # the paper sink asked for by name while an engine is configured: refused, but for the demo
    with pytest.raises(ConfigError, match="MATCH_ENGINE_ENDPOINT is set, but the sink 'paper' takes no endpoint"):
        _make_sink(Settings(sink="paper", match_engine_endpoint="http://engine:8080"), pm, demo=False, seed=None)
    # two engines named: refused, whichever would win
    with pytest.raises(ConfigError, match="two match engines configured"):
        _make_sink(Settings(sink="remote", match_engine_endpoint="http://a:8080",
                            sink_config={"endpoint": "http://b:8080"}), pm, demo=False, seed=None)
    same = _make_sink(Settings(sink="remote", match_engine_endpoint="http://a:8080",
                               sink_config={"endpoint": "http://a:8080"}), pm, demo=False, seed=None)
    assert same.remote.endpoint == "http://a:8080"



async def test_a_signal_during_a_long_start_up_stops_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """500 markets take minutes to start on a saturated core: SIGINT (or a supervisor's SIGTERM) then must not wait
    for the start-up to finish (it did, and systemd's kill would have come first)."""
    import signal

    import trio.testing

    from mmframe import _cli

    closed: list[bool] = []

    class StartingForever:
        manager = None

        async def aclose(self) -> None:
            closed.append(True)

    async def never_up(service: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep_forever()

    monkeypatch.setattr(_cli, "serve_with_api", never_up)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cli.run_service, StartingForever(), 5.0, None)
            await trio.testing.wait_all_tasks_blocked()
            signal.raise_signal(signal.SIGINT)
    assert closed == [True]


def test_after_start_up_the_collector_leaves_what_start_up_built_alone() -> None:
    import gc

    from mmframe._cli import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    built = [object() for _ in range(1000)]
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS and gc.get_freeze_count() >= len(built)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
