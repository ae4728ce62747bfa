"""Recording a feed to a record file (issue 17): ``record_feed`` on a scripted feed and on the Redis bus, and
``mmframe feed record``.

The scripted-feed tests run on trio's MockClock (``autojump_clock``), the receive times from a wall clock the test
makes of it. The Redis test waits for real I/O (Redis and the feed's worker thread), polling with a deadline, as
tests/test_bus.py does; the command test records the built-in ``sim`` feed for a fraction of a second.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import pytest
import redis
import trio
from click.testing import CliRunner

from mmframe import DepthSnapshot, PriceTick, Side, Trade
from mmframe._backtest.record import RecordWriter, read_record
from mmframe._backtest.recorder import add_record_commands, record_feed
from mmframe._bus import BusPublisher
from mmframe._plugins import get_feeds, get_plugin_manager
from mmframe._settings import RedisSettings
from mmframe.config import structure_config
from mmframe.testing import ScriptedFeed

D = Decimal
T0 = 1_700_000_000.0


def wall_clock() -> float:
    """Receive times that follow the test's MockClock."""
    return T0 + trio.current_time()


def recorded(path: Path) -> list[tuple[float, object]]:
    return [(e.t, e.item) for e in read_record(path)]


async def test_every_item_the_feed_delivers_is_recorded_with_its_receive_time(
    autojump_clock: Any, tmp_path: Path
) -> None:
    path = tmp_path / "r.jsonl.gz"
    feed = ScriptedFeed()
    counts: dict[str, int] = {}

    async def record(task_status: trio.TaskStatus[None]) -> None:
        counts.update(await record_feed(feed, ["BTCUSDT", "ETHUSDT"], writer, flush_interval=1.0, duration=10.0,
                                        clock=wall_clock, task_status=task_status))

    with RecordWriter(path, source="test") as writer:
        async with trio.open_nursery() as nursery:
            await nursery.start(record)
            assert feed.started and feed.listener_count("BTCUSDT") == feed.listener_count("ETHUSDT") == 1
            start = wall_clock()
            tick = feed.push_price("BTCUSDT", "42000.10", timestamp=T0 - 0.5)
            depth = DepthSnapshot("scripted", "BTCUSDT", bids=[("42000.00", "1.5")], asks=[("42000.20", "0.25")],
                                  sequence=3, timestamp=T0 - 0.4)
            feed.push(depth)
            await trio.sleep(0.25)
            trade = feed.push_trade("ETHUSDT", Side.SELL, "0.50", "2000.5", timestamp=T0)
            feed.push_price("XRPUSDT", "1")  # not a recorded symbol: no listener of ours
            assert recorded(path) == []  # not flushed yet: the file holds its header only
            await trio.sleep(1.0)
            assert recorded(path) == [(start, tick), (start, depth), (start + 0.25, trade)]
            later = feed.push_price("ETHUSDT", "2001", timestamp=T0 + 2)
            at = wall_clock()
        assert trio.current_time() == pytest.approx(10.0)  # the duration ended it
    assert counts == {"tick": 2, "depth": 1, "trade": 1}
    assert recorded(path)[-1] == (at, later)
    assert feed.listener_count("BTCUSDT") == feed.listener_count("ETHUSDT") == 0  # its subscriptions are closed


async def test_a_cancelled_recording_flushes_what_it_got(autojump_clock: Any, tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    feed = ScriptedFeed()
    with RecordWriter(path) as writer:
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(record_feed, feed, ["BTCUSDT"], writer, flush_interval=3600,
                                                  clock=wall_clock))
            for n in range(5):
                feed.push_price("BTCUSDT", f"100.{n}")
                await trio.sleep(1)
            nursery.cancel_scope.cancel()
        # flushed while being cancelled, before the writer closes: the file is complete now
        assert [str(item.price) for _, item in recorded(path)] == [f"100.{n}" for n in range(5)]  # type: ignore[attr-defined]
        assert writer.counts == {"tick": 5, "depth": 0, "trade": 0}
    assert feed.listener_count("BTCUSDT") == 0


