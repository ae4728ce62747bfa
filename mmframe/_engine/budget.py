"""A market's message budget (``max_messages_per_second``): at most so many cancels, amends and places in any one
second, and when a step wants more, the levels nearest the touch first.

An exchange bans a market maker whose requote churn breaks its rate limit; going dark instead is no better. A
market with a budget sends what fits now, nearest the touch first — the quotes that trade, and the orders that
would trade at a stale price — and leaves the far levels for the next steps: the market wakes again as soon as the
window has room, decides again, and sends the next share. The status shows how far behind it is
(``messages_held``, ``behind_seconds``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from decimal import Decimal

import attrs

from .._models import Order, Quote
from .reconcile import Plan

__all__ = ["MessageBudget", "Share", "share"]

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


@attrs.frozen
class Share:
    """What of one step goes out now (the rest waits for the next steps): the strategy's own cancels and immediate
    orders first, in their order, then the plan's cancels, amends and places nearest the touch first."""

    cancel_requests: tuple[str, ...]
    immediate: tuple[tuple[str, Quote], ...]
    plan: Plan
    held_cancel_requests: tuple[str, ...] = ()
    held_immediate: tuple[tuple[str, Quote], ...] = ()
    held: int = 0  # messages left for later


def share(
    room: int,
    plan: Plan,
    cancel_requests: Sequence[str],
    immediate: Sequence[tuple[str, Quote]],
    reference: Decimal | None,
) -> Share:
    """The part of a step that fits in *room* messages. *reference* is the price the touch is measured from (the
    index); without one, the best prices of each side go first."""
    total = len(cancel_requests) + len(immediate) + plan.messages
    if total <= room:
        return Share(tuple(cancel_requests), tuple(immediate), plan)
    left = room
    own_cancels = tuple(cancel_requests[:left])
    left -= len(own_cancels)
    own_immediate = tuple(immediate[:left])
    left -= len(own_immediate)
    # Each plan action with its distance from the touch; at equal distance a cancel goes first (it takes risk off),
    # then an amend, then a place.
    ranked: list[tuple[Decimal, int, int, object]] = []
    for n, order in enumerate(plan.cancels):
        ranked.append((_distance(order.price, order, reference), 0, n, order))
    for n, (order, quote) in enumerate(plan.amends):
        near = min(_distance(order.price, order, reference), _distance(quote.price, order, reference))
        ranked.append((near, 1, n, (order, quote)))
    for n, quote in enumerate(plan.places):
        ranked.append((_distance(quote.price, quote, reference), 2, n, quote))
    ranked.sort(key=lambda item: item[:3])
    chosen = ranked[: max(left, 0)]
    cancels = tuple(item[3] for item in chosen if item[1] == 0)
    amends = tuple(item[3] for item in chosen if item[1] == 1)
    places = tuple(item[3] for item in chosen if item[1] == 2)
    sent = Plan(cancels, places, plan.kept, amends)  # type: ignore[arg-type]
    return Share(
        own_cancels,
        own_immediate,
        sent,
        tuple(cancel_requests[len(own_cancels):]),
        tuple(immediate[len(own_immediate):]),
        total - len(own_cancels) - len(own_immediate) - sent.messages,
    )


def _distance(price: Decimal | None, item: Order | Quote, reference: Decimal | None) -> Decimal:
    """How far *price* is from the touch: from the reference price, or (without one) how far from the best price
    possible on its side (a high bid, a low ask: best first)."""
    if price is None:
        return Decimal(0)
    if reference is not None:
        return abs(price - reference)
    return -price if item.side.sign > 0 else price
