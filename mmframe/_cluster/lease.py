"""Leases in Redis: the only way an instance may own a market (issue 16).

A market is owned through one key, ``{prefix}lease:{market}``, whose value is ``"{instance}:{fence}"`` and which
expires after the lease's time to live. The three operations are Lua scripts, each atomic in Redis:

- **claim**: ``SET NX PX`` the key; only if that succeeded, take the next *fencing number* from ``INCR
  {prefix}fence:{market}`` and write it into the value. The fence only ever grows, so a later owner always holds a
  larger one than any earlier owner: whatever an owner sends can carry it, and whoever sees two can tell the
  newer.
- **renew**: compare the value with ours and, only if it is still ours, ``PEXPIRE`` it again.
- **release**: compare and, only if ours, ``DEL``.

**Safety before liveness.** A :class:`Lease` carries ``valid_until``: the local monotonic time (trio's clock) at
which the owner must already have stopped sending. It is counted from *before* the request that claimed or renewed
the lease was sent, so Redis can only expire the key later than the owner believes, never earlier, and a
``margin`` is taken off for what an order sent just before that moment may still need to land (request timeouts,
clock-rate differences). An owner that cannot renew in time stops sending at ``valid_until`` and cancels its
orders; a process that was paused past ``valid_until`` sees that as soon as it runs again and re-checks the key
(:meth:`LeaseClient.check`) before it sends anything.

Instances announce themselves with a heartbeat: an entry in the sorted set ``{prefix}instances`` whose score is
when it expires (Redis's own clock, one time to live ahead), and what they announce in the hash
``{prefix}instance-info``. :meth:`LeaseClient.instances` lists those alive (and forgets the expired ones) without
scanning the keyspace; :func:`fair_share` says how many markets one may hold.

redis-py is synchronous: every call runs in a worker thread (one at a time for this client), and a lost or
refused connection raises at once (no built-in retries; :data:`mmframe._bus.link.BRIDGE_ERRORS`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from .._bus.link import make_client
from .._settings import RedisSettings

__all__ = ["Lease", "LeaseClient", "fair_share"]

_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1] .. ':?', 'NX', 'PX', ARGV[2]) then
    local fence = redis.call('INCR', KEYS[2])
    redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'XX', 'PX', ARGV[2])
    return fence
end
return false
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RENEW_MANY = """
local out = {}
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[i + 1] then
        out[i] = redis.call('PEXPIRE', key, ARGV[1])
    else
        out[i] = 0
    end
end
return out
"""

# Heartbeats: a sorted set of instance -> expiry (Redis's own clock, ms) and a hash of what each announced. No key
# per instance, so listing the instances never scans the keyspace (a shared Redis may hold millions of keys).
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return now
"""

_INSTANCES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #gone > 0 then
    redis.call('ZREM', KEYS[1], unpack(gone))
    redis.call('HDEL', KEYS[2], unpack(gone))
end
local alive = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
if #alive == 0 then
    return {}
