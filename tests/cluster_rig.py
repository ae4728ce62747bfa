"""A cluster on this machine for the acceptance tests of issue 16: the reference match engine, N ``mmframe serve``
processes sharing one SQLite store and one Redis, and a sampler of the engine's books.

The invariant the tests hold at every sample: no market has resting orders from two owners at once (the owner of
an order is the member tag in its client id, ``mmf-S0USDT1-{member}.{counter}``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from mmframe._demo import SEED_STRATEGY_CONFIG
from mmframe._store import MarketDescription, Store

SAMPLE_EVERY = 0.2
ACCOUNT = "mmframe"


def write_store(path: Path, count: int, *, tick_rate: float = 1.0) -> list[str]:
    """*count* auto-started spot markets ``S{i}/USDT`` on the ``sim`` feed, the seed's strategy config; their
    symbols."""
    store = Store.sqlite(path)
    symbols = []
    try:
        store.init()
        strategy_id = store.add_strategy("external_index_follow", json.loads(json.dumps(SEED_STRATEGY_CONFIG)),
                                         desc="cluster test")
        feed_config = {"volatility": 0.00005, "tick_rate": tick_rate, "seed": 7}
        for i in range(count):
            currency_id = 200_000 + i
            store.add_currency(currency_id, 1, f"S{i}USDT", strategy_id, market_status=1, index_source=0)
            options = {"feed": "sim", "feed_config": feed_config,
                       "risk": {"max_order_quantity": "20", "price_band": "0.05"}}
            store.save_market(currency_id, 1, MarketDescription(f"S{i}/USDT", "0.01", 4, 2, "0.01", options=options))
            symbols.append(f"S{i}/USDT")
    finally:
        store.close()
    return symbols


def owner_of(client_order_id: str) -> str:
    """The member tag in ``mmf-S0USDT1-{member}.{counter}``."""
    return client_order_id.split("-", 2)[2].split(".", 1)[0]


class Proc:
    def __init__(self, name: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self._member: str | None = None
        self._api: str | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def member(self) -> str:
        if self._member is None:
            found = re.search(r"this instance is member (\w+)", self.log())
            assert found, f"{self.name} did not say its member id:\n{self.log()[-3000:]}"
            self._member = found.group(1)
        return self._member

    @property
    def api(self) -> str:
        if self._api is None:
            found = re.search(r"HTTP API server listening on (\S+)", self.log())
            assert found, f"{self.name} did not bind its API:\n{self.log()[-3000:]}"
            self._api = f"http://{found.group(1)}"
        return self._api

    def wait_ready(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if "HTTP API server listening on" in self.log() and "this instance is member" in self.log():
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready within {seconds}s:\n{self.log()[-3000:]}")


class Rig:
    """The engine, the store and the instances of one test; :meth:`close` stops whatever still runs."""

    def __init__(self, tmp_path: Path, markets: int, *, redis_url: str, ttl: float, cluster: str) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "cluster.sqlite"
        self.symbols = write_store(self.db, markets) if markets else []
        self.redis_url = redis_url
        self.ttl = ttl
        self.cluster = cluster
        self.procs: list[Proc] = []
        self.samples = 0
        self.violations: list[str] = []
        self.history: list[tuple[float, dict[str, set[str]]]] = []
        self.http = httpx.Client(timeout=5)
        self.engine_log = tmp_path / "engine.log"
        self.engine = subprocess.Popen(
            [sys.executable, "-m", "mmframe", "match-engine", "serve", "--port", "0"],
            stdout=self.engine_log.open("wb"), stderr=subprocess.STDOUT, env=self._env(), cwd=tmp_path,
        )
        deadline = time.monotonic() + 20
        while True:
            found = re.search(r"Match engine listening on (\S+)", self.engine_log.read_text())
            if found:
                self.engine_url = found.group(1)
                break
            assert time.monotonic() < deadline and self.engine.poll() is None, self.engine_log.read_text()
            time.sleep(0.05)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MMFRAME_", "DB_", "API_PORT", "MATCH_ENGINE", "REDIS_", "MARKET_REDIS"))}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def spawn(self, name: str, *extra: str, workers: int | None = None, db: Path | None = None) -> Proc:
        env = self._env()
        env.update({
            "MATCH_ENGINE_ENDPOINT": self.engine_url,
            "MMFRAME_CLUSTER_REDIS": self.redis_url,
            "MMFRAME_CLUSTER_NAME": self.cluster,
            "MMFRAME_LEASE_TTL": str(self.ttl),
            # one attempt's timeout bounds when an order may land: well inside the lease's margin
            "MMFRAME_SINK_CONFIG": json.dumps({"timeout": 0.5, "max_retries": 2}),
            "MMFRAME_API_TOKEN": "cluster-test-token",
        })
        log_path = self.tmp / f"{name}.log"
        args = [sys.executable, "-m", "mmframe", "serve", "--sqlite", str(db or self.db), "--env-file", os.devnull,
                "--api-port", "0", "--status-interval", "3600", *extra]
        if workers is not None:
            args += ["--workers", str(workers)]
        process = subprocess.Popen(args, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=self.tmp)
        proc = Proc(name, process, log_path)
        self.procs.append(proc)
        return proc

    # ---- the engine's books ---------------------------------------------------------------------------------

    def open_orders(self, symbol: str) -> list[str]:
        params = {"symbol": symbol, "account": ACCOUNT, "prefix": "mmf-"}
        response = self.http.get(f"{self.engine_url}/api/v1/orders/open", params=params)
        response.raise_for_status()
        return [o["client_order_id"] for o in response.json()["orders"]]

    def sample(self) -> dict[str, set[str]]:
        """Each market's owners now (the member tags of its resting orders); a market with two is recorded as a
        violation of the invariant."""
        owners = {}
        for symbol in self.symbols:
            tags = {owner_of(coid) for coid in self.open_orders(symbol)}
            owners[symbol] = tags
            if len(tags) > 1:
                self.violations.append(f"{time.monotonic():.2f}: {symbol} has orders of {sorted(tags)}")
        self.samples += 1
        self.history.append((time.monotonic(), owners))
        return owners

    def watch(self, condition: Callable[[dict[str, set[str]]], bool], seconds: float, what: str) -> float:
        """Sample every 200 ms until *condition* holds for a sample; the seconds it took."""
        started = time.monotonic()
        deadline = started + seconds
        while True:
            at = time.monotonic()
            owners = self.sample()
            if condition(owners):
                return time.monotonic() - started
            if at > deadline:
                raise AssertionError(f"not within {seconds}s: {what}; last sample {owners}\n{self._logs()}")
            time.sleep(max(0.0, SAMPLE_EVERY - (time.monotonic() - at)))

    def hold(self, seconds: float) -> None:
        """Sample every 200 ms for *seconds*."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            at = time.monotonic()
            self.sample()
            time.sleep(max(0.0, SAMPLE_EVERY - (time.monotonic() - at)))

    def cluster_view(self, proc: Proc) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get(f"{proc.api}/api/v1/cluster").json()["data"]
        return data

    def _logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()[-2500:]}" for p in self.procs)

    # ---- stopping -------------------------------------------------------------------------------------------

    def stop(self, proc: Proc, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        proc.process.send_signal(sig)
        try:
            return proc.process.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.process.kill()
            raise AssertionError(f"{proc.name} did not stop within {timeout}s:\n{proc.log()[-3000:]}") from None

    def close(self) -> None:
        for proc in self.procs:
            if proc.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.process.pid, signal.SIGCONT)
                proc.process.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.process.wait(30)
            except subprocess.TimeoutExpired:
                proc.process.kill()
        self.engine.send_signal(signal.SIGINT)
        try:
            self.engine.wait(10)
        except subprocess.TimeoutExpired:
            self.engine.kill()
        self.http.close()
