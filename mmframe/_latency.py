"""A latency histogram in fixed Prometheus-style buckets, cheap enough to observe on every order."""

from __future__ import annotations

import bisect

__all__ = ["LatencyHistogram"]


class LatencyHistogram:
    """Quote latency (tick arrival → orders handed to the sink), in seconds, in fixed Prometheus-style buckets."""

    BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(upper bound, observations ≤ it)`` pairs ending with ``+Inf``, as Prometheus exposes them."""
        out, running = [], 0
        for bound, n in zip((*map(str, self.BUCKETS), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out
