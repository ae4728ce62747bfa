"""One instance's part in a cluster (issue 16): it runs a market only while it holds the market's lease in Redis.

Every ``round`` (a sixth of the lease's time to live) the instance

1. writes its heartbeat (host, pid, API address, the markets it owns and their states) and reads who is alive, who
   holds which lease, and what the operators asked (markets to run or stop, reloads);
2. renews every lease it holds, in one request; a lease Redis no longer holds for us is *lost*: the market stops at
   once and sends nothing more (whoever holds it now cancels what we left);
3. gives up the markets the operators stopped, and its excess over the fair share (stopping each, its orders
   cancelled, before releasing the lease);
4. claims free markets up to its share, and starts each: the market's start cancels whatever an earlier owner left
   under the market's client-id prefix before it quotes.

**Safety before liveness.** A market may send only while its lease is valid by the local clock
(:meth:`Cluster.gate`, checked by the market before anything it sends): a lease's ``valid_until`` is counted from
before the request that renewed it and keeps a margin of at least the sink's request timeout before Redis can let
it go. A watchdog stops a market whose lease was not renewed a margin before that (so its cancels still go out),
however long Redis takes to answer; a process paused past ``valid_until`` finds the gate closed when it wakes and
sends nothing before a round has re-checked the lease with Redis. While Redis cannot be reached no lease is renewed
and every market stops in time; after Redis comes back the instance waits one round to see the others before it
claims again, so the markets are shared out, not grabbed by the first to reconnect.

**Shares without flapping.** With ``N`` instances alive and ``M`` markets to run, an instance holds at most
``ceil(M / N)``; it claims below ``floor(M / N)`` at once and above it only a market nobody took for a whole round
(those below the floor have first pick); it gives one market up per round when it holds more than the floor while
another holds less. Counts settle within one of each other.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._bus.link import BRIDGE_ERRORS
from .._cluster.lease import Lease, LeaseClient
from .._engine.spec import MarketSpec, MarketState, MarketStatus
from .._errors import MMFrameError
from .._settings import RedisSettings
from .._symbols import compact_symbol

if TYPE_CHECKING:
    from .service import MarketRecord, Service

__all__ = ["Cluster", "ClusterOptions", "ClusterUnavailable", "market_name", "new_member"]

log = logging.getLogger("mmframe.cluster")

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


#: Rounds a wanted market must stay free before an instance claims it over its share.
OVERFLOW_ROUNDS = 3
#: A market claimed over the share is not given up again for this many lease times to live.
KEEP_OVERDUE = 10


def _names(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _runnable(info: dict[str, Any]) -> int:
    """How many markets an instance announced it can run (an older announcement without it: some)."""
    try:
        return int(info.get("runnable", 1))
    except (TypeError, ValueError):
        return 0


class ClusterUnavailable(MMFrameError):
    """The cluster's Redis cannot be reached: a command that must go through it cannot be carried out now (the API
    answers 503)."""


def new_member() -> str:
    """A fresh member id: six random base-36 digits (a restarted process is a new member)."""
    return "".join(random.SystemRandom().choice(_DIGITS) for _ in range(6))


def market_name(spec: MarketSpec) -> str:
    """A market's name in the cluster, the middle of its client-id prefix: ``BTCUSDT1``."""
    return f"{compact_symbol(spec.market.symbol)}{int(spec.market.market_type)}"


def record_name(record: MarketRecord) -> str:
    """The cluster's name of a configured market, also of one whose configuration does not load here (another
    instance may run it)."""
    if record.spec is not None:
        return market_name(record.spec)
    return f"{compact_symbol(record.symbol)}{int(record.row.market_type)}"


