"""Where ``mmframe serve`` gets its settings: command-line flags beat environment variables, which beat ``.env``.

The keys are the seed's (``DB_HOST``, ``DB_PORT``, ``DB_DATABASE``, ``DB_USERNAME``, ``DB_PASSWORD``,
``REDIS_HOST``/``_PORT``/``_AUTH``/``_DB``, ``MARKET_REDIS_*``, ``MATCH_ENGINE_ENDPOINT``, ``API_PORT``,
``LOG_FILE``) plus mmframe's own ``MMFRAME_*`` keys. With no ``DB_*`` key and no ``--db`` the store is an SQLite
file. Secrets (the DB password, Redis passwords, the API token) never appear in ``repr`` or in :meth:`describe`.

Below the ``.env`` file, :func:`load_settings` reads mmframe's own defaults (``mmframe/defaults.env``, the same
format): what a deployment that says nothing gets, such as the exchange markets follow (``MMFRAME_EXCHANGE``).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import attrs

from ._errors import ConfigError

__all__ = ["RedisSettings", "Settings", "default_values", "load_settings", "parse_dotenv"]

DEFAULT_SQLITE = "mmframe.sqlite"
#: mmframe's defaults (``KEY=VALUE`` lines, as ``.env``), read below the ``.env`` file.
DEFAULTS_FILE = "defaults.env"


@attrs.frozen
class RedisSettings:
    host: str = "127.0.0.1"
    port: int = 6379
    password: str | None = attrs.field(default=None, repr=False)
    db: int = 0

    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"

    def describe(self) -> str:
        return f"redis://{'***@' if self.password else ''}{self.host}:{self.port}/{self.db}"


@attrs.frozen
class Settings:
    """Everything ``serve`` needs to know, resolved from flags, environment, ``.env`` and mmframe's defaults.

    :param feed: the feed of markets whose options name none (``MMFRAME_FEED``).
    :param exchange: the exchange a market follows when its strategy config names no ``external_exchange``
        (``MMFRAME_EXCHANGE``): its feed plugin, or its channels on the Redis bus. ``None`` here; :func:`load_settings`
        gives mmframe's default.
    """

    db_url: str | None = attrs.field(default=None, repr=False)
    sqlite_path: str = DEFAULT_SQLITE
    api_host: str = "127.0.0.1"
    api_port: int = 8081
    api_token: str | None = attrs.field(default=None, repr=False)
    match_engine_endpoint: str | None = None
    log_file: str | None = None
    redis: RedisSettings | None = None
    market_redis: RedisSettings | None = None
    instance_id: str = "mmf"
    sink: str | None = None
    feed: str | None = None
    exchange: str | None = None
    sink_config: dict[str, Any] = attrs.field(factory=dict, repr=False)
    max_body_bytes: int = 64 * 1024
    #: The cluster's Redis (``MMFRAME_CLUSTER_REDIS``, ``--cluster``): with it, markets are shared out over every
    #: instance of the cluster through leases (see docs/scaling.md); ``None``: this process runs every market.
    cluster_redis: RedisSettings | None = None
    cluster_name: str = "default"
    lease_ttl: float = 10.0
    #: ``MMFRAME_WORKERS``: worker processes under ``mmframe serve`` (a number or ``auto``); ``None``: one process.
    workers: str | None = None

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.sqlite_path}"

    @property
    def api_is_loopback(self) -> bool:
        host = self.api_host.strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def describe(self) -> dict[str, Any]:
        """The settings for a log line: every secret masked."""
        return {
            "database": mask_url(self.database_url),
            "api": f"{self.api_host}:{self.api_port}",
            "api_token": "set" if self.api_token else "not set",
            "sink": self.sink or ("the sink that takes the endpoint" if self.match_engine_endpoint else "paper"),
            "match_engine_endpoint": mask_url(self.match_engine_endpoint) if self.match_engine_endpoint else None,
            "feed": self.feed,
            "exchange": self.exchange,
            "redis": self.redis.describe() if self.redis else None,
            "market_redis": self.market_redis.describe() if self.market_redis else None,
            "instance_id": self.instance_id,
            **({"cluster": f"{self.cluster_name} on {self.cluster_redis.describe()}, lease ttl {self.lease_ttl}s"}
               if self.cluster_redis is not None else {}),
        }


def mask_url(url: str) -> str:
    """``scheme://user:***@host/...``: a URL safe to log."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def parse_dotenv(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` allowed, ``#`` comments, optional quotes) into a dict."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f".env line {number} is not KEY=VALUE")
        value = value.strip()
        quoted = re.match(r"""^(['"])(.*?)\1(\s+#.*)?$""", value)
        value = quoted.group(2) if quoted else re.sub(r"\s+#.*$", "", value)
        values[key] = value
    return values


