"""The backtest report: one self-contained HTML page of a backtest summary, for a person to look at.

:func:`render_html` turns a summary in the JSON schema that the runner (:mod:`mmframe._backtest.run`) writes,
``{"mmframe_backtest": 1, ...}``, into a page with no script, no external resource and no font or CDN to fetch:
the CSS sits in the page's ``<style>``, and the charts are inline SVG drawn here, so the file can be mailed, archived
or opened offline and looks the same. :func:`write_report` writes it atomically.

What the page shows:

* a header: the strategy, the mode (the synthetic model and its parameters, or the replayed file), the market, the
  simulated exchange, paths, seed and elapsed time; the strategy's configuration as a small table;
* the headline figures over paths (mean ± std, min, max) as tiles and a table;
* charts of path 0 (the replay's only run): PnL over time, inventory over time (a step line), the quotes against the
  mid (a missing quote breaks its line); with several paths, histograms of the per-path PnL and final inventory;
* with several paths, the per-path figures: the first :data:`MAX_TABLE_ROWS` rows.

The summary is read defensively: it may come from a file, so every string is escaped, a missing or mistyped part is
left out rather than raising, and a value that cannot be plotted (``null``, NaN, ±inf, or a magnitude above
:data:`PLOT_LIMIT`) is a gap in its line. Long series are thinned to at most :data:`MAX_POINTS` points a line,
keeping each bucket's first, last, lowest and highest point, so spikes survive.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import tempfile
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import attrs

__all__ = ["MAX_POINTS", "MAX_TABLE_ROWS", "PLOT_LIMIT", "downsample", "render_html", "write_report"]

#: At most this many points are drawn for one line of a chart.
MAX_POINTS = 1500
#: The per-path table shows at most this many rows.
MAX_TABLE_ROWS = 50
#: A value of a larger magnitude is not plotted (it would only flatten the rest of the chart); tables still show it.
PLOT_LIMIT = 1e150

#: The headline figures, in the order the page shows them, with their labels.
FIGURES: dict[str, str] = {
    "pnl": "PnL",
    "final_inventory": "Final inventory",
    "fills": "Fills",
    "volume": "Volume",
    "messages": "Messages",
    "fill_ratio": "Fill ratio",
    "max_drawdown": "Max drawdown",
    "average_spread": "Average spread",
    "fees": "Fees",
}

_COLOURS = {
    "pnl": "#2563eb",
    "inventory": "#7c3aed",
    "mid": "#374151",
    "bid": "#16a34a",
    "ask": "#dc2626",
    "bars": "#93c5fd",
    "bar_edge": "#3b82f6",
    "mean": "#1e3a8a",
}
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
_MUTED = "#6b7280"
_GRID = "#e5e7eb"
_AXIS = "#9ca3af"


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------


def render_html(summary: Mapping[str, Any]) -> str:
    """The report page of a backtest summary, as one self-contained HTML document.

    :param summary: a summary in the runner's JSON schema (as parsed by :func:`json.loads`); missing parts are left
        out of the page.
    :returns: the whole document, starting ``<!DOCTYPE html>``.
    """
    summary = _mapping(summary)
    strategy = _text(summary.get("strategy")) or "strategy"
    market = _mapping(summary.get("market"))
    symbol = _text(market.get("symbol"))
    title = f"Backtest: {strategy}" + (f" on {symbol}" if symbol else "")
    body = "\n".join(
        part
        for part in (
            _header_section(summary, strategy, symbol),
            _figures_section(summary),
            _charts_section(summary),
            _per_path_section(summary),
        )
        if part
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"{body}\n"
        '<footer class="note">Made by mmframe backtest. Figures over paths are mean ± standard deviation; '
        "PnL is marked to the mid.</footer>\n"
        "</main>\n</body>\n</html>\n"
    )


def write_report(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the report page of ``summary`` to ``path`` atomically.

    The page is written to a temporary file beside ``path`` and renamed over it, so a reader never sees half a page
    and a failure leaves ``path`` as it was (and no temporary file behind).

    :returns: the path written.
    """
    target = Path(path)
    text = render_html(summary)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


# ---------------------------------------------------------------------------------------------------------------
# Reading the summary defensively
# ---------------------------------------------------------------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _number(value: Any) -> float | None:
    """``value`` as a float, or None when it is not a number (a bool, null, text that does not parse)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        try:
            return float(value)
        except (OverflowError, ValueError):
            if isinstance(value, int):
                return math.inf if value > 0 else -math.inf
            return None
    if isinstance(value, str):
        try:
            return float(value.strip())
        except (OverflowError, ValueError):
            return None
    return None


def _plottable(value: Any) -> float | None:
    """``value`` as a float that can be plotted, or None (a gap)."""
    number = _number(value)
    if number is None or not math.isfinite(number) or abs(number) > PLOT_LIMIT:
        return None
    return number


def _text(value: Any) -> str:
    """A short human text of any JSON value (not yet escaped)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return _format_plain(value)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    except (TypeError, ValueError):
        return str(value)


