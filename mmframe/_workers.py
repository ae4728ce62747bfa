"""``mmframe serve --workers N``: N worker processes under one supervisor, so that one machine's cores all quote.

Each worker is ``mmframe serve`` itself, with the same options and ``--worker i/N``: it serves its control API on
``API_PORT + i`` and runs either a fixed share of the markets (every N-th market from the i-th, in the order of
their ids: no Redis needed) or, with a cluster configured, whatever its leases give it.

The supervisor restarts a worker that dies (not one that finished: exit status 0), after a pause that doubles up to
a limit while the worker keeps dying at once; one that dies within seconds of its start five times in a row is
tried again every 30 s while the others run on, and when every worker is in that state the supervisor stops and
exits 1 (so its own supervisor, systemd, sees it). SIGINT or SIGTERM to the supervisor is passed on once to every
worker, which cancels its orders and exits; a worker still running after :data:`STOP_GRACE` seconds is killed.
The workers run in their own session, so a Ctrl-C in a terminal reaches the supervisor alone (two signals would
make a worker stop without its cleanup), and each one stops by itself if the supervisor dies
(:func:`watch_supervisor`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import Any

import trio

from ._settings import Settings

__all__ = ["STOP_GRACE", "supervise_workers", "watch_supervisor"]

log = logging.getLogger("mmframe.workers")

#: Seconds a worker has to stop after the supervisor passed a signal on.
STOP_GRACE = 30.0
RESTART_PAUSE = 1.0
MAX_RESTART_PAUSE = 30.0
#: A worker that ran this long before dying is restarted after the first pause again.
HEALTHY_AFTER = 60.0
#: A worker that dies this soon after its start, MAX_QUICK_FAILURES times in a row, is failing (a port in use, a
#: broken configuration, a database down): tried again at the longest pause; when every worker is failing, the
#: supervisor stops and exits 1, so its own supervisor sees it.
QUICK_FAILURE = 10.0
MAX_QUICK_FAILURES = 5
SUPERVISOR_ENV = "MMFRAME_SUPERVISOR_PID"


def worker_argv(argv: list[str], index: int, count: int) -> list[str]:
    """The command line of worker *index*: this one's ``serve`` options without ``--workers``, plus
    ``--worker index/count``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return [sys.executable, "-m", "mmframe", *out, "--worker", f"{index}/{count}"]


def supervise_workers(count: int, settings: Settings, argv: list[str] | None = None) -> int:
    """Run *count* workers until SIGINT or SIGTERM (or until every one finished); the exit status: 0 when every
    worker's last run ended with 0."""
    args = list(sys.argv[1:] if argv is None else argv)
    ports = ", ".join(str(settings.api_port + i) for i in range(count)) if settings.api_port else "free ports"
    log.info("supervisor: %d workers (pid %d); their control APIs on %s", count, os.getpid(), ports)
    return trio.run(_supervise, count, args)


async def _supervise(count: int, args: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MMFRAME_WORKERS"}
    env[SUPERVISOR_ENV] = str(os.getpid())
    stopping = trio.Event()
    codes: dict[int, int] = {}
    processes: dict[int, trio.Process] = {}
    failed_for_good: list[int] = []
    failing: set[int] = set()  # workers that die at once again and again

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            def stop_all() -> None:
                """Pass SIGTERM on to every worker once; kill those still running after STOP_GRACE."""
                if stopping.is_set():
                    return
                stopping.set()
                for process in processes.values():
                    if process.returncode is None:
                        process.send_signal(signal.SIGTERM)
                nursery.start_soon(reap)

            async def reap() -> None:
                await trio.sleep(STOP_GRACE)
                for process in processes.values():
                    if process.returncode is None:
                        log.error("supervisor: worker pid %d did not stop within %ss: killing it", process.pid,
                                  STOP_GRACE)
                        process.kill()

            async def keep(index: int) -> None:
                pause = RESTART_PAUSE
                quick = 0  # failures in a row, each soon after its start
                while not stopping.is_set():
                    started = trio.current_time()
                    process = await trio.lowlevel.open_process(
                        worker_argv(args, index, count), env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                    )
                    processes[index] = process
                    log.info("supervisor: worker %d started (pid %d)", index, process.pid)
                    with trio.move_on_after(QUICK_FAILURE):
                        await process.wait()
                    if process.returncode is None:  # up for a while: not failing (any more)
                        failing.discard(index)
                        quick = 0
                    code = await process.wait()
                    if stopping.is_set() and code == -signal.SIGTERM:
                        code = 0  # ended by our own SIGTERM before it could handle it: it had not begun quoting
                    codes[index] = code
                    if stopping.is_set() or code == 0:
                        return
                    lived = trio.current_time() - started
                    if lived > HEALTHY_AFTER:
                        pause, quick = RESTART_PAUSE, 0
                    quick = quick + 1 if lived < QUICK_FAILURE else 0
                    if quick >= MAX_QUICK_FAILURES:
                        failing.add(index)
                        if len(failing) == count:
                            log.error("supervisor: every worker keeps dying within %gs of its start (worker %d: %s): "
                                      "giving up", QUICK_FAILURE, index, _describe_exit(code))
                            failed_for_good.append(index)
                            stop_all()
                            return
                        log.error("supervisor: worker %d died %d times in a row within %gs of its start (%s); the "
                                  "others run on, it is tried again every %gs", index, quick, QUICK_FAILURE,
                                  _describe_exit(code), MAX_RESTART_PAUSE)
                        pause = MAX_RESTART_PAUSE
                    log.error("supervisor: worker %d (pid %d) died (%s); restarting it in %.0fs", index, process.pid,
                              _describe_exit(code), pause)
                    with trio.move_on_after(pause):
                        await stopping.wait()
                    pause = min(pause * 2, MAX_RESTART_PAUSE)

            async with trio.open_nursery() as workers:
                for index in range(count):
                    workers.start_soon(keep, index)

                async def on_signal() -> None:
                    async for signum in signals:
                        log.info("supervisor: received %s: stopping the workers", signal.Signals(signum).name)
                        break
                    stop_all()

                nursery.start_soon(on_signal)
            nursery.cancel_scope.cancel()
    failed = {i: c for i, c in sorted(codes.items()) if c != 0}
    if failed:
        ended = ", ".join(f"{i}: {_describe_exit(c)}" for i, c in failed.items())
        log.error("supervisor: workers ended with %s", ended)
    else:
        log.info("supervisor: every worker stopped cleanly")
    return 1 if failed or failed_for_good else 0


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


async def watch_supervisor(scope: trio.CancelScope, every: float = 1.0) -> Any:
    """In a worker: cancel *scope* (stop as on SIGTERM) once the supervisor that started it is gone."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor or not supervisor.isdigit():
        return
    while os.getppid() == int(supervisor):  # noqa: ASYNC110 (no event says a parent died: poll)
        await trio.sleep(every)
    log.error("the supervisor (pid %s) is gone: cancelling our orders and stopping", supervisor)
    scope.cancel()
