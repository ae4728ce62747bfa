"""Issue 16's acceptance: instances of ``mmframe serve`` share markets through leases in the real Redis, against
the reference match engine on loopback, sampled every 200 ms (see tests/cluster_rig.py)."""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmframe._store import MarketDescription, Store

from .cluster_rig import Rig, write_store

TTL = 4.0


@pytest.fixture
def rig_factory(tmp_path: Path, redis_address: object) -> Iterator[object]:
    rigs: list[Rig] = []

    def make(markets: int, redis_url: str = "redis://127.0.0.1:6379/0") -> Rig:
        rig = Rig(tmp_path, markets, redis_url=redis_url, ttl=TTL, cluster=f"test-{uuid.uuid4().hex[:10]}")
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def _everyone_quoted_once(owners: dict[str, set[str]]) -> bool:
    return all(len(tags) == 1 for tags in owners.values())


def test_three_instances_share_thirty_markets_evenly_and_stop_clean(rig_factory: object) -> None:
    rig = rig_factory(30)
    procs = [rig.spawn(f"i{n}") for n in range(3)]
    for proc in procs:
        proc.wait_ready()
    members = {p.member for p in procs}

    def balanced(owners: dict[str, set[str]]) -> bool:
        if not _everyone_quoted_once(owners):
            return False
        counts = collections.Counter(next(iter(tags)) for tags in owners.values())
        return set(counts) == members and max(counts.values()) - min(counts.values()) <= 1

    rig.watch(balanced, 60, "30 markets quoted, each by one instance, counts within one")
    rig.hold(3)  # and it stays so
    assert rig.violations == []
    view = rig.cluster_view(procs[0])
    assert set(view["instances"]) == members
    assert len(view["leases"]) == 30 and {lease["owner"] for lease in view["leases"].values()} == members
    owned = collections.Counter(m["owner"] for m in view["markets"])
    assert sorted(owned.values()) == [10, 10, 10]
    assert {m["status"] for m in view["markets"]} == {"running"}
    # every instance's /metrics covers the markets it owns, labelled with it
    for proc in procs:
        lines = [line for line in rig.http.get(f"{proc.api}/metrics").text.splitlines()
                 if line.startswith("strategy_orders_total{")]
        assert len(lines) == owned[proc.member]
        assert all(f'instance="{proc.member}"' in line for line in lines)
    for proc in procs:
        assert rig.stop(proc) == 0
    assert all(rig.open_orders(s) == [] for s in rig.symbols)
    assert rig.violations == []


def _longest_dark(history: list[tuple[float, dict[str, set[str]]]]) -> float:
    """The longest stretch, in seconds, any market went without resting orders in *history*'s samples."""
    longest = 0.0
    since: dict[str, float] = {}
    for at, owners in history:
        for symbol, tags in owners.items():
            if tags:
                since.pop(symbol, None)
            else:
                longest = max(longest, at - since.setdefault(symbol, at))
    return longest


def _three_sharing_nine(rig_factory: object) -> tuple[Rig, list[object]]:
    """Three instances sharing nine markets, 3/3/3, quoting."""
    rig = rig_factory(9)
    procs = [rig.spawn(f"i{n}") for n in range(3)]
    for proc in procs:
        proc.wait_ready()
    rig.watch(_balanced_over({p.member for p in procs}, 9), 60, "9 markets shared out 3/3/3")
    return rig, procs


def _balanced_over(members: set[str], count: int) -> object:
    def check(owners: dict[str, set[str]]) -> bool:
        if not _everyone_quoted_once(owners):
            return False
        counts = collections.Counter(next(iter(tags)) for tags in owners.values())
        return set(counts) == members and max(counts.values()) - min(counts.values()) <= 1

    return check


def test_kill_9_moves_the_markets_within_ttl_plus_5s_with_never_two_owners(rig_factory: object) -> None:
    rig, procs = _three_sharing_nine(rig_factory)
    victim, survivors = procs[0], procs[1:]
    lost = {s for s, tags in rig.sample().items() if tags == {victim.member}}
    assert len(lost) == 3
    victim.process.kill()
    victim.process.wait()

    def taken_over(owners: dict[str, set[str]]) -> bool:
        return all(len(owners[s]) == 1 and victim.member not in owners[s] for s in lost)

    took = rig.watch(taken_over, TTL + 5, "the killed instance's markets quoted by the others")
    rig.hold(2)
    assert rig.violations == [], rig.violations
    assert took <= TTL + 5
    # no orphan: nothing of the dead instance is left anywhere, and every market runs on a survivor
    final = rig.sample()
    assert all(victim.member not in tags for tags in final.values())
    assert all(len(tags) == 1 for tags in final.values())
    for proc in survivors:
        assert rig.stop(proc) == 0
    assert all(rig.open_orders(s) == [] for s in rig.symbols)
    assert rig.samples >= 20


