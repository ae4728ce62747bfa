"""sink_throughput: the ``match-engine`` sink against the reference match engine in a second process, over loopback
HTTP.

The engine is ``python -m mmframe match-engine serve --port 0`` (a process of its own, so client and engine each
have a core); the benchmark drives a :class:`~mmframe_match_engine.sink.MatchEngineSink` directly, with its default
options except the request rate limit, raised from 100 to 10,000 requests a second (the default is a politeness
limit towards a production engine, and would be the only thing measured).

1. **Sustained.** As fast as the sink takes them: batches of 100 buy limit orders (none crosses another) go to
   ``sink.place`` while fewer than 4,000 orders are unconfirmed, and every acknowledged order is cancelled by
   cancel requests of up to 500 ids (four cancellers at once). ``ops_per_s`` is acknowledged places plus
   confirmed cancels (the engine's ``cancelled`` events on the stream) per second over the measured window.
2. **Fixed load.** 2,000 orders a second offered as 20 orders every 10 ms (a ladder's worth, as a market sends
   them); every 100 ms the acknowledged ones are cancelled in one request, so the book stays small. Each order's
   acknowledgement latency is from the ``sink.place`` call to its ``accepted`` event.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any

import trio
from mmframe_match_engine.sink import MatchEngineSink

from mmframe._cli import tune_gc
from mmframe._models import OrderRequest, OrderType, Side

from .common import AckRecorder, log, percentile, result

NAME = "sink_throughput"
SYMBOL = "BTC/USDT"
SUSTAINED = {"tiny": (0.3, 0.7), "full": (1.0, 6.0)}  # (warm-up, measured) seconds
FIXED = {"tiny": (0.3, 0.7), "full": (1.0, 10.0)}
OFFERED_PER_S = 2_000
BATCH_EVERY = 0.010  # 20 orders every 10 ms
CANCEL_EVERY = 0.100
MAX_UNCONFIRMED = 4_000
RATE_LIMIT = 10_000.0

_ids = itertools.count(1)


def _requests(count: int, tag: str) -> list[OrderRequest]:
    """*count* buy limit orders at prices 1000.0 to 1049.9 (nothing to match against)."""
    out = []
    for _ in range(count):
        n = next(_ids)
        out.append(
            OrderRequest(
                client_order_id=f"bench-{tag}{n}",
                symbol=SYMBOL,
                side=Side.BUY,
                type=OrderType.LIMIT,
                quantity=Decimal(1),
                price=Decimal(1000) + Decimal(n % 500) / 10,
            )
        )
    return out


async def start_engine(nursery: trio.Nursery) -> tuple[trio.Process, str]:
    """``mmframe match-engine serve --port 0`` in a process of its own; returns it and its URL. Its log goes on to
    our stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMFRAME_")}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "mmframe", "match-engine", "serve", "--port", "0", "--log-level", "info"],
        stderr=subprocess.PIPE,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    output = b""
    with trio.fail_after(30):
        while b"Match engine listening on http://" not in output or not output.endswith(b"\n"):
            chunk = await process.stderr.receive_some()
            if not chunk:
                raise RuntimeError(f"the match engine did not start: {output.decode(errors='replace')}")
            output += chunk
    url = output.decode().split("Match engine listening on ", 1)[1].split()[0]

    async def forward() -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()

    nursery.start_soon(forward)
    return process, url


async def wait_ready(sink: MatchEngineSink) -> None:
    with trio.fail_after(10):
        # The sink has no event for it: its event stream comes up on its own.
        while sink.degraded:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def sustained(sink: MatchEngineSink, recorder: AckRecorder, warmup: float, duration: float) -> dict[str, Any]:
    accepted_ids: list[str] = []
    placed = 0
    wake = trio.Event()

    def on_event(event: Any) -> None:
        if event.kind == "accepted":
            accepted_ids.append(event.client_order_id)
            wake.set()

    subscription = sink.subscribe(SYMBOL, "bench-s", on_event)

    async def producer() -> None:
        nonlocal placed
        while True:
            if placed - recorder.cancelled >= MAX_UNCONFIRMED:
                await trio.sleep(0.001)
                continue
            batch = _requests(100, "s")
            placed += len(batch)
            await sink.place(batch)

    async def canceller() -> None:
        nonlocal wake
        while True:
            if not accepted_ids:
                await wake.wait()
                wake = trio.Event()
                continue
            ids = accepted_ids[:500]
            del accepted_ids[:500]
            await sink.cancel(SYMBOL, ids)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        for _ in range(4):
            nursery.start_soon(canceller)
        await trio.sleep(warmup)
        a0, c0, t0 = recorder.accepted, recorder.cancelled, time.perf_counter()
        await trio.sleep(duration)
        a1, c1, t1 = recorder.accepted, recorder.cancelled, time.perf_counter()
        nursery.cancel_scope.cancel()
    subscription.close()
    elapsed = t1 - t0
    return {
        "ops_per_s": (a1 - a0 + c1 - c0) / elapsed,
        "places_per_s": (a1 - a0) / elapsed,
        "cancels_per_s": (c1 - c0) / elapsed,
    }


