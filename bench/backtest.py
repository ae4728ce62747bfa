"""backtest: how fast ``mmframe backtest`` runs, as a user runs it (the engine unchanged, the simulated exchange).

**Replay.** A recording is written first (not timed), shaped like a recorded exchange feed. It holds:

- every 100 ms, a depth snapshot of five levels a side (Binance's ``depth5@100ms``) and four trades at the touch;
- once a second, an index tick of a BTC-like mid (a random walk of 1 bp steps).

That is 51 events a virtual second, mostly depth and trades. The recording is then replayed through
``run_replay``: reading and checking the file, the simulated exchange's queue model, and every step of the engine.
It is replayed twice:

- with ``avellaneda_stoikov`` (fixed parameters, a rolling horizon: about 6 messages a virtual second), which gives
  ``events_per_s``, the events replayed per second of wall time (target: at least 50,000);
- with ``external_index_follow`` on the seed's ten-level ladder, which requotes about 20 levels on every move of
  the index (about 36 messages a virtual second), which gives ``events_per_s_seed_ladder``.

**Synthetic.** The study of Avellaneda & Stoikov (2008) at one gamma: 1,000 paths of 200 steps of
``avellaneda_stoikov`` at gamma 0.1, on both cores (``--jobs 2``). Target: under 60 s.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from mmframe import DepthSnapshot, Market, PriceTick, Side, Trade
from mmframe._backtest.exchange import ExchangeConfig
from mmframe._backtest.record import RecordWriter
from mmframe._backtest.run import SyntheticModel, run_replay, run_synthetic
from mmframe._engine.risk import RiskLimits
from mmframe._engine.spec import MarketSpec
from mmframe.testing import load_plugins

from .common import log, result, seed_config

NAME = "backtest"
EVENTS = {"tiny": 5_000, "full": 500_000}
PATHS = {"tiny": 20, "full": 1_000}
BTC = Market("BTC/USDT", tick_size="0.1", price_precision=4, quantity_precision=2)
START = 1_700_000_000.0


def write_recording(path: Path, events: int, seed: int = 7) -> int:
    """A recording of about *events* events (see the module documentation); returns how many it holds."""
    rng = random.Random(seed)
    mid = 30_000.0
    written = 0
    t = START
    with RecordWriter(path, source="bench") as writer:
        step = 0
        while written < events:
            t += 0.1
            step += 1
            if step % 10 == 0:
                mid *= math.exp(rng.choice((-1e-4, 1e-4)))
                writer.write(PriceTick("binance", "BTCUSDT", Decimal(f"{mid:.2f}"), t), t)
                written += 1
            bid = math.floor(mid * 10 - 1) / 10
            ask = bid + 0.2
            bids = [(Decimal(f"{bid - i * 0.1:.1f}"), Decimal(f"{rng.uniform(0.1, 3):.3f}")) for i in range(5)]
            asks = [(Decimal(f"{ask + i * 0.1:.1f}"), Decimal(f"{rng.uniform(0.1, 3):.3f}")) for i in range(5)]
            writer.write(DepthSnapshot("binance", "BTCUSDT", bids=bids, asks=asks, timestamp=t), t)
            for n in range(4):
                side = Side.BUY if rng.random() < 0.5 else Side.SELL
                price = Decimal(f"{ask:.1f}") if side is Side.BUY else Decimal(f"{bid:.1f}")
                when = t + 0.02 * (n + 1)
                writer.write(Trade("binance", "BTCUSDT", price, Decimal(f"{rng.uniform(0.001, 0.5):.3f}"), side,
                                   when), when)
            written += 5
    return written


#: The two strategies replayed (see the module documentation).
REPLAYED = {
    "avellaneda_stoikov": {"gamma": "0.001", "quantity": "0.01", "horizon": 60, "sigma": "3", "k": "0.5",
                           "A": "20"},
    "external_index_follow": seed_config(),
}


def replay_one(path: Path, strategy: str) -> dict[str, Any]:
    load_plugins()  # the plugins imported, as the mmframe command has them before it replays: the replay is timed
    spec = MarketSpec(market=BTC, strategy=strategy, strategy_config=REPLAYED[strategy], index_symbol="BTCUSDT",
                      risk=RiskLimits(price_band=None), refresh_interval=1.0, stale_after=10.0)
    started = time.perf_counter()
    cpu = time.process_time()
    figures, _, info = run_replay([spec], path, ExchangeConfig(queue_model="proportional"))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    (figure,) = figures
    virtual = info["last_t"] - info["first_t"]
    return {
        "strategy": strategy,
        "events": info["events"],
        "seconds": round(elapsed, 2),
        "cpu_seconds": round(cpu, 2),
        "events_per_s": round(info["events"] / elapsed),
        "virtual_seconds": round(virtual, 1),
        "fills": figure.fills,
        "messages": figure.messages,
        "messages_per_virtual_s": round(figure.messages / virtual, 1) if virtual else None,
    }


def replay(size: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl.gz"
        count = write_recording(path, EVENTS[size])
        log("%s: replaying %d events (%.1f MB)", NAME, count, path.stat().st_size / 1e6)
        return [replay_one(path, strategy) for strategy in REPLAYED]


def synthetic(size: str) -> dict[str, Any]:
    paths = PATHS[size]
    jobs = 1 if size == "tiny" else min(2, os.cpu_count() or 1)
    market = Market("AS/USD", tick_size="0.0001", price_precision=4, quantity_precision=0, min_quantity="1")
    spec = MarketSpec(market=market, strategy="avellaneda_stoikov",
                      strategy_config={"gamma": "0.1", "sigma": "2", "A": "140", "k": "1.5", "horizon": 1,
                                       "horizon_mode": "finite", "quantity": "1"},
                      risk=RiskLimits(price_band=None))
    log("%s: %d paths of the Avellaneda-Stoikov model on %d processes", NAME, paths, jobs)
    started = time.perf_counter()
    figures, _ = run_synthetic(spec, SyntheticModel(), ExchangeConfig(), paths=paths, seed=1, jobs=jobs)
    elapsed = time.perf_counter() - started
    pnl = [f.pnl for f in figures]
    mean = sum(pnl) / len(pnl)
    return {"paths": paths, "jobs": jobs, "seconds": round(elapsed, 2), "pnl_mean": round(mean, 2),
            "fills_mean": round(sum(f.fills for f in figures) / len(figures), 1)}


def run(size: str = "full") -> dict[str, Any]:
    model, ladder = replay(size)
    study = synthetic(size)
    return result(
        NAME,
        size,
        events_per_s=model["events_per_s"],
        events_per_s_seed_ladder=ladder["events_per_s"],
        study_seconds=study["seconds"],
        replay=[model, ladder],
        synthetic=study,
        targets={"events_per_s": ">= 50000", "study_seconds": "< 60 (1000 paths, one gamma)"},
    )
