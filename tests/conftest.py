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


def _mariadb_reachable() -> bool:
    try:
        socket.create_connection(SERVICES["MariaDB"], timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> object:
    """A fresh, empty database: an SQLite file, and a new MariaDB database dropped afterwards."""
    import secrets
    from pathlib import Path

    if request.param == "sqlite":
        yield f"sqlite:///{Path(str(tmp_path)) / 'mmframe.sqlite'}"
        return
    if not _mariadb_reachable():
        if os.environ.get("MMFRAME_REQUIRE_SERVICES") == "1":
            pytest.fail("MariaDB is required (MMFRAME_REQUIRE_SERVICES=1) but unreachable at 127.0.0.1:3306")
        pytest.skip("MariaDB is not reachable at 127.0.0.1:3306")
    import pymysql

    name = f"mmframe_test_{secrets.token_hex(6)}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


def _require_or_skip(message: str) -> None:
    if os.environ.get("MMFRAME_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (required: MMFRAME_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture
def redis_address() -> object:
    """The machine's Redis (127.0.0.1:6379), as :class:`~mmframe._settings.RedisSettings`."""
    from mmframe._settings import RedisSettings

    try:
        socket.create_connection(SERVICES["Redis"], timeout=1).close()
    except OSError:
        _require_or_skip("Redis is not reachable at 127.0.0.1:6379")
    return RedisSettings(host="127.0.0.1", port=6379)


@pytest.fixture
def private_redis() -> object:
    """A redis-server of the test's own on a free port, which the test may stop and start (``RedisServer``)."""
    from mmframe.testing import RedisServer

    try:
        server = RedisServer()
    except FileNotFoundError:
        _require_or_skip("redis-server is not installed")
    with server:
        yield server