async def fixed_load(sink: MatchEngineSink, recorder: AckRecorder, warmup: float, duration: float) -> dict[str, Any]:
    sent: dict[str, float] = {}
    recorder.ack_times.clear()
    recorder.keep_times = True
    per_batch = round(OFFERED_PER_S * BATCH_EVERY)
    measured_from = trio.current_time() + warmup
    end = measured_from + duration
    cancelled_upto = 0
    acked_order: list[str] = []

    def on_event(event: Any) -> None:
        if event.kind == "accepted":
            acked_order.append(event.client_order_id)

    subscription = sink.subscribe(SYMBOL, "bench-f", on_event)

    async def canceller() -> None:
        nonlocal cancelled_upto
        while True:
            await trio.sleep(CANCEL_EVERY)
            ids = acked_order[cancelled_upto:]
            cancelled_upto += len(ids)
            for start in range(0, len(ids), 1000):
                await sink.cancel(SYMBOL, ids[start : start + 1000])

    late = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(canceller)
        deadline = trio.current_time()
        while deadline < end:
            batch = _requests(per_batch, "f")
            now = time.perf_counter()
            if trio.current_time() >= measured_from:
                for request in batch:
                    sent[request.client_order_id] = now
            await sink.place(batch)
            deadline += BATCH_EVERY
            if trio.current_time() > deadline + BATCH_EVERY:
                late += 1  # the loop itself fell behind the offered pace
            await trio.sleep_until(deadline)
        await trio.sleep(0.5)  # the last acknowledgements
        nursery.cancel_scope.cancel()
    subscription.close()
    recorder.keep_times = False
    latencies = [recorder.ack_times[c] - t for c, t in sent.items() if c in recorder.ack_times]
    return {
        "ack_p50_ms": percentile(latencies, 50) * 1e3,
        "ack_p99_ms": percentile(latencies, 99) * 1e3,
        "ack_max_ms": max(latencies, default=float("nan")) * 1e3,
        "acked": len(latencies),
        "unacknowledged": len(sent) - len(latencies),
        "late_batches": late,
        "offered_per_s": OFFERED_PER_S,
    }


async def measure(size: str) -> dict[str, Any]:
    async with trio.open_nursery() as nursery:
        process, url = await start_engine(nursery)
        log("%s: match engine at %s (pid %d)", NAME, url, process.pid)
        try:
            sink = MatchEngineSink(MatchEngineSink.Config(endpoint=url, rate_limit=RATE_LIMIT, burst=100))
            await nursery.start(sink.run)
            await wait_ready(sink)
            tune_gc()  # the collector as mmframe serve sets it once started (the sink runs in that process)
            recorder = AckRecorder()
            recorder.attach(sink, SYMBOL)
            log("%s: sustained, %.1f s", NAME, sum(SUSTAINED[size]))
            figures = await sustained(sink, recorder, *SUSTAINED[size])
            await trio.sleep(0.5)  # let the last cancels drain
            log("%s: %d orders/s offered, %.1f s", NAME, OFFERED_PER_S, sum(FIXED[size]))
            figures |= await fixed_load(sink, recorder, *FIXED[size])
            figures["sink_statistics"] = dict(sink.statistics)
            recorder.close()
        finally:
            process.send_signal(2)  # SIGINT: the engine stops and exits 0
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
            nursery.cancel_scope.cancel()
    return figures


def run(size: str = "full") -> dict[str, Any]:
    figures = trio.run(measure, size)
    return result(
        NAME,
        size,
        ops_per_s=round(figures["ops_per_s"]),
        ack_p50_ms=round(figures["ack_p50_ms"], 2),
        ack_p99_ms=round(figures["ack_p99_ms"], 2),
        ack_max_ms=round(figures["ack_max_ms"], 2),
        places_per_s=round(figures["places_per_s"]),
        cancels_per_s=round(figures["cancels_per_s"]),
        offered_orders_per_s=figures["offered_per_s"],
        acked=figures["acked"],
        unacknowledged=figures["unacknowledged"],
        late_batches=figures["late_batches"],
        sink_statistics=figures["sink_statistics"],
        sink_options={"rate_limit": RATE_LIMIT, "burst": 100},
    )
