"""``cluster_scale``: ``mmframe serve --workers N`` on this machine, measured as :mod:`bench.serve_scale` measures
one process (store, audit trail, API on, the sim feed, the paper sink with simulated takers), from outside.

Each run writes a fresh SQLite store with ``markets`` auto-started markets (``serve_scale``'s shape), starts
``mmframe serve --workers N`` (worker i's API on ``API_PORT + i``), waits until every market runs, warms up, then
reads the summed quote-latency histograms of every worker's ``/metrics`` twice, ``seconds`` apart, and the CPU time
of the supervisor and its workers between the two. The runs: one worker with ``per_worker`` markets, one worker with
twice as many, two workers with twice as many (a fixed split, no Redis), and two workers in a cluster (``--cluster``
on the machine's Redis: the same markets through leases). Fields per run: ``workers``, ``markets``, ``running``,
``cluster``, ``p50_ms``, ``p99_ms`` (``p99_over_ms`` when beyond the histogram), ``cpu_pct`` (100 = one core),
``ops_per_s``, ``startup_s``, ``exit_code``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .common import log, result
from .serve_scale import (
    bucket_percentile,
    free_port,
    get,
    interrupt,
    largest_bound_ms,
    post,
    proc_cpu_seconds,
    scrape,
    wait_running,
    write_store,
)

NAME = "cluster_scale"
#: (markets per worker, warm-up s, measured s)
SIZES = {"tiny": (2, 2.0, 3.0), "full": (200, 10.0, 20.0)}
MAX_STARTUP = 120.0
STOP_TIMEOUT = 120.0
REDIS = "redis://127.0.0.1:6379/0"


def _tree(pid: int) -> list[int]:
    """*pid* and its children (the supervisor's workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            children.append(int(entry.name))
    return [pid, *children]


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += proc_cpu_seconds(pid)
    return total


def _running(bases: list[str]) -> int:
    total = 0
    for base in bases:
        data = json.loads(get(f"{base}/api/v1/strategy/list", timeout=30))["data"]
        # in a cluster every instance lists every market: count those it owns
        total += sum(1 for row in data if row.get("status") == "running"
                     and ("owner" not in row or row["owner"] == _member(base)))
    return total


_members: dict[str, str] = {}


def _member(base: str) -> str:
    if base not in _members:
        _members[base] = json.loads(get(f"{base}/api/v1/cluster", timeout=10))["data"].get("member") or ""
    return _members[base]


def _sum(scrapes: list[dict[str, Any]]) -> dict[str, Any]:
    buckets: dict[str, float] = {}
    totals: dict[str, Any] = {"buckets": buckets, "placed": 0.0, "cancelled": 0.0}
    for figures in scrapes:
        for bound, value in figures["buckets"].items():
            buckets[bound] = buckets.get(bound, 0.0) + value
        for key in ("placed", "cancelled"):
            totals[key] += figures.get(key, 0.0)
    return totals


def measure(workers: int, markets: int, warmup: float, seconds: float, *, cluster: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cluster_scale-") as tmp:
        db = Path(tmp) / "mmframe.sqlite"
        write_store(db, markets)
        port = free_port()
        while any(_port_taken(port + i) for i in range(workers)):
            port = free_port()
        bases = [f"http://127.0.0.1:{port + i}" for i in range(workers)]
        token = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MMFRAME_", "MATCH_ENGINE", "MARKET_REDIS"))}
        env.update({"MMFRAME_SINK_CONFIG": json.dumps({"taker_flow_rate": 0.5, "seed": 11}), "API_PORT": str(port),
                    "MMFRAME_API_TOKEN": token})
        if cluster:
            env.update({"MMFRAME_CLUSTER_REDIS": REDIS, "MMFRAME_CLUSTER_NAME": f"bench-{uuid.uuid4().hex[:8]}"})
        stderr_path = Path(tmp) / "stderr.log"
        stderr = stderr_path.open("w")
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "mmframe", "serve", "--sqlite", str(db), "--env-file", os.devnull,
             "--log-level", "WARNING", "--status-interval", "3600", "--workers", str(workers)],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        )
        startup = None
        running = 0
        first = last = None
        cpu0 = cpu1 = t0 = t1 = 0.0
        try:
            running, startup = wait_running(process, stderr_path, lambda: _running(bases), markets, started,
                                            MAX_STARTUP, pause=0.3)
            time.sleep(warmup)
            pids = _tree(process.pid)
            first, cpu0, t0 = _sum([scrape(b) for b in bases]), _cpu(pids), time.monotonic()
            time.sleep(seconds)
            last, cpu1, t1 = _sum([scrape(b) for b in bases]), _cpu(pids), time.monotonic()
            for base in bases[: 1 if cluster else workers]:  # in a cluster one kill switch reaches every market
                post(f"{base}/api/v1/kill", token, timeout=STOP_TIMEOUT)
        finally:
            interrupt(process, STOP_TIMEOUT)
            stderr.close()
            err = stderr_path.read_text()
        elapsed = t1 - t0
        p99 = over = None
        if first is not None and last is not None:
            p99 = bucket_percentile(first["buckets"], last["buckets"], 99)
            observed = last["buckets"].get("+Inf", 0.0) - first["buckets"].get("+Inf", 0.0)
            over = largest_bound_ms(last["buckets"]) if p99 is None and observed > 0 else None
        return {
            "workers": workers,
            "markets": markets,
            "running": running,
            "cluster": cluster,
            "p50_ms": bucket_percentile(first["buckets"], last["buckets"], 50) if first and last else None,
            "p99_ms": p99,
            "p99_over_ms": over,
            "cpu_pct": round((cpu1 - cpu0) / elapsed * 100, 1) if elapsed > 0 else None,
            "ops_per_s": round((last["placed"] + last["cancelled"] - first["placed"] - first["cancelled"]) / elapsed)
            if first and last and elapsed > 0 else None,
            "startup_s": None if startup is None else round(startup, 1),
            "exit_code": process.returncode,
            "errors": sum(1 for line in err.splitlines() if " ERROR " in line),
        }


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def run(size: str = "full") -> dict[str, Any]:
    per_worker, warmup, seconds = SIZES[size]
    results = []
    # one process with its share, one process with twice that (what it cannot carry at the same latency), then
    # the twice as many on two workers, split and in a cluster
    for workers, markets, cluster in ((1, per_worker, False), (1, 2 * per_worker, False),
                                      (2, 2 * per_worker, False), (2, 2 * per_worker, True)):
        log("%s: %d workers, %d markets%s (%.1f s warm-up, %.1f s measured)", NAME, workers, markets,
            ", in a cluster" if cluster else "", warmup, seconds)
        figures = measure(workers, markets, warmup, seconds, cluster=cluster)
        log("%s: %s", NAME, figures)
        results.append(figures)
    return result(NAME, size, results=results, per_worker=per_worker)
