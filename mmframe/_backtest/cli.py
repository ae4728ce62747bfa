"""``mmframe backtest``: a strategy, its market and config as ``serve`` runs them, on recorded or synthetic data."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import click

from .._engine.risk import RiskLimits
from .._engine.spec import MarketSpec
from .._errors import ConfigError, MMFrameError
from .._models import Market
from .._plugins import get_plugin_manager, get_strategies
from .._service.specs import MarketOptions, market_from_row, spec_from_row
from .._settings import load_settings
from .._store import Store, StoreError
from ..config import structure_config
from .exchange import ExchangeConfig
from .record import RecordError
from .run import BacktestError, SyntheticModel, run_replay, run_synthetic, summarize

__all__ = ["backtest_command", "load_spec_file", "synthetic_market"]

log = logging.getLogger("mmframe.backtest")

#: The market a synthetic run quotes when none is given: a fine grid (1e-4 at a price of 100) and whole units, the
#: paper's continuous quotes and one-share orders as near as a grid allows.
SYNTHETIC_MARKET: Mapping[str, Any] = {
    "symbol": "AS/USD", "tick_size": "0.0001", "price_precision": 4, "quantity_precision": 0, "min_quantity": "1",
}

MODELS = {SyntheticModel.name: SyntheticModel}


def _json_arg(value: str | None, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise click.UsageError(f"{name} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise click.UsageError(f"{name} must be a JSON object")
    return data


def _market(data: Mapping[str, Any]) -> Market:
    known = {f.name for f in attrs.fields(Market)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"market: unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    try:
        return Market(**data)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise ConfigError(f"market: {exc}") from None


def load_spec_file(path: str | os.PathLike[str]) -> MarketSpec:
    """A market from a JSON file: ``{"market": {...Market fields}, "strategy": name, "strategy_config": {...}}`` and
    any engine options of ``mmframe_market.options`` (``risk``, ``refresh_interval``, ``tolerance``, ...)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a market spec is a JSON object")
    return _spec(data, str(path))


def _spec(data: Mapping[str, Any], where: str) -> MarketSpec:
    data = dict(data)
    market_fields = data.pop("market", None)
    if not isinstance(market_fields, dict):
        raise ConfigError(f"{where}: 'market' must be an object: {{\"symbol\": ..., \"tick_size\": ..., "
                          f"\"price_precision\": ..., \"quantity_precision\": ...}}, got {market_fields!r}")
    market = _market(market_fields)
    strategy = data.pop("strategy", None)
    if not isinstance(strategy, str) or not strategy:
        raise ConfigError(f"{where}: 'strategy' (the strategy's name) is missing")
    config = data.pop("strategy_config", {}) or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: 'strategy_config' must be an object")
    options = structure_config(data, MarketOptions)
    values = {k: v for k, v in attrs.asdict(options, recurse=False).items() if v is not None}
    return MarketSpec(market=market, strategy=strategy, strategy_config=config, **values)


def synthetic_market(data: Mapping[str, Any] | None = None) -> Market:
    return _market({**SYNTHETIC_MARKET, **(data or {})})


def _store_spec(symbol: str, db: str | None, sqlite: str | None, env_file: str) -> MarketSpec:
    if sqlite is not None and db is None and not Path(sqlite).is_file():
        raise ConfigError(f"--sqlite {sqlite}: no such file (a backtest reads a store, it never makes one)")
    settings = load_settings({"db": db, "sqlite": sqlite}, env_file=env_file)
    store = None
    try:
        store = Store(settings.database_url)
        rows = store.load_markets()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if store is not None:
            store.close()
    wanted = symbol.upper().replace("/", "")
    names = []
    for row in rows:
        try:
            name = market_from_row(row).symbol
        except (MMFrameError, ValueError):
            name = row.index_symbol
        names.append(name)
        if name.upper().replace("/", "") == wanted:
            return spec_from_row(row, settings)
    raise ConfigError(f"no market {symbol} in the store (it has {', '.join(sorted(names)) or 'none'})")


def _jobs(value: str) -> int:
    if value == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        jobs = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number or 'auto'") from None
    if not 1 <= jobs <= 256:
        raise click.BadParameter("must be between 1 and 256")
    return jobs


def _format(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.1f}"


