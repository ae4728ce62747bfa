"""Recording a feed to a record file (:func:`record_feed`), and the ``mmframe feed`` commands that make and read
record files: ``record``, ``import-binance-trades`` and ``info`` (:func:`add_record_commands`).

The recorder runs any feed plugin — an exchange's own (``binance``, ``okex``), the Redis market-data bus
(``redis``), the built-in ``sim`` — subscribes to the symbols, and writes every item the feed delivers with its
receive time (the record's ``t``, from the wall clock). The feed's listener only appends to a list; every
``flush_interval`` seconds the list is written and the file flushed, which ends a gzip member: a recording killed
at any moment leaves a valid file holding everything up to the last flush, and a recording stopped by Ctrl-C,
SIGTERM, its ``duration`` or a cancellation flushes what it got before it returns.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click
import trio

from .._bus.feed import RedisFeed
from .._errors import ConfigError, MMFrameError
from .._models import MarketData
from .._plugins import get_feeds, get_plugin_manager
from .._service.specs import BUS_FEED, bus_defaults
from .._settings import Settings, load_settings
from ..config import structure_config
from ..logs import setup_logging
from ..protocols import ExchangeFeed, Named
from .importers import import_binance_trades
from .record import KINDS, RecordError, RecordInfo, RecordWriter, kind_of, scan_record

__all__ = ["add_record_commands", "record_feed"]

log = logging.getLogger("mmframe.record")


async def record_feed(
    feed: ExchangeFeed,
    symbols: Sequence[str],
    writer: RecordWriter,
    *,
    flush_interval: float = 1.0,
    duration: float | None = None,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> dict[str, int]:
    """Run *feed*, subscribe to *symbols*, and write everything it delivers to *writer* until *duration* seconds
    (of trio's clock) have passed or the call is cancelled. Returns the events written per kind (``tick``,
    ``depth``, ``trade``).

    Each item is stamped with ``clock()`` when it arrives (the record's ``t``; the writer keeps ``t`` from going
    backwards). Items wait in memory and are written, and the file flushed, every *flush_interval* seconds and at
    the end — however the recording ends, so an interrupted recording is a valid file. An item the writer refuses
    (a non-finite timestamp) is logged and skipped. The caller still owns *writer* and closes it.

    Started with ``nursery.start``, it reports ready once the feed runs and every symbol is subscribed.
    """
    if not (flush_interval > 0 and math.isfinite(flush_interval)):
        raise ValueError(f"flush_interval must be a positive number of seconds, got {flush_interval!r}")
    if duration is not None and not duration >= 0:
        raise ValueError(f"duration must be at least 0 seconds, got {duration!r}")
    counts = dict.fromkeys(KINDS, 0)
    pending: list[tuple[float, MarketData]] = []

    def listener(item: MarketData) -> None:
        pending.append((clock(), item))

    def write_pending() -> None:
        batch = pending[:]
        pending.clear()
        for t, item in batch:
            try:
                writer.write(item, t)
            except (TypeError, ValueError) as exc:
                log.warning("not recorded: %r: %s", item, exc)
                continue
            counts[kind_of(item)] += 1
        writer.flush()

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(feed.run)
            subscriptions = [feed.subscribe(symbol, listener) for symbol in symbols]
            try:
                task_status.started()
                deadline = math.inf if duration is None else trio.current_time() + duration
                with trio.move_on_at(deadline):
                    while True:
                        await trio.sleep(flush_interval)
                        write_pending()
            finally:
                for subscription in subscriptions:
                    subscription.close()
            nursery.cancel_scope.cancel()
    finally:
        write_pending()  # synchronous: it runs whole even in a cancelled scope
    return counts


# ---------------------------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------------------------


def add_record_commands(feed_group: click.Group) -> None:
    """Add ``record``, ``import-binance-trades`` and ``info`` to the ``mmframe feed`` command group."""
    feed_group.add_command(feed_record)
    feed_group.add_command(feed_import_binance_trades)
    feed_group.add_command(feed_info)


def feed_symbols(text: str) -> list[str]:
    """``--symbols``: comma-separated, upper-cased; a usage error when it names none."""
    names = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not names:
        raise click.UsageError("--symbols names no symbol")
    return names


def feed_config(config_json: str | None, ws_url: str | None) -> dict[str, Any]:
    """``--config`` (a JSON object) with ``--ws-url`` over it; a usage error for anything else."""
    config: dict[str, Any] = {}
    if config_json:
        try:
            config = json.loads(config_json)
        except ValueError as exc:
            raise click.UsageError(f"--config is not JSON: {exc}") from None
        if not isinstance(config, dict):
            raise click.UsageError("--config must be a JSON object")
    if ws_url is not None:
        config["ws_url"] = ws_url
    return config


def _bus_defaults(config: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The ``redis`` feed follows the market Redis of ``MARKET_REDIS_*`` (as ``mmframe serve``'s markets do) and the
    exchange of ``MMFRAME_EXCHANGE`` unless ``--config`` says otherwise."""
    config = bus_defaults(BUS_FEED, config, settings)
    if settings.exchange:
        config.setdefault("exchange", settings.exchange.strip().lower())
    return config


