"""redis-py, bridged into trio.

redis-py is synchronous, so every call runs in a worker thread (``trio.to_thread``), and a subscription's
blocking reads run in one thread per connection that owns the socket. The bridge keeps two promises:

* **cancellation is prompt**: the subscriber thread blocks at most ``poll`` seconds (0.1 s) at a time and checks
  its stop flag in between, and the trio side waits for it to finish, so when :meth:`Subscriber.run` returns no
  thread of it is left running;
* **failures surface**: the client is built without redis-py's own retries, so a lost connection raises at once
  and the caller (the ``redis`` feed, the publisher) reconnects with its own backoff and counts it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable

import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._settings import RedisSettings

__all__ = ["BRIDGE_ERRORS", "Subscriber", "make_client"]

log = logging.getLogger("mmframe.bus")

#: What a lost or refused Redis connection raises through the bridge.
BRIDGE_ERRORS = (redis.RedisError, OSError)


def make_client(address: RedisSettings, *, timeout: float = 2.0) -> redis.Redis:
    """A client for *address* that fails fast (connect and read timeouts, no built-in retries)."""
    return redis.Redis(
        host=address.host,
        port=address.port,
        db=address.db,
        password=address.password,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=max(1, round(timeout * 2)),
        client_name="mmframe",
    )


MessageHandler = Callable[[bytes, bytes], None]


class Subscriber:
    """One pub/sub connection, owned by one worker thread; channels are added and removed from trio.

    ``await subscriber.run(on_connected=..., on_message=...)`` connects, then delivers every message by calling
    ``on_message(channel, data)`` on the trio thread, in order, until cancelled (or until the connection fails:
    then it raises the redis-py error). :meth:`subscribe` and :meth:`unsubscribe` may be called at any time; the
    thread applies them within ``poll`` seconds.
    """

    def __init__(self, address: RedisSettings, *, timeout: float = 2.0, poll: float = 0.1) -> None:
        self.address = address
        self.timeout = timeout
        self.poll = poll
        self._commands: queue.SimpleQueue[tuple[str, tuple[str, ...]]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._limiter = trio.CapacityLimiter(1)  # its own thread: never waits behind the shared pool

    def subscribe(self, channels: Iterable[str]) -> None:
        channels = tuple(channels)
        if channels:
            self._commands.put(("subscribe", channels))

    def unsubscribe(self, channels: Iterable[str]) -> None:
        channels = tuple(channels)
        if channels:
            self._commands.put(("unsubscribe", channels))

    async def run(self, *, on_connected: Callable[[], None], on_message: MessageHandler) -> None:
        token = trio.lowlevel.current_trio_token()
        if self._done.is_set() or self._stop.is_set():
            raise RuntimeError("a Subscriber runs once")
        try:
            await trio.to_thread.run_sync(
                self._pump, token, on_connected, on_message, abandon_on_cancel=True, limiter=self._limiter
            )
        finally:
            self._stop.set()
            # The thread sees the flag within one poll; wait for it so that nothing of ours outlives run().
            with trio.CancelScope(shield=True), trio.move_on_after(self.timeout + 2 * self.poll + 1):
                while not self._done.is_set():  # noqa: ASYNC110 - the flag is set by a thread, not trio
                    await trio.sleep(self.poll / 4)

    # -- the worker thread --------------------------------------------------------------------------------------

    def _pump(
        self, token: trio.lowlevel.TrioToken, on_connected: Callable[[], None], on_message: MessageHandler
    ) -> None:
        client = make_client(self.address, timeout=self.timeout)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            client.ping()
            token.run_sync_soon(on_connected)
            while not self._stop.is_set():
                self._apply_commands(pubsub)
                if not pubsub.subscribed:
                    self._stop.wait(self.poll)
                    continue
                message = pubsub.get_message(timeout=self.poll)
                if message is not None and message.get("type") == "message":
                    token.run_sync_soon(on_message, message["channel"], message["data"])
        except trio.RunFinishedError:
            pass  # the trio run is over: nobody is listening any more
        finally:
            try:
                pubsub.close()
                client.close()
            finally:
                self._done.set()

    def _apply_commands(self, pubsub: redis.client.PubSub) -> None:
        while True:
            try:
                command, channels = self._commands.get_nowait()
            except queue.Empty:
                return
            if command == "subscribe":
                pubsub.subscribe(*channels)
            else:
                pubsub.unsubscribe(*channels)