@attrs.frozen
class ClusterOptions:
    """How an instance takes part in a cluster.

    :param redis: the coordinating Redis.
    :param name: the cluster's name (instances of one cluster share its markets).
    :param ttl: a lease's time to live in Redis: a dead instance's markets run elsewhere about this long after it
        died (plus a round and a start).
    :param request_timeout: how long a request the sink sent may take to land (the sink's
        :class:`~mmframe.protocols.BoundsRequestTime`); the lease's margin is at least this.
    :param member: this instance's id in the cluster (in its client order ids, its heartbeat and its leases).
    """

    redis: RedisSettings
    name: str = "default"
    ttl: float = 10.0
    request_timeout: float = 0.0
    member: str = attrs.field(factory=new_member)

    @property
    def margin(self) -> float:
        """What is kept between the moment an owner stops sending and the earliest Redis may let its lease go."""
        return max(self.ttl / 4, self.request_timeout)

    @property
    def interval(self) -> float:
        """Seconds between rounds (renewals, heartbeats, claims)."""
        return self.ttl / 6

    def check(self) -> None:
        # A lease is valid for ttl - margin after its renewal was sent, and its market is stopped a margin before
        # that: ttl - 2 * margin must leave two rounds, or one slow renewal stops markets that are fine.
        if self.margin * 3 > self.ttl:
            raise MMFrameError(
                f"the cluster's lease time to live ({self.ttl:g}s) is too short for the sink's request timeout "
                f"({self.request_timeout:g}s): it must be at least three times that. Raise MMFRAME_LEASE_TTL or "
                "lower the sink's timeout"
            )