def _make_feed(name: str, config: dict[str, Any], settings: Settings, symbols: Sequence[str]) -> ExchangeFeed:
    """The feed plugin *name* built from *config*, having checked that it can follow every symbol."""
    try:
        cls = get_feeds(get_plugin_manager()).get_or_raise(name)
        if isinstance(cls, type) and issubclass(cls, RedisFeed):
            config = _bus_defaults(config, settings)
        instance: ExchangeFeed = cls(structure_config(config, cls.Config))
    except MMFrameError as exc:
        raise click.UsageError(str(exc)) from None
    for symbol in symbols:
        try:
            instance.subscribe(symbol, lambda item: None).close()  # refuses a symbol it cannot follow, now
        except ValueError as exc:
            raise click.UsageError(f"--symbols: {exc}") from None
    return instance


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    try:
        return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):  # beyond the calendar (a time in the wrong unit): say it as it is
        return f"{t!r} epoch seconds (not a date)"


def _counts(kinds: Mapping[str, int]) -> str:
    return ", ".join(f"{kinds[kind]} {kind}" for kind in KINDS)


@click.command("record", short_help="Record a feed to a record file, for backtests.")
@click.option("--exchange", required=True, help="The feed plugin to run, by the name it registers: binance, okex, "
              "redis (the market-data bus: its exchange from --config's exchange or MMFRAME_EXCHANGE), sim, ...")
@click.option("--symbols", required=True, help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, writable=True),
              help="The record file (.jsonl.gz) to write; an existing record is appended to.")
