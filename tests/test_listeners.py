"""The one listener registry, under both its users: order events by symbol and prefix, market data by symbol."""

from __future__ import annotations

import logging

import pytest

from mmframe._listeners import Listeners


def test_delivery_by_symbol_and_prefix_in_subscription_order() -> None:
    changes: list[str] = []
    listeners: Listeners[str] = Listeners(logging.getLogger("test"), on_change=changes.append)
    got: list[tuple[str, str]] = []
    listeners.subscribe("BTC", lambda item: got.append(("all", item)))
    sub = listeners.subscribe("BTC", lambda item: got.append(("mmf-", item)), prefix="mmf-")
    listeners.subscribe("ETH", lambda item: got.append(("eth", item)))
    assert changes == ["BTC", "ETH"]  # first listener of each symbol

    assert listeners.deliver("BTC", "a", "mmf-1") == 2
    assert listeners.deliver("BTC", "b", "other-1") == 1
    assert listeners.deliver("SOL", "c") == 0
    assert got == [("all", "a"), ("mmf-", "a"), ("all", "b")]

    sub.close()
    sub.close()  # closing twice is harmless
    assert listeners.count() == 2 and changes == ["BTC", "ETH"]
    assert listeners.symbols() == frozenset({"BTC", "ETH"})


def test_a_raising_listener_is_dropped_and_the_rest_still_get_the_item(caplog: pytest.LogCaptureFixture) -> None:
    changes: list[str] = []
    listeners: Listeners[int] = Listeners(logging.getLogger("test.listeners"), on_change=changes.append)
    got: list[int] = []

    def broken(item: int) -> None:
        raise RuntimeError("bug")

    listeners.subscribe("BTC", broken)
    listeners.subscribe("BTC", got.append)
    with caplog.at_level(logging.ERROR, logger="test.listeners"):
        listeners.deliver("BTC", 1, describe=lambda item: f"item {item}")
        listeners.deliver("BTC", 2)
    assert got == [1, 2] and listeners.errors == 1 and listeners.count() == 1
    assert "BTC" in caplog.records[0].getMessage() and "item 1" in caplog.records[0].getMessage()


def test_a_listener_closed_by_an_earlier_one_gets_nothing_more() -> None:
    listeners: Listeners[str] = Listeners(logging.getLogger("test"), on_change=None)
    got: list[str] = []
    later = None

    def first(item: str) -> None:
        assert later is not None
        later.close()

    listeners.subscribe("BTC", first)
    later = listeners.subscribe("BTC", got.append)
    assert listeners.deliver("BTC", "x") == 1 and got == []
    assert not listeners.listening("SOL") and listeners.listening("BTC")
