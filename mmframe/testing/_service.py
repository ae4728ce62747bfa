"""A whole service for a plugin's tests: the markets of a database (the seed's rows and the test's own), run with
the test's plugins on the paper sink, the control API on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._default_plugins.paper import PaperSink
from .._errors import unwrapped
from ..protocols import OrderSink
from ._fakes import ScriptedFeed
from ._harness import Harness, _FillRecorder, _plugin_manager
from ._sql import save_description

__all__ = ["DEFAULT_API_TOKEN", "ServiceHarness", "run_service"]

#: The control API token :func:`run_service` configures unless told otherwise.
DEFAULT_API_TOKEN = "mmframe-test-token"


class ServiceHarness:
    """A running service, as :func:`run_service` yields it.

    :ivar url: the control API's base URL (``http://127.0.0.1:<port>``).
    :ivar client: an ``httpx.AsyncClient`` on :attr:`url` (no token: :meth:`post` sends it).
    :ivar sink: the order sink (a :class:`~mmframe.testing.PaperSink` unless the test gave another).
    :ivar engine: the service's engine as a :class:`~mmframe.testing.Harness`: statuses, feeds
        (``engine.push_tick(price, market="BTC/USDT")``), tracked orders, the paper book.
    :ivar api_token: the control API's token.
    """

    def __init__(self, service: Any, engine: Harness, client: Any, url: str, api_token: str | None) -> None:
        self._service = service
        self.engine = engine
        self.sink = engine.sink
        self.client = client
        self.url: str = url
        self.api_token = api_token

    async def get(self, path: str, **params: Any) -> Any:
        """``GET`` *path* with query *params*; returns the ``httpx.Response``."""
        return await self.client.get(path, params=params or None)

    async def post(self, path: str, body: Any = None, *, token: str | None = "", **kwargs: Any) -> Any:
        """``POST`` *body* as JSON to *path* with ``Authorization: Bearer <token>`` (default: :attr:`api_token`;
        ``None``: no header); returns the ``httpx.Response``."""
        token = self.api_token if token == "" else token
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return await self.client.post(path, json=body, headers=headers, **kwargs)

    async def save_override(self, currency_id: int, market_type: int, config: Mapping[str, Any]) -> None:
        """Store a strategy config override for the market, straight into the database (past the API's checks),
        as an operator's SQL would; the market takes it at its next reload."""
        store = self._service.store
        await trio.to_thread.run_sync(store.save_override, currency_id, market_type, dict(config),
                                      limiter=self._service.store_limiter)

    async def describe_market(self, currency_id: int, market_type: int = 1, **description: Any) -> None:
        """Store the market's local description and engine options (the keyword arguments of
        :func:`~mmframe.testing.describe_market`) straight into the database; the market takes it at its next
        reload."""
        await trio.to_thread.run_sync(
            lambda: save_description(self._service.store, currency_id, market_type, **description),
            limiter=self._service.store_limiter,
        )

    async def settle(self, cushion: float = 0.01) -> None:
        """Let every task run until all have stayed blocked for *cushion* seconds (real clock, real sockets)."""
        await self.engine.settle(cushion)

    async def aclose(self) -> None:
        """Stop the service: every market stops and cancels its orders."""
        await self._service.aclose()


@asynccontextmanager
async def run_service(
    database_url: str,
    *plugins: object,
    sink: OrderSink | None = None,
    strategies: Sequence[type] = (),
    feeds: Sequence[type] = (ScriptedFeed,),
    api_token: str | None = DEFAULT_API_TOKEN,
    load_entrypoints: bool = False,
    **settings: Any,
) -> AsyncIterator[ServiceHarness]:
    """Run the service on the database at *database_url* (mmframe's tables are made if missing) with *plugins*,
    as ``mmframe serve`` would: every market of the database with ``market_status`` 1 starts; the control API
    listens on a free loopback port. On the way out the service stops and its markets cancel their orders.

    :param plugins: plugin objects or modules to register (a strategy plugin's module, a test's own plugin).
    :param sink: the order sink (default: a new :class:`~mmframe.testing.PaperSink`).
    :param strategies: strategy classes to register directly.
    :param feeds: feed classes to register directly; by default :class:`~mmframe.testing.ScriptedFeed` as
        ``scripted``, which every market follows (``feed="scripted"`` unless *settings* says otherwise).
    :param api_token: the control API's token (``None``: POSTs are refused).
    :param settings: more settings of the service: ``instance_id=``, ``feed=``, ``max_body_bytes=``, ...

    Needs ``httpx`` (for :attr:`ServiceHarness.client`). ::

        seed_database(url)  # the seed's two markets, on the external_index_follow strategy
        async with run_service(url, mmframe_external_index_follow) as service:
            service.engine.push_tick("45000", market="BTC/USDT")
            await service.settle()
            status = (await service.get("/api/v1/strategy/status", symbol="BTC/USDT")).json()["data"]
    """
    import httpx

    from .._control.serve import serve
    from .._service.service import Service
    from .._settings import Settings
    from .._store import Store

    recorder = _FillRecorder()
    pm = _plugin_manager(plugins, strategies, feeds, recorder, load_entrypoints)
    values: dict[str, Any] = {"db_url": database_url, "api_port": 0, "api_token": api_token, "feed": "scripted"}
    values.update(settings)
    store = Store(database_url)
    try:
        store.init()
        sink = sink if sink is not None else PaperSink()
        service = Service(Settings(**values), store, pm, sink)
        with unwrapped():
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(serve, service)
                engine = Harness(service.manager, sink, recorder)
                async with httpx.AsyncClient(base_url=binds[0], timeout=10) as client:
                    try:
                        yield ServiceHarness(service, engine, client, binds[0], api_token)
                    finally:
                        with trio.CancelScope(shield=True):
                            await service.aclose()
    finally:
        store.close()
