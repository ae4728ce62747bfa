"""The Binance trades importer and the ``mmframe feed`` commands that import and inspect record files, on small
files the tests write in Binance's format (data.binance.vision spot trades: id, price, qty, quote_qty, time,
is_buyer_maker [, is_best_match])."""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mmframe import PriceTick, Side, Trade
from mmframe._backtest.importers import import_binance_trades
from mmframe._backtest.record import RecordError, RecordWriter, read_record
from mmframe._backtest.recorder import add_record_commands

D = Decimal
MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z in milliseconds
US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z in microseconds

# Six trades over 0.35 s: intervals of 0.1 s begin at the 1st, 3rd, 4th and 6th trade.
ROWS_MS = [
    f"3329005,42283.58000000,0.00100000,42.28358000,{MS},True,True",
    f"3329006,42283.59000000,0.01000000,422.83590000,{MS + 50},False,True",
    f"3329007,42283.60000000,0.20000000,8456.72000000,{MS + 100},False,True",
    f"3329008,42283.50000000,0.00500000,211.41750000,{MS + 230},True,True",
    f"3329009,42283.40000000,1.00000000,42283.40000000,{MS + 299},True,True",
    f"3329010,42283.45000000,0.30000000,12685.03500000,{MS + 350},False,True",
]


def write_csv(path: Path, rows: list[str], *, header: str | None = None) -> Path:
    path.write_text("".join(f"{row}\n" for row in ([header] if header else []) + rows))
    return path


def events(path: Path) -> list[tuple[float, object]]:
    return [(e.t, e.item) for e in read_record(path)]


def test_a_millisecond_file_without_header_becomes_trades_and_ticks(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "BTCUSDT-trades-2024-01-01.csv", [row.rsplit(",", 1)[0] for row in ROWS_MS])
    out = tmp_path / "btc.jsonl.gz"
    report = import_binance_trades(csv_path, out, symbol="BTCUSDT")
    assert (report.rows, report.trades, report.ticks) == (6, 6, 4)
    assert (report.first_t, report.last_t, report.out_path) == (MS / 1000, (MS + 350) / 1000, out)
    got = events(out)
    trades = [item for _, item in got if isinstance(item, Trade)]
    assert trades[0] == Trade("binance", "BTCUSDT", D("42283.58000000"), D("0.00100000"), Side.SELL,
                              timestamp=MS / 1000, trade_id="3329005")  # is_buyer_maker True: a seller hit the bid
    assert [t.side for t in trades] == [Side.SELL, Side.BUY, Side.BUY, Side.SELL, Side.SELL, Side.BUY]
    assert str(trades[4].quantity) == "1.00000000" and [t.trade_id for t in trades][-1] == "3329010"
    assert [e.t for e in read_record(out)] == sorted(e.t for e in read_record(out))
    # a tick follows the first trade of each 0.1 s interval, at its price and time
    ticks = [(t, item.price) for t, item in got if isinstance(item, PriceTick)]
    assert ticks == [(MS / 1000, D("42283.58000000")), ((MS + 100) / 1000, D("42283.60000000")),
                     ((MS + 230) / 1000, D("42283.50000000")), ((MS + 350) / 1000, D("42283.45000000"))]
    kinds = [type(item).__name__ for _, item in got]
    assert kinds[:4] == ["Trade", "PriceTick", "Trade", "Trade"]
    assert gzip.decompress(out.read_bytes()).decode().splitlines()[0].startswith(
        '{"format":"mmframe-record","version":1,"source":"binance-trades:BTCUSDT-trades-2024-01-01.csv"')


def test_a_microsecond_file_with_header_and_is_best_match(tmp_path: Path) -> None:
    rows = [
        f"1,93500.01,0.5,46750.005,{US},false,true",
        f"2,93500.02,0.25,23375.005,{US + 99_999},true,true",
        f"3,93500.03,0.125,11687.50375,{US + 100_000},False,False",
    ]
    csv_path = write_csv(tmp_path / "t.csv", rows, header="id,price,qty,quote_qty,time,is_buyer_maker,is_best_match")
    out = tmp_path / "out.jsonl.gz"
    report = import_binance_trades(csv_path, out, symbol="BTCUSDT", exchange="binance-spot")
    assert (report.rows, report.trades, report.ticks) == (3, 3, 2)
    trades = [item for _, item in events(out) if isinstance(item, Trade)]
    assert [t.timestamp for t in trades] == [US / 1e6, (US + 99_999) / 1e6, (US + 100_000) / 1e6]
    assert [t.side for t in trades] == [Side.BUY, Side.SELL, Side.BUY]
    assert {t.exchange for t in trades} == {"binance-spot"}