end
local info = redis.call('HMGET', KEYS[2], unpack(alive))
local out = {}
for i, name in ipairs(alive) do
    out[#out + 1] = name
    out[#out + 1] = info[i] or '{}'
end
return out
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@attrs.frozen
class Lease:
    """One instance's ownership of one market, as granted (or last renewed) by Redis.

    :param valid_until: trio-clock time by which the owner must have stopped sending for the market (see the
        module documentation): the claim's or renewal's send time, plus the time to live, minus the margin.
    """

    market: str
    owner: str
    fence: int
    valid_until: float

    @property
    def value(self) -> str:
        """The lease key's value while this lease holds."""
        return f"{self.owner}:{self.fence}"

    def valid(self, now: float | None = None) -> bool:
        """Whether the owner may still send for the market at *now* (default: the trio clock)."""
        return (trio.current_time() if now is None else now) < self.valid_until


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a positive number of seconds, got {value!r}")


@attrs.define
class LeaseClient:
    """Claims, renews, checks and releases leases, and keeps an instance's heartbeat, in one Redis.

    :param address: the coordinating Redis.
    :param cluster: the cluster's name: instances of one cluster share markets, another cluster's keys are apart.
    :param ttl: a lease's (and a heartbeat's) time to live in Redis, seconds.
    :param margin: taken off the time to live for what may still be in flight when the owner stops (must leave
        at least half of ``ttl``).
    :param timeout: a Redis request's connect and read timeout; must be well under ``ttl - margin``.
    """

    address: RedisSettings
    cluster: str = "default"
    ttl: float = attrs.field(default=10.0, validator=_positive)
    margin: float = attrs.field(default=3.0, validator=_positive)
    timeout: float = attrs.field(default=1.0, validator=_positive)
    _client: Any = attrs.field(init=False, default=None)
    _limiter: trio.CapacityLimiter = attrs.field(init=False, factory=lambda: trio.CapacityLimiter(1))
    _scripts: dict[str, Any] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.margin * 2 > self.ttl:
            raise ValueError(f"margin ({self.margin}) must leave at least half of ttl ({self.ttl})")
        if self.timeout >= self.ttl - self.margin:
            raise ValueError(f"timeout ({self.timeout}) must be under ttl - margin ({self.ttl - self.margin})")
        if not self.cluster or any(c in self.cluster for c in " :*?[]"):
            raise ValueError(f"cluster must be a plain name, got {self.cluster!r}")

    @property
    def prefix(self) -> str:
        return f"mmframe:cluster:{self.cluster}:"

    def lease_key(self, market: str) -> str:
        return f"{self.prefix}lease:{market}"

    def fence_key(self, market: str) -> str:
        return f"{self.prefix}fence:{market}"

    # ---- leases ---------------------------------------------------------------------------------------------

    async def claim(self, market: str, owner: str) -> Lease | None:
        """Take *market* if nobody holds it: the new :class:`Lease`, or ``None`` if another instance (or this one,
        under an older fence) holds it."""
        _check_name("owner", owner)
        sent = trio.current_time()
        fence = await self._run(_CLAIM, [self.lease_key(market), self.fence_key(market)], [owner, self._ttl_ms])
        if fence is None:
            return None
        return Lease(market, owner, int(fence), self._valid_until(sent))

    async def renew(self, lease: Lease) -> Lease | None:
        """Extend *lease* if it still holds in Redis: the renewed lease, or ``None`` if it was lost (expired, and
        perhaps claimed by another instance since)."""
        sent = trio.current_time()
        renewed = await self._run(_RENEW, [self.lease_key(lease.market)], [lease.value, self._ttl_ms])
        if not renewed:
            return None
        return attrs.evolve(lease, valid_until=self._valid_until(sent))

    async def renew_many(self, leases: list[Lease]) -> list[Lease | None]:
        """:meth:`renew` for many leases in one request (one script, atomic): each renewed lease, or ``None`` where
        it was lost."""
        if not leases:
            return []
        sent = trio.current_time()
        keys = [self.lease_key(lease.market) for lease in leases]
        renewed = await self._run(_RENEW_MANY, keys, [self._ttl_ms, *(lease.value for lease in leases)])
        until = self._valid_until(sent)
        return [attrs.evolve(lease, valid_until=until) if ok else None
                for lease, ok in zip(leases, renewed, strict=True)]

    async def check(self, lease: Lease) -> bool:
        """Whether *lease* still holds in Redis and locally: what a process that may have been paused asks before it
        sends anything."""
        if not lease.valid():
            return False
        value = await self._call(lambda client: client.get(self.lease_key(lease.market)))
        return value is not None and value.decode() == lease.value and lease.valid()

    async def release(self, lease: Lease) -> bool:
        """Give *lease* up (an orderly stop, after the market's orders are cancelled); ``False`` if it was no longer
        ours."""
        return bool(await self._run(_RELEASE, [self.lease_key(lease.market)], [lease.value]))

    async def holder(self, market: str) -> tuple[str, int] | None:
        """Who holds *market* now, and under which fence; ``None`` if nobody does."""
        value = await self._call(lambda client: client.get(self.lease_key(market)))
        if value is None:
            return None
        owner, _, fence = value.decode().rpartition(":")
        return (owner, int(fence)) if fence.isdigit() else None

    async def holders(self, markets: list[str]) -> dict[str, tuple[str, int]]:
        """Who holds each of *markets* now (one request): market -> (owner, fence), for those held."""
        if not markets:
            return {}
        values = await self._call(lambda client: client.mget([self.lease_key(m) for m in markets]))
        out: dict[str, tuple[str, int]] = {}
        for market, value in zip(markets, values, strict=True):
            if value is not None:
                owner, _, fence = value.decode().rpartition(":")
                if fence.isdigit():
                    out[market] = (owner, int(fence))
        return out

    # ---- the cluster's wishes: which markets run, which reload ----------------------------------------------

    async def wishes(self) -> tuple[dict[str, str], dict[str, int], dict[str, dict[str, Any]]]:
        """What the operators asked of the cluster (one request): market -> ``"run"`` or ``"stop"`` (markets
        absent follow the database's ``market_status``); market -> the reload generation asked for; market -> the
        last reload an owner did (``{"generation", "error", "owner"}``)."""

        def read(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(self.prefix + "desired")
            pipe.hgetall(self.prefix + "reload")
            pipe.hgetall(self.prefix + "reloaded")
            return list(pipe.execute())

        desired, reload, reloaded = await self._call(read)
        return _strings(desired), _generations(reload), _reload_reports(reloaded)

    async def wish(self, markets: list[str], state: str) -> None:
        """Ask the cluster to run (``"run"``) or stop (``"stop"``) *markets*."""
        if state not in ("run", "stop"):
            raise ValueError(f"state must be 'run' or 'stop', got {state!r}")
        if markets:
            await self._call(lambda client: client.hset(self.prefix + "desired", mapping=dict.fromkeys(markets, state)))

    async def ask_reload(self, market: str) -> int:
        """Ask *market*'s owner to reload it: the generation to wait for in :meth:`wishes`' third mapping."""
        return int(await self._call(lambda client: client.hincrby(self.prefix + "reload", market, 1)))

    async def reloaded(self, market: str, generation: int, owner: str, error: str = "") -> None:
        """An owner says it has reloaded *market* for *generation* (or why it refused to)."""
        value = json.dumps({"generation": generation, "error": error, "owner": owner})
        await self._call(lambda client: client.hset(self.prefix + "reloaded", market, value))

    # ---- instances ------------------------------------------------------------------------------------------

    async def heartbeat(self, instance: str, info: Mapping[str, Any] | None = None) -> None:
        """Announce *instance* as alive for one time to live (call it at least twice per ``ttl``)."""
        _check_name("instance", instance)
        payload = json.dumps(dict(info or {}), sort_keys=True)
        await self._run(_HEARTBEAT, self._instance_keys, [instance, payload, self._ttl_ms])

    async def leave(self, instance: str) -> None:
        """Remove *instance*'s heartbeat (an orderly stop): the others share its markets out at once."""

        def leave(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.zrem(self._instance_keys[0], instance)
            pipe.hdel(self._instance_keys[1], instance)
            pipe.execute()

        await self._call(leave)

    async def instances(self) -> dict[str, dict[str, Any]]:
        """The instances alive now (their heartbeat has not expired), with what each announced; those expired are
        forgotten on the way."""
        flat = await self._run(_INSTANCES, self._instance_keys, [])
        return {flat[i].decode(errors="replace"): _json_object(flat[i + 1]) for i in range(0, len(flat), 2)}

    @property
    def _instance_keys(self) -> list[str]:
        return [f"{self.prefix}instances", f"{self.prefix}instance-info"]

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await trio.to_thread.run_sync(client.close, limiter=self._limiter)

    # ---- internals ------------------------------------------------------------------------------------------

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    def _valid_until(self, sent: float) -> float:
        return sent + self.ttl - self.margin

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        def run(client: Any) -> Any:
            registered = self._scripts.get(script)
            if registered is None:
                registered = self._scripts[script] = client.register_script(script)
            return registered(keys=keys, args=args, client=client)

        return await self._call(run)

    async def _call(self, operation: Any) -> Any:
        def call() -> Any:
            if self._client is None:
                self._client = make_client(self.address, timeout=self.timeout)
            return operation(self._client)

        return await trio.to_thread.run_sync(call, limiter=self._limiter, abandon_on_cancel=True)


# What other instances (perhaps of another version) wrote is read entry by entry: one bad entry is skipped, never a
# reason for a round to fail.


def _strings(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}


def _generations(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    out = {}
    for key, value in raw.items():
        try:
            out[key.decode(errors="replace")] = int(value)
        except ValueError:
            continue
    return out


def _reload_reports(raw: Mapping[bytes, bytes]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, value in raw.items():
        report = _json_object(value)
        try:
            report["generation"] = int(report.get("generation", 0))
        except (TypeError, ValueError):
            continue
        out[key.decode(errors="replace")] = report
    return out


def _json_object(value: bytes | None) -> dict[str, Any]:
    try:
        data = json.loads(value) if value is not None else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _check_name(what: str, name: str) -> None:
    if not name or ":" in name or any(c.isspace() for c in name):
        raise ValueError(f"{what} must be a non-empty name without ':' or spaces, got {name!r}")


def fair_share(markets: int, instances: int) -> int:
    """The most markets one of *instances* live instances may hold while the others have room: the markets
    divided evenly, rounded up (every market has a place, and no instance holds two more than another)."""
    if markets < 0 or instances < 0:
        raise ValueError("markets and instances must not be negative")
    return 0 if markets == 0 else math.ceil(markets / max(instances, 1))