async def test_an_item_the_writer_refuses_is_skipped(
    autojump_clock: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "r.jsonl.gz"
    feed = ScriptedFeed()
    with RecordWriter(path) as writer:
        counts = await _record_for(feed, writer, 2.0, lambda: (
            feed.push_price("BTCUSDT", "1", timestamp=float("nan")),  # not a time: refused by the writer
            feed.push_price("BTCUSDT", "2"),
        ))
    assert counts == {"tick": 1, "depth": 0, "trade": 0}
    assert [str(item.price) for _, item in recorded(path)] == ["2"]  # type: ignore[attr-defined]
    assert "not recorded" in caplog.text


async def _record_for(feed: ScriptedFeed, writer: RecordWriter, duration: float,
                      push: Callable[[], object]) -> dict[str, int]:
    result: dict[str, int] = {}

    async def record(task_status: trio.TaskStatus[None]) -> None:
        result.update(await record_feed(feed, ["BTCUSDT"], writer, duration=duration, clock=wall_clock,
                                        task_status=task_status))

    async with trio.open_nursery() as nursery:
        await nursery.start(record)
        push()
    return result


async def test_bad_arguments(tmp_path: Path) -> None:
    with RecordWriter(tmp_path / "r.jsonl.gz") as writer:
        with pytest.raises(ValueError, match="flush_interval"):
            await record_feed(ScriptedFeed(), ["X"], writer, flush_interval=0)
        with pytest.raises(ValueError, match="duration"):
            await record_feed(ScriptedFeed(), ["X"], writer, duration=-1)


# ---- the Redis bus -------------------------------------------------------------------------------------------


async def eventually(predicate: Callable[[], object], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Poll *predicate* until it holds (the state changes in Redis and in the feed's worker thread)."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_recording_the_redis_bus(redis_address: RedisSettings, tmp_path: Path) -> None:
    exchange = f"t{uuid.uuid4().hex[:10]}"  # channels of this test's own
    cls = get_feeds(get_plugin_manager()).get_or_raise("redis")  # the bus feed, as `feed record --exchange redis`
    feed = cls(structure_config({"exchange": exchange, "host": redis_address.host, "port": redis_address.port},
                                cls.Config))
    publisher = BusPublisher(redis_address)
    client = redis.Redis(host=redis_address.host, port=redis_address.port)
    path = tmp_path / "bus.jsonl.gz"

    def subscribers(kind: str) -> int:
        return int(client.pubsub_numsub(f"{kind}:update:{exchange}:BTCUSDT")[0][1])

    tick = PriceTick(exchange, "BTCUSDT", D("42000.10"), timestamp=T0, bid=D("42000.00"), ask=D("42000.20"))
    depth = DepthSnapshot(exchange, "BTCUSDT", bids=[("42000.00", "1.50")], asks=[("42000.20", "0.001")],
                          timestamp=T0 + 0.001)
    later = PriceTick(exchange, "BTCUSDT", D("42000.30"), timestamp=T0 + 1)
    try:
        with trio.fail_after(30), RecordWriter(path, source="feed:redis") as writer:
            async with trio.open_nursery() as nursery:
                await nursery.start(publisher.run)
                await nursery.start(functools.partial(record_feed, feed, ["BTCUSDT"], writer, flush_interval=0.05))
                await eventually(lambda: subscribers("price") == 1 and subscribers("depth") == 1)
                publisher.publish(exchange, tick)
                publisher.publish(exchange, depth)
                await eventually(lambda: len(recorded(path)) == 2)
                publisher.publish(exchange, Trade(exchange, "BTCUSDT", D("1"), D("1"), Side.BUY))  # no bus channel
                publisher.publish(exchange, later)
                await eventually(lambda: len(recorded(path)) == 3)
                nursery.cancel_scope.cancel()
    finally:
        client.close()
    events = list(read_record(path))
    items = sorted((e.item for e in events), key=lambda item: item.timestamp)  # two channels: either may be first
    assert items == [tick, depth, later]  # exact decimals, the publisher's timestamps as ts
    assert [e.t for e in events] == sorted(e.t for e in events) and events[-1].item == later


# ---- the command ---------------------------------------------------------------------------------------------


@pytest.fixture
def feed_group() -> click.Group:
    @click.group()
    def feed() -> None:
        """mmframe feed, as the tests wire it."""

    add_record_commands(feed)
    return feed


def test_the_record_command_records_the_sim_feed(tmp_path: Path, feed_group: click.Group) -> None:
    out = tmp_path / "sim.jsonl.gz"
    args = ["record", "--exchange", "sim", "--symbols", "btcusdt,ETHUSDT", "--out", str(out), "--duration", "0.3",
            "--flush-interval", "0.1", "--config", json.dumps({"seed": 7, "tick_rate": 50, "depth": True}),
            "--env-file", str(tmp_path / "none.env")]
    result = CliRunner().invoke(feed_group, args)
    assert result.exit_code == 0, result.output
    events = list(read_record(out))
    assert {e.item.symbol for e in events} == {"BTCUSDT", "ETHUSDT"}
    ticks = sum(isinstance(e.item, PriceTick) for e in events)
    assert ticks >= 2 and sum(isinstance(e.item, DepthSnapshot) for e in events) >= 2
    assert f"{out}: recorded {len(events)} events ({ticks} tick," in result.output
    again = CliRunner().invoke(feed_group, [*args, "--duration", "0.2"])  # the last --duration wins
    assert again.exit_code == 0, again.output
    appended = list(read_record(out))  # one record: the new events follow the old, under the one header
    assert len(appended) > len(events) and appended[: len(events)] == events


def test_the_record_command_refuses_bad_input(tmp_path: Path, feed_group: click.Group) -> None:
    out = tmp_path / "r.jsonl.gz"
    base = ["record", "--symbols", "BTCUSDT", "--out", str(out), "--duration", "0", "--env-file",
            str(tmp_path / "none.env")]
    runner = CliRunner()
    unknown = runner.invoke(feed_group, [*base, "--exchange", "nowhere"])
    assert unknown.exit_code == 2 and "no feed named 'nowhere'" in unknown.output
    bad_json = runner.invoke(feed_group, [*base, "--exchange", "sim", "--config", "{"])
    assert bad_json.exit_code == 2 and "--config is not JSON" in bad_json.output
    bad_key = runner.invoke(feed_group, [*base, "--exchange", "sim", "--config", '{"tick_rat": 5}'])
    assert bad_key.exit_code == 2 and "tick_rat" in bad_key.output
    no_symbols = runner.invoke(feed_group, ["record", "--exchange", "sim", "--symbols", ",", "--out", str(out)])
    assert no_symbols.exit_code == 2 and "--symbols names no symbol" in no_symbols.output
    assert not out.exists()
    out.write_bytes(b"not a record")
    not_record = runner.invoke(feed_group, [*base, "--exchange", "sim"])
    assert not_record.exit_code == 1 and f"{out}, line 1: not a gzip file" in not_record.output
    assert out.read_bytes() == b"not a record"
