"""``python -m bench [names...] [--size tiny|full]``: run benchmarks, one JSON line each on stdout.

With one name the benchmark runs in this process; with several (or none: all of them) each runs in a process of
its own, so that one benchmark's garbage, threads or warm caches never colour the next one's figures.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

from . import BENCHMARKS, SIZES
from .common import emit, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="name",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--size", choices=SIZES, default="full", help="full (the figures) or tiny (a smoke run)")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    if len(names) == 1:
        module = importlib.import_module(f"bench.{names[0]}")
        emit(module.run(args.size))
        return 0
    failed = []
    for name in names:
        log("running %s (%s)", name, args.size)
        code = subprocess.call([sys.executable, "-m", "bench", name, "--size", args.size])
        if code != 0:
            failed.append(name)
    if failed:
        log("failed: %s", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
