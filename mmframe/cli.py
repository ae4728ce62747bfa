"""The ``mmframe`` command line: ``serve`` and ``plugins``, plus whatever plugins add through
``register_commands``."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import click
import trio

from . import __version__, _convert
from .config import structure_config
from .engine.manager import StrategyManager
from .engine.market import MarketSpec, MarketStatus
from .errors import MMFrameError
from .plugins import get_plugin_manager, get_sinks, list_plugins

log = logging.getLogger("mmframe")


@click.group()
@click.version_option(__version__, prog_name="mmframe")
def cli() -> None:
    """mmframe: market making on your exchange's own matching engine."""


@cli.command()
@click.option("--demo", is_flag=True, help="Quote the demo markets (BTC/USDT, ETH/USDT) on sim feed and paper sink.")
@click.option("--instance-id", default="mmf", show_default=True, envvar="MMFRAME_INSTANCE_ID",
              help="Prefix of every client order id; give each process on one engine its own.")
@click.option("--status-interval", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between two status lines per market.")
@click.option("--seed", type=int, default=None, help="Seed the demo's simulated prices and takers.")
@click.option("--duration", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds, as on SIGINT (for demos and smoke tests).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--log", "log_file", envvar="LOG_FILE", default=None, help="Also write the log to this file.")
def serve(demo: bool, instance_id: str, status_interval: float, seed: int | None, duration: float | None,
          log_level: str, log_file: str | None) -> None:
    """Run the market maker until SIGINT or SIGTERM, then cancel every order and exit."""
    setup_logging(log_level, log_file)
    if not demo:
        raise click.UsageError("nothing to run: pass --demo to quote the demo markets on the sim feed and paper sink")
    from .demo import demo_sink_config, demo_specs

    pm = get_plugin_manager()
    sinks = get_sinks(pm)
    try:
        sink_cls = sinks.get_or_raise("paper")
        sink = sink_cls(structure_config(demo_sink_config(seed), sink_cls.Config))
        manager = StrategyManager(sink, pm, instance_id=instance_id)
        manager.strategies.get_or_raise(demo_specs()[0].strategy)
    except MMFrameError as exc:
        raise click.ClickException(
            f"{exc}\nThe demo quotes with the example strategy: pip install ./examples/mmframe-fixed-spread"
        ) from None
    specs = demo_specs(seed)
    log.info("Market Maker Service starting (mmframe %s, instance %s)", __version__, instance_id)
    trio.run(run_service, manager, specs, status_interval, duration)
    left = {spec.market.symbol: len(sink.book(spec.market.symbol).open_orders()) for spec in specs}
    log.info("Stopped. Open orders left on the paper book: %s", ", ".join(f"{k} {v}" for k, v in left.items()))
    if any(left.values()):
        sys.exit(1)


async def run_service(
    manager: StrategyManager, specs: Sequence[MarketSpec], status_interval: float, duration: float | None
) -> None:
    """Run *manager* with *specs* until a signal (or *duration*), then stop it gracefully within 5 s."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run, specs)
            log.info("Loaded %d markets: %s", len(specs), ", ".join(str(s.key) for s in specs))
            nursery.start_soon(_status_lines, manager, status_interval)
            with trio.move_on_after(duration if duration is not None else float("inf")):
                async for signum in signals:
                    log.info("received %s: cancelling our orders and stopping", signal.Signals(signum).name)
                    break
            nursery.start_soon(_force_on_second_signal, signals, nursery)
            with trio.move_on_after(4.5):
                await manager.aclose()
            nursery.cancel_scope.cancel()


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
    parts = [
        f"[{s.market}] {s.state}",
        f"index {s.index_price if s.index_price is not None else '-'}{' (stale)' if s.stale else ''}",
        f"bids {s.bids} asks {s.asks}",
        f"placed {s.orders_placed} cancelled {s.orders_cancelled}",
        f"fills {s.fills} volume {s.volume} {base}".rstrip(),
        f"inventory {s.position:+} {base}".rstrip(),
        f"PnL {s.pnl.quantize(_CENT) if s.pnl else 0} {quote}".rstrip(),
    ]
    if s.error:
        parts.append(f"error: {s.error}")
    return " | ".join(parts)


_CENT = Decimal("0.0001")


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


def setup_logging(level: str, log_file: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        handlers=handlers,
        force=True,
    )


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