@click.option("--duration", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds [default: at Ctrl-C or SIGTERM].")
@click.option("--flush-interval", default=1.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds between two flushes to the file (what a crash can lose).")
@click.option("--ws-url", default=None, help="The exchange's WebSocket endpoint (testnets, regional endpoints, "
              "tests) [default: the exchange's public production endpoint].")
@click.option("--config", "config_json", default=None, metavar="JSON",
              help="More options for the feed, as a JSON object (see the plugin's README).")
@click.option("--env-file", default=".env", show_default=True, type=click.Path(dir_okay=False),
              help="A .env file with MARKET_REDIS_* and MMFRAME_EXCHANGE for the redis feed (environment "
              "variables win).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def feed_record(exchange: str, symbols: str, out: str, duration: float | None, flush_interval: float,
                ws_url: str | None, config_json: str | None, env_file: str, log_level: str) -> None:
    """Record what a feed delivers (index ticks, depth snapshots, trades) to a record file for backtests: gzip
    JSON lines, one event a line with its receive time, flushed every --flush-interval seconds (the file is valid
    after every flush). Stops on Ctrl-C, SIGTERM or after --duration."""
    setup_logging(log_level)
    try:
        settings = load_settings({}, env_file=env_file)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    names = feed_symbols(symbols)
    instance = _make_feed(exchange, feed_config(config_json, ws_url), settings, names)
    name = instance.name if isinstance(instance, Named) else exchange
    try:
        writer = RecordWriter(out, source=f"feed:{name}")
    except RecordError as exc:
        raise click.ClickException(str(exc)) from None
    origin = f"the {exchange} feed"
    if isinstance(instance, RedisFeed):
        origin += f" (the bus channels of exchange {instance.config.exchange} at {instance.config.address.describe()})"
    log.info("recording %s from %s to %s%s", ", ".join(names), origin, out,
             f" for {duration:g}s" if duration is not None else " until Ctrl-C")

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def record() -> None:
                    await record_feed(instance, names, writer, flush_interval=flush_interval, duration=duration)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(record)
                async for signum in signals:
                    log.info("received %s: stopping", signal.Signals(signum).name)
                    break
                nursery.cancel_scope.cancel()

    try:
        trio.run(run)
    except Exception as exc:
        leaf = _leaf(exc)
        if isinstance(leaf, MMFrameError | OSError):
            raise click.ClickException(str(leaf)) from None
        raise
    finally:
        writer.close()  # what was recorded is flushed already; a stop by a signal is not an error
    click.echo(f"{out}: recorded {writer.written} events ({_counts(writer.counts)}); the file ends at "
               f"{_when(writer.last_t)}")


@click.command("import-binance-trades", short_help="Import a Binance trades CSV into a record file.")
@click.argument("csv_file", metavar="CSV", type=click.Path(exists=True, dir_okay=False))
@click.option("--symbol", required=True, help="The symbol the events carry, e.g. BTCUSDT (the file does not say).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="The record file (.jsonl.gz) to write; replaced only if the import succeeds.")
@click.option("--exchange", default="binance", show_default=True, help="The exchange the events carry.")
@click.option("--tick-interval", default=0.1, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between two index ticks at most (a tick at the first trade of each interval; 0: a "
              "tick per trade).")
def feed_import_binance_trades(csv_file: str, symbol: str, out: str, exchange: str, tick_interval: float) -> None:
    """Import a Binance public trades file (data.binance.vision, e.g. BTCUSDT-trades-2024-01-01.csv, unzipped)
    into a record file: a trade event per row and index ticks at the trade price."""
    symbol = symbol.strip().upper()
    if not symbol:
        raise click.UsageError("--symbol is empty")
    try:
        report = import_binance_trades(csv_file, out, symbol=symbol, exchange=exchange.strip(),
                                       tick_interval=tick_interval)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except RecordError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{report.out_path}: {report.rows} rows imported as {report.trades} trades and {report.ticks} "
               f"ticks, {_when(report.first_t)} to {_when(report.last_t)}")


@click.command("info", short_help="Check a record file and say what it holds.")
@click.argument("record_file", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
def feed_info(record_file: str) -> None:
    """Check a record file line by line, and say what it holds: its time span, events per kind, symbols."""
    try:
        info = scan_record(record_file)
    except RecordError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_info(info))


def format_info(info: RecordInfo) -> str:
    """The lines ``mmframe feed info`` prints."""
    header = info.header
    about = [f"mmframe record version {header.get('version')}"]
    if header.get("source"):
        about.append(f"source {header['source']}")
    if header.get("created"):
        about.append(f"created {header['created']}")
    lines = [f"{info.path}: {', '.join(about)}"]
    if info.first_t is None:
        lines.append("  no events")
        return "\n".join(lines)
    lines += [
        f"  first   {_when(info.first_t)} ({info.first_t!r})",
        f"  last    {_when(info.last_t)} ({info.last_t!r})",
        f"  span    {info.duration:.3f} s",
        f"  events  {info.events}: {_counts(info.kinds)}",
        f"  symbols {', '.join(f'{symbol} ({exchange})' for exchange, symbol in info.symbols)}",
    ]
    return "\n".join(lines)