def _parse_listen(value: str, host: str) -> tuple[str, int]:
    """``8081``, ``:8081`` or ``HOST:8081`` (the seed writes ``:8081``)."""
    text = value.strip()
    if ":" in text:
        maybe_host, _, port_text = text.rpartition(":")
        host = maybe_host or host
    else:
        port_text = text
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"API_PORT must be a port like 8081, :8081 or 127.0.0.1:8081, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"API_PORT {port} is not a port number")
    return host, port


def _int(values: Mapping[str, str], key: str, default: int) -> int:
    raw = values.get(key)
    if raw in (None, ""):
        return default
    try:
        return int(raw)  # type: ignore[arg-type]
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {raw!r}") from None


def _redis(values: Mapping[str, str], prefix: str) -> RedisSettings | None:
    if not any(k.startswith(prefix) for k in values):
        return None
    return RedisSettings(
        host=values.get(f"{prefix}HOST") or "127.0.0.1",
        port=_int(values, f"{prefix}PORT", 6379),
        password=values.get(f"{prefix}AUTH") or values.get(f"{prefix}PASSWORD") or None,
        db=_int(values, f"{prefix}DB", 0),
    )


def _mysql_url(values: Mapping[str, str]) -> str | None:
    keys = ("DB_HOST", "DB_PORT", "DB_DATABASE", "DB_USERNAME", "DB_PASSWORD")
    if not any(values.get(k) for k in keys):
        return None
    database = values.get("DB_DATABASE")
    if not database:
        raise ConfigError("DB_DATABASE is required when any other DB_* key is set")
    user = quote(values.get("DB_USERNAME") or "root", safe="")
    password = values.get("DB_PASSWORD") or ""
    auth = f"{user}:{quote(password, safe='')}" if password else user
    host = values.get("DB_HOST") or "127.0.0.1"
    port = _int(values, "DB_PORT", 3306)
    return f"mysql+pymysql://{auth}@{host}:{port}/{quote(database, safe='')}?charset=utf8mb4"


