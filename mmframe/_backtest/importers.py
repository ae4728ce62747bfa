"""Importers: exchanges' public historical data files into the record format (:mod:`mmframe._backtest.record`).

:func:`import_binance_trades` reads Binance's public trade files (https://data.binance.vision, spot
``BTCUSDT-trades-2024-01-01.csv``, unzipped): one trade per row, the columns ::

    id, price, qty, quote_qty, time, is_buyer_maker [, is_best_match]

with no header row (a header row is accepted), ``time`` in epoch milliseconds (microseconds in the files from 2025
on: a value above 10^14 is taken as microseconds) and ``is_buyer_maker`` ``True``/``False``. A buyer who is the
maker means a seller took liquidity, so the trade's aggressor side is ``sell``.

The record gets one ``trade`` per row (``t`` = the trade's time) and, since a strategy quotes off an index, index
``tick`` events at the trade price: at most one per ``tick_interval`` seconds, the first trade of each interval of
the clock (``[k * tick_interval, (k + 1) * tick_interval)``) emitting one at its price and time, right after the
trade (``tick_interval`` 0: a tick after every trade).

The output is written to a temporary file beside the destination and renamed over it only once the whole input
has been read and checked: a failed import leaves nothing behind, and an existing file is never half-replaced.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import secrets
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from pathlib import Path

import attrs

from .._models import PriceTick, Side, Trade
from .record import RecordError, RecordWriter, StrPath

#: The latest trade time the importer takes (2100-01-01 in epoch microseconds).
LATEST_US = 4_102_444_800 * 1_000_000

__all__ = ["BINANCE_TRADE_COLUMNS", "ImportReport", "import_binance_trades"]

BINANCE_TRADE_COLUMNS = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match")
#: A Binance ``time`` above this is in microseconds (the files from 2025 on), else in milliseconds.
MICROSECONDS_ABOVE = 10**14

_BOOLEANS = {"true": True, "false": False}


@attrs.frozen
class ImportReport:
    """What an import wrote.

    :param rows: data rows read (a header row and blank lines not counted).
    :param trades, ticks: events written of each kind.
    :param first_t, last_t: the first and last trade's time (epoch seconds); ``None`` with no rows.
    :param out_path: the record written.
    """

    rows: int
    trades: int
    ticks: int
    first_t: float | None
    last_t: float | None
    out_path: Path


class _BadRow(Exception):
    pass


def _decimal(text: str, name: str, *, positive: bool) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _BadRow(f"{name} is not a number: {text!r}") from None
    if not value.is_finite() or (value <= 0 if positive else value < 0):
        raise _BadRow(f"{name} must be {'positive' if positive else 'at least 0'}, got {text!r}")
    return value


def _boolean(text: str, name: str) -> bool:
    value = _BOOLEANS.get(text.strip().lower())
    if value is None:
        raise _BadRow(f"{name} must be True or False, got {text!r}")
    return value


def _is_header(row: list[str]) -> bool:
    return bool(row) and row[0].strip().lower() == "id"


def import_binance_trades(
    csv_path: StrPath,
    out_path: StrPath,
    *,
    symbol: str,
    exchange: str = "binance",
    tick_interval: float = 0.1,
) -> ImportReport:
    """Write the trades of Binance's trades CSV at *csv_path* as a record at *out_path* (replacing it).

    :param symbol: the feed symbol the events carry (``BTCUSDT``): the file does not say.
    :param exchange: the events' exchange.
    :param tick_interval: seconds between two index ticks at most (0: a tick per trade).
    :raises RecordError: for a file that cannot be read or a bad row — wrong number of columns, a bad number or
        boolean, time going backwards — naming the row (``"trades.csv, row 7: qty is not a number: 'x'"``), and
        for a file with no trade. Nothing is written then.
    """
    csv_path, out_path = Path(csv_path), Path(out_path)
    if not symbol or symbol != symbol.strip():
        raise ValueError(f"symbol must be a non-empty name without surrounding spaces, got {symbol!r}")
    if not exchange or exchange != exchange.strip():
        raise ValueError(f"exchange must be a non-empty name without surrounding spaces, got {exchange!r}")
    if not (math.isfinite(tick_interval) and tick_interval >= 0):
        raise ValueError(f"tick_interval must be 0 or a positive number of seconds, got {tick_interval!r}")
    # The tick grid in microseconds, the finest unit of the files: integer arithmetic, no float bucket edges.
    interval_us = max(1, round(tick_interval * 1_000_000)) if tick_interval > 0 else 0

    tmp = _temporary_beside(out_path)
    try:
        try:
            source = open(csv_path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise RecordError(f"{csv_path}: cannot open: {exc.strerror or exc}") from None
        with source, RecordWriter(tmp, source=f"binance-trades:{csv_path.name}") as writer:
            report = _convert(csv_path, source, writer, symbol=symbol, exchange=exchange, interval_us=interval_us)
        os.replace(tmp, out_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return attrs.evolve(report, out_path=out_path)


def _temporary_beside(path: Path) -> Path:
    """A new empty file in *path*'s folder (so that renaming it over *path* is atomic), hidden, made with the
    permissions a plain ``open`` would give (the umask decides)."""
    for _ in range(100):
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        except OSError as exc:
            raise RecordError(f"{path}: cannot write beside it: {exc.strerror or exc}") from None
        return candidate
    raise RecordError(f"{path}: cannot make a temporary file beside it")


def _convert(
    csv_path: Path, source: Iterable[str], writer: RecordWriter, *, symbol: str, exchange: str, interval_us: int
) -> ImportReport:
    rows = ticks = 0
    first_us: int | None = None
    last_us = -1
    last_bucket = -1
    reader = csv.reader(source)
    row_number = 0
    try:
        for row_number, row in enumerate(reader, 1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if rows == 0 and row_number == 1 and _is_header(row):
                continue
            try:
                if len(row) not in (6, 7):
                    raise _BadRow(f"expected 6 or 7 columns ({', '.join(BINANCE_TRADE_COLUMNS[:6])}[, "
                                  f"is_best_match]), got {len(row)}")
                trade_id, price_text, qty_text, quote_text, time_text, maker_text = row[:6]
                trade_id = trade_id.strip()
                if not (trade_id.isascii() and trade_id.isdigit()):
                    raise _BadRow(f"id must be a whole number, got {trade_id!r}")
                price = _decimal(price_text, "price", positive=True)
                quantity = _decimal(qty_text, "qty", positive=True)
                _decimal(quote_text, "quote_qty", positive=False)
                time_text = time_text.strip()
                if not (time_text.isascii() and time_text.isdigit()):
                    raise _BadRow(f"time must be whole epoch milliseconds or microseconds, got {time_text!r}")
                stamp = int(time_text)
                stamp_us = stamp if stamp > MICROSECONDS_ABOVE else stamp * 1000
                if stamp_us > LATEST_US:
                    raise _BadRow(f"time {time_text} is after 2100 in milliseconds and in microseconds: not an epoch "
                                  "time Binance writes")
                if stamp_us < last_us:
                    raise _BadRow(f"time {time_text} is earlier than the row before's: the file must be in "
                                  "time order")
                side = Side.SELL if _boolean(maker_text, "is_buyer_maker") else Side.BUY
                if len(row) == 7:
                    _boolean(row[6], "is_best_match")
            except _BadRow as exc:
                raise RecordError(f"{csv_path}, row {row_number}: {exc}") from None
            t = stamp_us / 1_000_000
            writer.write(Trade(exchange, symbol, price, quantity, side, t, trade_id), t)
            rows += 1
            if first_us is None:
                first_us = stamp_us
            last_us = stamp_us
            bucket = stamp_us // interval_us if interval_us else rows
            if bucket != last_bucket:
                writer.write(PriceTick(exchange, symbol, price, t), t)
                ticks += 1
                last_bucket = bucket
    except csv.Error as exc:
        raise RecordError(f"{csv_path}, row {row_number + 1}: not CSV: {exc}") from None
    except UnicodeDecodeError as exc:
        raise RecordError(f"{csv_path}, row {row_number + 1}: not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise RecordError(f"{csv_path}: cannot read: {exc.strerror or exc}") from None
    if first_us is None:
        raise RecordError(f"{csv_path}: no trades in the file")
    return ImportReport(
        rows=rows,
        trades=rows,
        ticks=ticks,
        first_t=first_us / 1_000_000,
        last_t=last_us / 1_000_000,
        out_path=writer.path,
    )
