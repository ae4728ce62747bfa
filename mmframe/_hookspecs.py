"""Every extension point of mmframe, in one place. A plugin implements any of these with ``@mmframe.hookimpl``.

Hooks are synchronous (pluggy never awaits). Async components — strategies' markets, feeds, sinks — reach the
core through the registration hooks, which hand the plugin a ``register`` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from ._engine.risk import RiskContext
    from ._models import Fill, Market, Order, OrderEvent, OrderRequest
    from .protocols import Engine, Position

hookspec = pluggy.HookspecMarker("mmframe")
hookimpl = pluggy.HookimplMarker("mmframe")


# ---------------------------------------------------------------------------------------------------------------
# Registration: how plugins hand the core their components
# ---------------------------------------------------------------------------------------------------------------


@hookspec
def register_strategies(register: Callable[..., None]) -> None:
    """Called once when the strategy registry is built; register strategy classes with it.

    :param register: ``register(cls, *, name=None)``; *cls* subclasses :class:`mmframe.Strategy` and has a
        ``Config`` attrs class; *name* defaults to ``cls.name``. A name registered twice is an error.
    :returns: nothing; registrations go through *register*.
    """


@hookspec
def register_feeds(register: Callable[..., None]) -> None:
    """Called once when the feed registry is built; register :class:`mmframe.ExchangeFeed` classes with it.

    :param register: ``register(cls, *, name=None)``; *cls* is constructed as ``cls(config)`` with its ``Config``
        attrs class; *name* defaults to ``cls.name``. A name registered twice is an error.
    :returns: nothing; registrations go through *register*.
    """


@hookspec
def register_sinks(register: Callable[..., None]) -> None:
    """Called once when the sink registry is built; register :class:`mmframe.OrderSink` classes with it.

    :param register: ``register(cls, *, name=None)``; *cls* is constructed as ``cls(config)`` with its ``Config``
        attrs class; *name* defaults to ``cls.name``. A name registered twice is an error.
    :returns: nothing; registrations go through *register*.
    """


@hookspec
def register_routes(register: Callable[..., None]) -> None:
    """Called once when the control API is built; add HTTP routes to it.

    :param register: ``register(path, endpoint, *, methods=("GET",))``; *endpoint* is an async callable taking
        the request and returning a response. A path and method registered twice is an error.
    :returns: nothing; registrations go through *register*.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Called once when the ``mmframe`` command line is built; add sub-commands to *cli*.

    :param cli: the top-level ``click`` group; use ``@cli.command()`` or ``cli.add_command(...)``.
    :returns: nothing.
    """


# ---------------------------------------------------------------------------------------------------------------
# Order flow: the risk gate
# ---------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def pre_trade_check(market: Market, request: OrderRequest, context: RiskContext) -> str | None:
    """Called for every order before it is sent, after the built-in checks passed; veto it by returning a reason.

    :param market: the market the order is for.
    :param request: the order about to be sent (price on the grid, quantity at the precision).
    :param context: the market's reference price, live orders and position at this moment.
    :returns: a non-empty reason to refuse the order, or ``None`` to let it pass.
        Stops at the first non-None result.
    """


# ---------------------------------------------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------------------------------------------


@hookspec
def engine_started(manager: Engine) -> None:
    """Called once the engine runs: the sink is ready and every market it was started with has been started (or
    failed to start, or was stopped before its turn). Not called if the engine was told to stop during start-up.

    :param manager: the running engine (:class:`mmframe.protocols.Engine`).
    :returns: nothing.
    """


@hookspec
def engine_stopping(manager: Engine) -> None:
    """Called when the engine begins to stop, before markets are stopped and their orders cancelled.

    :param manager: the engine that is stopping (:class:`mmframe.protocols.Engine`).
    :returns: nothing.
    """


@hookspec
def market_started(market: Market, strategy: str) -> None:
    """Called when a market's task tree is up: leftovers cleaned, feed subscribed, about to quote.

    :param market: the market that started.
    :param strategy: the name of the strategy running it.
    :returns: nothing.
    """


@hookspec
def market_stopped(market: Market, error: BaseException | None) -> None:
    """Called when a market has stopped and its orders were cancelled.

    :param market: the market that stopped.
    :param error: the exception that stopped it, or ``None`` for an orderly stop.
    :returns: nothing.
    """


# ---------------------------------------------------------------------------------------------------------------
# Observers
# ---------------------------------------------------------------------------------------------------------------


@hookspec
def order_event(market: Market, event: OrderEvent, order: Order) -> None:
    """Called for every event on one of our orders, after the order tracker applied it.

    :param market: the order's market.
    :param event: what the sink reported.
    :param order: the order's state after the event.
    :returns: nothing.
    """


@hookspec
def order_filled(market: Market, fill: Fill, position: Position) -> None:
    """Called for every fill of one of our orders, after the market's position was updated.

    :param market: the order's market.
    :param fill: the execution.
    :param position: the market's position after the fill.
    :returns: nothing.
    """


__all__ = [name for name, value in list(globals().items()) if hasattr(value, "mmframe_spec")] + [
    "hookimpl",
    "hookspec",
]