def _esc(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else _text(value), quote=True)


# ---------------------------------------------------------------------------------------------------------------
# Number formatting
# ---------------------------------------------------------------------------------------------------------------


def _nonfinite(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    return "∞" if number > 0 else "-∞"


def _format_plain(value: int | float | Decimal) -> str:
    """A single number on its own (a config value, a parameter): exact for ints and decimals, short for floats."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else _nonfinite(float(value))
    if not math.isfinite(value):
        return _nonfinite(value)
    return f"{value:.10g}"


def _decimals(values: Iterable[float | None]) -> int | None:
    """How many decimals a group of numbers shown together needs; None: use 3 significant digits."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 0
    if all(v == int(v) for v in finite if abs(v) < 1e15):
        return 0
    top = max(abs(v) for v in finite)
    if top >= 1000:
        return 0
    if top >= 100:
        return 1
    if top >= 1:
        return 2
    if top >= 0.01:
        return 3
    return None


def _format(value: float | None, decimals: int | None) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return _nonfinite(value)
    text = f"{value:.3g}" if decimals is None or abs(value) >= 1e15 else f"{value:,.{decimals}f}"
    if text.startswith("-") and float(text.replace(",", "")) == 0:
        text = text[1:]
    return text


def _format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    if seconds < 86400 * 3:
        hours, rest = divmod(round(seconds) // 60, 60)
        return f"{hours} h {rest:02d} min"
    return f"{seconds / 86400:.1f} days"


def _format_time(epoch: float | None) -> str:
    if epoch is None or not math.isfinite(epoch):
        return "—"
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return _format_plain(epoch)


# ---------------------------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------------------------


def _facts(rows: Iterable[tuple[str, str]], *, compact: bool = False) -> str:
    """A row of (label, already-escaped html) pairs; empty values are left out."""
    items = [f"<div><dt>{_esc(label)}</dt><dd>{value}</dd></div>" for label, value in rows if value]
    kind = "facts compact" if compact else "facts"
    return f'<dl class="{kind}">{"".join(items)}</dl>' if items else ""


def _key_value_table(caption: str, mapping: Mapping[str, Any]) -> str:
    if not mapping:
        return ""
    rows = "".join(
        f'<tr><th scope="row">{_esc(str(key))}</th><td>{_esc(value)}</td></tr>' for key, value in mapping.items()
    )
    return (
        f'<div class="kv"><h3>{_esc(caption)}</h3>'
        f'<div class="table-wrap"><table class="kv-table"><tbody>{rows}</tbody></table></div></div>'
    )


def _inline_parameters(mapping: Mapping[str, Any], skip: Iterable[str] = ()) -> str:
    skipped = set(skip)
    return " · ".join(f"{_esc(str(k))} = {_esc(v)}" for k, v in mapping.items() if k not in skipped)


def _header_section(summary: Mapping[str, Any], strategy: str, symbol: str) -> str:
    mode = _text(summary.get("mode"))
    model = _mapping(summary.get("model"))
    source = _mapping(model.get("source")) or _mapping(summary.get("source"))
    market = _mapping(summary.get("market"))
    exchange = _mapping(summary.get("exchange"))

    if source or mode == "replay":
        mode_html = "replay of <code>" + _esc(source.get("file", "?")) + "</code>"
        first, last = _number(source.get("first_t")), _number(source.get("last_t"))
        events = _number(source.get("events"))
        details = []
        if events is not None:
            details.append(f"{_format(events, 0)} events")
        if first is not None and last is not None:
            details.append(f"{_esc(_format_time(first))} → {_esc(_format_time(last))}")
            details.append(_esc(_format_duration(last - first)))
        if details:
            mode_html += f'<br><span class="muted">{", ".join(details)}</span>'
    else:
        name = _text(model.get("name")) or "model"
        mode_html = f"{_esc(mode or 'synthetic')}: <b>{_esc(name)}</b>"  # its parameters: the table below

    market_html = _esc(symbol)
    extra = _inline_parameters(market, skip=("symbol",))
    if extra:
        market_html += f'<br><span class="muted">{extra}</span>'

    exchange_parts = []
    if "queue_model" in exchange:
        exchange_parts.append(f"queue model {_esc(exchange['queue_model'])}")
    latency = exchange.get("latency")
    if isinstance(latency, Mapping) and latency:
        exchange_parts.append("latency " + _inline_parameters(latency))
    elif latency not in (None, ""):
        exchange_parts.append(f"latency {_esc(latency)}")
    fees = exchange.get("fees")
    if isinstance(fees, Mapping) and fees:
        exchange_parts.append("fees " + _inline_parameters(fees))
    elif fees not in (None, ""):
        exchange_parts.append(f"fees {_esc(fees)}")
    for key, value in exchange.items():
        if key not in ("queue_model", "latency", "fees"):
            exchange_parts.append(f"{_esc(str(key))} {_esc(value)}")

    paths = _number(summary.get("paths"))
    seed = summary.get("seed")
    elapsed = summary.get("elapsed_seconds")
    facts = _facts(
        [("Mode", mode_html), ("Market", market_html), ("Simulated exchange", "<br>".join(exchange_parts))]
    ) + _facts(
        [
            ("Paths", _esc(_format(paths, 0)) if paths is not None else ""),
            ("Seed", _esc(seed) if seed is not None else ""),
            ("Elapsed", _esc(_format_duration(_number(elapsed))) if elapsed is not None else ""),
        ],
        compact=True,
    )
    config = _key_value_table("Strategy configuration", _mapping(summary.get("strategy_config")))
    model_table = ""
    if model and not source:
        model_table = _key_value_table("Model parameters", {k: v for k, v in model.items() if k != "name"})
    tables = f'<div class="kv-grid">{config}{model_table}</div>' if config or model_table else ""
    subtitle = f"<b>{_esc(strategy)}</b>" + (f" on <b>{_esc(symbol)}</b>" if symbol else "")
    return f'<header class="card"><h1>Backtest report</h1><p class="subtitle">{subtitle}</p>{facts}{tables}</header>'


def _figure_stats(figures: Mapping[str, Any], key: str) -> dict[str, float | None]:
    entry = figures.get(key)
    if isinstance(entry, Mapping):
        return {stat: _number(entry.get(stat)) for stat in ("mean", "std", "min", "max")}
    value = _number(entry)
    return {"mean": value, "std": None, "min": value, "max": value}


def _figures_section(summary: Mapping[str, Any]) -> str:
    figures = _mapping(summary.get("figures"))
    if not figures:
        return ""
    keys = [k for k in FIGURES if k in figures] + [k for k in figures if k not in FIGURES]
    paths = _number(summary.get("paths"))
    single = paths is not None and paths <= 1

    tiles = []
    for key, label, show_std in (
        ("pnl", "Mean PnL", True),
        ("final_inventory", "Final inventory", True),
        ("fills", "Fills per path", False),
        ("max_drawdown", "Max drawdown", False),
        ("average_spread", "Average spread", False),
    ):
        if key not in figures:
            continue
        stats = _figure_stats(figures, key)
        digits = _decimals([stats["mean"], stats["std"]])
        value = _format(stats["mean"], digits)
        tone = ""
        if key == "pnl" and stats["mean"] is not None and math.isfinite(stats["mean"]) and stats["mean"] != 0:
            tone = " pos" if stats["mean"] > 0 else " neg"
        std = ""
        if show_std and not single and stats["std"] is not None:
            std = f'<div class="tile-sub">± {_esc(_format(stats["std"], digits))} std</div>'
        shown = label if (key != "pnl" or not single) else "PnL"
        tiles.append(
            f'<div class="tile"><div class="tile-label">{_esc(shown)}</div>'
            f'<div class="tile-value{tone}">{_esc(value)}</div>{std}</div>'
        )

    rows = []
    for key in keys:
        stats = _figure_stats(figures, key)
        digits = _decimals(stats.values())
        range_digits = (
            _decimals([stats["min"], stats["max"]]) if _decimals([stats["min"], stats["max"]]) == 0 else digits
        )
        label = FIGURES.get(key, key.replace("_", " ").capitalize())
        if single:
            rows.append(f'<tr><th scope="row">{_esc(label)}</th><td>{_esc(_format(stats["mean"], digits))}</td></tr>')
            continue
        mean_std = _format(stats["mean"], digits)
        if stats["std"] is not None:
            mean_std += f' <span class="pm">± {_format(stats["std"], digits)}</span>'
        rows.append(
            f'<tr><th scope="row">{_esc(label)}</th><td>{mean_std}</td>'
            f"<td>{_esc(_format(stats['min'], range_digits))}</td>"
            f"<td>{_esc(_format(stats['max'], range_digits))}</td></tr>"
        )
    head = (
        "<tr><th>Figure</th><th>Value</th></tr>"
        if single
        else "<tr><th>Figure</th><th>Mean ± std</th><th>Min</th><th>Max</th></tr>"
    )
    caption = "Results" if single else f"Results over {_format(paths, 0)} paths" if paths else "Results over paths"
    return (
        f'<section class="card"><h2>{_esc(caption)}</h2>'
        + (f'<div class="tiles">{"".join(tiles)}</div>' if tiles else "")
        + f'<div class="table-wrap"><table class="figures"><thead>{head}</thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _per_path_section(summary: Mapping[str, Any]) -> str:
    per_path = [row for row in _sequence(summary.get("per_path")) if isinstance(row, Mapping)]
    if len(per_path) < 2:  # one path: the results say it all
        return ""
    shown = per_path[:MAX_TABLE_ROWS]
    columns = [c for c in ("path", "seed") if any(c in row for row in shown)]
    columns += [k for k in FIGURES if any(k in row for row in shown)]
    for row in shown:
        columns += [k for k in row if k not in columns]
    labels = {"path": "Path", "seed": "Seed", **FIGURES}
    head = "".join(f"<th>{_esc(labels.get(c, str(c).replace('_', ' ').capitalize()))}</th>" for c in columns)
    digits = {c: _decimals(_number(row.get(c)) for row in shown) for c in columns}

    def cell(row: Mapping[str, Any], column: str) -> str:
        value = row.get(column)
        number = _number(value)
        if number is None and value not in (None, ""):
            return _esc(value)
        if column == "seed" and isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # a seed is an identifier: no thousands separators
        return _esc(_format(number, digits[column]))

    body = "".join("<tr>" + "".join(f"<td>{cell(row, c)}</td>" for c in columns) + "</tr>" for row in shown)
    note = ""
    if len(per_path) > len(shown):
        note = (
            f'<p class="note">Showing the first {len(shown)} of {len(per_path)} paths; '
            "the JSON summary holds them all.</p>"
        )
    return (
        '<section class="card"><h2>Per path</h2>'
        f'<div class="table-wrap"><table class="per-path"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>{note}</section>"
    )


def _charts_section(summary: Mapping[str, Any]) -> str:
    series = _mapping(summary.get("series"))
    charts: list[str] = []
    if series:
        xs, x_label = _time_axis(series)
        paths = _number(summary.get("paths"))
        which = " (path 0)" if paths is not None and paths > 1 else ""
        if "pnl" in series:
            charts.append(
                _line_chart(
                    f"PnL over time{which}, marked to the mid",
                    xs,
                    [_Line("PnL", _COLOURS["pnl"], _values(series.get("pnl")))],
                    x_label=x_label,
                    zero_line=True,
                )
            )
        if "inventory" in series:
            charts.append(
                _line_chart(
                    f"Inventory over time{which}",
                    xs,
                    [_Line("inventory", _COLOURS["inventory"], _values(series.get("inventory")), step=True)],
                    x_label=x_label,
                    zero_line=True,
                )
            )
        quote_lines = [
            _Line(name, _COLOURS[name], _values(series.get(name)), width=width)
            for name, width in (("ask", 1.3), ("mid", 1.6), ("bid", 1.3))
            if name in series
        ]
        if quote_lines:
            charts.append(_line_chart(f"Quotes against the mid{which}", xs, quote_lines, x_label=x_label))
    histograms: list[str] = []
    per_path = [row for row in _sequence(summary.get("per_path")) if isinstance(row, Mapping)]
    if len(per_path) > 1:
        for key, label in (("pnl", "PnL"), ("final_inventory", "Final inventory")):
            values = [v for v in (_plottable(row.get(key)) for row in per_path) if v is not None]
            if any(key in row for row in per_path):
                histograms.append(_histogram(f"{label} over {len(values):,} paths", values, label))
    if not charts and not histograms:
        return ""
    parts = ['<section class="card"><h2>Charts</h2>']
    parts += [f'<figure class="chart">{chart}</figure>' for chart in charts]
    if histograms:
        parts.append('<div class="grid2">')
        parts += [f'<figure class="chart">{chart}</figure>' for chart in histograms]
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Series and downsampling
# ---------------------------------------------------------------------------------------------------------------


def _values(raw: Any) -> list[float | None]:
    return [_plottable(v) for v in _sequence(raw)]


def _time_axis(series: Mapping[str, Any]) -> tuple[list[float | None], str]:
    """The x values of the series (seconds from the start, in a readable unit) and the axis label."""
    length = max((len(_sequence(v)) for k, v in series.items() if k != "t"), default=0)
    raw_t = _sequence(series.get("t"))
    if len(raw_t) < length or not raw_t:
        return [float(i) for i in range(length)], "sample"
    ts = [_plottable(v) for v in raw_t[: max(length, 1)]]
    finite = [t for t in ts if t is not None]
    span = (max(finite) - min(finite)) if finite else 0.0
    for limit, divisor, unit in ((86400 * 3, 86400.0, "days"), (7200, 3600.0, "hours"), (180, 60.0, "minutes")):
        if span >= limit:
            return [None if t is None else t / divisor for t in ts], f"time ({unit})"
    return ts, "time (seconds)"


def downsample(
    xs: Sequence[float | None], ys: Sequence[float | None], max_points: int = MAX_POINTS
) -> list[tuple[float, float] | None]:
    """The points of a line to draw, at most ``max_points``, with ``None`` where the line breaks.

    A point whose x or y is None is a gap. When there are more points than ``max_points`` they are cut into buckets
    and each bucket keeps its first, last, lowest and highest point, so the line's envelope survives; the points on
    either side of a gap are kept too (unless gaps are so many that they alone would pass a quarter of the budget),
    and a gap anywhere between two kept points still breaks the line.
    """
    n = min(len(xs), len(ys))
    present = [i for i in range(n) if xs[i] is not None and ys[i] is not None]
    if len(present) <= max_points:
        keep = present
    else:
        # The ends of every run between gaps are kept (when there are few enough), so a line stops where it did.
        ends = [present[0], present[-1]]
        for a, b in pairwise(present):
            if b != a + 1:
                ends += (a, b)
        if len(ends) > max_points // 4:
            ends = ends[:2]
        chosen: set[int] = set(ends)
        buckets = max(1, (max_points - len(ends)) // 4)
        count = len(present)

        def value(i: int) -> float:
            y = ys[i]
            assert y is not None
            return y

        for b in range(buckets):
            chunk = present[b * count // buckets : (b + 1) * count // buckets]
            if chunk:
                chosen.update((chunk[0], chunk[-1], min(chunk, key=value), max(chunk, key=value)))
        keep = sorted(chosen)
    # A gap lies between kept points i < j when fewer than j - i present indexes fall in (i, j].
    points: list[tuple[float, float] | None] = []
    previous = -1
    for i in keep:
        if previous >= 0 and bisect_left(present, i) - bisect_left(present, previous) != i - previous:
            points.append(None)
        x, y = xs[i], ys[i]
        assert x is not None and y is not None
        points.append((x, y))
        previous = i
    return points


def _segments(points: Sequence[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    segments: list[list[tuple[float, float]]] = [[]]
    for point in points:
        if point is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append(point)
    return [s for s in segments if s]


# ---------------------------------------------------------------------------------------------------------------
# Scales and ticks
# ---------------------------------------------------------------------------------------------------------------


def _nice_step(span: float, target: int = 5, factors: Sequence[float] = (1.0, 2.0, 2.5, 5.0, 10.0)) -> float:
    """The step of 1, 2, 2.5 or 5 (``factors``) times a power of ten that cuts ``span`` into the count nearest
    ``target``."""
    raw = span / max(target, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    candidates = [factor * magnitude for factor in factors]
    return min(candidates, key=lambda step: abs(span / step - target))


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    first = math.ceil(lo / step - 1e-9)
    ticks: list[float] = []
    k = first
    while len(ticks) < 60:
        value = k * step
        if value > hi + step * 1e-9:
            break
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        k += 1
    return ticks


def _domain(lo: float, hi: float, *, pad: float, target: int) -> tuple[float, float, float]:
    """A domain covering [lo, hi] with ``pad`` (a fraction of the range) of room each side, and its tick step.

    A range that is empty, or too thin to label, is widened around its value.
    """
    if hi - lo <= max(abs(lo), abs(hi)) * 1e-9:
        middle = (lo + hi) / 2
        half = abs(middle) * 0.05 if abs(middle) > 1e-9 else 1.0
        lo, hi = middle - half, middle + half
    else:
        room = (hi - lo) * pad
        lo, hi = lo - room, hi + room
    return lo, hi, _nice_step(hi - lo, target)


def _tick_label(value: float, step: float, top: float) -> str:
    if top >= 1e7 or step < 1e-6:
        return f"{value:.4g}"
    mantissa = step / 10.0 ** math.floor(math.log10(step))
    decimals = max(0, -math.floor(math.log10(step)) + (1 if abs(mantissa - 2.5) < 1e-6 else 0))
    text = f"{value:,.{min(decimals, 10)}f}"
    return text[1:] if text.startswith("-") and float(text.replace(",", "")) == 0 else text


def _c(value: float) -> str:
    """A coordinate: always finite (the scales guarantee it), one decimal."""
    return f"{value:.1f}" if math.isfinite(value) else "0"


# ---------------------------------------------------------------------------------------------------------------
# SVG charts
# ---------------------------------------------------------------------------------------------------------------

_WIDTH, _HEIGHT = 960, 320
_TOP, _RIGHT, _BOTTOM = 46, 22, 48


@attrs.frozen
class _Line:
    name: str
    colour: str
    values: list[float | None]
    step: bool = False
    width: float = 1.8


class _Frame:
    """The plot area of a chart and its linear scales."""

    def __init__(
        self,
        x_domain: tuple[float, float],
        y_domain: tuple[float, float],
        left: float,
        width: float = _WIDTH,
        height: float = _HEIGHT,
    ) -> None:
        self.x0, self.x1 = x_domain
        self.y0, self.y1 = y_domain
        self.left, self.right = left, width - _RIGHT
        self.top, self.bottom = _TOP, height - _BOTTOM

    def x(self, value: float) -> float:
        return _scale(value, self.x0, self.x1, self.left, self.right)

    def y(self, value: float) -> float:
        return _scale(value, self.y0, self.y1, self.bottom, self.top)


def _scale(value: float, lo: float, hi: float, start: float, end: float) -> float:
    """``value`` mapped from [lo, hi] to [start, end]; the middle when the domain is degenerate."""
    span = hi - lo
    if not (span > 0 and math.isfinite(span)):
        return (start + end) / 2
    return start + (value - lo) / span * (end - start)


def _svg_open(title: str, width: int = _WIDTH, height: int = _HEIGHT) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_esc(title)}" font-family="{_esc(_FONT)}" font-size="13">'
        f"<title>{_esc(title)}</title>"
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>'
        f'<text x="12" y="22" font-size="15" font-weight="600" fill="#111827">{_esc(title)}</text>'
    )


def _no_data(title: str, width: int = _WIDTH, height: int = 160) -> str:
    return (
        _svg_open(title, width, height)
        + f'<rect x="12" y="36" width="{width - 24}" height="{height - 48}" fill="#f9fafb" stroke="{_GRID}"/>'
        f'<text x="{width / 2:.0f}" y="{height / 2 + 16:.0f}" text-anchor="middle" fill="{_MUTED}">no data</text>'
        "</svg>"
    )


def _axes(
    frame: _Frame,
    x_ticks: list[float],
    x_step: float,
    y_ticks: list[float],
    y_step: float,
    x_label: str,
    y_label: str = "",
) -> str:
    parts = []
    x_top = max(abs(frame.x0), abs(frame.x1))
    y_top = max(abs(frame.y0), abs(frame.y1))
    for tick in y_ticks:
        y = _c(frame.y(tick))
        parts.append(f'<line x1="{_c(frame.left)}" y1="{y}" x2="{_c(frame.right)}" y2="{y}" stroke="{_GRID}"/>')
        parts.append(
            f'<text x="{_c(frame.left - 8)}" y="{y}" dy="4" text-anchor="end" fill="{_MUTED}">'
            f"{_esc(_tick_label(tick, y_step, y_top))}</text>"
        )
    for tick in x_ticks:
        x = _c(frame.x(tick))
        parts.append(f'<line x1="{x}" y1="{_c(frame.bottom)}" x2="{x}" y2="{_c(frame.bottom + 5)}" stroke="{_AXIS}"/>')
        parts.append(
            f'<text x="{x}" y="{_c(frame.bottom + 19)}" text-anchor="middle" fill="{_MUTED}">'
            f"{_esc(_tick_label(tick, x_step, x_top))}</text>"
        )
    parts.append(
        f'<rect x="{_c(frame.left)}" y="{_c(frame.top)}" width="{_c(frame.right - frame.left)}" '
        f'height="{_c(frame.bottom - frame.top)}" fill="none" stroke="{_AXIS}"/>'
    )
    parts.append(
        f'<text x="{_c((frame.left + frame.right) / 2)}" y="{_c(frame.bottom + 39)}" text-anchor="middle" '
        f'fill="#374151">{_esc(x_label)}</text>'
    )
    if y_label:
        cy = _c((frame.top + frame.bottom) / 2)
        parts.append(
            f'<text transform="translate(14 {cy}) rotate(-90)" text-anchor="middle" fill="#374151">'
            f"{_esc(y_label)}</text>"
        )
    return "".join(parts)


def _legend(entries: Sequence[tuple[str, str, str]], right: float) -> str:
    """A legend in the top right: (name, colour, dash) entries, laid out right to left."""
    parts = []
    x = right
    for name, colour, dash in reversed(entries):
        width = 7.5 * len(name) + 34
        x -= width
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<line x1="{_c(x)}" y1="18" x2="{_c(x + 18)}" y2="18" stroke="{colour}" stroke-width="2.5"{dash_attr}/>'
            f'<text x="{_c(x + 23)}" y="22" fill="#374151">{_esc(name)}</text>'
        )
    return "".join(parts)


def _left_margin(labels: Iterable[str], has_y_label: bool) -> float:
    longest = max((len(label) for label in labels), default=1)
    return max(52.0, 7.5 * longest + 18) + (16 if has_y_label else 0)


def _line_chart(
    title: str, xs: Sequence[float | None], lines: Sequence[_Line], *, x_label: str, zero_line: bool = False
) -> str:
    drawn = [(line, downsample(xs, line.values)) for line in lines]
    all_points = [p for _, points in drawn for p in points if p is not None]
    if not all_points:
        return _no_data(title)
    x_lo, x_hi, _ = _domain(min(p[0] for p in all_points), max(p[0] for p in all_points), pad=0.0, target=8)
    x_step = _nice_step(x_hi - x_lo, 8, (1.0, 2.0, 5.0, 10.0))  # no 2.5 hours
    y_lo, y_hi, y_step = _domain(min(p[1] for p in all_points), max(p[1] for p in all_points), pad=0.05, target=5)
    y_ticks = _ticks(y_lo, y_hi, y_step)
    y_top = max(abs(y_lo), abs(y_hi))
    left = _left_margin((_tick_label(t, y_step, y_top) for t in y_ticks), False)
    frame = _Frame((x_lo, x_hi), (y_lo, y_hi), left)
    parts = [_svg_open(title), _axes(frame, _ticks(x_lo, x_hi, x_step), x_step, y_ticks, y_step, x_label)]
    if zero_line and y_lo < 0 < y_hi:
        zero = _c(frame.y(0.0))
        parts.append(
            f'<line x1="{_c(frame.left)}" y1="{zero}" x2="{_c(frame.right)}" y2="{zero}" stroke="{_AXIS}" '
            'stroke-dasharray="4 3"/>'
        )
    for line, points in drawn:
        for segment in _segments(points):
            if len(segment) == 1:
                x, y = segment[0]
                parts.append(f'<circle cx="{_c(frame.x(x))}" cy="{_c(frame.y(y))}" r="2.5" fill="{line.colour}"/>')
                continue
            commands = [f"M{_c(frame.x(segment[0][0]))},{_c(frame.y(segment[0][1]))}"]
            if line.step:
                for x, y in segment[1:]:
                    commands.append(f"H{_c(frame.x(x))}V{_c(frame.y(y))}")
            else:
                commands.extend(f"L{_c(frame.x(x))},{_c(frame.y(y))}" for x, y in segment[1:])
            parts.append(
                f'<path d="{"".join(commands)}" fill="none" stroke="{line.colour}" stroke-width="{line.width}" '
                'stroke-linejoin="round" stroke-linecap="round"/>'
            )
    if len(lines) > 1:
        parts.append(_legend([(line.name, line.colour, "") for line in lines], frame.right))
    parts.append("</svg>")
    return "".join(parts)


def _bins(values: Sequence[float]) -> tuple[list[float], bool]:
    """Bin edges for a histogram of ``values`` (not empty), and whether the bins are whole numbers."""
    lo, hi = min(values), max(values)
    if hi - lo <= 40 and max(abs(lo), abs(hi)) < 1e12 and all(v == int(v) for v in values):
        return [lo - 0.5 + k for k in range(int(hi - lo) + 2)], True
    if hi - lo <= max(abs(lo), abs(hi)) * 1e-9:
        half = abs(lo) * 0.05 if abs(lo) > 1e-9 else 0.5
        return [lo - half, lo + half], False
    target = min(40, max(5, math.ceil(math.sqrt(len(values)))))
    width = _nice_step(hi - lo, target)
    start = math.floor(lo / width) * width
    count = max(1, math.floor((hi - start) / width + 1e-9) + 1)
    return [start + k * width for k in range(count + 1)], False


_HIST_WIDTH, _HIST_HEIGHT = 480, 300


def _histogram(title: str, values: Sequence[float], x_label: str) -> str:
    if not values:
        return _no_data(title, _HIST_WIDTH)
    edges, whole = _bins(values)
    counts = [0] * (len(edges) - 1)
    for v in values:  # bins hold their left edge; the last one holds its right edge too
        counts[min(max(bisect_right(edges, v) - 1, 0), len(counts) - 1)] += 1
    x_lo, x_hi = edges[0], edges[-1]
    x_step = _nice_step(x_hi - x_lo, 6)
    if whole:
        x_step = max(1.0, x_step)
    tallest = max(counts)
    y_step = max(1.0, _nice_step(tallest, 4))
    y_hi = math.ceil(tallest * 1.08 / y_step) * y_step
    y_ticks = _ticks(0.0, y_hi, y_step)
    left = _left_margin((_tick_label(t, y_step, y_hi) for t in y_ticks), True)
    frame = _Frame((x_lo, x_hi), (0.0, y_hi), left, _HIST_WIDTH, _HIST_HEIGHT)
    parts = [
        _svg_open(title, _HIST_WIDTH, _HIST_HEIGHT),
        _axes(frame, _ticks(x_lo, x_hi, x_step), x_step, y_ticks, y_step, x_label, "paths"),
    ]
    for k, count in enumerate(counts):
        if not count:
            continue
        x0, x1 = frame.x(edges[k]), frame.x(edges[k + 1])
        gap = min(1.0, (x1 - x0) * 0.1)
        top = frame.y(count)
        parts.append(
            f'<rect x="{_c(x0 + gap)}" y="{_c(top)}" width="{_c(max(x1 - x0 - 2 * gap, 0.5))}" '
            f'height="{_c(frame.bottom - top)}" fill="{_COLOURS["bars"]}" stroke="{_COLOURS["bar_edge"]}" '
            f'stroke-width="0.8"><title>{_esc(_format(edges[k], _decimals(edges)))} to '
            f"{_esc(_format(edges[k + 1], _decimals(edges)))}: {count}</title></rect>"
        )
    mean = math.fsum(values) / len(values)
    if x_lo <= mean <= x_hi:
        x = _c(frame.x(mean))
        parts.append(
            f'<line x1="{x}" y1="{_c(frame.top)}" x2="{x}" y2="{_c(frame.bottom)}" stroke="{_COLOURS["mean"]}" '
            'stroke-width="2" stroke-dasharray="5 4"/>'
        )
    digits = _decimals([mean, *values])
    parts.append(_legend([(f"mean {_format(mean, digits)}", _COLOURS["mean"], "5 4")], frame.right))
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# The page's style
# ---------------------------------------------------------------------------------------------------------------

_CSS = """
:root { --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #f3f4f6; --card: #ffffff; --accent: #2563eb; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 20px 40px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 20px 24px;
  margin: 0 0 18px; box-shadow: 0 1px 3px rgba(15, 23, 42, 0.06); }
h1 { font-size: 1.55rem; margin: 0; letter-spacing: -0.01em; }
h2 { font-size: 1.15rem; margin: 0 0 14px; }
h3 { font-size: 0.8rem; margin: 0 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: 0.05em; }
.subtitle { margin: 2px 0 16px; font-size: 1.05rem; color: #374151; }
.muted, .note, footer { color: var(--muted); }
.note { font-size: 0.85rem; margin: 10px 0 0; }
footer { font-size: 0.8rem; text-align: center; margin-top: 8px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9em;
  background: #f3f4f6; padding: 1px 5px; border-radius: 4px; overflow-wrap: anywhere; }
.facts { display: flex; flex-wrap: wrap; gap: 12px 32px; margin: 0; }
.facts > div { flex: 1 1 240px; min-width: 0; }
.facts.compact { margin-top: 14px; }
.facts.compact > div { flex: 0 1 160px; }
.facts dt { font-size: 0.72rem; text-transform: uppercase; letter-spacing: 0.05em; color: var(--muted); }
.facts dd { margin: 0; font-weight: 500; overflow-wrap: anywhere; }
.facts .muted { font-weight: 400; font-size: 0.88rem; }
.kv-grid { display: flex; flex-wrap: wrap; gap: 16px 32px; margin-top: 18px; padding-top: 16px;
  border-top: 1px solid var(--line); }
.kv-grid > .kv { flex: 1 1 300px; min-width: 0; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 18px; }
.tile { flex: 1 1 150px; min-width: 0; background: #f9fafb; border: 1px solid var(--line); border-radius: 10px;
  padding: 12px 14px; }
.tile-label { font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.05em; color: var(--muted); }
.tile-value { font-size: 1.55rem; font-weight: 650; font-variant-numeric: tabular-nums; line-height: 1.3; }
.tile-value.pos { color: #15803d; }
.tile-value.neg { color: #b91c1c; }
.tile-sub { font-size: 0.85rem; color: var(--muted); font-variant-numeric: tabular-nums; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { font-size: 0.78rem; color: var(--muted); font-weight: 600; text-transform: uppercase;
  letter-spacing: 0.04em; border-bottom: 2px solid var(--line); }
tbody tr:hover { background: #f9fafb; }
tbody th { font-weight: 500; }
.pm { color: var(--muted); }
.kv-table th, .kv-table td { padding: 4px 8px; font-size: 0.9rem; text-align: left; }
.kv-table th { font-weight: 500; color: #374151; width: 45%; }
.kv-table td { white-space: normal; overflow-wrap: anywhere; font-family: ui-monospace, SFMono-Regular, Menlo,
  Consolas, monospace; font-size: 0.85rem; }
.per-path td { padding: 4px 10px; font-size: 0.88rem; }
.per-path thead th { white-space: normal; vertical-align: bottom; padding: 6px 10px; }
figure.chart { margin: 0 0 18px; }
figure.chart:last-child { margin-bottom: 0; }
figure.chart svg { display: block; width: 100%; height: auto; border: 1px solid var(--line); border-radius: 8px; }
.grid2 { display: flex; flex-wrap: wrap; gap: 18px; }
.grid2 figure.chart { flex: 1 1 360px; min-width: 0; margin: 0; }
@media (max-width: 640px) {
  main { padding: 12px 8px 28px; }
  .card { padding: 14px 12px; border-radius: 8px; }
}
"""