def print_figures(summary: Mapping[str, Any]) -> None:
    figures = summary["figures"]
    paths = summary["paths"]
    where = summary.get("model", {}).get("name") or summary.get("source", {}).get("file")
    click.echo(f"{summary['strategy']} on {where}: {paths} path{'s' if paths != 1 else ''}, "
               f"{summary['elapsed_seconds']:.1f} s")
    click.echo(f"  {'figure':<16}{'mean':>14}{'std':>14}{'min':>14}{'max':>14}")
    for name, stats in figures.items():
        click.echo(f"  {name:<16}" + "".join(f"{_format(stats[k]):>14}" for k in ("mean", "std", "min", "max")))


@click.command("backtest")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The market as JSON: {\"market\": {...}, \"strategy\": ..., \"strategy_config\": {...}, engine "
              "options}.")
@click.option("--market", "market_name", default=None, metavar="SYMBOL",
              help="A market of the configuration store (with --db/--sqlite/--env-file, as serve finds it).")
@click.option("--db", default=None, metavar="URL", help="The store's database URL (with --market).")
@click.option("--sqlite", default=None, metavar="PATH", help="The store's SQLite file (with --market).")
@click.option("--env-file", default=".env", show_default=True, type=click.Path(dir_okay=False),
              help="A .env file of the seed's keys (with --market).")
@click.option("--strategy", default=None, help="The strategy to run (overrides the spec's).")
@click.option("--config", "config_json", default=None, metavar="JSON",
              help="The strategy's config (overrides the spec's, key by key).")
@click.option("--market-json", default=None, metavar="JSON",
              help="Market fields (symbol, tick_size, price_precision, quantity_precision, min_quantity) over the "
              "spec's, or over the synthetic default (AS/USD, tick 0.0001, whole units).")
@click.option("--data", "data_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Replay this recorded file (mmframe feed record, mmframe feed import-binance-trades).")
@click.option("--model", type=click.Choice(sorted(MODELS)), default=None, help="Run on a synthetic model instead.")
@click.option("--model-config", default=None, metavar="JSON",
              help="The model's parameters: s0, sigma, dt, horizon, A, k, trade_size (default: the paper's).")
@click.option("--paths", default=1, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Monte-Carlo paths of the synthetic model.")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the paths (and latency draws).")
@click.option("--jobs", default="auto", show_default=True, help="Worker processes for the paths (a number or auto).")
@click.option("--exchange", "exchange_json", default=None, metavar="JSON",
              help="The simulated exchange: queue_model, entry_latency, response_latency, data_latency, maker_fee, "
              "taker_fee, fees (see docs/backtesting.md).")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Write the JSON summary here.")
@click.option("--report", default=None, type=click.Path(dir_okay=False),
              help="Write an HTML report (self-contained, with plots) here.")
