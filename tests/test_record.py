"""The record format (issue 17): what the writer writes, what the reader gives back, and how a bad file is told."""

from __future__ import annotations

import gzip
import json
import math
import zlib
from decimal import Decimal
from pathlib import Path

import pytest

from mmframe import DepthSnapshot, MarketData, MMFrameError, PriceTick, Side, Trade
from mmframe._backtest.record import RecordError, RecordWriter, read_record, scan_record

D = Decimal
T0 = 1_700_000_000.0
HEADER = '{"format":"mmframe-record","version":1}'


def items() -> list[tuple[float, MarketData]]:
    """One of every kind and option, with values whose string form matters (trailing zeros, many places)."""
    return [
        (T0, PriceTick("binance", "BTCUSDT", D("42000.10"), timestamp=T0)),
        (T0 + 0.25, PriceTick("binance", "BTCUSDT", D("42000.20"), timestamp=T0 + 0.2, bid=D("42000.00"),
                              ask=D("42000.300"))),
        (T0 + 0.25, DepthSnapshot("binance", "BTCUSDT", bids=[("42000.00", "1.50"), ("41999.9", "0.001")],
                                  asks=[("42000.30", "2")], sequence=17, timestamp=T0 + 0.1)),
        (T0 + 0.5, DepthSnapshot("okex", "ETH-USDT", bids=[("2000", "0")], asks=[], timestamp=T0 + 0.5)),
        (T0 + 0.75, Trade("binance", "BTCUSDT", D("42000.30"), D("0.00012000"), Side.BUY, timestamp=T0 + 0.7,
                          trade_id="3301")),
        (T0 + 1.0, Trade("binance", "BTCUSDT", D("41999.9"), D("3"), Side.SELL, timestamp=T0 + 1.0)),
    ]


def write_lines(path: Path, *lines: str) -> None:
    """A record written by hand: one gzip member holding *lines*."""
    path.write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode()))


def gzip_members(data: bytes) -> int:
    count = 0
    while data:
        decompressor = zlib.decompressobj(wbits=31)
        decompressor.decompress(data)
        assert decompressor.eof
        data = decompressor.unused_data
        count += 1
    return count