FLAG_KEYS = {
    "db": "MMFRAME_DB_URL",
    "sqlite": "MMFRAME_SQLITE",
    "http": "MATCH_ENGINE_ENDPOINT",
    "api_port": "API_PORT",
    "api_host": "MMFRAME_API_HOST",
    "log": "LOG_FILE",
    "instance_id": "MMFRAME_INSTANCE_ID",
    "sink": "MMFRAME_SINK",
    "feed": "MMFRAME_FEED",
    "cluster": "MMFRAME_CLUSTER_REDIS",
}


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = ".env",
) -> Settings:
    """Resolve the settings: *flags* (``None`` values ignored) > *environ* > the *env_file* (if it exists) >
    mmframe's defaults (:func:`default_values`)."""
    # Each layer over the one below; an empty value counts as not set, so it leaves the layer below standing.
    values: dict[str, str] = default_values()
    if env_file is not None and Path(env_file).is_file():
        values.update({k: v for k, v in parse_dotenv(Path(env_file).read_text()).items() if v != ""})
    values.update({k: v for k, v in (os.environ if environ is None else environ).items() if v != ""})
    for flag, value in (flags or {}).items():
        if value is None:
            continue
        if flag not in FLAG_KEYS:
            raise ConfigError(f"unknown setting {flag!r}")
        values[FLAG_KEYS[flag]] = str(value)

    host = values.get("MMFRAME_API_HOST") or "127.0.0.1"
    port = 8081
    if values.get("API_PORT"):
        host, port = _parse_listen(values["API_PORT"], host)
        if values.get("MMFRAME_API_HOST") and flags and flags.get("api_host") is not None:
            host = values["MMFRAME_API_HOST"]
    db_url = values.get("MMFRAME_DB_URL") or None
    if db_url is None:
        db_url = _mysql_url(values)
    return Settings(
        db_url=db_url,
        sqlite_path=values.get("MMFRAME_SQLITE") or DEFAULT_SQLITE,
        api_host=host,
        api_port=port,
        api_token=values.get("MMFRAME_API_TOKEN") or None,
        match_engine_endpoint=values.get("MATCH_ENGINE_ENDPOINT") or None,
        log_file=values.get("LOG_FILE") or None,
        redis=_redis(values, "REDIS_"),
        market_redis=_redis(values, "MARKET_REDIS_"),
        instance_id=values.get("MMFRAME_INSTANCE_ID") or "mmf",
        sink=values.get("MMFRAME_SINK") or None,
        feed=values.get("MMFRAME_FEED") or None,
        exchange=values.get("MMFRAME_EXCHANGE") or None,
        sink_config=_json_object(values, "MMFRAME_SINK_CONFIG"),
        cluster_redis=_cluster_redis(values),
        cluster_name=_cluster_name(values.get("MMFRAME_CLUSTER_NAME") or "default"),
        lease_ttl=_seconds(values, "MMFRAME_LEASE_TTL", 10.0),
        workers=values.get("MMFRAME_WORKERS") or None,
    )


def parse_redis_url(url: str, key: str = "MMFRAME_CLUSTER_REDIS") -> RedisSettings:
    """``redis://[:password@]host[:port][/db]`` as :class:`RedisSettings`; a clear error for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ConfigError(f"{key} must be a redis://host[:port][/db] URL or 'default', got {mask_url(url)!r}")
    try:
        port = parts.port or 6379
        db = int(parts.path.lstrip("/") or 0)
    except ValueError:
        raise ConfigError(f"{key}: bad port or database number in {mask_url(url)!r}") from None
    return RedisSettings(host=parts.hostname, port=port, password=unquote(parts.password) if parts.password else None,
                         db=db)


def _cluster_redis(values: Mapping[str, str]) -> RedisSettings | None:
    """``MMFRAME_CLUSTER_REDIS``: a URL, or ``default`` for the ``REDIS_*`` keys (the seed's Redis)."""
    raw = (values.get("MMFRAME_CLUSTER_REDIS") or "").strip()
    if not raw or raw.lower() in ("0", "off", "no", "false"):
        return None
    if raw.lower() == "default":
        return _redis(values, "REDIS_") or RedisSettings()
    return parse_redis_url(raw)


def _cluster_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
        raise ConfigError(f"MMFRAME_CLUSTER_NAME must be 1 to 40 letters, digits, '_', '.' or '-', got {name!r}")
    return name


def _seconds(values: Mapping[str, str], key: str, default: float) -> float:
    raw = values.get(key)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a number of seconds, got {raw!r}") from None
    if not (math.isfinite(value) and 1 <= value <= 3600):
        raise ConfigError(f"{key} must be between 1 and 3600 seconds, got {raw!r}")
    return value


def default_values() -> dict[str, str]:
    """mmframe's defaults for the keys a deployment leaves unset (``mmframe/defaults.env``)."""
    resource = files(__package__ or "mmframe") / DEFAULTS_FILE
    return parse_dotenv(resource.read_text(encoding="utf-8")) if resource.is_file() else {}


def _json_object(values: Mapping[str, str], key: str) -> dict[str, Any]:
    raw = values.get(key)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{key} must be a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{key} must be a JSON object, got {type(data).__name__}")
    return data
