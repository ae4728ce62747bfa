"""Gates a sink asks before every attempt (:class:`~mmframe.protocols.GatesRequests`): how the engine and the
service install them around what they send for a market that may lose the right to send (a cluster's lease)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..protocols import GatesRequests, OrderSink

__all__ = ["closed", "gated"]


def closed() -> bool:
    """The gate a stopped market leaves with a sink that gates requests: nothing more goes out for it."""
    return False


@contextmanager
def gated(sink: OrderSink, prefix: str, may_send: Callable[[], bool] | None) -> Iterator[None]:
    """While inside, the sink asks *may_send* before every attempt for the orders under *prefix* (a retry of a
    cancel-all must not outlive the right to send); nothing when there is no gate or the sink cannot gate."""
    if may_send is None or not isinstance(sink, GatesRequests):
        yield
        return
    sink.set_gate(prefix, may_send)
    try:
        yield
    finally:
        sink.set_gate(prefix, None)
