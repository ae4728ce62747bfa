"""Shared fixtures. With MMFRAME_REQUIRE_SERVICES=1 (CI) a missing MariaDB or Redis fails the run at once."""

from __future__ import annotations

import os
import socket

import pytest

SERVICES = {"MariaDB": ("127.0.0.1", 3306), "Redis": ("127.0.0.1", 6379)}


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("MMFRAME_REQUIRE_SERVICES") != "1":
        return
    missing = []
    for name, (host, port) in SERVICES.items():
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as exc:
            missing.append(f"{name} at {host}:{port} ({exc})")
    if missing:
        pytest.exit("MMFRAME_REQUIRE_SERVICES=1 but unreachable: " + "; ".join(missing), returncode=3)
