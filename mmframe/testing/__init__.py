"""Testing mmframe plugins: fakes for unit tests, a real engine (and a whole service) for the rest.

**A strategy without an engine.** :class:`FakeContext` implements :class:`~mmframe.protocols.StrategyContext` with
plain settable attributes, so a strategy's :meth:`~mmframe.Strategy.desired_orders` can be tested on its own::

    from mmframe.testing import FakeContext, make_market

    ctx = FakeContext(market=make_market(tick_size="0.01"))
    ctx.set_index_price("30000")
    ctx.position = Position(base=Decimal("0.5"))
    quotes = list(MyStrategy(MyStrategy.Config(), ctx.market).desired_orders(ctx))
    ctx.submit(...)  # recorded in ctx.submitted; ctx.cancel(...) in ctx.cancelled

**A strategy in a real engine.** :func:`run_strategy` (or :func:`start_engine` / :func:`run_engine` for several
markets, a sink of the test's own, restarts) runs the engine the service runs: the strategy's market on the paper
sink (:class:`PaperSink`, its matching book in-process), its index from a :class:`ScriptedFeed` the test pushes
ticks into, on the test's clock (``trio.testing.MockClock(autojump_threshold=0)``: pytest-trio's ``autojump_clock``).
The :class:`Harness` it yields drives it (``push_tick``, ``push_depth``, ``take``, ``settle``, ``start``, ``stop``)
and shows what happened (``status``, ``our_bids``/``our_asks``, ``book``, ``live_orders``, ``fills``)::

    from mmframe import Side
    from mmframe.testing import run_strategy

    async def test_a_fill_moves_the_position(autojump_clock):
        async with run_strategy(MyStrategy, {"spread": "0.002"}) as engine:
            engine.push_tick("30000")
            await engine.settle()
            bid, _ = engine.our_bids()[0]
            engine.take(Side.SELL, "0.01", bid)  # another participant sells into our best bid
            await engine.settle()
            assert engine.status().position == Decimal("0.01")
        # leaving the block stopped the market: none of our orders is left on the paper book

**A whole service.** :func:`run_service` runs ``mmframe serve`` in-process on a test database (:func:`seed_database`
puts the seed's rows there, :func:`seed_sql` is their SQL), with the control API on a free loopback port.

**Plugins as mmframe finds them.** :func:`load_plugins` loads the installed entry points as the ``mmframe`` command
does, to check that a distribution registers what it should.

:class:`RedisServer` runs a private ``redis-server`` on a free loopback port, which a test can stop and start again
(a Redis restart in the middle of a run) without disturbing any other Redis.

Nothing here is registered through the plugin hooks: a test registers these by hand where it needs them (the
engine harnesses register :class:`ScriptedFeed` as ``scripted`` for the engine they start).
"""

from __future__ import annotations

from ._fakes import FakeContext as FakeContext
from ._fakes import ScriptedFeed as ScriptedFeed
from ._fakes import make_market as make_market
from ._harness import Harness as Harness
from ._harness import LoadedPlugins as LoadedPlugins
from ._harness import PaperSink as PaperSink
from ._harness import load_plugins as load_plugins
from ._harness import run_engine as run_engine
from ._harness import run_strategy as run_strategy
from ._harness import sink_metrics_text as sink_metrics_text
from ._harness import start_engine as start_engine
from ._redis import RedisServer as RedisServer
from ._service import ServiceHarness as ServiceHarness
from ._service import run_service as run_service
from ._sql import describe_market as describe_market
from ._sql import mysql_to_sqlite as mysql_to_sqlite
from ._sql import run_sql as run_sql
from ._sql import seed_database as seed_database
from ._sql import seed_sql as seed_sql
from ._sql import split_sql as split_sql

__all__ = [
    "FakeContext",
    "Harness",
    "LoadedPlugins",
    "PaperSink",
    "RedisServer",
    "ScriptedFeed",
    "ServiceHarness",
    "describe_market",
    "load_plugins",
    "make_market",
    "mysql_to_sqlite",
    "run_engine",
    "run_service",
    "run_sql",
    "run_strategy",
    "seed_database",
    "seed_sql",
    "sink_metrics_text",
    "split_sql",
    "start_engine",
]
