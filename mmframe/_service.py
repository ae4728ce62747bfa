"""The service behind ``mmframe serve``: markets loaded from the store, the engine, the audit trail, the control API.

Start-up follows the seed: load every ``strategy_currency`` row with its strategy's config (overrides applied),
turn each into a :class:`~mmframe._engine.market.MarketSpec`, start the ``market_status = 1`` ones and leave the
others stopped until a start command. A row that cannot be loaded (broken JSON, an unknown strategy, a config
key the strategy refuses) fails alone, with a message naming what is wrong; the other markets start.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs
import pluggy
import trio

from ._engine.index import IndexGuard, IndexSource
from ._engine.manager import DryBuild, StrategyManager
from ._engine.market import MarketSpec, MarketState, MarketStatus, RestartPolicy
from ._engine.reconcile import Tolerance
from ._engine.risk import RiskLimits
from ._errors import ConfigError, MMFrameError
from ._hookspecs import hookimpl
from ._models import Fill, Market, MarketKey, MarketType, Order, OrderEvent
from ._plugins import get_feeds, get_strategies
from ._settings import Settings
from ._store import FillRecord, MarketRow, OrderEventRecord, Store
from .config import structure_config
from .protocols import OrderSink, Position

__all__ = ["MarketOptions", "MarketRecord", "ReloadRefused", "Service", "UnknownMarket", "split_symbol"]

log = logging.getLogger("mmframe.service")

QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "USD", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB")


KNOWN_FEED_PLUGINS = frozenset({"binance", "okex"})  # feeds shipped as plugins of their own

ACTIVE = frozenset({MarketState.RUNNING, MarketState.STARTING, MarketState.DEGRADED})


class UnknownMarket(MMFrameError, LookupError):
    """No configured market matches the symbol and market type asked for."""


class ReloadRefused(MMFrameError):
    """A reload whose fresh configuration cannot be used: the market goes on as it was (the API answers 422)."""


def split_symbol(index_symbol: str) -> str:
    """``BTCUSDT`` → ``BTC/USDT`` (by the known quote assets); a symbol with a separator is normalised to ``/``."""
    text = index_symbol.strip().upper()
    for sep in ("/", "-", "_"):
        if sep in text:
            base, _, quote = text.partition(sep)
            return f"{base}/{quote}"
    for quote in QUOTE_ASSETS:
        if text.endswith(quote) and len(text) > len(quote):
            return f"{text[: -len(quote)]}/{quote}"
    return text


def compact_symbol(symbol: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", symbol.upper())


@attrs.frozen
class MarketOptions:
    """The engine's options for one market (``mmframe_market.options``); every key optional.

    :param feed: the feed plugin (default: the service's ``feed`` setting).
    :param feed_config: that feed's configuration.
    :param index_symbol: the symbol the feed knows the index by (default: ``strategy_currency.index_symbol``).
    :param index_guard: how the index is screened (:class:`~mmframe._engine.index.IndexGuard`).
    :param index_sources: more feeds for a composite index (each ``{"feed", "feed_config", "index_symbol"}``); a
        ``redis`` source's connection defaults to ``MARKET_REDIS_*`` like the market's own feed.
    """

    feed: str | None = None
    feed_config: dict[str, Any] = attrs.field(factory=dict)
    index_symbol: str | None = None
    risk: RiskLimits = RiskLimits()
    tolerance: Tolerance = Tolerance()
    refresh_interval: float = 1.0
    stale_after: float = 10.0
    # 2 %, not the engine's 10 %: a single source sending a wrong price inside max_tick_jump is quoted at once, so a
    # service following one feed keeps that door narrow (a real move beyond it is taken after about a second).
    max_tick_jump: Decimal = Decimal("0.02")
    confirm_ticks: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    index_guard: IndexGuard = IndexGuard()
    index_sources: tuple[IndexSource, ...] = ()
    restart: RestartPolicy = RestartPolicy()
    leftovers: str = attrs.field(default="cancel", validator=attrs.validators.in_(("cancel", "adopt")))
    seed: int | None = None
    reconcile_interval: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))
    reconcile_grace: float = attrs.field(default=2.0, validator=attrs.validators.ge(0))


@attrs.define
class MarketRecord:
    """A configured market: its row, the spec built from it (or why none could be built)."""

    row: MarketRow
    spec: MarketSpec | None = None
    error: str = ""

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def symbol(self) -> str:
        return self.spec.market.symbol if self.spec is not None else split_symbol(self.row.index_symbol)


def market_from_row(row: MarketRow) -> Market:
    """The market's description: its ``mmframe_market`` row, else the strategy config's ``tick_size``,
    ``quote_precision`` (prices) and ``base_precision`` (quantities)."""
    market_type = MarketType(row.market_type)
    desc = row.description
    try:
        if desc is not None:
            return desc.market(market_type)
        config = row.effective_config
        missing = [k for k in ("tick_size", "quote_precision", "base_precision") if k not in config]
        if missing:
            raise LookupError(", ".join(missing))
        qp = int(config["base_precision"])
        return Market(
            split_symbol(row.index_symbol),
            tick_size=config["tick_size"],
            price_precision=int(config["quote_precision"]),
            quantity_precision=qp,
            min_quantity=Decimal(1).scaleb(-qp),
            market_type=market_type,
        )
    except LookupError as exc:
        raise ConfigError(f"no mmframe_market row describes this market and its config lacks {exc.args[0]}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"market description: {exc}") from None


DEFAULT_EXCHANGE = "binance"


def choose_feed(
    row: MarketRow, options: MarketOptions, settings: Settings, feeds: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any], str]:
    """Which feed a market follows, with what options, under which index symbol.

    In order: the market's own ``feed`` option; the service's ``--feed`` / ``MMFRAME_FEED``; the ``redis`` bus
    when a market Redis is configured (``MARKET_REDIS_*``), on the channels of the strategy config's
    ``external_exchange`` (``binance`` unless told); else that exchange's feed plugin, connected directly. The
    index symbol is the market's ``index_symbol`` option, else the config's ``external_symbol``, else
    ``strategy_currency.index_symbol``. The ``redis`` feed's connection defaults to ``MARKET_REDIS_*``.
    """
    config = row.effective_config
    exchange = str(config.get("external_exchange") or DEFAULT_EXCHANGE).strip().lower()
    if feeds is not None and exchange in feeds:
        exchange = getattr(feeds[exchange], "name", exchange)  # an alias (okx) names the feed's channels (okex)
    index_symbol = options.index_symbol or str(config.get("external_symbol") or "") or row.index_symbol
    feed_config = dict(options.feed_config)
    if options.feed:
        feed = options.feed
    elif settings.feed:
        feed = settings.feed
    elif settings.market_redis is not None:
        feed = "redis"
    else:
        feed = exchange
    if feed == "redis":
        feed_config.setdefault("exchange", exchange)
        feed_config = _bus_defaults(feed, feed_config, settings)
    return feed, feed_config, index_symbol


def _bus_defaults(feed: str, config: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """A ``redis`` feed's connection defaults to ``MARKET_REDIS_*``; other feeds' configs are left as they are."""
    config = dict(config)
    address = settings.market_redis
    if feed == "redis" and address is not None:
        for key, value in (("host", address.host), ("port", address.port), ("db", address.db),
                           ("password", address.password)):
            if value is not None:
                config.setdefault(key, value)
    return config


def spec_from_row(row: MarketRow, settings: Settings, feeds: Mapping[str, Any] | None = None) -> MarketSpec:
    if row.error:
        raise ConfigError(row.error)
    if row.strategy_name is None:
        raise ConfigError(f"strategy_currency.default_strategy {row.strategy_id} names no strategy_strategy row")
    market = market_from_row(row)
    options_data = row.description.options if row.description is not None else {}
    options = structure_config(options_data or {}, MarketOptions)
    feed, feed_config, index_symbol = choose_feed(row, options, settings, feeds)
    for number, source in enumerate(options.index_sources):
        if source.feed == "redis" and not source.feed_config.get("exchange"):
            raise ConfigError(f"index_sources[{number}]: a redis source needs feed_config.exchange, the bus channels "
                              "to follow (price:update:{exchange}:{symbol})")
    sources = tuple(
        attrs.evolve(source, feed_config=_bus_defaults(source.feed, source.feed_config, settings))
        for source in options.index_sources
    )
    return MarketSpec(
        market=market,
        strategy=row.strategy_name,
        strategy_config=row.effective_config,
        feed=feed,
        feed_config=feed_config,
        index_symbol=index_symbol,
        risk=options.risk,
        tolerance=options.tolerance,
        refresh_interval=options.refresh_interval,
        stale_after=options.stale_after,
        max_tick_jump=options.max_tick_jump,
        confirm_ticks=options.confirm_ticks,
        index_guard=options.index_guard,
        index_sources=sources,
        restart=options.restart,
        leftovers=options.leftovers,
        seed=options.seed,
        reconcile_interval=options.reconcile_interval,
        reconcile_grace=options.reconcile_grace,
        name=row.id,
    )


class AuditTrail:
    """An observer plugin that queues every order event and fill; :meth:`run` writes them to the store in
    batches from a worker thread, so a market never waits for the database."""

    BATCH = 500
    MAX_PENDING = 200_000

    def __init__(
        self, store: Store, market_ids: Mapping[MarketKey, str], limiter: trio.CapacityLimiter | None = None
    ) -> None:
        self.store = store
        self.limiter = limiter if limiter is not None else trio.CapacityLimiter(1)
        self.market_ids = market_ids
        self.events: list[OrderEventRecord] = []
        self.fills: list[FillRecord] = []
        self.dropped = 0
        self.written = 0
        self._wake = trio.Event()

    def _market_id(self, market: Market) -> str:
        return self.market_ids.get(market.key, str(market.key))

    @hookimpl
    def order_event(self, market: Market, event: OrderEvent, order: Order) -> None:
        record = OrderEventRecord.from_event(
            event, order, market_id=self._market_id(market), market_type=int(market.market_type)
        )
        self.events.append(record)
        self._added()

    @hookimpl
    def order_filled(self, market: Market, fill: Fill, position: Position) -> None:
        record = FillRecord.from_fill(fill, market_id=self._market_id(market), market_type=int(market.market_type))
        self.fills.append(record)
        self._added()

    def _added(self) -> None:
        pending = len(self.events) + len(self.fills)
        if pending > self.MAX_PENDING:  # the database has been away for a long time: keep the newest
            self.dropped += 1
            (self.events if self.events else self.fills).pop(0)
        if pending >= self.BATCH:
            self._wake.set()

    async def run(
        self, *, interval: float = 0.5, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        try:
            while True:
                with trio.move_on_after(interval):
                    await self._wake.wait()
                self._wake = trio.Event()
                await self.flush()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.flush()

    async def flush(self) -> None:
        if not self.events and not self.fills:
            return
        events, fills = self.events, self.fills
        self.events, self.fills = [], []
        try:
            await trio.to_thread.run_sync(self.store.record, events, fills, limiter=self.limiter)
            self.written += len(events) + len(fills)
        except Exception as exc:
            log.error("could not write %d audit records (will retry): %s", len(events) + len(fills), exc)
            self.events[:0], self.fills[:0] = events, fills


class Service:
    """Markets from the store, run by one :class:`StrategyManager`, controlled through :mod:`mmframe._control`."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        pm: pluggy.PluginManager,
        sink: OrderSink,
        *,
        api: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pm = pm
        self.sink = sink
        self.manager = StrategyManager(sink, pm, instance_id=settings.instance_id, history=self.fill_history)
        self.records: dict[str, MarketRecord] = {}
        self.market_ids: dict[MarketKey, str] = {}
        # One worker thread at a time talks to the store: SQLite has one writer, and hundreds of markets starting at
        # once must queue for their fill history rather than fail with "database is locked".
        self.store_limiter = trio.CapacityLimiter(1)
        self.audit = AuditTrail(store, self.market_ids, self.store_limiter)
        self.started_at = time.monotonic()
        self.api = api
        self.binds: list[str] = []
        self._nursery: trio.Nursery | None = None
        # Commands on one market (start, stop, reload, config update, the kill switch's stop) run one at a time, in
        # the order they came: two concurrent starts give the answer two sequential ones give.
        self._locks: dict[str, trio.Lock] = {}

    # ---- running ----------------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED) -> None:
        if self.api and not self.settings.api_is_loopback and not self.settings.api_token:
            raise ConfigError(
                f"refusing to serve the control API on {self.settings.api_host} without MMFRAME_API_TOKEN: "
                "set a token or bind to 127.0.0.1"
            )
        rows = await trio.to_thread.run_sync(self.store.load_markets, limiter=self.store_limiter)
        log.info("Loaded %d currencies from database", len(rows))
        for row in rows:
            if row.id in self.records:  # a second strategy_currency row for one market: the first one stands
                log.error("Strategy [%s] failed to load: %s", row.id, row.error or "defined twice")
                continue
            self._add_record(row)
        autostart = [r.spec for r in self.records.values() if r.spec is not None and r.row.market_status == 1]
        self.pm.register(self.audit, name="mmframe.audit")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.audit.run)
                await nursery.start(self.manager.run, autostart)
                for record in self.records.values():
                    if record.spec is not None and record.spec.key in self.manager.markets:
                        status = self.manager.status(record.spec.key)[0]
                        if status.state is not MarketState.RUNNING:
                            log.error("Strategy [%s] did not start: %s", record.id, status.error)
                if self.api:
                    from ._control.app import serve_api

                    self.binds = await nursery.start(serve_api, self)
                task_status.started(self)
        finally:
            self.pm.unregister(self.audit)

    async def fill_history(self, spec: MarketSpec, client_prefix: str) -> list[Fill]:
        """The fills of *spec*'s orders (ids starting with *client_prefix*) recorded so far, oldest first: those in
        the store and those the audit trail has not written yet, each once."""
        market_type = int(spec.market.market_type)
        records = await trio.to_thread.run_sync(
            lambda: self.store.fills(spec.market.symbol, market_type, client_prefix=client_prefix),
            limiter=self.store_limiter,
        )
        pending = [
            r for r in self.audit.fills
            if r.symbol == spec.market.symbol and r.market_type == market_type
            and r.client_order_id.startswith(client_prefix)
        ]
        seen: set[tuple[str, str]] = set()
        fills = []
        for record in [*records, *pending]:
            key = (record.trade_id, record.client_order_id)
            if key in seen:
                continue
            seen.add(key)
            fills.append(record.fill())
        return fills

    def _add_record(self, row: MarketRow) -> MarketRecord:
        record = self._make_record(row)
        if record.error:
            log.error("Strategy [%s] failed to load: %s", row.id, record.error)
        self._register(record)
        return record

    def _make_record(self, row: MarketRow) -> MarketRecord:
        """The record of *row*: its spec, checked against the strategy and the feed, or why there is none."""
        record = MarketRecord(row)
        try:
            spec = spec_from_row(row, self.settings, get_feeds(self.pm))
            self._check_strategy_config(spec)
            self._check_feed(spec)
            record.spec = spec
        except (ValueError, TypeError, ArithmeticError, MMFrameError) as exc:  # ConfigError, an attrs validator,
            record.error = str(exc) or type(exc).__name__  # a decimal overflow in a strategy's own checks
        return record

    def _register(self, record: MarketRecord) -> None:
        self.records[record.row.id] = record
        if record.spec is not None:
            self.market_ids[record.spec.key] = record.row.id

    def _lock(self, record: MarketRecord) -> trio.Lock:
        return self._locks.setdefault(record.id, trio.Lock())

    def _current(self, record: MarketRecord) -> MarketRecord:
        """The market's record now (a reload that ran while this command waited for its turn replaced it)."""
        return self.records.get(record.id, record)

    def _check_feed(self, spec: MarketSpec) -> None:
        """Refuse a feed (the market's own, or an index source's) that is not installed, or options it would refuse,
        before anything starts."""
        feeds = get_feeds(self.pm)
        for name, config in [(spec.feed, spec.feed_config), *((s.feed, s.feed_config) for s in spec.index_sources)]:
            if name not in feeds:
                hint = f" (pip install mmframe-{name}, or set MARKET_REDIS_HOST to follow the Redis bus)"
                raise ConfigError(
                    f"feed {name!r} is not installed{hint if name in KNOWN_FEED_PLUGINS else ''}; "
                    f"installed feeds: {', '.join(sorted(feeds))}"
                )
            try:
                structure_config(config, feeds[name].Config)
            except ConfigError as exc:
                raise ConfigError(f"feed {name!r}: {exc}") from None

    def _check_strategy_config(self, spec: MarketSpec) -> None:
        """Refuse a config the strategy would refuse, before anything starts: the key is named."""
        strategies = get_strategies(self.pm)
        try:
            cls = strategies.get_or_raise(spec.strategy)
        except MMFrameError as exc:
            raise ConfigError(str(exc)) from None
        config = structure_config(spec.strategy_config, cls.Config)
        cls(config, spec.market)  # a check that needs the market (a spacing off the tick grid) fails here, not later

    async def aclose(self) -> None:
        """Stop every market (cancelling its orders), flush the audit trail, stop the API."""
        await self.manager.aclose()
        await self.audit.flush()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # ---- lookups ----------------------------------------------------------------------------------------------

    def find(self, symbol: str, market_type: int = 1) -> MarketRecord:
        """The market for ``BTC/USDT`` or ``BTCUSDT`` (or its id ``879_1``) and a market type."""
        wanted = compact_symbol(symbol)
        for record in self.records.values():
            if record.row.market_type != market_type:
                continue
            if wanted in (compact_symbol(record.symbol), compact_symbol(record.row.index_symbol)):
                return record
        if symbol in self.records and self.records[symbol].row.market_type == market_type:
            return self.records[symbol]
        known = ", ".join(f"{r.symbol} ({r.row.market_type})" for r in self.records.values()) or "none"
        raise UnknownMarket(f"no market {symbol} with market_type {market_type} (configured: {known})")

    def status_of(self, record: MarketRecord) -> MarketStatus | None:
        if record.spec is None or record.spec.key not in self.manager.markets:
            return None
        return self.manager.status(record.spec.key)[0]

    def state_of(self, record: MarketRecord) -> str:
        if record.spec is None:
            return "failed"
        status = self.status_of(record)
        return str(status.state) if status is not None else "stopped"

    # ---- commands ---------------------------------------------------------------------------------------------

    async def start(self, record: MarketRecord) -> MarketStatus:
        """Start the market (after any command on it under way); one already running is left as it is."""
        async with self._lock(record):
            return await self._start(self._current(record))

    async def _start(self, record: MarketRecord) -> MarketStatus:
        if record.spec is None:
            raise ConfigError(record.error)
        status = self.status_of(record)
        if status is not None and (status.state in ACTIVE or self.manager.is_active(record.spec.key)):
            return status  # running, or failed and about to be restarted by its supervisor
        return await self.manager.start_market(record.spec)

    async def stop(self, record: MarketRecord) -> MarketStatus | None:
        """Stop the market (after any command on it under way); its orders are cancelled before this returns."""
        async with self._lock(record):
            return await self._stop(self._current(record))

    async def _stop(self, record: MarketRecord) -> MarketStatus | None:
        if record.spec is None or record.spec.key not in self.manager.markets:
            return None
        return await self.manager.stop_market(record.spec.key)

    async def reload(self, record: MarketRecord) -> tuple[MarketRecord, MarketStatus]:
        """Read the market's configuration again from the store; if it builds (the strategy and feed accept it and
        a dry build of its book passes, see :meth:`StrategyManager.dry_build`), stop the market and start it with
        it. If it does not, raise :class:`ReloadRefused` and leave the market as it was, on its previous config."""
        async with self._lock(record):
            record = self._current(record)
            row = await trio.to_thread.run_sync(
                self.store.load_market, record.row.currency_id, record.row.market_type, limiter=self.store_limiter
            )
            if row is None:
                await self._stop(record)
                raise UnknownMarket(f"market {record.id} is no longer in the database")
            fresh = self._make_record(row)
            if fresh.spec is not None:
                try:
                    built = self.manager.dry_build(fresh.spec)
                    if not built.quotes and record.spec is not None and self.manager.is_active(record.spec.key):
                        # A quoting market is not turned into one that quotes nothing (see _update_config).
                        try:
                            before = len(self.manager.dry_build(record.spec).quotes)
                        except ConfigError:
                            before = 0
                        if before:
                            raise ConfigError(_empty_book(built, f"the market's current config quotes {before}"))
                except ConfigError as exc:
                    fresh.spec, fresh.error = None, str(exc)
            if fresh.spec is None:
                if record.spec is None:
                    self._register(fresh)  # nothing ran before: show the new reason
                state = self.state_of(record)
                keeps = "keeps running on its previous config" if state in ("running", "degraded") else (
                    f"stays {state}" + (", with its previous config" if record.spec is not None else "")
                )
                log.error("Strategy [%s] reload refused, it %s: %s", record.id, keeps, fresh.error)
                raise ReloadRefused(f"reload of {record.id} refused, the market {keeps}: {fresh.error}")
            await self._stop(record)
            self._register(fresh)
            return fresh, await self._start(fresh)

    async def update_config(self, record: MarketRecord, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Validate *changes* merged over the market's config, persist them as the market's override, and return
        the new effective config. It applies on the next reload.

        Validated are the strategy's own config checks and a dry build of the market's book with the new config at
        the market's current index (see :meth:`StrategyManager.dry_build`); a refusal names the key(s) to blame. A
        change that leaves the book empty is refused when the current config's book is not empty, or when a changed
        key alone empties the book of the strategy's own config (without the market's overrides); a book that was
        empty already (a grid with nothing in its window) may be changed in other ways.
        """
        async with self._lock(record):
            return await self._update_config(self._current(record), changes)

    async def _update_config(self, record: MarketRecord, changes: Mapping[str, Any]) -> dict[str, Any]:
        current = record.row
        row = await trio.to_thread.run_sync(
            self.store.load_market, current.currency_id, current.market_type, limiter=self.store_limiter
        )
        if row is None:
            raise UnknownMarket(f"market {record.id} is no longer in the database")
        if row.strategy_name is None:
            raise ConfigError(row.error or record.error or "the market has no strategy")
        overrides = {**row.overrides, **changes}  # over what the database holds now, not what we loaded
        effective = {**row.strategy_config, **overrides}
        cls = get_strategies(self.pm).get_or_raise(row.strategy_name)
        structure_config(effective, cls.Config)
        before = self._book_size(row)  # what the config as stored now quotes
        built, error = self._dry(attrs.evolve(row, overrides=overrides))
        if built is not None and not built.quotes:
            if before:
                error = _empty_book(built, f"the current config quotes {before}")
            else:
                own = self._book_size(attrs.evolve(row, overrides={}))
                guilty = [k for k in changes if own and self._empties(attrs.evolve(row, overrides={k: changes[k]}))]
                if guilty:
                    keys = ", ".join(f"config.{k}" for k in sorted(guilty, key=str))
                    raise ConfigError(f"{keys}: {_empty_book(built, f'the strategy config alone quotes {own}')}")
        if error:
            raise ConfigError(f"{self._blame(row, changes, before)}: {error}")
        await trio.to_thread.run_sync(
            self.store.save_override, row.currency_id, row.market_type, overrides, limiter=self.store_limiter
        )
        return effective

    def _dry(self, row: MarketRow) -> tuple[DryBuild | None, str]:
        """The dry build of *row* (see :meth:`StrategyManager.dry_build`), or ``None`` and why it fails."""
        record = self._make_record(row)
        if record.spec is None:
            if record.error.startswith("[<class 'decimal."):  # a strategy's own check overflowed: say what it means
                signal = record.error.split(".")[1].split("'")[0]
                return None, (f"the strategy cannot check its config for this market: {signal}: a value too large or "
                              "too precise for exact decimal arithmetic")
            return None, record.error
        try:
            return self.manager.dry_build(record.spec), ""
        except ConfigError as exc:
            return None, str(exc)

    def _book_size(self, row: MarketRow) -> int:
        """How many orders the dry build of *row* quotes (0 when it does not build)."""
        built, _ = self._dry(row)
        return len(built.quotes) if built is not None else 0

    def _empties(self, row: MarketRow) -> bool:
        built, _ = self._dry(row)
        return built is not None and not built.quotes

    def _build_error(self, row: MarketRow, before: int = 0) -> str:
        """Why *row* would fail to load or to build its book (see :meth:`StrategyManager.dry_build`), or ``""``; with
        *before* (the orders the current config quotes), a book left empty is a failure too."""
        built, error = self._dry(row)
        if built is not None and before and not built.quotes:
            return _empty_book(built, f"the current config quotes {before}")
        return error

    def _blame(self, row: MarketRow, changes: Mapping[str, Any], before: int = 0) -> str:
        """The changed keys that fail alone (``config.base_quantity``), else all the changed keys."""
        alone = [
            k for k in changes
            if self._build_error(attrs.evolve(row, overrides={**row.overrides, k: changes[k]}), before)
        ]
        return ", ".join(f"config.{k}" for k in sorted(alone or changes, key=str))

    async def kill(self) -> dict[str, Any]:
        """The kill switch: stop every market (each cancels its orders, after any command on it under way), then
        cancel anything left with our instance prefix on every configured symbol."""
        stopped: list[str] = []

        async def stop(record: MarketRecord) -> None:
            async with self._lock(record):
                record = self._current(record)
                status = self.status_of(record)
                if record.spec is not None and status is not None and (
                    status.state in ACTIVE or self.manager.is_active(record.spec.key)
                ):
                    stopped.append(record.id)
                    await self._stop(record)

        async with trio.open_nursery() as nursery:
            for record in list(self.records.values()):
                nursery.start_soon(stop, record)
        cancelled = 0
        unconfirmed: dict[str, str] = {}
        prefix = f"{self.settings.instance_id}-"
        for symbol in sorted({r.symbol for r in self.records.values()}):
            try:
                cancelled += await self.sink.cancel_all(symbol, prefix)
            except MMFrameError as exc:  # the sink cannot answer now: say so, and go on with the other symbols
                unconfirmed[symbol] = str(exc)
        log.warning("kill switch: stopped %s, %d orders cancelled after the stops%s", stopped or "nothing",
                    cancelled, f"; NOT confirmed for {unconfirmed}" if unconfirmed else "")
        return {"stopped": stopped, "cancelled_after_stop": cancelled, "unconfirmed": unconfirmed}

    def uptime(self) -> float:
        return time.monotonic() - self.started_at


def _empty_book(built: DryBuild, before: str) -> str:
    """Why a config whose dry build quotes nothing is refused."""
    return (
        f"its book at the {built.source} price {built.reference} would be empty ({before} orders there): every "
        "order is left out (a quantity below the market's minimum, a price outside the grid or the window); the "
        "market would run and quote nothing"
    )


def metrics_of(status: MarketStatus | None) -> dict[str, Any]:
    """The seed's per-strategy metrics (plus mmframe's), decimals as strings."""
    if status is None:
        return {
            "total_orders": 0,
            "success_orders": 0,
            "failed_orders": 0,
            "total_trades": 0,
            "total_volume": "0",
            "active_orders": 0,
            "uptime_seconds": 0,
        }
    return {
        "total_orders": status.orders_placed + status.orders_vetoed,
        "success_orders": status.orders_placed - status.orders_rejected,
        "failed_orders": status.orders_rejected + status.orders_vetoed,
        "total_trades": status.fills,
        "total_volume": str(status.volume),
        "active_orders": status.active_orders,
        "uptime_seconds": math.floor(status.uptime_seconds),
        "orders_cancelled": status.orders_cancelled,
        "orders_vetoed": status.orders_vetoed,
        "bids": status.bids,
        "asks": status.asks,
        "position": str(status.position),
        "pnl": str(status.pnl),
        "stale": status.stale,
        "ticks": status.ticks,
        "ticks_rejected": status.ticks_rejected,
        "ticks_rejected_by_reason": dict(status.ticks_rejected_by_reason),
    }
