"""The ``mmframe`` command line: ``serve`` and ``plugins``, plus whatever plugins add through
``register_commands``."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs
import click
import trio

from . import __version__, _convert
from ._backtest.cli import backtest_command
from ._backtest.recorder import add_record_commands, feed_config, feed_symbols
from ._control.serve import serve as serve_with_api
from ._demo import demo_sink_options, require_demo_strategy, write_demo
from ._engine.manager import StrategyManager
from ._engine.spec import MarketStatus
from ._errors import ConfigError, MMFrameError
from ._plugins import get_plugin_manager, get_sinks, get_strategies, list_plugins
from ._service.cluster import ClusterOptions
from ._service.service import Service
from ._settings import Settings, load_settings
from ._store import Store, StoreError
from ._workers import supervise_workers, watch_supervisor
from .config import structure_config
from .logs import setup_logging
from .protocols import BoundsRequestTime, KeepsLocalBooks, Named

log = logging.getLogger("mmframe")

DEMO_TOKEN = "demo"  # --demo on loopback only, when no MMFRAME_API_TOKEN is set: the README's curl lines use it


@click.group()
@click.version_option(__version__, prog_name="mmframe")
def cli() -> None:
    """mmframe: market making on your exchange's own matching engine."""


def _settings_options(func: Any) -> Any:
    """The flags every command that touches the database or the service shares."""
    options = [
        click.option("--db", "db", default=None, metavar="URL",
                     help="Database URL (mysql+pymysql://user:pass@host:3306/db or sqlite:///path); "
                     "default: the DB_* keys, else an SQLite file."),
        click.option("--sqlite", "sqlite", default=None, metavar="PATH",
                     help="The SQLite file used when no database is configured [default: mmframe.sqlite]."),
        click.option("--env-file", default=".env", show_default=True, type=click.Path(dir_okay=False),
                     help="A .env file of the seed's keys (read if it exists; environment variables win)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _load(flags: dict[str, Any], env_file: str) -> Settings:
    try:
        return load_settings(flags, env_file=env_file)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _open_store(settings: Settings) -> Store:
    try:
        store = Store(settings.database_url)
        created = store.init()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    if created:
        log.info("Created tables in %s: %s", store.url_for_display, ", ".join(created))
    return store


@cli.command()
@click.option("--demo", is_flag=True, help="Quote the demo markets (BTC/USDT, ETH/USDT) on an SQLite store, the sim "
              "feed and the paper sink with simulated takers.")
@_settings_options
@click.option("--http", "http", default=None, metavar="URL", help="Match engine endpoint (MATCH_ENGINE_ENDPOINT).")
@click.option("--api-port", default=None, metavar="[HOST:]PORT", help="Control API port (API_PORT) [default: 8081].")
@click.option("--api-host", default=None, help="Control API address [default: 127.0.0.1].")
@click.option("--log", "log_file", default=None, metavar="FILE", help="Also write the log to FILE (LOG_FILE).")
@click.option("--instance-id", default=None, help="Prefix of every client order id (MMFRAME_INSTANCE_ID) "
              "[default: mmf]; give each process on one engine its own.")
@click.option("--sink", default=None, help="The order sink (MMFRAME_SINK) [default: with an endpoint set, the "
              "installed sink that takes one; else paper].")
@click.option("--feed", default=None, help="The feed for markets whose options name none (MMFRAME_FEED) "
              "[default: redis when MARKET_REDIS_HOST is set, else the config's external_exchange].")
@click.option("--status-interval", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between two status lines per market.")
@click.option("--seed", type=int, default=None, help="Seed the paper sink's simulated takers.")
@click.option("--duration", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds, as on SIGINT (for demos and smoke tests).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--cluster", "cluster", default=None, is_flag=False, flag_value="default", metavar="[URL]",
              help="Share the markets with the other instances of a cluster through leases in this Redis "
              "(MMFRAME_CLUSTER_REDIS); without a URL, the REDIS_* settings. See docs/scaling.md.")
@click.option("--workers", default=None, metavar="N|auto",
              help="Run N worker processes under this one (auto: one per CPU; MMFRAME_WORKERS). Worker i serves "
              "its control API on API_PORT + i; without a cluster each runs a fixed share of the markets.")
@click.option("--worker", "worker_slot", default=None, hidden=True, help="i/N: this process is worker i of N.")
def serve(demo: bool, db: str | None, sqlite: str | None, env_file: str, http: str | None, api_port: str | None,
          api_host: str | None, log_file: str | None, instance_id: str | None, sink: str | None, feed: str | None,
          status_interval: float, seed: int | None, duration: float | None, log_level: str, cluster: str | None,
          workers: str | None, worker_slot: str | None) -> None:
    """Run the market maker: markets from the database, the control API, until SIGINT or SIGTERM."""
    flags = {"db": db, "sqlite": sqlite, "http": http, "api_port": api_port, "api_host": api_host,
             "log": log_file, "instance_id": instance_id, "sink": sink, "feed": feed, "cluster": cluster}
    settings = _load(flags, env_file)
    slot = _worker_slot(worker_slot)
    count = _worker_count(workers if workers is not None else settings.workers)
    if slot is None and count > 1:
        setup_logging(log_level, settings.log_file)
        if demo:
            demo_store = _open_store(attrs.evolve(settings, db_url=None) if db is None else settings)
            try:
                write_demo(demo_store)  # once, before the workers read it
            finally:
                demo_store.close()
        sys.exit(supervise_workers(count, settings))
    if slot is not None:
        settings = attrs.evolve(settings, api_port=settings.api_port + slot[0] if settings.api_port else 0)
    if demo and db is None:
        settings = attrs.evolve(settings, db_url=None)  # the demo never writes into a configured production DB
    if demo and not settings.api_token and settings.api_is_loopback:
        settings = attrs.evolve(settings, api_token=DEMO_TOKEN)
    setup_logging(log_level, settings.log_file)
    pm = get_plugin_manager()
    try:
        sink_name = choose_sink(settings, get_sinks(pm))
    except MMFrameError as exc:
        raise click.ClickException(str(exc)) from None
    log.info("Market Maker Service starting (mmframe %s): %s", __version__,
             {**settings.describe(), "sink": sink_name,
              **({"worker": f"{slot[0]} of {slot[1]}, pid {os.getpid()}"} if slot is not None else {})})
    if settings.api_token == DEMO_TOKEN:
        log.warning("demo: POST endpoints take the documented demo token (set MMFRAME_API_TOKEN to choose one)")
    store = _open_store(settings)
    if demo and slot is None:
        write_demo(store)
    try:
        if demo:
            require_demo_strategy(get_strategies(pm))
        order_sink = _make_sink(settings, pm, demo=demo, seed=seed)
        options = None
        if settings.cluster_redis is not None:
            timeout = order_sink.request_timeout if isinstance(order_sink, BoundsRequestTime) else 0.0
            options = ClusterOptions(settings.cluster_redis, settings.cluster_name, settings.lease_ttl, timeout)
            options.check()
            log.info("cluster %s: this instance is member %s (lease ttl %gs, margin %gs)", options.name,
                     options.member, options.ttl, options.margin)
        service = Service(settings, store, pm, order_sink, cluster=options, slot=None if options else slot)
    except MMFrameError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        trio.run(run_service, service, status_interval, duration)
    except Exception as exc:
        leaf = _leaf(exc)
        if isinstance(leaf, MMFrameError | OSError):  # configuration, database, a port in use: say it plainly
            raise click.ClickException(str(leaf)) from None
        raise
    finally:
        store.close()
    if isinstance(order_sink, KeepsLocalBooks):
        left = {r.symbol: len(order_sink.book(r.symbol).open_orders()) for r in service.records.values()}
        log.info("Stopped. Open orders left on the paper book: %s",
                 ", ".join(f"{k} {v}" for k, v in sorted(left.items())) or "none")
        if any(left.values()):
            sys.exit(1)


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def choose_sink(settings: Settings, sinks: Mapping[str, Any]) -> str:
    """The sink to run: ``MMFRAME_SINK`` if set; else, with a match engine's endpoint configured, the one installed
    sink whose ``Config`` takes an ``endpoint``; else the built-in ``paper`` sink. No sink plugin is named here:
    what is installed decides, and an endpoint no installed sink takes is an error that says so."""
    if settings.sink:
        return settings.sink
    if not settings.match_engine_endpoint:
        return "paper"
    takers = sorted(name for name, cls in sinks.items() if "endpoint" in attrs.fields_dict(cls.Config))
    if len(takers) == 1:
        return takers[0]
    if not takers:
        raise ConfigError(
            "MATCH_ENGINE_ENDPOINT is set, but no installed sink takes an endpoint: install the match engine's sink "
            f"plugin, or choose a sink with MMFRAME_SINK (installed: {', '.join(sorted(sinks))})"
        )
    raise ConfigError(f"MATCH_ENGINE_ENDPOINT is set and several installed sinks take an endpoint "
                      f"({', '.join(takers)}): choose one with MMFRAME_SINK")


def _make_sink(settings: Settings, pm: Any, *, demo: bool, seed: int | None) -> Any:
    """The configured sink (:func:`choose_sink`): ``MATCH_ENGINE_ENDPOINT`` goes to a sink with an ``endpoint``
    option, the demo adds its own options, ``MMFRAME_SINK_CONFIG`` the rest."""
    sinks = get_sinks(pm)
    name = choose_sink(settings, sinks)
    cls = sinks.get_or_raise(name)
    config: dict[str, Any] = {}
    endpoint = settings.match_engine_endpoint
    if endpoint and "endpoint" in attrs.fields_dict(cls.Config):
        config["endpoint"] = endpoint
        other = settings.sink_config.get("endpoint")
        if other is not None and other != endpoint:
            raise ConfigError(f"two match engines configured: MATCH_ENGINE_ENDPOINT {endpoint!r} and "
                              f"MMFRAME_SINK_CONFIG's endpoint {other!r}; keep one")
    elif endpoint and not (demo and name == "paper"):
        # An operator who configured a match engine and gets a sink that cannot reach it would quote nowhere real
        # (the demo on the paper book, asked for by name, is the one deliberate exception).
        raise ConfigError(f"MATCH_ENGINE_ENDPOINT is set, but the sink {name!r} takes no endpoint: unset it, or "
                          "choose a sink that does (MMFRAME_SINK)")
    if demo:
        config.update(demo_sink_options(name, seed))
    config.update(settings.sink_config)  # MMFRAME_SINK_CONFIG: the sink's other options (account, rate_limit, ...)
    return cls(structure_config(config, cls.Config))


#: The collector's generation thresholds once the service runs (Python's are 700, 10, 10), chosen by measurement
#: (``bench.serve_scale``, 200 markets, docs/performance.md): a market's step makes many short-lived objects, and
#: collecting the youngest generation every 700 allocations cost CPU and latency for nothing it could free.
GC_THRESHOLDS = (50_000, 100, 100)


def _worker_slot(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    index, _, count = value.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise click.BadParameter(f"expected i/N with i < N, got {value!r}", param_hint="--worker")
    return int(index), int(count)


def _worker_count(value: str | None) -> int:
    """``--workers``: a positive number, or ``auto`` for one per CPU; 1 (no supervisor) when unset."""
    if value in (None, ""):
        return 1
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if not value.isdigit() or not 1 <= int(value) <= 256:
        raise click.BadParameter(f"expected a number from 1 to 256 or 'auto', got {value!r}", param_hint="--workers")
    return int(value)


def tune_gc() -> None:
    """After start-up: what it built (plugins, markets, books, the store's metadata) lives as long as the process,
    so it is moved out of the collector's reach (``gc.freeze``), and the thresholds become :data:`GC_THRESHOLDS`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def run_service(service: Service, status_interval: float, duration: float | None) -> None:
    """Run *service* and its control API until a signal (or *duration* after start-up), then stop them gracefully
    within 5 s. The API answers from the first moment (markets not started yet show ``starting``); the collector
    is tuned and the status lines begin once every market has started. A signal is heeded from the first moment,
    during start-up too: markets started so far cancel their orders and the rest never start (a start-up of many
    markets must not outlive a stop request, or a supervisor's kill)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            timed_out = trio.Event()

            async def start_then_time() -> None:
                await nursery.start(serve_with_api, service)
                tune_gc()
                nursery.start_soon(_status_lines, service.manager, status_interval)
                if duration is not None:
                    await trio.sleep(duration)
                    timed_out.set()

            nursery.start_soon(start_then_time)
            async with trio.open_nursery() as waiting:

                async def on_signal() -> None:
                    async for signum in signals:
                        log.info("received %s: cancelling our orders and stopping", signal.Signals(signum).name)
                        break
                    waiting.cancel_scope.cancel()

                async def on_duration() -> None:
                    await timed_out.wait()
                    waiting.cancel_scope.cancel()

                waiting.start_soon(on_signal)
                waiting.start_soon(on_duration)
                waiting.start_soon(watch_supervisor, waiting.cancel_scope)
            nursery.start_soon(_force_on_second_signal, signals, nursery)
            with trio.move_on_after(4.5):
                await service.aclose()
            nursery.cancel_scope.cancel()


@cli.group()
def db() -> None:
    """The configuration store: create tables, write the demo markets."""


def _store_command(db: str | None, sqlite: str | None, env_file: str, action: Any) -> tuple[str, Any]:
    """Open the configured store, run *action* on it, close it; a database error is one plain line."""
    settings = _load({"db": db, "sqlite": sqlite}, env_file)
    store = None
    try:
        store = Store(settings.database_url)
        return store.url_for_display, action(store)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if store is not None:
            store.close()


@db.command("init")
@_settings_options
def db_init(db: str | None, sqlite: str | None, env_file: str) -> None:
    """Create every missing table (the seed's and mmframe's); never alters an existing one."""
    where, created = _store_command(db, sqlite, env_file, lambda store: store.init())
    click.echo(f"{where}: created {', '.join(created) if created else 'nothing (all tables exist)'}")


@db.command("seed-demo")
@_settings_options
def db_seed_demo(db: str | None, sqlite: str | None, env_file: str) -> None:
    """Write the demo markets (BTC/USDT and ETH/USDT on the sim feed); running it twice changes nothing."""
    where, _ = _store_command(db, sqlite, env_file, lambda store: (store.init(), write_demo(store)))
    click.echo(f"{where}: demo markets written")


async def _force_on_second_signal(signals: Any, nursery: trio.Nursery) -> None:
    async for _ in signals:
        log.warning("second signal: stopping now")
        nursery.cancel_scope.cancel()
        return


async def _status_lines(manager: StrategyManager, interval: float) -> None:
    while True:
        await trio.sleep(interval)
        for status in manager.status():
            log.info("%s", format_status(status))


def format_status(s: MarketStatus) -> str:
    """One human line per market: state, ladder, fills, inventory and PnL."""
    base, _, quote = s.symbol.partition("/")
    name = s.market if s.symbol in s.market else f"{s.market} {s.symbol}"
    parts = [
        f"[{name}] {s.state}",
        f"index {s.index_price if s.index_price is not None else '-'}{' (stale)' if s.stale else ''}",
        f"bids {s.bids} asks {s.asks}",
        f"placed {s.orders_placed} cancelled {s.orders_cancelled}"
        + (f" amended {s.orders_amended}" if s.orders_amended else ""),
        f"fills {s.fills} volume {s.volume} {base}".rstrip(),
        f"inventory {s.position:+} {base}".rstrip(),
        f"PnL {s.pnl.quantize(_CENT) if s.pnl else 0} {quote}".rstrip(),
    ]
    if s.feed is not None:
        age = "-" if s.feed.last_update_age is None else f"{s.feed.last_update_age:.1f}s"
        link = "" if s.feed.connected else " DOWN"
        parts.append(f"feed {s.feed.feed}{link} age {age} rejected {s.feed.rejected}")
    if s.error:
        parts.append(f"error: {s.error}")
    return " | ".join(parts)


_CENT = Decimal("0.0001")


@cli.group()
def feed() -> None:
    """Market data: run a feed plugin and publish it to the Redis bus; record it, or import an exchange's trade
    files, for the backtester."""


add_record_commands(feed)


@feed.command("publish")
@click.option("--exchange", required=True, help="The feed plugin to run, by the name it registers; also the "
              "{exchange} part of the channels (an alias publishes under the feed's own name).")
@click.option("--symbols", required=True, help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT.")
@click.option("--ws-url", default=None, help="The exchange's WebSocket endpoint (testnets, regional endpoints, "
              "tests) [default: the exchange's public production endpoint].")
@click.option("--config", "config_json", default=None, metavar="JSON",
              help="More options for the feed, as a JSON object (see the plugin's README).")
@click.option("--env-file", default=".env", show_default=True, type=click.Path(dir_okay=False),
              help="A .env file with MARKET_REDIS_* (environment variables win).")
@click.option("--report-interval", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between status lines.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def feed_publish(exchange: str, symbols: str, ws_url: str | None, config_json: str | None, env_file: str,
                 report_interval: float, log_level: str) -> None:
    """Run an exchange feed and publish every update to the market Redis (MARKET_REDIS_*), in the seed's format:
    price:update:{exchange}:{symbol} and depth:update:{exchange}:{symbol}. Reconnects to the exchange and to Redis
    on its own; stops on Ctrl-C or SIGTERM."""
    from ._bus import BusPublisher, publish_feed
    from ._plugins import get_feeds
    from ._settings import RedisSettings

    setup_logging(log_level)
    settings = _load({}, env_file)
    names = feed_symbols(symbols)
    config = feed_config(config_json, ws_url)
    try:
        cls = get_feeds(get_plugin_manager()).get_or_raise(exchange)
        instance = cls(structure_config(config, cls.Config))
    except MMFrameError as exc:
        raise click.UsageError(str(exc)) from None
    for name in names:
        try:
            instance.subscribe(name, lambda item: None).close()  # refuses a symbol it cannot follow, now
        except ValueError as exc:
            raise click.UsageError(f"--symbols: {exc}") from None
    address = settings.market_redis or RedisSettings()
    publisher = BusPublisher(address)
    channel_exchange = cls.name if isinstance(cls, Named) else exchange
    log.info("publishing %s from %s to %s as price:update:%s:{symbol}", ", ".join(names), exchange,
             address.describe(), channel_exchange)

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: publish_feed(instance, channel_exchange, names, publisher,
                                                     report_every=report_interval, task_status=task_status)
                )
                async for signum in signals:
                    log.info("received %s: stopping", signal.Signals(signum).name)
                    break
                nursery.cancel_scope.cancel()

    trio.run(run)
    stats = publisher.statistics()
    log.info("published %d updates (%d conflated, %d reconnects to Redis)", stats.published, stats.conflated,
             stats.reconnects)


cli.add_command(backtest_command)


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins, their versions and the hooks they implement."""
    infos = list_plugins(get_plugin_manager())
    if as_json:
        click.echo(json.dumps(_convert.unstructure(infos), indent=2))
        return
    for info in infos:
        origin = "built-in" if info.builtin else (info.distribution or "registered")
        click.echo(f"{info.name} {info.version or '?'} ({origin})")
        click.echo(f"    hooks: {', '.join(info.hooks) or '-'}")


def main(argv: Sequence[str] | None = None) -> Any:
    """The ``mmframe`` console script: loads plugins' commands, then runs the group."""
    try:
        get_plugin_manager().hook.register_commands(cli=cli)
    except MMFrameError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    return cli.main(args=list(argv) if argv is not None else None, prog_name="mmframe")


if __name__ == "__main__":
    main()
