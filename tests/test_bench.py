"""The benchmarks (``bench/``, ``docs/performance.md``) run once each at their tiny size, so they do not rot: every
one prints exactly one JSON line with its figures, the machine and the size. No figure is judged here."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAMES = (
    "quote_path", "sink_throughput", "scale", "serve_scale", "cluster_scale", "message_efficiency", "soak", "backtest",
)


@pytest.fixture(scope="module")
def lines() -> dict[str, dict[str, Any]]:
    """``python -m bench --size tiny``: every benchmark, each in a process of its own, from the repository root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMFRAME_")}
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "tiny"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    parsed = [json.loads(line) for line in out.stdout.splitlines()]
    assert [p["benchmark"] for p in parsed] == list(NAMES), out.stdout  # one line each, in order, nothing else
    return {p["benchmark"]: p for p in parsed}


@pytest.mark.parametrize("name", NAMES)
def test_every_line_names_the_machine_and_the_size(lines: dict[str, dict[str, Any]], name: str) -> None:
    line = lines[name]
    assert line["size"] == "tiny"
    assert line["machine"]["cpus"] >= 1 and line["machine"]["python"] == platform.python_version()


def test_quote_path(lines: dict[str, dict[str, Any]]) -> None:
    line = lines["quote_path"]
    assert line["n"] > 100
    assert 0 < line["p50_us"] <= line["p99_us"] <= line["max_us"]
    assert line["ladder"] == [10, 10] and line["orders_vetoed"] == 0 and line["orders_rejected"] == 0
    assert line["amends_per_tick"] > 1  # the ladder moves by amends (the paper sink can amend)


def test_sink_throughput(lines: dict[str, dict[str, Any]]) -> None:
    line = lines["sink_throughput"]
    assert line["ops_per_s"] > 0 and line["places_per_s"] > 0 and line["cancels_per_s"] > 0
    assert line["acked"] > 0
    assert 0 < line["ack_p50_ms"] <= line["ack_p99_ms"] <= line["ack_max_ms"]
    assert line["sink_statistics"]["failures"] == 0


def test_scale(lines: dict[str, dict[str, Any]]) -> None:
    line = lines["scale"]
    [result] = line["results"]
    assert result["markets"] == 3 and result["running"] == 3
    assert result["cpu_pct"] > 0 and result["rss_mb"] > 0 and result["p99_ms"] > 0 and result["ticks_per_s"] > 0
    assert line["max_markets_p99_5ms"] in (0, 3)


def test_message_efficiency(lines: dict[str, dict[str, Any]]) -> None:
    line = lines["message_efficiency"]
    assert 0 < line["messages"] < line["baseline_messages"]
    assert line["ratio"] == pytest.approx(line["messages"] / line["baseline_messages"], abs=1e-3)
    assert line["max_dev"] >= 0 and line["baseline_max_dev"] >= 0
    assert line["places"] > 0 and line["baseline_places"] >= 20 * line["seconds"]  # replace_all: every second


def test_backtest(lines: dict[str, dict[str, Any]]) -> None:
    """The replay of a recorded feed through the whole engine (both strategies fill and send), and the study."""
    line = lines["backtest"]
    model, ladder = line["replay"]
    assert model["strategy"] == "avellaneda_stoikov" and ladder["strategy"] == "external_index_follow"
    for figures in (model, ladder):
        assert figures["events"] >= 5_000 and figures["events_per_s"] > 0 and figures["messages"] > 0
    assert line["events_per_s"] == model["events_per_s"]
    assert line["synthetic"]["paths"] == 20 and line["study_seconds"] > 0
    assert 30 < line["synthetic"]["pnl_mean"] < 90


def test_an_unknown_benchmark_is_refused() -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "unknown benchmark nope" in out.stderr


def test_soak(lines: dict[str, dict[str, Any]]) -> None:
    line = lines["soak"]
    assert line["samples"] > 10 and line["max_resting"] >= line["ladder"] == 20
    assert line["orders_placed"] + line["orders_amended"] > 100
    for key in ("over_allowance", "unsettled", "left_after_stop"):
        assert isinstance(line[key], int), key


def test_serve_scale(lines: dict[str, dict[str, Any]]) -> None:
    """``mmframe serve`` as operators run it: every market running, the API answering, every order event and fill
    the markets reported in the audit trail's tables after the stop, a clean exit."""
    line = lines["serve_scale"]
    (figures,) = line["results"]
    for key in ("markets", "running", "cpu_pct", "rss_mb", "p50_ms", "p99_ms", "ops_per_s", "audit_missing"):
        assert key in figures, key  # the field names
    assert figures["markets"] == figures["running"] == 3
    assert 0 < figures["api_s"] <= figures["startup_s"] + 1 and figures["rss_mb"] > 0 and figures["cpu_pct"] > 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] and figures["ops_per_s"] > 0
    assert figures["order_events"] > 0 and figures["events_counted_by"] in ("markets", "audit_trail")
    assert figures["audit_rows"] == figures["order_events"] + figures["fills"]
    assert figures["audit_missing"] == 0 and figures["audit_holds"] == 0
    assert figures["exit_code"] == 0 and figures["errors"] == 0
    assert line["max_markets_p99_10ms"] in (0, 3)


def test_cluster_scale(lines: dict[str, dict[str, Any]]) -> None:
    """``mmframe serve --workers N``: one worker, two with twice the markets, and two in a cluster; every market
    running on one of them, the issue's fields, a clean exit."""
    runs = lines["cluster_scale"]["results"]
    assert [(r["workers"], r["markets"], r["cluster"]) for r in runs] == [
        (1, 2, False), (1, 4, False), (2, 4, False), (2, 4, True)
    ]
    for figures in runs:
        for key in ("workers", "markets", "p99_ms", "cpu_pct"):
            assert key in figures, key  # the field names
        assert figures["running"] == figures["markets"]
        assert figures["p99_ms"] is not None and figures["p99_ms"] > 0 and figures["cpu_pct"] > 0
        assert figures["exit_code"] == 0 and figures["errors"] == 0
