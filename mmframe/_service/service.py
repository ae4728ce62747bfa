"""The service behind ``mmframe serve``: markets loaded from the store, run by the engine, with the audit trail.

Start-up follows the seed: load every ``strategy_currency`` row with its strategy's config (overrides applied),
turn each into a :class:`mmframe.MarketSpec`, start the ``market_status = 1`` ones and leave the others stopped
until a start command. A row that cannot be loaded (broken JSON, an unknown strategy, a config key the strategy
refuses) fails alone, with a message naming what is wrong; the other markets start.

The service knows nothing of HTTP: the control API (:mod:`mmframe._control`) drives it, and ``mmframe serve``
(:mod:`mmframe._cli`) runs the two side by side.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from typing import Any

import attrs
import pluggy
import trio

from .._engine.dry import DryBuild
from .._engine.gating import gated
from .._engine.manager import StrategyManager, build_strategy, strategy_config
from .._engine.spec import MarketSpec, MarketState, MarketStatus
from .._errors import ConfigError, MMFrameError
from .._models import Fill, MarketKey
from .._plugins import get_feeds, get_strategies
from .._settings import Settings
from .._store import FillRecord, MarketRow, Store
from .._symbols import compact_symbol
from ..protocols import OrderSink
from .audit import AuditTrail
from .cluster import Cluster, ClusterOptions, ClusterUnavailable, record_name
from .specs import check_feeds, market_symbol, spec_from_row

__all__ = ["ACTIVE", "MarketRecord", "ReloadRefused", "Service", "UnknownMarket"]

log = logging.getLogger("mmframe.service")

ACTIVE = frozenset({MarketState.RUNNING, MarketState.STARTING, MarketState.DEGRADED})


class UnknownMarket(MMFrameError, LookupError):
    """No configured market matches the symbol and market type asked for."""


class ReloadRefused(MMFrameError):
    """A reload whose fresh configuration cannot be used: the market goes on as it was (the API answers 422)."""


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
        return self.spec.market.symbol if self.spec is not None else market_symbol(self.row.index_symbol)


def _key(symbol: str) -> str:
    """A symbol as :meth:`Service.find` compares it: ``btc/usdt`` and ``BTCUSDT`` are the same."""
    return compact_symbol(symbol.upper())


class Service:
    """Markets from the store, run by one :class:`StrategyManager`, with the audit trail.

    :meth:`run` loads the markets and starts the enabled ones (in the background; :attr:`started_up` says when they
    have); the commands (:meth:`start`, :meth:`stop`, :meth:`reload`, :meth:`update_config`, :meth:`kill`) are what
    the control API calls; :meth:`aclose` stops every market and sets :attr:`closed`.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        pm: pluggy.PluginManager,
        sink: OrderSink,
        *,
        cluster: ClusterOptions | None = None,
        slot: tuple[int, int] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pm = pm
        self.sink = sink
        #: With *cluster*, this instance runs a market only while it holds the market's lease (see
        #: :mod:`mmframe._service.cluster`); the commands reach whichever instance owns it.
        self.cluster = Cluster(self, cluster) if cluster is not None else None
        self.manager = StrategyManager(
            sink, pm, instance_id=settings.instance_id, history=self.fill_history,
            id_tag=cluster.member if cluster is not None else "",
            gate=self.cluster.gate if self.cluster is not None else None,
        )
        #: ``(i, n)``: this process is worker *i* of *n* (``mmframe serve --workers``) without a cluster, and runs
        #: every *n*-th market (by id) from the *i*-th.
        self.slot = slot
        #: The control API's addresses once it is bound (announced in a cluster's heartbeat).
        self.api_binds: list[str] = []
        self.records: dict[str, MarketRecord] = {}
        self.market_ids: dict[MarketKey, str] = {}
        # One worker thread at a time talks to the store: SQLite has one writer, and hundreds of markets starting at
        # once must queue for their fill history rather than fail with "database is locked".
        self.store_limiter = trio.CapacityLimiter(1)
        self.audit = AuditTrail(store, self.market_ids, self.store_limiter, pm=pm)
        self.started_at = time.monotonic()
        #: Set when :meth:`aclose` has stopped every market: whatever runs beside the service (the API) stops then.
        self.closed = trio.Event()
        #: Set once start-up is over: every enabled market has started (or failed to start, or was stopped by a
        #: command first), or the service was stopped before that.
        self.started_up = trio.Event()
        self._nursery: trio.Nursery | None = None
        # Commands on one market (start, stop, reload, config update, the kill switch's stop) run one at a time, in
        # the order they came: two concurrent starts give the answer two sequential ones give.
        self._locks: dict[str, trio.Lock] = {}
        # The enabled markets that have not started yet in start-up, and every fill of ours read once for them (see
        # _first_start_fills).
        self._first_starts: set[MarketKey] = set()
        self._bulk_fills: dict[tuple[str, int], list[FillRecord]] | None = None
        self._bulk_reading: trio.Event | None = None  # set once the read under way is over

    # ---- running ----------------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the markets, start the audit trail and the engine, and report the service. The enabled markets are
        queued by then (each shows ``starting``) and start in the background, at most
        :data:`~mmframe._engine.manager.START_CONCURRENCY` at a time; the commands work at once. :attr:`started_up`
        is set once they all have started (or failed to), or the service was stopped first. Returns when
        :meth:`aclose` has stopped it."""
        rows = await trio.to_thread.run_sync(self.store.load_markets, limiter=self.store_limiter)
        log.info("Loaded %d currencies from database", len(rows))
        if self.slot is not None:
            index, count = self.slot
            ids = sorted({row.id for row in rows})
            mine = set(ids[index::count])
            rows = [row for row in rows if row.id in mine]
            log.info("worker %d of %d: %d of the %d markets are ours", index, count, len(mine), len(ids))
        for row in rows:
            if row.id in self.records:  # a second strategy_currency row for one market: the first one stands
                log.error("Strategy [%s] failed to load: %s", row.id, row.error or "defined twice")
                continue
            self._add_record(row)
        autostart = [r.spec for r in self.records.values() if r.spec is not None and r.row.market_status == 1]
        if self.cluster is not None:
            autostart = []  # in a cluster a market starts when this instance has claimed its lease
        self._first_starts = {spec.key for spec in autostart}
        self.pm.register(self.audit, name="mmframe.audit")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.audit.run)
                await nursery.start(functools.partial(self.manager.run, autostart, background=True))
                if self.cluster is not None:
                    await nursery.start(self.cluster.run)
                task_status.started(self)
                await self.manager.autostarted.wait()
                if self.cluster is not None:
                    await self.cluster.ready.wait()
                self._end_start_up()
                self._report_unstarted({spec.key for spec in autostart})
                self.started_up.set()
        finally:
            self._end_start_up()
            self.started_up.set()
            self.pm.unregister(self.audit)

    def _end_start_up(self) -> None:
        """Every market has taken its fills from the start-up's read: let it go. A market stopped before its turn
        reads its own when it starts."""
        self._first_starts.clear()
        self._bulk_fills = None

    def _report_unstarted(self, autostart: set[MarketKey]) -> None:
        """Log each enabled market that did not start (a stop command that came first is not a failure)."""
        for record in self.records.values():
            if self.manager.stopping:  # stopped while starting: a market not running was not started
                break
            if record.spec is None or record.spec.key not in autostart or record.spec.key not in self.manager.markets:
                continue
            status = self.manager.status(record.spec.key)[0]
            if status.state in (MarketState.RUNNING, MarketState.DEGRADED):
                continue
            if status.state in (MarketState.STOPPED, MarketState.STOPPING) and not status.error:
                continue
            log.error("Strategy [%s] did not start: %s", record.id, status.error or f"the market is {status.state}")

    async def fill_history(self, spec: MarketSpec, client_prefix: str) -> list[Fill]:
        """The fills of *spec*'s orders (ids starting with *client_prefix*) recorded so far, oldest first: those in
        the store and those the audit trail has not written yet, each once."""
        market_type = int(spec.market.market_type)
        # What the trail has not written yet is taken first: one it writes while the store is read below is then in
        # both (and counted once), never in neither.
        pending = self.audit.pending_fills(spec.market.symbol, market_type, client_prefix)
        records = await self._first_start_fills(spec, client_prefix)
        if records is None:
            records = await trio.to_thread.run_sync(
                lambda: self.store.fills(spec.market.symbol, market_type, client_prefix=client_prefix),
                limiter=self.store_limiter,
            )
        seen: set[tuple[str, str]] = set()
        fills = []
        for record in [*records, *pending]:
            key = (record.trade_id, record.client_order_id)
            if key in seen:
                continue
            seen.add(key)
            fills.append(record.fill())
        return fills

    async def _first_start_fills(self, spec: MarketSpec, client_prefix: str) -> list[FillRecord] | None:
        """During start-up, for an enabled market's first start: its stored fills, from one read of every fill of
        ours that the first market to ask makes for all of them. Hundreds of markets each reading their own would
        queue one by one for the store's one thread, behind the audit trail's writes. ``None`` for any other start.

        The read stays right for a market that starts later in the start-up: until it starts, it has no orders that
        could fill (a stop and a start command before its turn change nothing either)."""
        if spec.key not in self._first_starts:
            return None
        self._first_starts.discard(spec.key)
        if self._bulk_fills is None and self._bulk_reading is not None:
            # Another market is reading them: wait with the others, all woken at once when it is done (in line for
            # a lock, each would wait a turn of the scheduler).
            await self._bulk_reading.wait()
            if self._bulk_fills is None:
                return None  # that read failed: read our own
        if self._bulk_fills is None:
            self._bulk_reading = reading = trio.Event()
            try:
                self._bulk_fills = await self._read_our_fills()
            finally:
                self._bulk_reading = None
                reading.set()
        market = (spec.market.symbol, int(spec.market.market_type))
        return [r for r in self._bulk_fills.get(market, ()) if r.client_order_id.startswith(client_prefix)]

    async def _read_our_fills(self) -> dict[tuple[str, int], list[FillRecord]]:
        """Every stored fill of our orders (our instance's prefix), oldest first, by symbol and market type."""
        prefix = f"{self.settings.instance_id}-"
        rows = await trio.to_thread.run_sync(lambda: self.store.fills(client_prefix=prefix), limiter=self.store_limiter)
        fills: dict[tuple[str, int], list[FillRecord]] = {}
        for row in rows:
            fills.setdefault((row.symbol, row.market_type), []).append(row)
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
            feeds = get_feeds(self.pm)
            spec = spec_from_row(row, self.settings, feeds)
            build_strategy(get_strategies(self.pm), spec.strategy, spec.strategy_config, spec.market)
            check_feeds(spec, feeds)
            if self.cluster is not None and spec.leftovers != "cancel":
                # What an earlier owner left is cancelled, never adopted: a market's orders carry one owner's tag.
                spec = attrs.evolve(spec, leftovers="cancel")
            record.spec = spec
        except (ValueError, TypeError, ArithmeticError, MMFrameError) as exc:  # ConfigError, an attrs validator,
            record.error = str(exc) or type(exc).__name__  # a decimal overflow in a strategy's own checks
        return record

    async def _load_row(self, record: MarketRecord) -> MarketRow | None:
        """The market's row as the store holds it now (``None``: no longer there)."""
        return await trio.to_thread.run_sync(
            self.store.load_market, record.row.currency_id, record.row.market_type, limiter=self.store_limiter
        )

    def _register(self, record: MarketRecord) -> None:
        self.records[record.row.id] = record
        if record.spec is not None:
            self.market_ids[record.spec.key] = record.row.id

    def _lock(self, record: MarketRecord) -> trio.Lock:
        return self._locks.setdefault(record.id, trio.Lock())

    def _current(self, record: MarketRecord) -> MarketRecord:
        """The market's record now (a reload that ran while this command waited for its turn replaced it)."""
        return self.records.get(record.id, record)

    async def aclose(self) -> None:
        """Stop every market (cancelling its orders), flush the audit trail, then stop :meth:`run` and set
        :attr:`closed`. In a cluster, the leases are released after the markets have stopped (the others take them
        over at once)."""
        if self.cluster is not None:
            self.cluster.closing = True  # no claim from now on; renewals go on while the markets cancel
        try:
            await self.manager.aclose()
        finally:
            if self.cluster is not None:
                # Shielded, with a budget of its own: also when the stop's own time ran out (a market's own
                # orders carry its tag, so a cancel still on its way cannot reach the next owner's).
                await self.cluster.leave()
        await self.audit.flush()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        self.started_up.set()  # start-up, if it was still under way, is over
        self.closed.set()

    # ---- lookups ----------------------------------------------------------------------------------------------

    def find(self, symbol: str, market_type: int = 1) -> MarketRecord:
        """The market for ``BTC/USDT`` or ``BTCUSDT`` (or its id ``879_1``) and a market type."""
        wanted = _key(symbol)
        for record in self.records.values():
            if record.row.market_type != market_type:
                continue
            if wanted in (_key(record.symbol), _key(record.row.index_symbol)):
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
        cluster = self.cluster
        if cluster is not None:
            owner = cluster.owner_of(record)
            # run elsewhere (also when its configuration does not load here), or nobody's yet
            if owner != cluster.member and (owner is not None or record.spec is not None):
                return cluster.remote_state(record)
        if record.spec is None:
            return "failed"
        return self.local_state(record)

    def local_state(self, record: MarketRecord) -> str:
        """The market's state in this process (``stopped`` for one it does not run)."""
        status = self.status_of(record)
        return str(status.state) if status is not None else "stopped"

    def owner_of(self, record: MarketRecord) -> str | None:
        """In a cluster, the member that holds the market's lease (``None``: nobody); outside one, ``None``."""
        return self.cluster.owner_of(record) if self.cluster is not None else None

    # ---- commands ---------------------------------------------------------------------------------------------

    async def start(self, record: MarketRecord) -> MarketStatus:
        """Start the market (after any command on it under way); one already running is left as it is. In a
        cluster: ask the cluster to run it, and answer once an instance has started it."""
        if self.cluster is not None:
            return await self._cluster_start(self._current(record))
        async with self._lock(record):
            return await self._start(self._current(record))

    async def _start(self, record: MarketRecord) -> MarketStatus:
        if record.spec is None:
            raise ConfigError(record.error)
        status = self.status_of(record)
        if status is not None and status.state is MarketState.STARTING:
            # Queued or starting (the service's start-up): answered once it has started, as a start would be.
            return await self.manager.wait_started(record.spec.key)
        if status is not None and (status.state in ACTIVE or self.manager.is_active(record.spec.key)):
            return status  # running, or failed and about to be restarted by its supervisor
        return await self.manager.start_market(record.spec)

    async def stop(self, record: MarketRecord) -> MarketStatus | None:
        """Stop the market (after any command on it under way); its orders are cancelled before this returns. In a
        cluster: ask the cluster to stop it, and answer once its owner has stopped it and let its lease go."""
        if self.cluster is not None:
            return await self._cluster_stop(self._current(record))
        async with self._lock(record):
            return await self._stop(self._current(record))

    # ---- in a cluster: the markets this instance owns, and commands for the others ------------------------------

    async def start_owned(self, record: MarketRecord) -> str:
        """Start a market whose lease this instance has just claimed, on its configuration as stored now (another
        instance may have changed it since this one loaded it). Returns why the stored configuration could not be
        used (the market then runs on the one this instance had), ``""`` when it was."""
        async with self._lock(record):
            record = self._current(record)
            error = ""
            row = await self._load_row(record)
            if row is not None:
                fresh = self._make_record(row)
                if fresh.spec is not None and (record.spec is None or fresh.spec.key == record.spec.key):
                    self._register(fresh)
                    record = fresh
                elif fresh.error:
                    error = fresh.error
                    log.error("Strategy [%s] taken over: its stored configuration cannot be used (%s); it runs on "
                              "the one loaded before", record.id, error)
            if record.spec is None:
                raise ConfigError(record.error or error)
            if self.manager.is_active(record.spec.key):
                # Still running from before (a start that raced its giving up): a start of its own, which cancels
                # what an earlier owner left, not a run resumed.
                await self._stop(record)
            await self._start(record)
            return error

    async def stop_owned(self, record: MarketRecord) -> None:
        """Stop a market this instance runs (its orders are cancelled if the lease still allows it)."""
        async with self._lock(record):
            await self._stop(self._current(record))

    async def sweep_owned(self, record: MarketRecord) -> None:
        """After a market this instance still holds has stopped: cancel whatever is left under the market's
        prefix (an earlier owner's order that landed late), while the lease still allows it."""
        cluster = self.cluster
        async with self._lock(record):  # one at a time with the market's starts (and their leftover cancels)
            record = self._current(record)
            spec = record.spec
            if cluster is None or spec is None or not cluster.gate(spec) or self.manager.stopping:
                return
            if self.manager.is_active(spec.key):
                await self._stop(record)  # started again meanwhile (a reload): it is being given up all the same
            symbol, prefix = spec.market.symbol, self.manager.client_prefix(spec)
            try:
                with gated(self.sink, prefix, functools.partial(cluster.gate, spec)):  # not past the lease
                    cancelled = await self.sink.cancel_all(symbol, prefix)
            except MMFrameError as exc:
                log.warning("[%s] could not sweep the market's prefix before letting it go: %s", record.id, exc)
                return
        if cancelled:
            log.warning("[%s] cancelled %d orders left under the market's prefix %s before letting it go",
                        record.id, cancelled, prefix)

    async def reload_owned(self, record: MarketRecord) -> None:
        """Reload a market this instance owns, asked by another instance (see :meth:`reload`)."""
        await self._reload(record)

    def _cluster_status(self, record: MarketRecord) -> MarketStatus:
        assert self.cluster is not None and record.spec is not None
        if self.cluster.owner_of(record) == self.cluster.member:
            status = self.status_of(record)
            if status is not None:
                return status
        return self.cluster.remote_status(record)

    async def _cluster_start(self, record: MarketRecord) -> MarketStatus:
        assert self.cluster is not None
        if record.spec is None:
            raise ConfigError(record.error)
        cluster = self.cluster
        await cluster.wish([record], "run")
        owner = cluster.owner_of(record)
        if owner == cluster.member and cluster.gate(record.spec) and not cluster.busy(record):
            # ours: started here, as outside a cluster (a halted or failed one again)
            async with self._lock(record):
                record = self._current(record)
                if record.spec is not None and cluster.gate(record.spec) and not cluster.busy(record):
                    return await self._start(record)
        if owner is not None and self.state_of(record) in ("failed", "halted", "stopped"):
            # Held by another instance that does not run it (halted, failed): its owner starts it again.
            done = await cluster.ask_reload(record)
            if done.get("error"):
                raise ReloadRefused(str(done["error"]))

        def started() -> bool:
            return self.state_of(record) not in ("starting", "stopped", "stopping")

        await cluster.wait_for(started, cluster.command_timeout)
        return self._cluster_status(record)

    async def _cluster_stop(self, record: MarketRecord) -> MarketStatus | None:
        assert self.cluster is not None
        cluster = self.cluster
        await cluster.wish([record], "stop")
        if cluster.owner_of(record) == cluster.member:
            await self.stop_owned(record)
        name = record_name(record)
        if not await cluster.wait_for(lambda: name not in cluster.holders and name not in cluster.leases,
                                      cluster.command_timeout):
            raise MMFrameError(f"{record.id} was asked to stop, but its owner has not let it go yet")
        return self._cluster_status(record) if record.spec is not None else None

    async def _stop(self, record: MarketRecord) -> MarketStatus | None:
        if record.spec is None or record.spec.key not in self.manager.markets:
            return None
        return await self.manager.stop_market(record.spec.key)

    async def reload(self, record: MarketRecord) -> tuple[MarketRecord, MarketStatus]:
        """Read the market's configuration again from the store; if it builds (the strategy and feed accept it and
        a dry build of its book passes, see :meth:`StrategyManager.dry_build`), stop the market and start it with
        it. If it does not, raise :class:`ReloadRefused` and leave the market as it was, on its previous config.
        In a cluster, a market another instance owns is reloaded by its owner."""
        cluster = self.cluster
        if cluster is not None and record.spec is not None and cluster.owner_of(record) not in (None, cluster.member):
            done = await cluster.ask_reload(record)
            if done.get("error"):
                raise ReloadRefused(str(done["error"]))
            async with self._lock(record):  # what the owner runs now is what the store holds: show that here too
                record = self._current(record)
                row = await self._load_row(record)
                if row is not None:
                    fresh = self._make_record(row)
                    if fresh.spec is not None:
                        self._register(fresh)
                        record = fresh
            return record, self._cluster_status(record)
        return await self._reload(record)

    async def _reload(self, record: MarketRecord) -> tuple[MarketRecord, MarketStatus]:
        async with self._lock(record):
            record = self._current(record)
            row = await self._load_row(record)
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
            if self.cluster is not None and (
                fresh.spec is None or not self.cluster.gate(fresh.spec) or self.cluster.leaving(fresh)
            ):
                # not ours to run (or being given up): whoever owns it next runs the new config
                return fresh, self._cluster_status(fresh)
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
        row = await self._load_row(record)
        if row is None:
            raise UnknownMarket(f"market {record.id} is no longer in the database")
        if row.strategy_name is None:
            raise ConfigError(row.error or record.error or "the market has no strategy")
        overrides = {**row.overrides, **changes}  # over what the database holds now, not what we loaded
        effective = {**row.strategy_config, **overrides}
        strategy_config(get_strategies(self.pm), row.strategy_name, effective)
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
                    if record.id not in stopped:
                        stopped.append(record.id)
                    await self._stop(record)

        cluster = self.cluster
        unconfirmed: dict[str, str] = {}
        if cluster is not None:
            # Every market of the cluster: its owner stops it. Only once no instance holds a lease is what is
            # left under our prefix nobody's, and cancelled here. This instance's own markets stop first, whatever
            # Redis does.
            stopped += [r.id for r in self.records.values() if self.owner_of(r) not in (None, cluster.member)
                        and self.state_of(r) in ACTIVE]
            try:
                await cluster.wish(list(self.records.values()), "stop")
            except ClusterUnavailable as exc:
                unconfirmed["cluster"] = str(exc)
        async with trio.open_nursery() as nursery:
            for record in list(self.records.values()):
                nursery.start_soon(stop, record)
        held: set[str] = set()
        if cluster is not None:
            if "cluster" not in unconfirmed:
                try:
                    await cluster.wait_for(lambda: not cluster.holders and not cluster.leases,
                                           cluster.command_timeout)
                except ClusterUnavailable as exc:
                    unconfirmed["cluster"] = str(exc)
            held = {r.symbol for r in self.records.values() if self.owner_of(r) is not None}
            why = "a market of this symbol is still held by an instance"
            if "cluster" in unconfirmed:
                held = {r.symbol for r in self.records.values()}  # nobody can tell who holds what: touch nothing
                why = "not swept: without Redis nobody can tell which instance holds it"
            unconfirmed.update(dict.fromkeys(held, why))
        cancelled = 0
        prefix = f"{self.settings.instance_id}-"
        sweep = [(symbol, prefix) for symbol in sorted({r.symbol for r in self.records.values()} - held)]
        if self.slot is not None:
            # A worker of a fixed split: other workers run other markets of these symbols on the same engine.
            sweep = sorted({(r.symbol, self.manager.client_prefix(r.spec)) for r in self.records.values()
                            if r.spec is not None})
        for symbol, prefix in sweep:
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
