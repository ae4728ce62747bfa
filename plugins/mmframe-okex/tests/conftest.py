"""The test clock: trio's MockClock, jumping ahead only when every task has been idle for 20 ms of real time (so
never while loopback I/O is in flight). A test that asks for ``clock`` runs on it: ping intervals, pong timeouts
and reconnect delays then pass in no real time."""

from __future__ import annotations

import pytest
import trio.testing


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.02)
