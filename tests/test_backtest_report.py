"""The backtest report page (mmframe._backtest.report): self-contained, well-formed, escaped, and robust to the odd
shapes a summary can take (empty, flat, non-finite and huge series)."""

from __future__ import annotations

import math
import os
import random
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from mmframe._backtest.report import MAX_POINTS, MAX_TABLE_ROWS, downsample, render_html, write_report

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
FIGURE_KEYS = (
    "pnl",
    "final_inventory",
    "fills",
    "volume",
    "messages",
    "fill_ratio",
    "max_drawdown",
    "average_spread",
    "fees",
)


# ---------------------------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1))
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}


def make_summary(paths: int = 3, points: int = 2000, seed: int = 7) -> dict[str, Any]:
    """A realistic fake summary: the A&S market maker on a random-walk mid, quotes missing for a while."""
    rng = random.Random(seed)
    per_path = []
    for p in range(paths):
        per_path.append(
            {
                "path": p,
                "seed": 1000 + p,
                "pnl": round(rng.gauss(60, 6), 4),
                "final_inventory": float(rng.randint(-4, 4)),
                "fills": rng.randint(90, 120),
                "volume": float(rng.randint(90, 120)),
                "messages": rng.randint(700, 900),
                "fill_ratio": rng.uniform(0.2, 0.3),
                "max_drawdown": rng.uniform(3, 9),
                "average_spread": rng.uniform(1.4, 1.6),
                "fees": 0.0,
            }
        )
    dt = 1.0 / points
    t, mid, pnl, inventory, bid, ask = [], [], [], [], [], []
    s, q, cash = 100.0, 0, 0.0
    for i in range(points):
        s += rng.gauss(0, 2 * math.sqrt(dt))
        reservation = s - q * 0.1 * 4 * (1 - i * dt)
        b, a = reservation - 0.75, reservation + 0.75
        if rng.random() < 0.05:
            q, cash = q + 1, cash - b
        if rng.random() < 0.05:
            q, cash = q - 1, cash + a
        quoting = not (points // 6 < i < points // 6 + points // 50)  # a pause: no quotes
        t.append(i * dt)
        mid.append(s)
        pnl.append(cash + q * s)
        inventory.append(float(q))
        bid.append(b if quoting else None)
        ask.append(a if quoting else None)
    return {
        "mmframe_backtest": 1,
        "mode": "synthetic",
        "strategy": "avellaneda_stoikov",
        "strategy_config": {"gamma": "0.1", "horizon": "finite", "levels": 1, "order_size": "1"},
        "market": {"symbol": "SIM/USD", "tick_size": "0.0001"},
        "model": {"name": "avellaneda-stoikov", "s0": "100", "sigma": 2, "dt": 0.005, "horizon": 1, "A": 140, "k": 1.5},
        "exchange": {"queue_model": "probabilistic", "latency": {"order_ms": 0}, "fees": {"maker": "0", "taker": "0"}},
        "paths": paths,
        "seed": 1,
        "figures": {key: _stats([float(row[key]) for row in per_path]) for key in FIGURE_KEYS},
        "per_path": per_path,
        "series": {"t": t, "mid": mid, "pnl": pnl, "inventory": inventory, "bid": bid, "ask": ask},
        "elapsed_seconds": 12.3,
    }


# ---------------------------------------------------------------------------------------------------------------
# A checking parser
# ---------------------------------------------------------------------------------------------------------------

VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}
NUMERIC_ATTRS = {"x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "width", "height"}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class Page(HTMLParser):
    """Parses a report and checks tags balance; keeps the text and what the charts draw."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.attribute_names: set[str] = set()
        self.text_parts: list[str] = []
        self.svgs = 0
        self.paths: list[str] = []  # the d of every <path>
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value) inside svg
        self.per_path_rows = 0
        self._in_per_path = 0
        self.feed(text)
        self.close()
        if self.stack:
            self.errors.append(f"unclosed: {self.stack}")

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def _start(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attribute_names.update(name for name, _ in attrs)
        if tag == "svg":
            self.svgs += 1
        if "svg" in self.stack or tag == "svg":
            for name, value in attrs:
                self.attrs.append((tag, name, value or ""))
            if tag == "path":
                self.paths.append(dict(attrs).get("d") or "")
        if tag == "table" and ("class", "per-path") in attrs:
            self._in_per_path = len(self.stack) + 1
        if tag == "tr" and self._in_per_path and "tbody" in self.stack:
            self.per_path_rows += 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag == "table" and self._in_per_path == len(self.stack) + 1:
            self._in_per_path = 0

    def handle_data(self, data: str) -> None:
        if "style" not in self.stack:
            self.text_parts.append(data)


def parse(text: str) -> Page:
    page = Page(text)
    assert not page.errors, page.errors
    return page


def path_points(d: str) -> int:
    """How many points a path's ``d`` visits (an H...V pair of a step line is one)."""
    return len(re.findall(r"[ML]", d)) + len(re.findall(r"H", d))


def check_well_formed(text: str) -> Page:
    """The checks every page must pass."""
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text.lower()
    assert "javascript:" not in text.lower()
    style = text[text.index("<style>") : text.index("</style>")]
    assert "url(" not in style and "@import" not in style
    # The only URL in the page is the SVG namespace.
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}
    page = parse(text)
    assert page.tags.count("html") == 1 and page.tags.count("body") == 1
    assert page.tags.count("style") == 1
    assert not {"script", "link", "img", "iframe", "object", "embed", "image", "use", "foreignobject"} & set(page.tags)
    for name in page.attribute_names:
        assert name not in ("src", "href", "xlink:href", "srcset", "style") and not name.startswith("on"), name
    for tag, name, value in page.attrs:
        assert "nan" not in value.lower() or name in ("aria-label", "font-family"), (tag, name, value)
        assert "inf" not in value.lower() or name in ("aria-label", "font-family"), (tag, name, value)
        if name in NUMERIC_ATTRS:
            assert NUMBER.fullmatch(value), (tag, name, value)
    for d in page.paths:
        assert re.fullmatch(r"(?:[MLHV]-?\d+(?:\.\d+)?(?:,-?\d+(?:\.\d+)?)?)+", d), d[:200]
    return page