def test_sigstop_for_twice_the_ttl_then_sigcont_never_two_owners(rig_factory: object) -> None:
    rig, procs = _three_sharing_nine(rig_factory)
    sleeper = procs[0]
    lost = {s for s, tags in rig.sample().items() if tags == {sleeper.member}}
    os.kill(sleeper.process.pid, signal.SIGSTOP)
    rig.watch(lambda owners: all(sleeper.member not in owners[s] and owners[s] for s in lost), 2 * TTL,
              "the paused instance's markets quoted by the others")
    rig.hold(max(0.0, 2 * TTL - (rig.history[-1][0] - rig.history[0][0])))
    woke_at = len(rig.history)
    os.kill(sleeper.process.pid, signal.SIGCONT)
    rig.hold(TTL + 3)
    assert rig.violations == [], rig.violations
    # The woken instance sent nothing for the markets it lost: none of its orders appears on one of them unless
    # it holds the market's lease again (it claimed it anew, after rejoining).
    log = sleeper.log()
    for symbol in lost:
        name = symbol.replace("/", "") + "1"
        assert f"lost the lease of {name}" in log or f"giving {name} up" in log, log[-3000:]
    regained = {s for s in lost if f"{s.replace('/', '')}1 is ours (fence" in log.split("lost the lease")[-1]}
    for _, owners in rig.history[woke_at:]:
        for symbol in lost - regained:
            assert sleeper.member not in owners[symbol], f"{symbol} got orders from the woken instance"
    for proc in procs:
        assert rig.stop(proc) == 0
    assert all(rig.open_orders(s) == [] for s in rig.symbols)


def test_redis_down_for_three_ttls_stops_quoting_in_time_and_resumes(
    rig_factory: object, private_redis: object
) -> None:
    rig = rig_factory(6, redis_url=f"redis://127.0.0.1:{private_redis.port}/0")
    procs = [rig.spawn(f"i{n}") for n in range(2)]
    for proc in procs:
        proc.wait_ready()
    rig.watch(_balanced_over({p.member for p in procs}, 6), 60, "6 markets shared out 3/3")
    private_redis.stop()
    # Quoting stops before any lease could have expired: within the lease's time to live of the last renewal.
    stopped = rig.watch(lambda owners: not any(owners.values()), TTL, "every market stopped quoting")
    assert stopped <= TTL
    rig.hold(3 * TTL - stopped)
    assert not any(tags for _, owners in rig.history[-5:] for tags in owners.values())  # nothing while it is down
    private_redis.start()
    rig.watch(_balanced_over({p.member for p in procs}, 6), TTL + 10, "quoting resumed on every market")
    assert rig.violations == [], rig.violations
    for proc in procs:
        assert "Redis cannot be reached" in proc.log()
        assert rig.stop(proc) == 0
    assert all(rig.open_orders(s) == [] for s in rig.symbols)


def _post(rig: Rig, proc: object, path: str, body: dict[str, object]) -> object:
    return rig.http.post(f"{proc.api}{path}", json=body, headers={"Authorization": "Bearer cluster-test-token"},
                         timeout=60)


