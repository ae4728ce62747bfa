"""mmframe's benchmark suite (issue 8): ``python -m bench [names...] [--size tiny|full]`` or ``nox -s bench``.

Each benchmark is a module here with ``run(size) -> dict`` and prints one JSON line to stdout: its name, its
figures, the machine and the size. Progress goes to stderr. ``docs/performance.md`` says what each one measures
and records the latest figures against the targets.

- :mod:`bench.quote_path`: one index tick through strategy, reconciler, risk gate and the paper sink's ack.
- :mod:`bench.sink_throughput`: the ``match-engine`` sink against the reference engine in a second process.
- :mod:`bench.scale`: N markets in one service process on the sim feed and the paper sink.
- :mod:`bench.serve_scale`: ``mmframe serve`` with N markets as operators run it (store, audit trail, API on),
  measured from outside the process.
- :mod:`bench.cluster_scale`: ``mmframe serve --workers N`` (a fixed split, and a cluster through Redis leases):
  twice the markets on two workers, at what quote latency and CPU.
- :mod:`bench.message_efficiency`: ``reconcile`` against ``replace_all`` on the recorded price path.
- :mod:`bench.backtest`: ``mmframe backtest`` replaying a recorded feed (events a second) and running the
  Avellaneda-Stoikov study (1,000 paths).
- :mod:`bench.soak`: cycles of 50 ticks/s bursts with takers on the reference engine: never more resting orders
  than the ladder plus those in flight, exactly one ladder after each burst, none left after a stop.

The test suite never runs them at full size: ``tests/test_bench.py`` runs each once at the tiny size.
"""

from __future__ import annotations

BENCHMARKS = (
    "quote_path", "sink_throughput", "scale", "serve_scale", "cluster_scale", "message_efficiency", "soak", "backtest",
)
SIZES = ("tiny", "full")

__all__ = ["BENCHMARKS", "SIZES"]