# ---------------------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------------------


def test_example_report(tmp_path: Path) -> None:
    """A realistic three-path summary: every section is there. Set MMFRAME_REPORT_EXAMPLE=/tmp/report-example.html
    to keep the page for a look in a browser."""
    summary = make_summary(paths=3)
    out = write_report(summary, os.environ.get("MMFRAME_REPORT_EXAMPLE") or tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    page = check_well_formed(text)
    assert page.svgs == 5  # PnL, inventory, quotes, and two histograms
    words = page.text
    for expected in (
        "Backtest report",
        "avellaneda_stoikov",
        "SIM/USD",
        "synthetic: avellaneda-stoikov",
        "Paths 3",
        "Seed 1",
        "Elapsed 12.3 s",
        "Strategy configuration",
        "gamma 0.1",
        "Model parameters",
        "PnL over time",
        "Inventory over time",
        "Quotes against the mid",
        "PnL over 3 paths",
        "Final inventory over 3 paths",
        "Per path",
    ):
        assert expected in words, expected
    assert page.per_path_rows == 3
    # The quotes chart draws ask, mid and bid, with a legend; the pause in the quotes breaks the bid and ask lines.
    quotes = text[text.index("Quotes against the mid") : text.index("</svg>", text.index("Quotes against the mid"))]
    for colour in ("#16a34a", "#dc2626", "#374151"):
        assert f'stroke="{colour}"' in quotes
    assert quotes.count('stroke="#16a34a" stroke-width="1.3"') == 2
    assert quotes.count('stroke="#374151" stroke-width="1.6"') == 1


def test_figures_are_formatted() -> None:
    summary = make_summary(paths=3)
    summary["figures"]["pnl"] = {"mean": 61.2, "std": 6.54, "min": 42.04, "max": 80.4}
    summary["figures"]["fills"] = {"mean": 104.33, "std": 9.1, "min": 90, "max": 120}
    summary["figures"]["fill_ratio"] = {"mean": 0.25, "std": 0.0123, "min": 0.2, "max": 0.3}
    summary["figures"]["messages"] = {"mean": 1234567.0, "std": 100.0, "min": 1234000, "max": 1235000}
    summary["figures"]["fees"] = {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}
    words = check_well_formed(render_html(summary)).text
    assert "PnL 61.20 ± 6.54 42.04 80.40" in words
    assert "Fills 104.3 ± 9.1 90 120" in words
    assert "Fill ratio 0.250 ± 0.012 0.200 0.300" in words
    assert "Messages 1,234,567 ± 100 1,234,000 1,235,000" in words
    assert "Fees 0 ± 0 0 0" in words
    assert "Mean PnL 61.20 ± 6.54 std" in words
    for label in ("Final inventory", "Volume", "Max drawdown", "Average spread"):
        assert label in words


def test_single_path_replay() -> None:
    """A replay: one path, the source file in the header, no histograms, the figures as plain values."""
    summary = make_summary(paths=1)
    summary["mode"] = "replay"
    del summary["model"]
    summary["source"] = {"file": "btc.jsonl.gz", "events": 123456, "first_t": 1704067200.0, "last_t": 1704070800.0}
    page = check_well_formed(render_html(summary))
    words = page.text
    assert "replay of btc.jsonl.gz" in words
    assert "123,456 events" in words
    assert "2024-01-01 00:00:00 UTC → 2024-01-01 01:00:00 UTC" in words
    assert "1 h 00 min" in words
    assert page.svgs == 3
    assert "Figure Value" in words and "Mean ± std" not in words
    assert "(path 0)" not in words
    assert "Per path" not in words  # one path: the results table says it all


def test_no_script_and_hostile_strings_are_escaped() -> None:
    summary = make_summary(paths=2)
    summary["strategy"] = HOSTILE
    summary["strategy_config"] = {HOSTILE: HOSTILE, "nested": {"x": [HOSTILE, "</style><script>alert(2)</script>"]}}
    summary["market"]["symbol"] = HOSTILE
    summary["model"]["name"] = HOSTILE
    summary["model"][HOSTILE] = 1
    summary["exchange"]["queue_model"] = HOSTILE
    summary["exchange"]["latency"] = {HOSTILE: HOSTILE}
    summary["figures"][HOSTILE] = {"mean": 1.0, "std": 0.0, "min": 1.0, "max": 1.0}
    summary["per_path"][0]["note"] = HOSTILE
    summary["per_path"][0][HOSTILE] = 3
    summary["seed"] = HOSTILE
    text = render_html(summary)
    assert "<img" not in text
    assert "<script" not in text.lower()
    assert HOSTILE_ESCAPED in text
    assert "&lt;/style&gt;&lt;script&gt;" in text
    page = check_well_formed(text)
    assert HOSTILE in page.text  # shown as text
    assert "img" not in page.tags and "script" not in page.tags
    replay = make_summary(paths=1)
    replay["mode"] = "replay"
    replay["source"] = {"file": HOSTILE, "events": HOSTILE}
    text = render_html(replay)
    assert "<img" not in text and HOSTILE_ESCAPED in text
    check_well_formed(text)


def test_per_path_table_is_capped() -> None:
    summary = make_summary(paths=120, points=50)
    page = check_well_formed(render_html(summary))
    assert page.per_path_rows == MAX_TABLE_ROWS
    assert f"Showing the first {MAX_TABLE_ROWS} of 120 paths" in page.text
    assert "PnL over 120 paths" in page.text  # the histograms use every path
    small = check_well_formed(render_html(make_summary(paths=MAX_TABLE_ROWS, points=50)))
    assert small.per_path_rows == MAX_TABLE_ROWS
    assert "Showing the first" not in small.text


# ---------------------------------------------------------------------------------------------------------------
# Robustness
# ---------------------------------------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")

SERIES_CASES: dict[str, dict[str, Any]] = {
    "empty": {"t": [], "mid": [], "pnl": [], "inventory": [], "bid": [], "ask": []},
    "single point": {"t": [0.0], "mid": [100.0], "pnl": [0.0], "inventory": [0.0], "bid": [99.5], "ask": [100.5]},
    "all equal": {"t": [0, 1, 2, 3], "mid": [100] * 4, "pnl": [0] * 4, "inventory": [2] * 4, "bid": [99] * 4},
    "zero time range": {"t": [5.0] * 4, "mid": [1, 2, 3, 4], "pnl": [1, 2, 3, 4], "inventory": [0, 1, 0, 1]},
    "non-finite": {
        "t": [0, 1, 2, 3, 4, 5],
        "mid": [NAN, 100, INF, 101, -INF, 102],
        "pnl": [None, 1, NAN, "NaN", "oops", 2],
        "inventory": [0, None, 1, NAN, 2, INF],
        "bid": [None, None, 99, None, 99.5, None],
        "ask": [NAN] * 6,
    },
    "all null": {"t": [0, 1, 2], "mid": [None] * 3, "pnl": [None] * 3, "inventory": [None] * 3, "bid": [None] * 3},
    "huge values": {"t": [0, 1, 2], "mid": [1e308, -1e308, 1e300], "pnl": [1e149, -1e149, 0], "inventory": [1e20] * 3},
    "tiny range": {"t": [0, 1, 2], "mid": [100.0, 100.0 + 1e-13, 100.0], "pnl": [1e-300, 2e-300, 0]},
    "bad time": {"t": [None, NAN, 2, "x"], "mid": [1, 2, 3, 4], "pnl": [1, 2, 3, 4]},
    "no time": {"mid": [1, 2, 3], "pnl": [3, 2, 1], "inventory": [0, 1, 2]},
    "short time": {"t": [0, 1], "mid": [1, 2, 3, 4], "pnl": [1, 2]},
    "not lists": {"t": "abc", "mid": 5, "pnl": {"a": 1}, "inventory": None, "bid": True},
    "strings": {"t": ["0", "1", "2"], "mid": ["100.5", "100.25", "100"], "pnl": ["1", "2", "3"]},
    "long run in days": {"t": [0, 86400 * 5], "mid": [1, 2], "pnl": [0, 1], "inventory": [0, 1]},
}


@pytest.mark.parametrize("series", SERIES_CASES.values(), ids=SERIES_CASES.keys())
def test_odd_series_render(series: dict[str, Any]) -> None:
    summary = make_summary(paths=2, points=10)
    summary["series"] = series
    page = check_well_formed(render_html(summary))
    assert "Charts" in page.text


def test_empty_values_say_no_data() -> None:
    summary = make_summary(paths=1, points=10)
    summary["series"] = SERIES_CASES["all null"]
    assert check_well_formed(render_html(summary)).text.count("no data") == 3


SUMMARY_CASES: dict[str, Any] = {
    "empty": {},
    "only a strategy": {"strategy": "x"},
    "wrong types": {
        "strategy": 5,
        "strategy_config": [1, 2],
        "market": "m",
        "model": None,
        "exchange": 3,
        "paths": "many",
        "seed": None,
        "figures": [1],
        "per_path": {"a": 1},
        "series": [],
        "elapsed_seconds": "slow",
    },
    "non-finite figures": {
        "paths": 3,
        "figures": {
            "pnl": {"mean": NAN, "std": INF, "min": -INF, "max": None},
            "fills": 12,
            "fees": {"mean": "1e400"},
            "volume": {"mean": 10**400},
        },
        "per_path": [
            {"path": 0, "pnl": NAN, "final_inventory": INF},
            {"path": 1, "pnl": None, "final_inventory": -INF},
            "not a row",
            {"path": 2, "pnl": 1e300, "final_inventory": 1e300, "seed": 10**30},
        ],
    },
    "flat histograms": {
        "paths": 4,
        "per_path": [{"path": i, "pnl": 5.0, "final_inventory": 0.0} for i in range(4)],
    },
    "huge integer histograms": {
        "paths": 3,
        "per_path": [{"path": i, "pnl": 1e15 + i * 0.125, "final_inventory": 1e13 + i} for i in range(3)],
    },
    "wide histograms": {
        "paths": 500,
        "per_path": [
            {"path": i, "pnl": (i - 250) ** 3 / 1e4, "final_inventory": float(i * 7 - 1000)} for i in range(500)
        ],
    },
    "negative elapsed and odd modes": {"mode": "replay", "elapsed_seconds": -1, "source": "file.gz"},
}


@pytest.mark.parametrize("summary", SUMMARY_CASES.values(), ids=SUMMARY_CASES.keys())
def test_odd_summaries_render(summary: dict[str, Any]) -> None:
    page = check_well_formed(render_html(summary))
    assert "Backtest report" in page.text


def test_non_finite_figures_are_shown_as_such() -> None:
    words = check_well_formed(render_html(SUMMARY_CASES["non-finite figures"])).text
    assert "PnL NaN ± ∞ -∞ —" in words
    assert "Volume ∞" in words


# ---------------------------------------------------------------------------------------------------------------
# Downsampling
# ---------------------------------------------------------------------------------------------------------------


def test_downsample_caps_points_and_keeps_extremes() -> None:
    n = 200_000
    rng = random.Random(3)
    xs = [float(i) for i in range(n)]
    ys: list[float | None] = [rng.gauss(0, 1) for _ in range(n)]
    ys[123_457] = 50.0  # a spike
    ys[7] = -50.0
    for i in range(100_000, 100_010):
        ys[i] = None  # a gap
    points = downsample(xs, ys)
    kept = [p for p in points if p is not None]
    assert len(kept) <= MAX_POINTS
    assert (123_457.0, 50.0) in kept and (7.0, -50.0) in kept
    assert kept[0] == (0.0, ys[0]) and kept[-1] == (n - 1.0, ys[-1])
    assert points.count(None) == 1
    assert [p[0] for p in kept] == sorted(p[0] for p in kept)
    gap = points.index(None)
    assert points[gap - 1] == (99_999.0, ys[99_999]) and points[gap + 1] == (100_010.0, ys[100_010])


def test_downsample_keeps_short_series_and_breaks() -> None:
    assert downsample([0, 1, 2], [1.0, None, 3.0]) == [(0, 1.0), None, (2, 3.0)]
    assert downsample([0, None, 2, 3], [1.0, 2.0, 3.0, 4.0]) == [(0, 1.0), None, (2, 3.0), (3, 4.0)]
    assert downsample([], []) == []
    assert downsample([0.0], [None]) == []


@pytest.mark.parametrize("step", [False, True], ids=["pnl", "inventory"])
def test_huge_series_are_thinned_in_the_page(step: bool) -> None:
    n = 100_000
    summary = make_summary(paths=1, points=10)
    rng = random.Random(5)
    walk, values = 0.0, []
    for _ in range(n):
        walk += rng.choice((-1.0, 1.0)) if step else rng.gauss(0, 1)
        values.append(walk)
    summary["series"] = {"t": [i * 0.01 for i in range(n)], "pnl": values, "inventory": values, "mid": values}
    text = render_html(summary)
    page = check_well_formed(text)
    assert len(page.paths) == 3
    for d in page.paths:
        assert 2 <= path_points(d) <= MAX_POINTS
    assert len(text) < 400_000


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------


def test_write_report_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    assert write_report(make_summary(paths=2, points=20), target) == target
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert write_report({}, str(target)) == target  # a str path too, and an existing page is replaced
    assert "Backtest report" in target.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(make_summary(paths=2, points=20), target)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_write_report_to_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_report({}, tmp_path / "missing" / "report.html")
    assert list(tmp_path.iterdir()) == []


def test_downsample_with_many_gaps_stays_capped() -> None:
    n = 100_000
    ys = [None if i % 3 == 0 else float(i % 17) for i in range(n)]
    points = downsample([float(i) for i in range(n)], ys)
    assert 0 < len([p for p in points if p is not None]) <= MAX_POINTS
    assert points[0] is not None and points[-1] is not None
