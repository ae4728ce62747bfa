"""Cancels that race their own place, on the real reference engine over HTTP on loopback (hypercorn on port 0).

A test-side ASGI layer in front of the engine's own app (:class:`Conductor`) holds chosen requests before the engine
executes them, or holds their answers after, so that the order of events that a burst produces by chance happens
here every time. Nothing is mocked: every request reaches the real engine and every answer is the engine's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from mmframe_match_engine.server import Engine, create_app
from mmframe_match_engine.sink import MatchEngineSink

from mmframe import OrderEvent, OrderEventKind, OrderRequest, OrderType, Side

SYMBOL = "AAA/USDT"


class Conductor:
    """ASGI middleware: a request to a path in ``before`` waits for that event before the engine sees it; the answer
    to a path in ``after`` waits for that event before it is sent; while ``stream`` is an unset event, the event
    stream's lines wait for it. ``arrived`` and ``executed`` count per path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.before: dict[str, trio.Event] = {}
        self.after: dict[str, trio.Event] = {}
        self.stream: trio.Event | None = None
        self.arrived: dict[str, int] = {}
        self.executed: dict[str, int] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        self.arrived[path] = self.arrived.get(path, 0) + 1
        gate = self.before.get(path)
        if gate is not None:
            await gate.wait()

        async def send_held(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.executed[path] = self.executed.get(path, 0) + 1
                held = self.after.get(path)
                if held is not None:
                    await held.wait()
            elif message["type"] == "http.response.body" and path == "/api/v1/stream" and self.stream is not None:
                await self.stream.wait()
            await send(message)

        await self.app(scope, receive, send_held)


async def _serve(app: Any, *, task_status: Any) -> None:
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("mmframe.match_engine.http")  # type: ignore[assignment]
    config.graceful_timeout = 0.5
    await serve(app, config, task_status=task_status)


async def eventually(check: Callable[[], Any], seconds: float = 5.0, what: str = "") -> None:
    with trio.move_on_after(seconds):
        while not check():  # noqa: ASYNC110 - polling the engine's and the sink's plain state
            await trio.sleep(0.01)
        return
    raise AssertionError(f"not within {seconds}s: {what or check}")


async def start(nursery: trio.Nursery, **options: Any) -> tuple[Engine, Conductor, MatchEngineSink, list[OrderEvent]]:
    engine = Engine()
    conductor = Conductor(create_app(engine))
    binds = await nursery.start(_serve, conductor)
    settings = {"endpoint": binds[0], "timeout": 5.0, "backoff": 0.02, "max_backoff": 0.2, "max_retries": 0,
                "breaker_cooldown": 0.1, "breaker_threshold": 50}
    settings.update(options)
    sink = MatchEngineSink(MatchEngineSink.Config(**settings))
    await nursery.start(sink.run)
    events: list[OrderEvent] = []
    sink.subscribe(SYMBOL, "x-", events.append)
    await eventually(lambda: not sink.degraded, what="the event stream connects")
    return engine, conductor, sink, events


def order(coid: str, price: str = "99") -> OrderRequest:
    return OrderRequest(coid, SYMBOL, Side.BUY, OrderType.LIMIT, quantity="1", price=price)


def kinds(events: list[OrderEvent], coid: str) -> list[OrderEventKind]:
    return [e.kind for e in events if e.client_order_id == coid]


async def test_a_cancel_the_engine_saw_before_its_order_is_not_dropped(nursery: trio.Nursery) -> None:
    """Reproduction 3's cause. The cancel reaches the engine before the batch that places the order (``unknown``);
    the engine then accepts the order, and the sink hears of it (stream, batch answer) before the cancel's answer
    comes back while its repair loop is busy elsewhere. The cancel must not be forgotten: the order ends cancelled."""
    engine, conductor, sink, events = await start(nursery)
    batch, cancel, query = "/api/v1/orders/batch", "/api/v1/orders/cancel", "/api/v1/orders/query"

    # Keep the sink's repair loop busy: an order whose batch failed must be asked about, and that query is held.
    query_gate = conductor.before[query] = trio.Event()
    engine.fail_next = 1  # a 503 without executing: the outcome of x-other's batch is unknown to the sink
    await sink.place([order("x-other", "90")])
    await eventually(lambda: conductor.arrived.get(query, 0) >= 1, what="the repair loop asks about x-other")

    # The batch placing x-1 is held before the engine sees it ...
    batch_gate = conductor.before[batch] = trio.Event()
    await sink.place([order("x-1")])
    await eventually(lambda: conductor.arrived.get(batch, 0) >= 2, what="x-1's batch reaches the engine's door")
    # ... so the cancel is executed first (the engine does not know x-1: "unknown"); its answer is held.
    cancel_answer = conductor.after[cancel] = trio.Event()
    async with trio.open_nursery() as cancelling:
        cancelling.start_soon(sink.cancel, SYMBOL, ["x-1"])
        await eventually(lambda: conductor.executed.get(cancel, 0) >= 1, what="the cancel executed")
        # Now the engine places x-1, and the sink hears about it.
        batch_gate.set()
        await eventually(lambda: OrderEventKind.ACCEPTED in kinds(events, "x-1"), what="x-1 accepted")
        assert [o.client_order_id for o in engine.open_orders(SYMBOL, "x-")] == ["x-1"]
        cancel_answer.set()  # the "unknown" answer arrives last
    query_gate.set()  # the repair loop goes on

    await eventually(lambda: not engine.open_orders(SYMBOL, "x-1"), seconds=3, what="x-1 cancelled on the engine")
    await eventually(lambda: OrderEventKind.CANCELLED in kinds(events, "x-1"), seconds=2, what="x-1's cancel event")
    assert kinds(events, "x-1") == [OrderEventKind.ACCEPTED, OrderEventKind.CANCELLED]


async def test_a_cancel_that_overtakes_an_order_in_flight_is_sent_again(nursery: trio.Nursery) -> None:
    """The cancel is answered ``unknown`` while the order's batch is still on its way: it is sent once the engine
    has the order."""
    engine, conductor, sink, events = await start(nursery)
    batch_gate = conductor.before["/api/v1/orders/batch"] = trio.Event()
    await sink.place([order("x-2")])
    await eventually(lambda: conductor.arrived.get("/api/v1/orders/batch", 0) >= 1)
    await sink.cancel(SYMBOL, ["x-2"])  # the engine: unknown
    batch_gate.set()
    await eventually(lambda: OrderEventKind.CANCELLED in kinds(events, "x-2"), seconds=3, what="x-2 cancelled")
    assert not engine.open_orders(SYMBOL, "x-")


async def test_cancelling_an_order_still_in_the_queue_is_a_cancel_not_a_rejection(nursery: trio.Nursery) -> None:
    engine, conductor, sink, events = await start(nursery, linger=0.5)
    await sink.place([order("x-3")])
    await sink.cancel(SYMBOL, ["x-3"])  # still lingering in the queue: it never leaves the process
    assert kinds(events, "x-3") == [OrderEventKind.CANCELLED]
    assert events[-1].reason == "cancelled before it was sent"
    await trio.sleep(0.6)
    assert conductor.arrived.get("/api/v1/orders/batch", 0) == 0 and not engine.open_orders(SYMBOL, "x-")


async def test_the_engine_side_of_the_race_is_real(nursery: trio.Nursery) -> None:
    """The reference engine itself answers ``unknown`` for a cancel of an order it has not placed yet: the race
    above is the engine's documented behaviour, not an artefact of the test's gates."""
    _engine, _conductor, sink, _events = await start(nursery)
    async with httpx.AsyncClient(base_url=sink.config.endpoint) as client:
        answer = await client.post("/api/v1/orders/cancel", json={"symbol": SYMBOL, "client_order_ids": ["x-9"]})
    assert answer.json()["results"][0]["result"] == "unknown"


async def test_an_end_told_by_a_query_is_not_told_again_by_the_stream(nursery: trio.Nursery) -> None:
    """The batch's answer is lost (the engine executed it, answered too late): the sink asks the engine and learns
    that the order (an IOC that found nothing) is already over. The stream's own lines for it, arriving later,
    repeat what the sink has told; they must not reach the market a second time (its tracker would refuse
    ``expired`` after ``expired`` and the market would fail)."""
    engine, conductor, sink, events = await start(nursery, timeout=0.3)
    conductor.stream = trio.Event()  # the stream's lines wait
    engine.delay_after_execute = 0.6  # executed, answered after the client gave up
    ioc = OrderRequest("x-4", SYMBOL, Side.BUY, OrderType.IOC, quantity="1", price="99")
    await sink.place([ioc])
    await eventually(lambda: OrderEventKind.EXPIRED in kinds(events, "x-4"), seconds=3, what="the query tells it")
    engine.delay_after_execute = 0.0
    assert conductor.arrived.get("/api/v1/orders/query", 0) >= 1
    conductor.stream.set()
    conductor.stream = None
    await trio.sleep(0.3)  # the stream's accepted and expired lines for x-4 arrive now
    assert engine.seq >= 2 and not sink.degraded
    assert kinds(events, "x-4") == [OrderEventKind.ACCEPTED, OrderEventKind.EXPIRED]


async def test_a_cancel_under_way_is_not_sent_again_when_news_of_its_order_arrives(nursery: trio.Nursery) -> None:
    """The order is acknowledged by its batch's answer; its ``accepted`` line on the stream comes only while the
    cancel's request is under way. That news must not make the sink send the same cancel again (it used to: every
    such order cost a second cancel request at full speed); the cancel's own answer settles it."""
    engine, conductor, sink, events = await start(nursery)
    cancel = "/api/v1/orders/cancel"
    conductor.stream = trio.Event()  # the stream's lines wait
    await sink.place([order("x-5")])
    await eventually(lambda: kinds(events, "x-5") == [OrderEventKind.ACCEPTED], what="the batch answer tells it")
    cancel_answer = conductor.after[cancel] = trio.Event()
    async with trio.open_nursery() as cancelling:
        cancelling.start_soon(sink.cancel, SYMBOL, ["x-5"])
        await eventually(lambda: conductor.executed.get(cancel, 0) >= 1, what="the cancel executed")
        conductor.stream.set()  # now the accepted line (and the cancelled one) arrive, the cancel's answer held
        conductor.stream = None
        await eventually(lambda: OrderEventKind.CANCELLED in kinds(events, "x-5"), what="the stream's cancelled")
        await trio.sleep(0.3)  # the repair loop's turn (breaker_cooldown 0.1 s)
        assert conductor.arrived.get(cancel, 0) == 1
        cancel_answer.set()
    await trio.sleep(0.3)
    assert conductor.arrived.get(cancel, 0) == 1
    assert kinds(events, "x-5") == [OrderEventKind.ACCEPTED, OrderEventKind.CANCELLED]
    assert not engine.open_orders(SYMBOL, "x-") and not sink.degraded
