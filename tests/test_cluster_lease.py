"""Leases in Redis (issue 16's foundation), against the machine's real Redis: each test in a cluster of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import trio

from mmframe._cluster import Lease, LeaseClient, fair_share
from mmframe._settings import RedisSettings


@pytest.fixture
async def leases(redis_address: RedisSettings) -> AsyncIterator[LeaseClient]:
    client = LeaseClient(redis_address, cluster=f"t{uuid.uuid4().hex[:12]}", ttl=0.6, margin=0.2, timeout=0.3)
    try:
        yield client
    finally:
        def clean(redis_client: object) -> None:
            for key in redis_client.scan_iter(match=f"{client.prefix}*"):  # type: ignore[attr-defined]
                redis_client.delete(key)  # type: ignore[attr-defined]

        await client._call(clean)
        await client.aclose()


async def test_a_market_is_held_by_one_claimant_at_a_time_with_a_growing_fence(leases: LeaseClient) -> None:
    first = await leases.claim("9001_1", "a")
    assert first is not None and first.owner == "a" and first.fence == 1
    assert await leases.claim("9001_1", "b") is None
    assert await leases.claim("9001_1", "a") is None  # not even its own owner twice
    assert await leases.holder("9001_1") == ("a", 1)
    assert await leases.release(first)
    second = await leases.claim("9001_1", "b")
    assert second is not None and second.fence == 2  # a later owner always holds a larger fence
    assert not await leases.release(first)  # the old lease cannot release the new owner's
    assert await leases.holder("9001_1") == ("b", 2)
    other = await leases.claim("9002_1", "a")  # each market its own lease and fence
    assert other is not None and other.fence == 1


async def test_an_expired_lease_cannot_be_renewed_once_another_instance_took_it(leases: LeaseClient) -> None:
    mine = await leases.claim("9001_1", "a")
    assert mine is not None
    renewed = await leases.renew(mine)
    assert renewed is not None and renewed.valid_until >= mine.valid_until
    await trio.sleep(0.7)  # Redis's own expiry (PX), in real time: past the time to live
    assert await leases.holder("9001_1") is None
    theirs = await leases.claim("9001_1", "b")
    assert theirs is not None and theirs.fence == 2
    assert await leases.renew(mine) is None
    assert not await leases.check(mine)
    assert await leases.check(theirs)


async def test_the_owner_must_stop_before_redis_can_expire_the_lease(leases: LeaseClient) -> None:
    before = trio.current_time()
    lease = await leases.claim("9001_1", "a")
    after = trio.current_time()
    assert lease is not None
    # Counted from before the request was sent, less the margin: never later than Redis's expiry.
    assert before + leases.ttl - leases.margin <= lease.valid_until <= after + leases.ttl - leases.margin
    assert lease.valid(lease.valid_until - 0.001) and not lease.valid(lease.valid_until)
    await trio.sleep_until(lease.valid_until)
    assert not lease.valid()
    assert not await leases.check(lease)  # a paused owner re-checks before sending: refused locally
    assert await leases.holder("9001_1") == ("a", 1)  # while Redis still holds it for a while (the margin)


async def test_instances_announce_themselves_and_vanish_when_they_stop_beating(leases: LeaseClient) -> None:
    await leases.heartbeat("a", {"markets": 3})
    await leases.heartbeat("b")
    assert await leases.instances() == {"a": {"markets": 3}, "b": {}}
    await leases.leave("b")
    assert set(await leases.instances()) == {"a"}
    await trio.sleep(0.7)
    assert await leases.instances() == {}


async def test_a_redis_that_is_away_raises_at_once_and_grants_nothing() -> None:
    from mmframe._bus.link import BRIDGE_ERRORS

    nowhere = LeaseClient(RedisSettings(host="127.0.0.1", port=1), ttl=3, margin=1, timeout=0.2)
    with trio.fail_after(2), pytest.raises(BRIDGE_ERRORS):
        await nowhere.claim("9001_1", "a")
    await nowhere.aclose()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl": 1.0, "margin": 0.6}, "at least half"),
        ({"ttl": 1.0, "margin": 0.2, "timeout": 0.9}, "timeout"),
        ({"ttl": float("nan")}, "positive"),
        ({"cluster": "a b"}, "plain name"),
    ],
)
def test_unsafe_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LeaseClient(RedisSettings(), **kwargs)  # type: ignore[arg-type]


async def test_names_with_the_separator_are_refused(leases: LeaseClient) -> None:
    with pytest.raises(ValueError, match="owner"):
        await leases.claim("9001_1", "a:1")


def test_fair_share_spreads_markets_evenly() -> None:
    assert [fair_share(30, n) for n in (1, 2, 3, 4, 7)] == [30, 15, 10, 8, 5]
    assert fair_share(0, 3) == 0 and fair_share(5, 0) == 5
    with pytest.raises(ValueError):
        fair_share(-1, 2)


def test_a_lease_says_its_key_value() -> None:
    assert Lease("9001_1", "a", 7, 0.0).value == "a:7"


async def test_renew_many_renews_ours_and_reports_each_one_lost(leases: LeaseClient) -> None:
    a = await leases.claim("A1", "a")
    b = await leases.claim("B1", "a")
    assert a is not None and b is not None
    assert await leases.release(b)
    c = await leases.claim("B1", "z")  # someone else holds B1 now
    assert c is not None
    before = trio.current_time()
    renewed = await leases.renew_many([a, b])
    assert renewed[1] is None  # lost
    assert renewed[0] is not None and renewed[0].fence == a.fence and renewed[0].valid_until >= before
    assert await leases.renew_many([]) == []
    assert await leases.holders(["A1", "B1", "C1"]) == {"A1": ("a", a.fence), "B1": ("z", c.fence)}
    assert await leases.holders([]) == {}


async def test_wishes_and_reloads_round_trip(leases: LeaseClient) -> None:
    assert await leases.wishes() == ({}, {}, {})
    await leases.wish(["A1", "B1"], "stop")
    await leases.wish(["B1"], "run")
    assert await leases.ask_reload("A1") == 1
    assert await leases.ask_reload("A1") == 2
    await leases.reloaded("A1", 2, "m1", "")
    desired, asked, done = await leases.wishes()
    assert desired == {"A1": "stop", "B1": "run"}
    assert asked == {"A1": 2}
    assert done == {"A1": {"generation": 2, "error": "", "owner": "m1"}}
    with pytest.raises(ValueError, match="'run' or 'stop'"):
        await leases.wish(["A1"], "pause")