class Cluster:
    """Leases, heartbeat, shares and the operators' wishes for one instance of a :class:`Service`."""

    def __init__(self, service: Service, options: ClusterOptions) -> None:
        options.check()
        self.service = service
        self.options = options
        self.member = options.member
        self.client = LeaseClient(
            options.redis, options.name, ttl=options.ttl, margin=options.margin,
            timeout=min(1.0, options.interval / 2),
        )
        self.interval = options.interval
        #: The leases this instance holds, by market name: the gate opens on these alone.
        self.leases: dict[str, Lease] = {}
        #: What the last round read: who is alive, who holds what, what the operators asked.
        self.instances: dict[str, dict[str, Any]] = {}
        self.holders: dict[str, tuple[str, int]] = {}
        self.desired: dict[str, str] = {}
        self.reload_asked: dict[str, int] = {}
        self.reload_done: dict[str, dict[str, Any]] = {}
        self.connected = False
        self.last_contact: float | None = None  # trio time of the last round that reached Redis
        self.rounds = 0
        #: Set once the first claims were made (or tried): the service's start-up is over then.
        self.ready = trio.Event()
        self.closing = False
        self._settled = False  # one full round seen since (re)connecting: the others are known, claims may start
        # Jobs under way per market: any (taking, giving up, stopping after a lost lease, reloading), and those that
        # are leaving it (giving up, stopping after a lost lease). Counted: two jobs on one market end apart.
        self._busy: Counter[str] = Counter()
        self._leaving: Counter[str] = Counter()
        self._reload_seen: dict[str, int] = {}
        self._free_since: dict[str, float] = {}  # market -> since when it has been wanted and free (trio time)
        self._cooldown: dict[str, float] = {}  # market -> not claimed again before (its start failed here)
        # market -> not given up before: claimed as overdue (nobody else took it), so nobody else may be able to
        # run it, whatever the announcements say
        self._keep_until: dict[str, float] = {}
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()
        self._outage_logged = False
        self.started_wall = time.time()

    # ---- the gate -------------------------------------------------------------------------------------------

    def gate(self, spec: MarketSpec) -> bool:
        """Whether *spec*'s market may send now: this instance holds its lease and the lease is valid locally."""
        lease = self.leases.get(market_name(spec))
        return lease is not None and trio.current_time() < lease.valid_until

    # ---- running --------------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._watch)
                task_status.started()
                while True:
                    try:
                        await self.round()
                    except BRIDGE_ERRORS as exc:
                        self._lost_contact(exc)
                    except Exception as exc:  # a bug, or something unreadable in Redis: no renewal this round
                        log.exception("cluster: a round failed")
                        self._lost_contact(exc)
                    if self.rounds >= 2 or (not self.connected and self.rounds >= 1):
                        self.ready.set()
                    with trio.move_on_after(self.interval):
                        await self._wake.wait()
                    self._wake = trio.Event()
        finally:
            self.ready.set()
            with trio.CancelScope(shield=True):
                await self.client.aclose()

    def wake(self) -> None:
        """Run the next round now (a command is waiting for it)."""
        self._wake.set()

    def _lost_contact(self, exc: BaseException) -> None:
        self.rounds += 1
        if self.connected or not self._outage_logged:
            log.error("cluster: Redis cannot be reached (%s): the markets stop before their leases can expire, and "
                      "resume once it answers", exc)
            self._outage_logged = True
        self.connected = False
        self._settled = False

    async def round(self) -> None:
        """One round: heartbeat, read, renew, give up, claim (see the module documentation)."""
        records = self._records()
        client = self.client
        await client.heartbeat(self.member, self._announcement())
        instances = await client.instances()
        desired, asked, done = await client.wishes()
        holders = await client.holders(sorted(records))
        held = list(self.leases.values())
        renewed = await client.renew_many(held)
        self.rounds += 1
        self.last_contact = trio.current_time()
        if not self.connected:
            if self._outage_logged:
                log.warning("cluster: Redis answers again")
            self.connected = True
            self._outage_logged = False
        self.instances, self.holders = instances, holders
        self.desired, self.reload_asked, self.reload_done = desired, asked, done
        for old, new in zip(held, renewed, strict=True):
            if self.leases.get(old.market) is not old:
                continue  # released or lost meanwhile
            if new is not None:
                self.leases[old.market] = new
            else:
                self._lost(old.market)
        if self.closing:
            return
        wanted = {name for name, record in records.items() if self._wanted(name, record)}
        now = trio.current_time()
        for name in list(self._free_since):
            if name not in wanted or name in holders:
                del self._free_since[name]
        for name in wanted:
            if name not in holders:
                self._free_since.setdefault(name, now)
        for name in list(self.leases):
            if name not in wanted and name not in self._busy:
                self._spawn(self._give_up, name, "stopped by an operator")
            elif asked.get(name, 0) > self._reload_seen.get(name, 0) and name not in self._busy:
                self._spawn(self._reload, name, asked[name])
        if not self._settled:
            self._settled = True  # the first round after (re)connecting: see who is there before claiming
            return
        await self._share(records, wanted, instances, holders)

    def _records(self) -> dict[str, MarketRecord]:
        """Every configured market by its cluster name (those whose configuration does not load here too)."""
        return {record_name(r): r for r in self.service.records.values()}

    def _wanted(self, name: str, record: MarketRecord) -> bool:
        wish = self.desired.get(name)
        return wish == "run" if wish is not None else record.row.market_status == 1

    async def _share(
        self,
        records: dict[str, MarketRecord],
        wanted: set[str],
        instances: dict[str, dict[str, Any]],
        holders: dict[str, tuple[str, int]],
    ) -> None:
        """Give up what is over the share, or claim up to it (see the module documentation).

        Only the instances that can run markets count (an instance whose store or plugins give it none announces
        ``runnable: 0``); a wanted market nobody took for :data:`OVERFLOW_ROUNDS` rounds is claimed by any
        instance that can run it, over its share (liveness: a market only some instances can run, or shares
        counted with an instance that cannot take them, must not stay dark); a market is given up only while
        another instance has room, so such a market is not handed back and forth."""
        runnable = {name for name in wanted if records[name].spec is not None}
        live = {m for m, info in instances.items() if _runnable(info) > 0}
        if runnable:
            live.add(self.member)
        else:
            live.discard(self.member)
        count = len(wanted)
        if not live or not runnable:
            return
        unable = {m: set(_names(instances.get(m, {}).get("unrunnable"))) for m in live}

        def can_run(member: str, name: str) -> bool:
            return name not in unable.get(member, ())

        ceil, floor = math.ceil(count / len(live)), count // len(live)
        now = trio.current_time()
        mine = [name for name in self.leases if name in wanted and name not in self._busy]
        kept = {name for name in mine if self._keep_until.get(name, 0) > now}
        owned = Counter(owner for name, (owner, _) in holders.items() if name in wanted and owner in live)
        owned[self.member] = len(mine)
        others = [i for i in live if i != self.member]
        if len(mine) > ceil:
            # Only what another instance with room can run: a market only we can run stays ours.
            takers = {i: ceil - owned.get(i, 0) for i in others if owned.get(i, 0) < ceil}
            movable = [n for n in mine if n not in kept and any(can_run(i, n) for i in takers)]
            excess = min(len(mine) - ceil, sum(takers.values()), len(movable))
            for name in random.sample(movable, excess):
                self._spawn(self._give_up, name, f"more than the fair share ({ceil} of {count} markets)")
            if excess:
                return
        low = [i for i in others if owned.get(i, 0) < floor]
        if len(mine) > floor and low:
            movable = [n for n in mine if n not in kept and any(can_run(i, n) for i in low)]
            if movable:
                self._spawn(self._give_up, random.choice(movable), "another instance holds less than its share")
                return
        free = [n for n in runnable if n not in holders and n not in self.leases and n not in self._busy
                and self._cooldown.get(n, 0) <= now]
        if len(mine) >= floor:
            # Those below the floor have first pick: above it, only a market free for a whole round.
            free = [n for n in free if now - self._free_since.get(n, now) >= self.interval]
        space = (floor if len(mine) < floor else ceil) - len(mine)
        random.shuffle(free)
        chosen = free[:max(space, 0)]
        if not chosen:
            # Nobody took these for a while (every instance at its share, or only we can run them): ours.
            overdue = [n for n in free if now - self._free_since.get(n, now) >= OVERFLOW_ROUNDS * self.interval]
            chosen = random.sample(overdue, min(len(overdue), 1))
            for name in chosen:
                self._keep_until[name] = now + KEEP_OVERDUE * self.options.ttl
        for name in chosen:
            lease = await self.client.claim(name, self.member)
            if lease is None:
                continue  # another instance was quicker
            self.leases[name] = lease
            self._reload_seen[name] = self.reload_asked.get(name, 0)
            self._spawn(self._take, name)

    def _spawn(self, job: Callable[..., Any], name: str, *args: Any) -> None:
        assert self._nursery is not None
        self._busy[name] += 1
        leaving = job in (self._give_up, self._stop_lost)
        if leaving:
            self._leaving[name] += 1
        self._nursery.start_soon(self._job, job, name, leaving, *args)

    async def _job(self, job: Callable[..., Any], name: str, leaving: bool, *args: Any) -> None:
        try:
            await job(name, *args)
        except MMFrameError as exc:
            log.error("cluster: %s of %s failed: %s", job.__name__.strip("_"), name, exc)
        except Exception:  # a bug in one market's job must not take the instance's other markets down
            log.exception("cluster: %s of %s failed", job.__name__.strip("_"), name)
        finally:
            self._busy[name] -= 1
            if self._busy[name] <= 0:
                del self._busy[name]
            if leaving:
                self._leaving[name] -= 1
                if self._leaving[name] <= 0:
                    del self._leaving[name]

    # ---- taking, giving up, losing ----------------------------------------------------------------------------

    async def _take(self, name: str) -> None:
        record = self._records().get(name)
        if record is None:
            return
        log.info("cluster: %s is ours (fence %d): starting it", name, self.leases[name].fence)
        try:
            error = await self.service.start_owned(record)
        except Exception as exc:  # the store, a feed: this instance cannot start it now; another may
            log.error("cluster: could not start %s (%s): giving it up for %gs", name, exc, self.options.ttl)
            self._cooldown[name] = trio.current_time() + self.options.ttl
            await self._give_up(name, "its start failed here")
            return
        asked = self.reload_asked.get(name, 0)
        if asked > int(self.reload_done.get(name, {}).get("generation", 0)):
            # A reload asked of the previous owner, which never answered: this start read the configuration anew.
            try:
                await self.client.reloaded(name, asked, self.member, error)
            except BRIDGE_ERRORS as exc:
                log.warning("cluster: could not report the reload of %s: %s", name, exc)

    async def _give_up(self, name: str, why: str) -> None:
        """Stop the market (its orders cancelled while the lease still holds), then release the lease."""
        record = self._records().get(name)
        held = self.leases.get(name)
        log.info("cluster: giving %s up (%s)", name, why)
        if record is not None:
            await self.service.stop_owned(record)
            if self.options.request_timeout and self._holds(name, held):
                # An attempt the sink sent just before the stop lands within this: only then may the next owner
                # come (the sink sends nothing more for the market, its gate is closed).
                await trio.sleep(self.options.request_timeout)
            if self._holds(name, held):  # what any earlier owner's late order left, while still under this lease
                await self.service.sweep_owned(record)
        if not self._holds(name, held):
            return  # lost meanwhile, or another lease since (renewed leases are the same lease, renewed)
        lease = self.leases.pop(name, None)
        if lease is not None:
            try:
                await self.client.release(lease)
            except BRIDGE_ERRORS as exc:
                log.warning("cluster: could not release %s (%s); it expires within %ss", name, exc, self.options.ttl)

    def _holds(self, name: str, lease: Lease | None) -> bool:
        """Whether this instance still holds *lease* of *name* (renewed or not), not a later one."""
        current = self.leases.get(name)
        return lease is not None and current is not None and current.fence == lease.fence

    def _lost(self, name: str) -> None:
        """The lease is not ours any more: the gate closes now, and the market stops without sending anything."""
        self.leases.pop(name, None)
        log.warning("cluster: lost the lease of %s: stopping it, sending nothing (its owner now cancels what we "
                    "left)", name)
        if name in self._records() and self._nursery is not None:
            self._spawn(self._stop_lost, name)

    async def _stop_lost(self, name: str) -> None:
        record = self._records().get(name)
        if record is not None:
            await self.service.stop_owned(record)

    async def _reload(self, name: str, generation: int) -> None:
        self._reload_seen[name] = generation
        record = self._records().get(name)
        error = ""
        if record is not None:
            try:
                await self.service.reload_owned(record)
            except MMFrameError as exc:
                error = str(exc)
        try:
            await self.client.reloaded(name, generation, self.member, error)
        except BRIDGE_ERRORS as exc:
            log.warning("cluster: could not report the reload of %s: %s", name, exc)

    async def _watch(self) -> None:
        """Stop every market whose lease was not renewed a margin before it stops being valid, whatever Redis
        does meanwhile: its cancels go out while the lease still holds."""
        margin = self.options.margin
        while True:
            now = trio.current_time()
            due = [name for name, lease in self.leases.items()
                   if lease.valid_until - margin <= now and name not in self._leaving]
            for name in due:
                left = self.leases[name].valid_until - now
                if left > 0:
                    log.error("cluster: the lease of %s was not renewed (%.1fs left): stopping it while it still "
                              "holds", name, left)
                else:  # this process was paused (or starved) past the lease: it may send nothing more
                    log.error("cluster: the lease of %s ran out %.1fs ago without a renewal (was this process "
                              "paused?): stopping it, sending nothing", name, -left)
                self._spawn(self._give_up, name, "its lease could not be renewed")
            soonest = min((lease.valid_until - margin for name, lease in self.leases.items()
                           if name not in self._leaving), default=now + self.interval)
            await trio.sleep_until(max(min(soonest, now + self.interval), now + 0.01))

    # ---- leaving --------------------------------------------------------------------------------------------

    async def leave(self) -> None:
        """An orderly stop, after the service stopped every market: release every lease and the heartbeat, so the
        others take the markets over at once."""
        self.closing = True
        held = len(self.leases)
        with trio.CancelScope(shield=True), trio.move_on_after(max(self.options.margin, 1.0)):
            try:
                for name, lease in list(self.leases.items()):
                    self.leases.pop(name, None)
                    await self.client.release(lease)
                await self.client.leave(self.member)
            except BRIDGE_ERRORS as exc:
                what = f"release our {held} leases" if held else "remove our heartbeat"
                log.warning("cluster: could not %s (%s): it expires within %ss", what, exc, self.options.ttl)
        self.leases.clear()

    # ---- what the API shows -------------------------------------------------------------------------------

    def _announcement(self) -> dict[str, Any]:
        service = self.service
        states = {}
        for name, record in self._records().items():
            if name in self.leases:
                states[name] = service.local_state(record)
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "api": service.api_binds[0] if service.api_binds else None,
            "instance_id": service.settings.instance_id,
            "started": round(self.started_wall, 3),
            "runnable": sum(1 for record in service.records.values() if record.spec is not None),
            # the configured markets that do not load here: the others share them without us
            "unrunnable": sorted(record_name(r) for r in service.records.values() if r.spec is None),
            "markets": states,
        }

    def leaving(self, record: MarketRecord) -> bool:
        """Whether this instance is giving the market up, or stopping it after losing its lease, right now."""
        return record_name(record) in self._leaving

    def busy(self, record: MarketRecord) -> bool:
        """Whether this instance is taking, giving up or reloading the market right now."""
        return record_name(record) in self._busy

    def owner_of(self, record: MarketRecord) -> str | None:
        name = record_name(record)
        if name in self.leases:
            return self.member
        holder = self.holders.get(name)
        return holder[0] if holder is not None else None

    def remote_state(self, record: MarketRecord) -> str:
        """The state of a market another instance owns, as its heartbeat said; ``starting`` for a wanted market
        nobody holds yet, ``stopped`` for one nobody should run."""
        name = record_name(record)
        holder = self.holders.get(name)
        if holder is not None:
            state = self.instances.get(holder[0], {}).get("markets", {}).get(name)
            return str(state) if state else "starting"
        return "starting" if self._wanted(name, record) and self.connected else "stopped"

    def remote_status(self, record: MarketRecord) -> MarketStatus:
        assert record.spec is not None
        spec = record.spec
        try:
            state = MarketState(self.remote_state(record))
        except ValueError:
            state = MarketState.STARTING
        return MarketStatus(market=spec.label, symbol=spec.market.symbol, market_type=int(spec.market.market_type),
                            strategy=spec.strategy, state=state)

    def describe(self) -> dict[str, Any]:
        """``GET /api/v1/cluster``: the instances alive and what each announced, every lease, what was asked."""
        now = trio.current_time()
        return {
            "cluster": self.options.name,
            "member": self.member,
            "connected": self.connected,
            "last_contact_age": None if self.last_contact is None else round(now - self.last_contact, 3),
            "ttl": self.options.ttl,
            "margin": self.options.margin,
            "round": self.interval,
            "instances": {
                member: {k: v for k, v in info.items() if k != "markets"} | {"owned": len(info.get("markets", {}))}
                for member, info in sorted(self.instances.items())
            },
            "leases": {name: {"owner": owner, "fence": fence} for name, (owner, fence) in sorted(self.holders.items())},
            "ours": {name: {"fence": lease.fence, "valid_for": round(lease.valid_until - now, 3)}
                     for name, lease in sorted(self.leases.items())},
            "desired": dict(sorted(self.desired.items())),
        }

    # ---- commands from any instance -------------------------------------------------------------------------

    async def wish(self, records: list[MarketRecord], state: str) -> None:
        names = [record_name(r) for r in records]
        try:
            await self.client.wish(names, state)
        except BRIDGE_ERRORS as exc:
            raise ClusterUnavailable(f"the cluster's Redis cannot be reached ({exc}): nothing was changed") from None
        self.desired.update(dict.fromkeys(names, state))
        self.wake()

    @property
    def command_timeout(self) -> float:
        """How long a command waits for the owner (or the cluster) to have done it: two leases and a start."""
        return self.options.ttl * 2 + 30

    async def wait_for(self, check: Callable[[], bool], seconds: float) -> bool:
        """Wait (rounds woken early) until *check* holds, at most *seconds*; :class:`ClusterUnavailable` as soon as
        a round finds Redis gone (the answer cannot come then)."""
        rounds = self.rounds
        self.wake()  # once: rounds keep their pace, so "free for a round" keeps its meaning
        with trio.move_on_after(seconds):
            while not check():
                if not self.connected and self.rounds > rounds:
                    raise ClusterUnavailable("the cluster's Redis cannot be reached: the owner cannot be told or "
                                             "heard now (the markets stop on their own before their leases end)")
                await trio.sleep(min(0.1, self.interval))
            return True
        return False

    async def ask_reload(self, record: MarketRecord) -> dict[str, Any]:
        name = record_name(record)
        try:
            generation = await self.client.ask_reload(name)
        except BRIDGE_ERRORS as exc:
            raise ClusterUnavailable(f"the cluster's Redis cannot be reached ({exc}): no reload was asked") from None
        self.wake()

        def reloaded() -> bool:
            return int(self.reload_done.get(name, {}).get("generation", 0)) >= generation

        if not await self.wait_for(reloaded, self.command_timeout):
            raise MMFrameError(f"the owner of {record.id} did not report the reload within "
                               f"{self.command_timeout:g}s")
        return dict(self.reload_done[name])