def text_lines(path: Path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode().splitlines()


def test_every_kind_round_trips_exactly(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    with RecordWriter(path, source="test") as writer:
        for t, item in items():
            writer.write(item, t)
    events = list(read_record(path))
    assert [(e.t, e.item) for e in events] == items()  # models compare field by field: Decimals, sides, times
    assert [e.line for e in events] == [2, 3, 4, 5, 6, 7]
    tick, quoted, depth, _, trade, plain = (e.item for e in events)
    assert isinstance(tick, PriceTick) and isinstance(quoted, PriceTick)
    assert str(tick.price) == "42000.10" and (str(quoted.bid), str(quoted.ask)) == ("42000.00", "42000.300")
    assert tick.bid is None and tick.timestamp == T0 and quoted.timestamp == T0 + 0.2
    assert isinstance(depth, DepthSnapshot) and depth.sequence == 17
    assert [(str(p), str(q)) for p, q in depth.bids] == [("42000.00", "1.50"), ("41999.9", "0.001")]
    assert isinstance(trade, Trade) and isinstance(plain, Trade)
    assert (str(trade.quantity), trade.side, trade.trade_id) == ("0.00012000", Side.BUY, "3301")
    assert (plain.side, plain.trade_id, plain.timestamp) == (Side.SELL, "", T0 + 1.0)
    lines = text_lines(path)
    assert json.loads(lines[0])["format"] == "mmframe-record" and json.loads(lines[0])["source"] == "test"
    assert json.loads(lines[1]) == {"t": T0, "kind": "tick", "exchange": "binance", "symbol": "BTCUSDT",
                                    "price": "42000.10"}  # ts equal to t is left out
    assert json.loads(lines[5]) == {"t": T0 + 0.75, "kind": "trade", "exchange": "binance", "symbol": "BTCUSDT",
                                    "price": "42000.30", "qty": "0.00012000", "side": "buy", "id": "3301",
                                    "ts": T0 + 0.7}


def test_appending_adds_members_and_no_second_header(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    first, second = items()[:3], items()[3:]
    with RecordWriter(path) as writer:
        for t, item in first:
            writer.write(item, t)
    members = gzip_members(path.read_bytes())
    with RecordWriter(path, source="ignored for an existing file") as writer:
        assert writer.last_t == T0 + 0.25  # read from the file
        for t, item in second:
            writer.write(item, t)
        assert writer.written == 3 and writer.counts == {"tick": 0, "depth": 1, "trade": 2}
    assert gzip_members(path.read_bytes()) == members + 1
    lines = text_lines(path)
    assert sum('"format"' in line for line in lines) == 1 and "ignored" not in lines[0]
    assert [(e.t, e.item) for e in read_record(path)] == items()


def test_a_file_is_a_valid_record_after_every_flush(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    writer = RecordWriter(path)
    assert list(read_record(path)) == []  # a new file holds its header at once
    (t1, a), (t2, b), (t3, c) = items()[:3]
    writer.write(a, t1)
    writer.write(b, t2)
    writer.flush()
    assert [e.item for e in read_record(path)] == [a, b]
    writer.write(c, t3)  # not flushed: not in the file, which is still whole
    assert [e.item for e in read_record(path)] == [a, b]
    writer.flush()
    assert [e.item for e in read_record(path)] == [a, b, c]
    assert gzip_members(path.read_bytes()) == 3  # the header's, and one per flush
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(a, t3)


def test_the_writer_never_lets_t_go_back(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    (_, a), (_, b), (_, c) = items()[:3]
    with RecordWriter(path) as writer:
        writer.write(a, T0 + 5)
        writer.write(b, T0 + 3)  # the wall clock stepped back: recorded at the last time
        writer.write(c, T0 + 6)
        with pytest.raises(ValueError, match="finite"):
            writer.write(c, math.nan)
    assert [e.t for e in read_record(path)] == [T0 + 5, T0 + 5, T0 + 6]
    with RecordWriter(path) as writer:
        writer.write(a, T0)  # appending continues from the file's last time
    assert [e.t for e in read_record(path)][-1] == T0 + 6


def test_a_writer_flushes_on_its_own_past_its_buffer(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    t, tick = items()[0]
    with RecordWriter(path, max_buffer=1000) as writer:
        for n in range(100):
            writer.write(tick, t + n)
        assert gzip_members(path.read_bytes()) > 5  # lines of ~80 bytes: a member every ~13
    assert len(list(read_record(path))) == 100


@pytest.mark.parametrize("cut", [10, 3])
def test_a_cut_off_file_names_its_last_good_line(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "r.jsonl.gz"
    with RecordWriter(path) as writer:
        for t, item in items()[:3]:
            writer.write(item, t)
        writer.flush()
        for t, item in items()[3:]:
            writer.write(item, t)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])  # inside the last member's data (10) or its 8-byte trailer (3)
    events = []
    with pytest.raises(RecordError) as caught:
        events.extend(read_record(path))
    assert str(caught.value).startswith(f"{path}, line ")
    assert "cut off in the middle of a compressed member after line" in str(caught.value)
    last_good = len(events) + 1
    assert f"after line {last_good}" in str(caught.value)
    assert [e.item for e in events[:3]] == [i for _, i in items()[:3]]  # the first member's lines are all good
    with pytest.raises(RecordError, match="cut off"):
        RecordWriter(path)  # nor can it be appended to: the new member would follow a broken one
    path.write_bytes(data[:15])
    with pytest.raises(RecordError, match=r"line 1: .*cut off inside its first compressed member"):
        list(read_record(path))


GOOD_TICK = '{"t":1700000002.0,"kind":"tick","exchange":"binance","symbol":"BTCUSDT","price":"1"}'
BAD_LINES = {
    "corrupt": ('{"t":1700000003.0,"kind":"tick","exch', "not JSON (a corrupt line)"),
    "extra data": (GOOD_TICK + "}", "not JSON"),
    "not an object": ("[1, 2]", "an event must be a JSON object"),
    "missing price": ('{"t":1700000003.0,"kind":"tick","exchange":"b","symbol":"S"}', "missing field 'price'"),
    "missing t": ('{"kind":"tick","exchange":"b","symbol":"S","price":"1"}', "missing field 't'"),
    "missing qty": ('{"t":1700000003.0,"kind":"trade","exchange":"b","symbol":"S","price":"1","side":"buy"}',
                    "missing field 'qty'"),
    "missing bids": ('{"t":1700000003.0,"kind":"depth","exchange":"b","symbol":"S","asks":[]}',
                     "missing field 'bids'"),
    "non-decimal price": ('{"t":1700000003.0,"kind":"tick","exchange":"b","symbol":"S","price":"abc"}',
                          "price must be a positive decimal string, got 'abc'"),
    "float price": ('{"t":1700000003.0,"kind":"tick","exchange":"b","symbol":"S","price":1.5}',
                    "price must be a positive decimal string, got float 1.5"),
    "negative price": ('{"t":1700000003.0,"kind":"tick","exchange":"b","symbol":"S","price":"-1"}',
                       "price must be positive and finite, got '-1'"),
    "nan price": ('{"t":1700000003.0,"kind":"tick","exchange":"b","symbol":"S","price":"NaN"}',
                  "price must be positive and finite"),
    "zero qty": ('{"t":1700000003.0,"kind":"trade","exchange":"b","symbol":"S","price":"1","qty":"0",'
                 '"side":"buy"}', "qty must be positive"),
    "unknown side": ('{"t":1700000003.0,"kind":"trade","exchange":"b","symbol":"S","price":"1","qty":"1",'
                     '"side":"up"}', "side must be 'buy' or 'sell', got 'up'"),
    "bad level": ('{"t":1700000003.0,"kind":"depth","exchange":"b","symbol":"S","bids":[["1"]],"asks":[]}',
                  "bids[0] must be a [price, quantity] pair"),
    "negative level": ('{"t":1700000003.0,"kind":"depth","exchange":"b","symbol":"S","bids":[],'
                       '"asks":[["1","-2"]]}', "asks[0] needs a positive price and a quantity of at least 0"),
    "bad sequence": ('{"t":1700000003.0,"kind":"depth","exchange":"b","symbol":"S","bids":[],"asks":[],'
                     '"sequence":"7"}', "sequence must be an integer"),
    "empty symbol": ('{"t":1700000003.0,"kind":"tick","exchange":"b","symbol":"","price":"1"}',
                     "symbol must be a non-empty string"),
    "bad t": ('{"t":"soon","kind":"tick","exchange":"b","symbol":"S","price":"1"}',
              "t must be a finite number of seconds, got 'soon'"),
    "infinite t": ('{"t":Infinity,"kind":"tick","exchange":"b","symbol":"S","price":"1"}',
                   "t must be a finite number of seconds"),
    "bad ts": ('{"t":1700000003.0,"ts":null,"kind":"tick","exchange":"b","symbol":"S","price":"1"}',
               "ts must be a finite number of seconds"),
    "unknown kind": ('{"t":1700000003.0,"kind":"quote","exchange":"b","symbol":"S","price":"1"}',
                     "unknown kind 'quote' (a version 1 record holds tick, depth, trade)"),
    "unhashable kind": ('{"t":1700000003.0,"kind":["tick"],"exchange":"b","symbol":"S","price":"1"}',
                        "unknown kind ['tick']"),
    "out of order": ('{"t":1700000001.5,"kind":"tick","exchange":"b","symbol":"S","price":"1"}',
                     "t 1700000001.5 is earlier than line 2's 1700000002.0"),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_a_bad_line_is_named(tmp_path: Path, case: str) -> None:
    line, message = BAD_LINES[case]
    path = tmp_path / "bad.jsonl.gz"
    write_lines(path, HEADER, GOOD_TICK, line, GOOD_TICK)
    events = []
    with pytest.raises(RecordError) as caught:
        events.extend(read_record(path))
    assert str(caught.value).startswith(f"{path}, line 3: ")
    assert message in str(caught.value)
    assert [e.line for e in events] == [2]  # the good line before it was read
    assert isinstance(caught.value, MMFrameError)
    with pytest.raises(RecordError, match=r", line 3: "):
        scan_record(path)


BAD_HEADERS = {
    "no header": (GOOD_TICK, 'not an mmframe record: the first line must be the header {"format": "mmframe-record"'),
    "not json": ("mmframe", "not an mmframe record"),
    "another format": ('{"format":"other","version":1}', "not an mmframe record"),
    "version 2": ('{"format":"mmframe-record","version":2}', "unsupported record version 2 (this mmframe reads "
                                                             "version 1)"),
    "no version": ('{"format":"mmframe-record"}', "unsupported record version None"),
}


@pytest.mark.parametrize("case", list(BAD_HEADERS))
def test_a_bad_header_is_named(tmp_path: Path, case: str) -> None:
    line, message = BAD_HEADERS[case]
    path = tmp_path / "bad.jsonl.gz"
    write_lines(path, line, GOOD_TICK)
    with pytest.raises(RecordError) as caught:
        list(read_record(path))
    assert str(caught.value).startswith(f"{path}, line 1: ") and message in str(caught.value)
    with pytest.raises(RecordError, match=r"line 1: "):
        RecordWriter(path)  # nothing is appended to a file that is not a record
    assert gzip.decompress(path.read_bytes()).decode().startswith(line)


def test_files_that_are_not_records(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl"
    plain.write_text(HEADER + "\n" + GOOD_TICK + "\n")
    with pytest.raises(RecordError, match=r"plain.jsonl, line 1: not a gzip file"):
        list(read_record(plain))
    empty = tmp_path / "empty.jsonl.gz"
    empty.write_bytes(gzip.compress(b""))
    with pytest.raises(RecordError, match=r"empty.jsonl.gz, line 1: missing header"):
        list(read_record(empty))
    with pytest.raises(RecordError, match=r"missing.jsonl.gz: cannot open"):
        list(read_record(tmp_path / "missing.jsonl.gz"))
    garbage = tmp_path / "garbage.jsonl.gz"
    good = gzip.compress((HEADER + "\n" + GOOD_TICK + "\n").encode())
    garbage.write_bytes(good + b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"not deflate at all")
    with pytest.raises(RecordError, match=r"line 3: corrupt compressed data after line 2"):
        list(read_record(garbage))


def test_blank_lines_and_unknown_fields_are_ignored_and_int_times_read(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    write_lines(path, '{"format":"mmframe-record","version":1,"later":"field"}', "",
                '{"t":1700000002,"ts":1700000001,"kind":"tick","exchange":"b","symbol":"S","price":"1","x":[1]}',
                "   ")
    (event,) = read_record(path)
    assert event.line == 3 and event.t == 1700000002.0 and isinstance(event.t, float)
    assert event.item.timestamp == 1700000001.0 and isinstance(event.item.timestamp, float)


def test_appending_to_a_hand_made_file_without_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(gzip.compress((HEADER + "\n" + GOOD_TICK).encode()))
    (t, tick), *_ = items()
    with RecordWriter(path) as writer:
        writer.write(tick, t)
    assert [e.t for e in read_record(path)] == [1700000002.0, 1700000002.0]  # clamped to the file's last t


def test_a_file_whose_last_line_is_bad_is_not_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    write_lines(path, HEADER, GOOD_TICK, '{"t":', "")
    with pytest.raises(RecordError, match=r"r\.jsonl\.gz, line 3: the last line is not an event with a time 't'"):
        RecordWriter(path)
    write_lines(path, HEADER, GOOD_TICK.replace("1700000002.0", "NaN"))
    with pytest.raises(RecordError, match=r"line 2: t must be a finite number of seconds, got nan"):
        RecordWriter(path)


def test_scan_record_summarises(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    with RecordWriter(path, source="feed:test") as writer:
        for t, item in items():
            writer.write(item, t)
    info = scan_record(path)
    assert (info.first_t, info.last_t, info.duration) == (T0, T0 + 1.0, 1.0)
    assert dict(info.kinds) == {"tick": 2, "depth": 2, "trade": 2} and info.events == 6
    assert info.symbols == (("binance", "BTCUSDT"), ("okex", "ETH-USDT"))
    assert info.header["source"] == "feed:test" and info.header["version"] == 1
    empty = tmp_path / "empty.jsonl.gz"
    RecordWriter(empty).close()
    nothing = scan_record(empty)
    assert (nothing.first_t, nothing.events, nothing.symbols, nothing.duration) == (None, 0, (), 0.0)


def test_the_writer_refuses_what_is_not_market_data(tmp_path: Path) -> None:
    with RecordWriter(tmp_path / "r.jsonl.gz") as writer:
        with pytest.raises(TypeError, match="PriceTick, DepthSnapshot and Trade"):
            writer.write("a tick", T0)  # type: ignore[arg-type]
        tick = PriceTick("b", "S", D("1"), timestamp=math.inf)
        with pytest.raises(ValueError, match="timestamp must be finite"):
            writer.write(tick, T0)
        assert writer.written == 0 and writer.last_t is None


def test_one_recorder_at_a_time_writes_a_file(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl.gz"
    with RecordWriter(path) as first:
        with pytest.raises(RecordError, match="another recorder is writing to it"):
            RecordWriter(path)
        first.write(PriceTick("x", "BTCUSDT", Decimal("1"), 1_700_000_000.0), 1_700_000_000.0)
    with RecordWriter(path) as second:  # free again once the first is closed
        second.write(PriceTick("x", "BTCUSDT", Decimal("2"), 1_700_000_001.0), 1_700_000_001.0)
    assert [e.item.price for e in read_record(path)] == [Decimal("1"), Decimal("2")]
