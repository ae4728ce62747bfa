"""mmframe's OKX plugin: the ``okex`` feed (also registered as ``okx``), OKX's v5 public WebSocket market data.

- :mod:`.feed` is the feed: :class:`OkexFeed`, registered through ``register_feeds`` under ``okex`` and ``okx``.
- :mod:`.testing` is :class:`~mmframe_okex.testing.FakeOkx`, a fake of OKX's public WebSocket server for tests.
"""

from __future__ import annotations

from collections.abc import Callable

from mmframe import hookimpl

from .feed import OkexFeed as OkexFeed
from .feed import to_inst_id as to_inst_id

__all__ = ["OkexFeed", "register_feeds", "to_inst_id"]

__version__ = "0.1.0"


@hookimpl
def register_feeds(register: Callable[..., None]) -> None:
    register(OkexFeed)
    register(OkexFeed, name="okx")