def test_commands_through_any_instance_reach_the_owner(rig_factory: object) -> None:
    rig = rig_factory(4)
    a, b = rig.spawn("a"), rig.spawn("b")
    a.wait_ready()
    b.wait_ready()
    rig.watch(_balanced_over({a.member, b.member}, 4), 60, "4 markets shared out 2/2")
    # every instance's view of the cluster is at most a round (TTL / 6) old
    deadline = time.monotonic() + 5
    while True:
        view = rig.cluster_view(a)
        theirs = [m for m in view["markets"] if m["owner"] == b.member]
        if (len(theirs) == 2 and all(m["status"] == "running" for m in theirs)) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(theirs) == 2 and all(m["status"] == "running" for m in theirs), view
    symbol = theirs[0]["symbol"]

    # stop, asked of an instance that does not own it: answered once the owner has stopped it and let it go
    response = _post(rig, a, "/api/v1/strategy/stop", {"symbol": symbol, "market_type": 1})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "stopped"
    assert rig.open_orders(symbol) == []
    rig.hold(2 * TTL / 3 + 1)  # and nobody takes it over
    assert all(not owners[symbol] for _, owners in rig.history[-3:])
    listed = {m["symbol"]: m for m in rig.http.get(f"{b.api}/api/v1/strategy/list").json()["data"]}
    assert listed[symbol]["status"] == "stopped" and listed[symbol]["owner"] is None

    # start it again through the same instance: some instance runs it
    response = _post(rig, a, "/api/v1/strategy/start", {"symbol": symbol, "market_type": 1})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "running"
    rig.watch(lambda owners: len(owners[symbol]) == 1, 10, f"{symbol} quoted again")

    # a config change and a reload through a, for a market b owns: b runs the new config
    view = rig.cluster_view(a)
    target = next(m for m in view["markets"] if m["owner"] == b.member)["symbol"]
    def biggest() -> float:
        orders = rig.http.get(f"{rig.engine_url}/api/v1/orders/open",
                              params={"symbol": target, "account": "mmframe", "prefix": "mmf-"}).json()["orders"]
        return max((float(o["quantity"]) for o in orders), default=0.0)

    assert biggest() > 5.0  # with base_quantity 10 before the change
    response = _post(rig, a, "/api/v1/strategy/config/update",
                     {"symbol": target, "market_type": 1, "config": {"base_quantity": 5}})
    assert response.status_code == 200, response.text
    response = _post(rig, a, "/api/v1/strategy/reload", {"symbol": target, "market_type": 1})
    assert response.status_code == 200, response.text
    status = rig.http.get(f"{b.api}/api/v1/strategy/status", params={"symbol": target, "market_type": 1}).json()
    assert status["data"]["config"]["base_quantity"] == 5 and status["data"]["owner"] == b.member

    # (the strategy sizes each level at most base_quantity, with noise below it)
    rig.watch(lambda _: 0 < biggest() <= 5.0, 10, f"{target} quoted with base_quantity 5")

    # the kill switch through b: every market of the cluster stops, nothing is left, both instances live on
    response = _post(rig, b, "/api/v1/kill", {})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["unconfirmed"] == {}
    assert all(rig.open_orders(s) == [] for s in rig.symbols)
    rig.hold(2)
    assert not any(tags for _, owners in rig.history[-5:] for tags in owners.values())
    assert a.process.poll() is None and b.process.poll() is None
    assert rig.violations == [], rig.violations
    for proc in (a, b):
        assert rig.stop(proc) == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds}s: {what}"
        time.sleep(0.2)


def test_workers_split_the_markets_restart_a_dead_worker_and_stop_clean(tmp_path: Path) -> None:
    """``--workers 2`` without a cluster: a fixed split, a killed worker restarted (its orphans cancelled), and a
    SIGINT to the supervisor leaves nothing on the engine."""
    rig = Rig(tmp_path, 0, redis_url="", ttl=TTL, cluster="unused")
    try:
        port = _free_port()
        env = rig._env()
        env.update({"MATCH_ENGINE_ENDPOINT": rig.engine_url, "API_PORT": str(port)})
        log_path = tmp_path / "supervisor.log"
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "mmframe", "serve", "--demo", "--workers", "2", "--env-file", os.devnull,
             "--status-interval", "3600"],
            stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        rig.symbols = ["BTC/USDT", "ETH/USDT"]

        def quoting() -> bool:
            return all(len(rig.open_orders(s)) == 20 for s in rig.symbols)

        _wait(quoting, 60, "both demo markets quoted")
        lists = [rig.http.get(f"http://127.0.0.1:{port + i}/api/v1/strategy/list").json()["data"] for i in (0, 1)]
        assert sorted(len(rows) for rows in lists) == [1, 1]  # each worker runs its share, one market
        assert {rows[0]["symbol"] for rows in lists} == set(rig.symbols)
        worker1 = int(re.findall(r"worker 1 started \(pid (\d+)\)", log_path.read_text())[-1])
        theirs = lists[1][0]["symbol"]
        orphans = set(rig.open_orders(theirs))
        os.kill(worker1, signal.SIGKILL)
        _wait(lambda: len(re.findall(r"worker 1 started", log_path.read_text())) == 2, 15, "worker 1 restarted")
        _wait(lambda: len(rig.open_orders(theirs)) == 20 and not orphans & set(rig.open_orders(theirs)), 60,
              "the restarted worker quotes, the dead one's orders cancelled")
        assert "worker 1 (pid" in log_path.read_text() and "killed by SIGKILL" in log_path.read_text()
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(60) == 0, log_path.read_text()[-3000:]
        assert all(rig.open_orders(s) == [] for s in rig.symbols)
        assert "every worker stopped cleanly" in log_path.read_text()
    finally:
        if "supervisor" in locals() and supervisor.poll() is None:
            supervisor.kill()
        rig.close()