@click.option("--progress/--no-progress", default=None, help="A progress bar (default: on a terminal).")
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def backtest_command(
    spec_file: str | None, market_name: str | None, db: str | None, sqlite: str | None, env_file: str,
    strategy: str | None, config_json: str | None, market_json: str | None, data_file: str | None,
    model: str | None, model_config: str | None, paths: int, seed: int, jobs: str, exchange_json: str | None,
    out: str | None, report: str | None, progress: bool | None, log_level: str,
) -> None:
    """Run a strategy through the engine the service runs — strategy, reconciler, risk gate, a simulated exchange
    with queue-position and latency models, order events, tracker — on a virtual clock, as fast as the CPU allows:
    on a recorded file (--data) or on the synthetic model of Avellaneda & Stoikov (--model, --paths N). Prints the
    figures; writes a JSON summary (--out) and an HTML report (--report) only once the run is complete."""
    from ..logs import setup_logging

    setup_logging(log_level)
    if (data_file is None) == (model is None):
        raise click.UsageError("say what to run on: --data FILE (a recording) or --model NAME (synthetic)")
    if spec_file and market_name:
        raise click.UsageError("--spec and --market are two ways to name the market: give one")
    if data_file is not None and paths != 1:
        raise click.UsageError("--paths is for the synthetic model; a recording is replayed once")
    try:
        if spec_file:
            spec = load_spec_file(spec_file)
        elif market_name:
            spec = _store_spec(market_name, db, sqlite, env_file)
        else:
            if strategy is None:
                raise click.UsageError("name the strategy (--strategy), or give --spec or --market")
            base = dict(SYNTHETIC_MARKET) if model else {}
            if not model and not market_json:
                raise click.UsageError("describe the market (--market-json with symbol, tick_size, price_precision, "
                                       "quantity_precision), or give --spec or --market")
            market = _market({**base, **_json_arg(market_json, "--market-json")})
            spec = MarketSpec(market=market, strategy=strategy, index_symbol=market.symbol.replace("/", ""),
                              risk=RiskLimits(price_band=None) if model else RiskLimits())
        if market_json and (spec_file or market_name):
            fields = _json_arg(market_json, "--market-json")
            base = attrs.asdict(spec.market, recurse=False)
            spec = attrs.evolve(spec, market=_market({**{k: v for k, v in base.items()
                                                          if k not in ("base_asset", "quote_asset")}, **fields}))
        if strategy is not None:
            spec = attrs.evolve(spec, strategy=strategy)
        if config_json:
            spec = attrs.evolve(spec, strategy_config={**spec.strategy_config,
                                                       **_json_arg(config_json, "--config")})
        strategies = get_strategies(get_plugin_manager())
        cls = strategies.get_or_raise(spec.strategy)
        structure_config(dict(spec.strategy_config), cls.Config)  # a bad config fails here, naming the key
        exchange = ExchangeConfig(**_json_arg(exchange_json, "--exchange"), seed=seed) if exchange_json else \
            ExchangeConfig(seed=seed)
        stray = set(exchange.fees) - {spec.market.symbol}
        if stray:
            raise ConfigError(f"--exchange fees name {', '.join(sorted(stray))}, not the market's symbol "
                              f"{spec.market.symbol}")
    except TypeError as exc:
        raise click.UsageError(f"--exchange: {exc}") from None
    except MMFrameError as exc:
        raise click.UsageError(str(exc)) from None
    show = progress if progress is not None else sys.stderr.isatty()
    targets = [Path(p) for p in (out, report) if p]
    for target in targets:  # a path that cannot be written fails now, not after the run
        parent = target.parent if str(target.parent) else Path(".")
        if not parent.is_dir() or not os.access(parent, os.W_OK) or target.is_dir():
            raise click.UsageError(f"cannot write {target}: {parent} is not a writable directory"
                                   if not target.is_dir() else f"cannot write {target}: it is a directory")
    started = time.perf_counter()
    header: dict[str, Any] = {
        "strategy": spec.strategy,
        "strategy_config": dict(spec.strategy_config),
        "market": {k: str(v) for k, v in attrs.asdict(spec.market, recurse=False).items()},
        "exchange": exchange.describe(),
        "seed": seed,
    }
    warnings: list[str] = []
    try:
        with _terminated_as_interrupt():
            if model is not None:
                synthetic = MODELS[model].from_mapping(_json_arg(model_config, "--model-config"))
                with click.progressbar(length=paths, label="paths", file=sys.stderr) if show else _NoBar() as bar:
                    figures, series = run_synthetic(spec, synthetic, exchange, paths=paths, seed=seed,
                                                    jobs=min(_jobs(jobs), paths), progress=bar.update, notes=warnings)
                header.update(mode="synthetic", model=synthetic.describe())
            else:
                assert data_file is not None

                def moved(count: int) -> None:
                    if show:
                        click.echo(f"\r{count:,} events", nl=False, err=True)

                figures, series, source = run_replay([spec], data_file, exchange, progress=moved)
                if show:
                    click.echo("", err=True)
                warnings.extend(source.pop("warnings", []))
                header.update(mode="replay", source=source)
    except (RecordError, BacktestError, ConfigError) as exc:
        click.echo(f"Error: {exc}", err=True)
        click.echo("Nothing was written.", err=True)
        sys.exit(1)
    header["elapsed_seconds"] = time.perf_counter() - started
    if warnings:
        header["warnings"] = warnings
    summary = summarize(figures, series, **header)
    _write_outputs(summary, out, report)
    print_figures(summary)
    for line in warnings[:10]:
        click.echo(f"Warning: {line}", err=True)
    if len(warnings) > 10:
        click.echo(f"Warning: and {len(warnings) - 10} more (in the summary's warnings)", err=True)
    for path, what in ((out, "summary"), (report, "report")):
        if path:
            click.echo(f"{what}: {path}")


@contextlib.contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run as Ctrl-C does (worker processes are ended, nothing is written)."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (a test runner's): leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_outputs(summary: Mapping[str, Any], out: str | None, report: str | None) -> None:
    """Write the summary and the report both or neither: each to a temporary file beside its target, renamed once
    both are complete; permissions as the umask says."""
    pending: list[tuple[str, Path]] = []
    try:
        if out:
            text = json.dumps(summary, indent=1, default=str) + "\n"
            pending.append((_temporary(out, text), Path(out)))
        if report:
            from .report import render_html

            pending.append((_temporary(report, render_html(summary)), Path(report)))
        for tmp, target in pending:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in pending:
            Path(tmp).unlink(missing_ok=True)
        raise


def _temporary(path: str, text: str) -> str:
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None

