"""serve_scale: ``mmframe serve`` with N markets as an operator runs it, measured from outside the process.

For each size a fresh SQLite store is written through the store's own methods: the seed's ``external_index_follow``
strategy with the seed's config (ten levels a side), and N auto-started spot markets ``S{i}/USDT`` (currency
``100000 + i``, tick 0.01, prices to 4 places, quantities to 2), each on the ``sim`` feed (one shared instance: the
same ``feed_config`` for all, every symbol a seeded random walk from 100 at ``tick_rate`` 5 and a per-tick
volatility of 0.0045 %, as :mod:`bench.scale`) with the demo's risk limits. Then ``mmframe serve --sqlite FILE``
runs in a process of its own: the store, the audit trail (every order event and fill written to SQLite) and the
control API on, the ``paper`` sink with simulated takers (``MMFRAME_SINK_CONFIG={"taker_flow_rate": 0.5}``) so that
fills happen.

Figures, all taken from outside through the control API, ``/metrics``, ``/proc`` and the database file:

- ``api_s``: seconds from the process's start until ``/health`` answers (``null``: not within ``MAX_STARTUP``; the
  latency, order and audit figures are ``null`` then too);
- ``startup_s``: until ``/api/v1/strategy/list`` shows every market running (``running`` says how many were, if
  not all within ``MAX_STARTUP``);
- ``cpu_pct``: the process's CPU time (all threads) over the measured wall time (100 = one core);
- ``rss_mb``: the process's peak resident set (``VmHWM``);
- ``p50_ms`` / ``p99_ms``: quote latency from the ``mmframe_quote_latency_seconds`` histogram over the measured
  window (every market summed), as the upper bound of the bucket the percentile falls in (``≤`` that many ms);
- ``ops_per_s``: order operations (places and cancels) per second over the window;
- ``audit_holds`` / ``audit_held_orders``: how often the audit trail's backlog reached its high-water mark and how
  many orders it held back meanwhile (both 0 while the store keeps up);
- ``audit_missing``: what the markets reported minus what the audit trail holds. After the window every market is
  stopped through the kill switch (``POST /api/v1/kill``: each cancels its orders, so nothing happens after it),
  ``/metrics`` is read once more for the final figures — every market's fills (``mmframe_fills_total``) and order
  events (``mmframe_order_events_total`` when the markets report it, else the order events the markets handed to the
  audit trail, ``mmframe_audit_received_total{kind="order_event"}``; ``events_counted_by`` says which) — then
  SIGINT, and once the process has exited
  the rows of ``mmframe_order_event`` and ``mmframe_fill`` are counted (``audit_rows``). 0: nothing lost, also not in
  the stop's final flush; it must never be anything else. ``null`` when the API never answered or the kill failed;
- ``exit_code``, ``errors`` (ERROR lines), ``fills``, ``order_events``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmframe._store import MarketDescription, Store

from .common import log, result, seed_config

NAME = "serve_scale"
SIZES = {"tiny": ([3], 2.0, 3.0), "full": ([100, 250, 500, 1000], 5.0, 20.0)}  # (markets, warm-up s, measured s)
TICK_RATE = 5.0
VOLATILITY = 0.000045
P99_LIMIT_MS = 10.0
MAX_STARTUP = 60.0
STOP_TIMEOUT = 120.0
KILL_TIMEOUT = 300.0


def write_store(path: Path, count: int) -> None:
    store = Store.sqlite(path)
    try:
        store.init()
        strategy_id = store.add_strategy("external_index_follow", seed_config(), desc="serve_scale")
        feed_config = {"volatility": VOLATILITY, "tick_rate": TICK_RATE, "seed": 7}
        for i in range(count):
            currency_id = 100_000 + i
            store.add_currency(currency_id, 1, f"S{i}USDT", strategy_id, market_status=1, index_source=0)
            options = {"feed": "sim", "feed_config": feed_config,
                       "risk": {"max_order_quantity": "20", "price_band": "0.05"}}
            store.save_market(currency_id, 1, MarketDescription(f"S{i}/USDT", "0.01", 4, 2, "0.01", options=options))
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def post(url: str, token: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return bytes(response.read())


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


#: The per-market counters summed by :func:`scrape` (sample name -> figure).
SUMMED = {
    "strategy_orders_total": "placed",
    "mmframe_orders_cancelled_total": "cancelled",
    "mmframe_fills_total": "fills",
    "mmframe_order_events_total": "order_events",
}
#: The audit trail's figures (no labels).
AUDIT = {
    "mmframe_audit_pending": "audit_pending",
    "mmframe_audit_holds_total": "audit_holds",
    "mmframe_audit_held_orders_total": "audit_held_orders",
    "mmframe_audit_dropped_total": "audit_dropped",
}


def scrape(base: str) -> dict[str, Any]:
    """The summed quote-latency buckets, order operations, fills and order events, and the audit trail's figures,
    from ``/metrics`` (a figure no sample reports is absent)."""
    buckets: dict[str, float] = {}
    totals: dict[str, Any] = {"buckets": buckets}
    for line in get(f"{base}/metrics", timeout=60).decode().splitlines():
        if line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        value = float(line.rsplit(" ", 1)[1])
        if name == "mmframe_quote_latency_seconds_bucket":
            bound = rest.split('le="', 1)[1].split('"', 1)[0]
            buckets[bound] = buckets.get(bound, 0.0) + value
        elif name in SUMMED:
            totals[SUMMED[name]] = totals.get(SUMMED[name], 0.0) + value
        elif name == "mmframe_audit_received_total" and 'kind="order_event"' in rest:
            totals["audit_order_events"] = value
        elif not rest and line.split(" ", 1)[0] in AUDIT:
            totals[AUDIT[line.split(" ", 1)[0]]] = value
    return totals


def bucket_percentile(before: dict[str, float], after: dict[str, float], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the *q*-th percentile of the observations between two scrapes;
    ``None`` when there were none, or when the percentile is beyond the histogram's largest finite bound (JSON has
    no infinity: ``p99_over_ms`` then says which bound it is beyond)."""
    bounds = sorted((float("inf") if b == "+Inf" else float(b), b) for b in after)
    counts = [(value, after[b] - before.get(b, 0.0)) for value, b in bounds]  # cumulative
    total = counts[-1][1] if counts else 0.0
    if total <= 0:
        return None
    for value, cumulative in counts:
        if cumulative >= total * q / 100:
            return value * 1e3 if value != float("inf") else None
    return None