def test_a_tick_per_trade_with_interval_zero_and_wide_intervals(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "t.csv", ROWS_MS)
    every = import_binance_trades(csv_path, tmp_path / "every.jsonl.gz", symbol="BTCUSDT", tick_interval=0)
    assert (every.trades, every.ticks) == (6, 6)
    wide = import_binance_trades(csv_path, tmp_path / "wide.jsonl.gz", symbol="BTCUSDT", tick_interval=1)
    assert wide.ticks == 1
    same_time = write_csv(tmp_path / "same.csv", [f"1,10,1,10,{MS},True", f"2,11,1,11,{MS},False"])
    report = import_binance_trades(same_time, tmp_path / "same.jsonl.gz", symbol="X", tick_interval=0)
    assert report.ticks == 2  # equal times are in order


def test_a_successful_import_replaces_the_out_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl.gz"
    out.write_bytes(b"an older file")
    import_binance_trades(write_csv(tmp_path / "t.csv", ROWS_MS), out, symbol="BTCUSDT")
    assert len(events(out)) == 6 + 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl.gz", "t.csv"]


BAD_ROWS = {
    "too few columns": (f"3329007,42283.60,0.2,8456.72,{MS + 100}", "expected 6 or 7 columns"),
    "too many columns": (f"3329007,42283.60,0.2,8456.72,{MS + 100},True,True,x", "got 8"),
    "bad price": (f"3329007,abc,0.2,8456.72,{MS + 100},True", "price is not a number: 'abc'"),
    "zero qty": (f"3329007,42283.60,0,0,{MS + 100},True", "qty must be positive, got '0'"),
    "bad quote_qty": (f"3329007,42283.60,0.2,x,{MS + 100},True", "quote_qty is not a number"),
    "bad time": ("3329007,42283.60,0.2,8456.72,yesterday,True", "time must be whole epoch milliseconds"),
    "bad boolean": (f"3329007,42283.60,0.2,8456.72,{MS + 100},maybe", "is_buyer_maker must be True or False, got "
                                                                      "'maybe'"),
    "bad is_best_match": (f"3329007,42283.60,0.2,8456.72,{MS + 100},True,2", "is_best_match must be True or False"),
    "bad id": (f"x1,42283.60,0.2,8456.72,{MS + 100},True", "id must be a whole number"),
    "time backwards": (f"3329007,42283.60,0.2,8456.72,{MS - 1},True", f"time {MS - 1} is earlier than the row "
                                                                      "before's"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_a_bad_row_is_named_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    bad, message = BAD_ROWS[case]
    rows = [*ROWS_MS[:2], bad, *ROWS_MS[3:]]
    csv_path = write_csv(tmp_path / "t.csv", rows, header="id,price,qty,quote_qty,time,is_buyer_maker")
    out = tmp_path / "out.jsonl.gz"
    with pytest.raises(RecordError) as caught:
        import_binance_trades(csv_path, out, symbol="BTCUSDT")
    assert str(caught.value).startswith(f"{csv_path}, row 4: ")  # the header is row 1
    assert message in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]  # no output, no temporary file


def test_a_failed_import_leaves_an_existing_out_file_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl.gz"
    with RecordWriter(out) as writer:
        writer.write(PriceTick("binance", "BTCUSDT", D("1"), timestamp=1.0), 1.0)
    before = out.read_bytes()
    csv_path = write_csv(tmp_path / "t.csv", [*ROWS_MS[:5], "garbage"])
    with pytest.raises(RecordError, match=r"t.csv, row 6: expected 6 or 7 columns"):
        import_binance_trades(csv_path, out, symbol="BTCUSDT")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl.gz", "t.csv"]


def test_files_with_no_trades_or_bad_arguments(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl.gz"
    empty = write_csv(tmp_path / "empty.csv", [], header="id,price,qty,quote_qty,time,is_buyer_maker")
    with pytest.raises(RecordError, match=r"empty\.csv: no trades in the file"):
        import_binance_trades(empty, out, symbol="BTCUSDT")
    with pytest.raises(RecordError, match=r"missing\.csv: cannot open"):
        import_binance_trades(tmp_path / "missing.csv", out, symbol="BTCUSDT")
    binary = tmp_path / "zipped.csv"
    binary.write_bytes(b"PK\x03\x04\xff\xfe\x00garbage")
    with pytest.raises(RecordError, match=r"zipped.csv, row 1: not UTF-8 text"):
        import_binance_trades(binary, out, symbol="BTCUSDT")
    with pytest.raises(ValueError, match="tick_interval"):
        import_binance_trades(empty, out, symbol="BTCUSDT", tick_interval=-1)
    with pytest.raises(ValueError, match="symbol"):
        import_binance_trades(empty, out, symbol="")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv", "zipped.csv"]


# ---- the commands ----------------------------------------------------------------------------------------------


@pytest.fixture
def feed() -> click.Group:
    @click.group()
    def feed() -> None:
        """mmframe feed, as the tests wire it."""

    add_record_commands(feed)
    return feed


def test_import_command(tmp_path: Path, feed: click.Group) -> None:
    csv_path = write_csv(tmp_path / "t.csv", ROWS_MS)
    out = tmp_path / "out.jsonl.gz"
    result = CliRunner().invoke(feed, ["import-binance-trades", str(csv_path), "--symbol", "btcusdt",
                                       "--out", str(out), "--tick-interval", "0"])
    assert result.exit_code == 0, result.output
    assert "6 rows imported as 6 trades and 6 ticks, 2024-01-01T00:00:00.000Z to 2024-01-01T00:00:00.350Z" in (
        result.output)
    assert {item.symbol for _, item in events(out)} == {"BTCUSDT"}


def test_import_command_errors(tmp_path: Path, feed: click.Group) -> None:
    csv_path = write_csv(tmp_path / "t.csv", [*ROWS_MS[:3], "1,2,3"])
    out = tmp_path / "out.jsonl.gz"
    runner = CliRunner()
    result = runner.invoke(feed, ["import-binance-trades", str(csv_path), "--symbol", "BTCUSDT", "--out", str(out)])
    assert result.exit_code == 1
    assert f"Error: {csv_path}, row 4: expected 6 or 7 columns" in result.output
    assert not out.exists()
    missing = runner.invoke(feed, ["import-binance-trades", str(tmp_path / "nope.csv"), "--symbol", "X",
                                   "--out", str(out)])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    negative = runner.invoke(feed, ["import-binance-trades", str(csv_path), "--symbol", "X", "--out", str(out),
                                    "--tick-interval", "-1"])
    assert negative.exit_code == 2 and "--tick-interval" in negative.output
    blank = runner.invoke(feed, ["import-binance-trades", str(csv_path), "--symbol", " ", "--out", str(out)])
    assert blank.exit_code == 2 and "--symbol is empty" in blank.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_info_command(tmp_path: Path, feed: click.Group) -> None:
    out = tmp_path / "out.jsonl.gz"
    import_binance_trades(write_csv(tmp_path / "t.csv", ROWS_MS), out, symbol="BTCUSDT")
    result = CliRunner().invoke(feed, ["info", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{out}: mmframe record version 1, source binance-trades:t.csv, " + lines[0].split(", ")[-1]
    assert "  first   2024-01-01T00:00:00.000Z (1704067200.0)" in lines
    assert "  last    2024-01-01T00:00:00.350Z (1704067200.35)" in lines
    assert "  events  10: 4 tick, 0 depth, 6 trade" in lines
    assert "  symbols BTCUSDT (binance)" in lines


def test_info_command_names_the_bad_line(tmp_path: Path, feed: click.Group) -> None:
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"format":"mmframe-record","version":1}\n'
                                  b'{"t":2.0,"kind":"tick","exchange":"b","symbol":"S","price":"1"}\n'
                                  b'{"t":1.0,"kind":"tick","exchange":"b","symbol":"S","price":"1"}\n'))
    result = CliRunner().invoke(feed, ["info", str(bad)])
    assert result.exit_code == 1
    assert f"Error: {bad}, line 3: t 1.0 is earlier than line 2's 2.0" in result.output
    empty = tmp_path / "empty.jsonl.gz"
    RecordWriter(empty).close()
    result = CliRunner().invoke(feed, ["info", str(empty)])
    assert result.exit_code == 0 and "no events" in result.output


@pytest.mark.parametrize("time_text", ["17040672000\u00b2", "99999999999999999999999"])
def test_an_odd_time_is_a_bad_row(tmp_path: Path, time_text: str) -> None:
    csv_path = tmp_path / "t.csv"
    csv_path.write_text(f"1,100.0,1.0,100.0,1704067200000,True\n2,100.0,1.0,100.0,{time_text},False\n")
    out = tmp_path / "out.jsonl.gz"
    with pytest.raises(RecordError, match="row 2: time"):
        import_binance_trades(csv_path, out, symbol="BTCUSDT")
    assert not out.exists()
