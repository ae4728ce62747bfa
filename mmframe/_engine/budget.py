"""A market's message budget (``max_messages_per_second``): at most so many cancels, amends and places in any one
second, and when a step wants more, the levels nearest the touch first.

An exchange bans a market maker whose requote churn breaks its rate limit; going dark instead is no better. A
market with a budget sends what fits now, in the order of :func:`ranked` — nearest the touch first, an order left on
the wrong side of a moved index before anything — and leaves the far levels for the next steps: the market wakes
again as soon as the window has room, decides again, and sends the next share. An action the risk gate refuses
(deferred or vetoed) costs nothing, so the budget goes on down the ranking: a refused order never keeps the ones
behind it from going out. Messages are counted when the market hands them to the sink. The status shows how far
behind the market is (``messages_held``, ``behind_seconds``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from .._models import Quote, Side
from .reconcile import Plan

__all__ = ["Action", "MessageBudget", "ranked"]

#: The window the budget counts over, in seconds.
WINDOW = 1.0


class MessageBudget:
    """At most *rate* messages in any window of :data:`WINDOW` seconds (a sliding window: a message sent at *t*
    counts until *t* + 1)."""

    __slots__ = ("_sent", "rate")

    def __init__(self, rate: int) -> None:
        if rate < 1:
            raise ValueError(f"max_messages_per_second must be at least 1, got {rate}")
        self.rate = rate
        self._sent: deque[tuple[float, int]] = deque()  # (sent at, how many), oldest first

    def _expire(self, now: float) -> None:
        sent = self._sent
        while sent and sent[0][0] + WINDOW <= now:
            sent.popleft()

    def room(self, now: float) -> int:
        """How many messages may go out now."""
        self._expire(now)
        return max(0, self.rate - sum(n for _, n in self._sent))

    def spend(self, now: float, messages: int) -> None:
        if messages > 0:
            self._sent.append((now, messages))

    def next_room_at(self, now: float) -> float:
        """When the window next has room (*now* if it has some already)."""
        if self.room(now) > 0 or not self._sent:
            return now
        return self._sent[0][0] + WINDOW


#: An action of one step: ("own_cancel", client id), ("immediate", (client id, quote)), ("cancel", order),
#: ("amend", (order, quote)) or ("place", quote).
Action = tuple[str, Any]


def ranked(
    plan: Plan,
    cancel_requests: Sequence[str],
    immediate: Sequence[tuple[str, Quote]],
    reference: Decimal | None,
) -> list[Action]:
    """Every action of one step in the order the budget spends on them: the strategy's own cancels first (they take
    risk off), then the plan's cancels, amends and places nearest the touch first — by how far each price is
    behind the index on its side, so that an order left on the wrong side of a moved index (a bid above it) is the
    first to go — and last the strategy's immediate orders (an opportunity, never worth the desired book going stale).
    At the same distance a cancel goes before an amend, and an amend before a place."""
    actions: list[Action] = [("own_cancel", coid) for coid in cancel_requests]
    keyed: list[tuple[Decimal, int, int, Action]] = []
    n = 0
    for order in plan.cancels:
        keyed.append((_behind(order.price, order.side, reference), 0, n, ("cancel", order)))
        n += 1
    for order, quote in plan.amends:
        near = min(_behind(order.price, order.side, reference), _behind(quote.price, quote.side, reference))
        keyed.append((near, 1, n, ("amend", (order, quote))))
        n += 1
    for quote in plan.places:
        keyed.append((_behind(quote.price, quote.side, reference), 2, n, ("place", quote)))
        n += 1
    keyed.sort(key=lambda item: item[:3])
    actions += [item[3] for item in keyed]
    actions += [("immediate", pair) for pair in immediate]
    return actions


def _behind(price: Decimal | None, side: Side, reference: Decimal | None) -> Decimal:
    """How far *price* is behind the touch on *side*: below the index for a bid, above it for an ask (negative when
    it is through the index: the most urgent). Without an index, the best price of each side first."""
    if price is None:
        return Decimal(0)
    if reference is None:
        return -price if side is Side.BUY else price
    return reference - price if side is Side.BUY else price - reference