def largest_bound_ms(buckets: dict[str, float]) -> float:
    return max((float(b) for b in buckets if b != "+Inf"), default=0.0) * 1e3


def running_count(base: str) -> int:
    data = json.loads(get(f"{base}/api/v1/strategy/list", timeout=30))["data"]
    rows = data if isinstance(data, list) else data.get("strategies", [])
    return sum(1 for row in rows if row.get("status") == "running")


def interrupt(process: subprocess.Popen[str], timeout: float) -> None:
    """SIGINT (the orderly stop), then SIGKILL if it has not exited within *timeout* seconds."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_running(
    process: subprocess.Popen[str],
    stderr_path: Path,
    count_running: Callable[[], int],
    count: int,
    started: float,
    limit: float,
    pause: float = 0.2,
) -> tuple[int, float | None]:
    """Poll *count_running* (an ``OSError`` while the API is not up yet) until *count* markets run or *limit*
    seconds from *started* have passed: the markets running at the end, and the seconds until all ran (``None``
    if they did not). Raises if the process exits meanwhile."""
    running = 0
    while time.monotonic() - started < limit:
        if process.poll() is not None:
            raise RuntimeError(f"mmframe serve exited with {process.returncode}: {stderr_path.read_text()[-2000:]}")
        try:
            running = count_running()
        except OSError:
            time.sleep(pause)
            continue
        if running == count:
            return running, time.monotonic() - started
        time.sleep(pause)
    return running, None


def measure(count: int, warmup: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="serve_scale-") as tmp:
        db = Path(tmp) / "mmframe.sqlite"
        write_store(db, count)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        token = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MMFRAME_", "MATCH_ENGINE", "MARKET_REDIS"))}
        env.update({"MMFRAME_SINK_CONFIG": json.dumps({"taker_flow_rate": 0.5, "seed": 11}), "API_PORT": str(port),
                    "MMFRAME_API_TOKEN": token})
        started = time.monotonic()
        # The log goes to a file: a pipe read only at the end would fill up and block the service's next line.
        stderr_path = Path(tmp) / "stderr.log"
        stderr = stderr_path.open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "mmframe", "serve", "--sqlite", str(db), "--env-file", os.devnull,
             "--log-level", "WARNING", "--status-interval", "3600"],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        )
        api_s: float | None = None
        startup: float | None = None
        running = 0
        first = last = final = None
        try:

            def count_running() -> int:
                nonlocal api_s
                if api_s is None:
                    get(f"{base}/health", timeout=2)
                    api_s = time.monotonic() - started
                return running_count(base)

            running, startup = wait_running(process, stderr_path, count_running, count, started, MAX_STARTUP)
            time.sleep(warmup)
            # An API that never answered (the process saturated before it bound) still leaves CPU and memory.
            first, cpu0, t0 = _scrape_or_none(base), proc_cpu_seconds(process.pid), time.monotonic()
            time.sleep(seconds)
            last, cpu1, t1 = _scrape_or_none(base), proc_cpu_seconds(process.pid), time.monotonic()
            rss = proc_peak_rss_mb(process.pid)
            final = _stop_markets(base, token)
        finally:
            interrupt(process, STOP_TIMEOUT)
            stderr.close()
            err = stderr_path.read_text()
        with sqlite3.connect(db) as connection:
            event_rows = connection.execute("SELECT COUNT(*) FROM mmframe_order_event").fetchone()[0]
            fill_rows = connection.execute("SELECT COUNT(*) FROM mmframe_fill").fetchone()[0]
        elapsed = t1 - t0
        measured = first is not None and last is not None
        p99 = over = None
        if first is not None and last is not None:
            p99 = bucket_percentile(first["buckets"], last["buckets"], 99)
            observed = last["buckets"].get("+Inf", 0.0) - first["buckets"].get("+Inf", 0.0)
            over = largest_bound_ms(last["buckets"]) if p99 is None and observed > 0 else None
        figures: dict[str, Any] = {
            "markets": count,
            "running": running,
            "cpu_pct": round((cpu1 - cpu0) / elapsed * 100, 1),
            "rss_mb": round(rss, 1),
            "p50_ms": bucket_percentile(first["buckets"], last["buckets"], 50) if measured else None,
            "p99_ms": p99,
            "p99_over_ms": over,
            "ops_per_s": round(
                (last["placed"] + last["cancelled"] - first["placed"] - first["cancelled"]) / elapsed
            ) if measured else None,
            "audit_missing": None,
            "api_s": None if api_s is None else round(api_s, 2),
            "startup_s": None if startup is None else round(startup, 1),
            "exit_code": process.returncode,
            "errors": sum(1 for line in err.splitlines() if " ERROR " in line),
            "fills": None,
            "order_events": None,
            "events_counted_by": None,
            "audit_rows": event_rows + fill_rows,
            "audit_holds": None if final is None else int(final.get("audit_holds", 0)),
            "audit_held_orders": None if final is None else int(final.get("audit_held_orders", 0)),
        }
        if final is not None:
            by_markets = "order_events" in final
            events = int(final["order_events"] if by_markets else final.get("audit_order_events", 0))
            figures.update(
                fills=int(final.get("fills", 0)),
                order_events=events,
                events_counted_by="markets" if by_markets else "audit_trail",
                audit_missing=events + int(final.get("fills", 0)) - event_rows - fill_rows,
            )
        return figures


def _stop_markets(base: str, token: str) -> dict[str, Any] | None:
    """Stop every market through the kill switch (each cancels its orders; nothing happens after it), then read
    the final figures; ``None`` when the API does not answer."""
    try:
        post(f"{base}/api/v1/kill", token, timeout=KILL_TIMEOUT)
        return scrape(base)
    except OSError as exc:
        log("%s: could not stop the markets through the API: %s", NAME, exc)
        return None


def _scrape_or_none(base: str) -> dict[str, Any] | None:
    try:
        return scrape(base)
    except OSError:
        return None


def run(size: str = "full") -> dict[str, Any]:
    counts, warmup, seconds = SIZES[size]
    results = []
    for count in counts:
        log("%s: %d markets (%.1f s warm-up, %.1f s measured)", NAME, count, warmup, seconds)
        figures = measure(count, warmup, seconds)
        log("%s: %s", NAME, figures)
        results.append(figures)
    holding = [r["markets"] for r in results if r["running"] == r["markets"] and r["p99_ms"] is not None
               and r["p99_ms"] <= P99_LIMIT_MS and r["cpu_pct"] < 100]
    return result(NAME, size, results=results, max_markets_p99_10ms=max(holding, default=0), tick_rate=TICK_RATE,
                  volatility_per_tick=VOLATILITY)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_scale")
    parser.add_argument("--markets", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(json.dumps(measure(args.markets, args.warmup, args.seconds)))


if __name__ == "__main__":
    main()
