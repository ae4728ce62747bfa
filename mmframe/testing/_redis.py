"""A private ``redis-server`` for tests that stop and start Redis in the middle of a run."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

__all__ = ["RedisServer"]


class RedisServer:
    """A ``redis-server`` of the test's own on 127.0.0.1 (no persistence), for restarts in the middle of a test.

    ``with RedisServer() as redis: ...`` starts it on a free port (:attr:`port`); :meth:`stop` kills it and
    :meth:`start` brings it back on the same port. Raises :class:`FileNotFoundError` when ``redis-server`` is not
    installed.
    """

    def __init__(self, executable: str = "redis-server") -> None:
        path = shutil.which(executable)
        if path is None:
            raise FileNotFoundError(f"{executable} is not installed")
        self.executable = path
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once it accepts connections."""
        if self.process is not None:
            return
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server (as a crash would) and wait for it to be gone."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
