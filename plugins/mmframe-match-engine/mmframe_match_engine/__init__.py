"""mmframe's match-engine plugin: the ``match-engine`` order sink and the reference match engine.

- :mod:`.wire` is the JSON wire format of the match-engine API (``docs/match-engine-api.md``), shared by both
  sides.
- :mod:`.sink` is the client: the ``match-engine`` :class:`~mmframe.OrderSink`, registered through
  ``register_sinks``.
- :mod:`.server` is the reference engine (one price-time priority book per symbol, the same book as the
  ``paper`` sink), served by ``mmframe match-engine serve``, registered through ``register_commands``.
"""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

import click
import trio

from mmframe import hookimpl

if TYPE_CHECKING:
    from .server import Engine

__all__ = ["register_commands", "register_sinks"]

__version__ = "0.1.0"

log = logging.getLogger("mmframe.match_engine")


@click.group("match-engine")
def match_engine() -> None:
    """The reference match engine of the match-engine API (docs/match-engine-api.md)."""


@match_engine.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on (0: any free)."
)
@click.option(
    "--taker-flow-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Simulated other participants' taker orders per second per symbol with resting orders (account sim); 0: none.",
)
@click.option(
    "--rate-limit",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Requests per second (sliding 1 s window) beyond which the engine answers 429; 0: no limit.",
)
@click.option("--seed", default=None, type=int, help="Seed of the simulated flow's random numbers.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
def serve_command(
    host: str, port: int, taker_flow_rate: float, rate_limit: float, seed: int | None, log_level: str
) -> None:
    """Serve the match-engine API until SIGINT or SIGTERM (then exit 0)."""
    from mmframe.logs import setup_logging

    from .server import Engine

    setup_logging(log_level)
    try:
        engine = Engine(taker_flow_rate=taker_flow_rate, rate_limit=rate_limit, seed=seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        trio.run(_serve_until_signal, engine, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc}") from None


#: The collector's thresholds once the engine serves (Python's defaults are (700, 10, 10)); see :func:`tune_gc`.
GC_THRESHOLDS = (10_000, 50, 100)


def tune_gc() -> None:
    """Once the engine serves: what start-up built (modules, the app, the server) lives as long as the process, so
    it is moved out of the collector's reach (``gc.freeze``), and the thresholds become :data:`GC_THRESHOLDS`.

    Chosen by ``python -m bench sink_throughput`` (issue 15): with the defaults the engine ran a young collection
    every 700 objects (several per batch of 100 orders) and full collections that walked everything it had built
    and remembered, up to 300 ms each, the acknowledgement tail at 2,000 orders/s."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _serve_until_signal(engine: Engine, host: str, port: int) -> None:
    from .server import serve_engine

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_engine, engine, host, port)
            tune_gc()
            async for signum in signals:
                log.info("received %s: stopping the match engine", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(match_engine)


@hookimpl
def register_sinks(register: Callable[..., None]) -> None:
    from .sink import MatchEngineSink

    register(MatchEngineSink)
