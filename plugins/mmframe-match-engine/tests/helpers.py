"""What the plugin's tests share: a ladder strategy (``levels`` bids and asks ``step`` apart around the index), a
scripted feed that records its instances, and the plugin registering both."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar

import attrs

from mmframe import Quote, Side, Strategy, StrategyContext, hookimpl
from mmframe.testing import ScriptedFeed


class Ladder(Strategy):
    name = "me_ladder"

    @attrs.frozen
    class Config:
        levels: int = 2
        step: Decimal = attrs.field(default=Decimal(1), converter=Decimal)
        quantity: Decimal = attrs.field(default=Decimal(1), converter=Decimal)

    def desired_orders(self, ctx: StrategyContext) -> Iterable[Quote]:
        if ctx.index_price is None:
            return []
        c = self.config
        out = []
        for i in range(1, c.levels + 1):
            out.append(Quote(Side.BUY, ctx.index_price - i * c.step, c.quantity))
            out.append(Quote(Side.SELL, ctx.index_price + i * c.step, c.quantity))
        return out


class Feed(ScriptedFeed):
    name: ClassVar[str] = "me_feed"
    instances: ClassVar[list[Feed]] = []

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        Feed.instances.append(self)


class Plugin:
    @hookimpl
    def register_strategies(self, register: Any) -> None:
        register(Ladder)

    @hookimpl
    def register_feeds(self, register: Any) -> None:
        register(Feed)