def test_a_joining_instance_gets_its_share_without_flapping_and_a_leaving_one_hands_over_at_once(
    rig_factory: object,
) -> None:
    rig = rig_factory(6)
    a, b = rig.spawn("a"), rig.spawn("b")
    a.wait_ready()
    b.wait_ready()
    rig.watch(_balanced_over({a.member, b.member}, 6), 60, "6 markets shared out 3/3")
    before = {s: next(iter(t)) for s, t in rig.sample().items()}
    c = rig.spawn("c")
    c.wait_ready()
    rig.watch(_balanced_over({a.member, b.member, c.member}, 6), 30, "6 markets shared out 2/2/2")
    rig.hold(3 * TTL)  # settled: nothing moves any more
    after = {s: next(iter(t)) for s, t in rig.sample().items()}
    moved = sum(1 for s in rig.symbols if before[s] != after[s])
    assert moved == 2  # one market from each of a and b to c, and no other move (no flapping)
    owners_seen = collections.defaultdict(list)
    for _, owners in rig.history:
        for symbol, tags in owners.items():
            if tags and (not owners_seen[symbol] or owners_seen[symbol][-1] != next(iter(tags))):
                owners_seen[symbol].append(next(iter(tags)))
    assert all(len(seen) <= 2 for seen in owners_seen.values()), owners_seen
    # an orderly stop releases the leases: the others take the markets over in a round or two, not a TTL
    assert rig.stop(c) == 0
    took = rig.watch(_balanced_over({a.member, b.member}, 6), TTL, "c's markets taken over")
    assert took < TTL
    assert rig.violations == [], rig.violations
    for proc in (a, b):
        assert rig.stop(proc) == 0
    assert all(rig.open_orders(s) == [] for s in rig.symbols)


def test_workers_that_cannot_start_make_the_supervisor_give_up(tmp_path: Path) -> None:
    """Workers that die within seconds of their start again and again (here: their API ports are taken) are not
    restarted for ever: once every worker is failing, the supervisor stops and exits 1."""
    port = _free_port()
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", port))
        first.listen()
        second.bind(("127.0.0.1", port + 1))
        second.listen()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MMFRAME_", "API_PORT", "MATCH_ENGINE"))}
        env["API_PORT"] = str(port)
        result = subprocess.run(
            [sys.executable, "-m", "mmframe", "serve", "--demo", "--workers", "2", "--env-file", os.devnull],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "every worker keeps dying" in result.stderr
    assert "died 5 times in a row" in result.stderr  # the first to fail five times waited for the other


def test_an_instance_that_can_run_no_market_leaves_none_dark(rig_factory: object, tmp_path: Path) -> None:
    """An instance whose store gives it no market (a wrong database, a missing plugin in a rolling upgrade) joins
    the cluster: it does not count in the shares, so no market goes dark."""
    rig = rig_factory(12)
    a, b = rig.spawn("a"), rig.spawn("b")
    a.wait_ready()
    b.wait_ready()
    rig.watch(_balanced_over({a.member, b.member}, 12), 60, "12 markets shared out 6/6")
    empty = tmp_path / "empty.sqlite"
    write_store(empty, 0)
    c = rig.spawn("c", db=empty)
    c.wait_ready()
    joined = len(rig.history)
    rig.hold(4 * TTL / 6 * 3)  # a few rounds with c in the cluster
    assert _longest_dark(rig.history[joined:]) < 1.0  # (a requote may empty a book for a moment)
    view = rig.cluster_view(a)
    assert c.member in view["instances"] and view["instances"][c.member]["runnable"] == 0
    assert rig.violations == [], rig.violations


def test_a_market_only_some_instances_can_run_is_not_handed_back_and_forth(
    rig_factory: object, tmp_path: Path
) -> None:
    """b (a rolling upgrade: a feed plugin it lacks) can run S0 alone of the four markets: a keeps the three only it
    can run, gives S0 up at most once, and no market goes dark once settled."""
    rig = rig_factory(4)
    a = rig.spawn("a")
    a.wait_ready()
    rig.watch(lambda owners: all(len(t) == 1 for t in owners.values()), 60, "a quotes all four")
    partial = tmp_path / "partial.sqlite"
    write_store(partial, 4)
    store = Store.sqlite(partial)
    try:
        for i in (1, 2, 3):
            options = {"feed": "a-feed-b-lacks", "risk": {"max_order_quantity": "20", "price_band": "0.05"}}
            store.save_market(200_000 + i, 1, MarketDescription(f"S{i}/USDT", "0.01", 4, 2, "0.01", options=options))
    finally:
        store.close()
    b = rig.spawn("b", db=partial)
    b.wait_ready()
    rig.hold(4 * TTL)  # settle: S0 may move to b
    settled = len(rig.history)
    rig.hold(5 * TTL)  # about 30 rounds
    assert a.log().count("giving S") <= 1, a.log()[-3000:]
    assert _longest_dark(rig.history[settled:]) < 1.0  # (a requote may empty a book for a moment)
    assert rig.violations == [], rig.violations
