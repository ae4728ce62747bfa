"""Configuration sources: flags beat the environment, which beats ``.env``; the seed's keys; secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmframe import ConfigError, MMFrameError
from mmframe._cli import choose_sink
from mmframe._plugins import get_sinks
from mmframe._settings import load_settings, mask_url, parse_dotenv

SEED_ENV = """\
# 数据库配置
DB_HOST=192.168.1.12
DB_PORT=3306
DB_DATABASE=sodos_exchange
DB_USERNAME=root
DB_PASSWORD=yourpassword
REDIS_HOST=192.168.1.12
REDIS_AUTH=yourpassword
REDIS_PORT=6380
REDIS_DB=0
MARKET_REDIS_HOST=192.168.1.12
MARKET_REDIS_AUTH=yourpassword
MARKET_REDIS_PORT=6378
MARKET_REDIS_DB=0
MATCH_ENGINE_ENDPOINT=http://match_engine:8080
"""


def env_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def test_the_seeds_env_file_loads(tmp_path: Path) -> None:
    s = load_settings({}, environ={}, env_file=env_file(tmp_path, SEED_ENV))
    assert s.database_url == "mysql+pymysql://root:yourpassword@192.168.1.12:3306/sodos_exchange?charset=utf8mb4"
    assert s.redis is not None and (s.redis.host, s.redis.port, s.redis.password, s.redis.db) == (
        "192.168.1.12",
        6380,
        "yourpassword",
        0,
    )
    assert s.market_redis is not None and s.market_redis.port == 6378
    assert s.match_engine_endpoint == "http://match_engine:8080" and choose_sink(s, get_sinks()) == "match-engine"
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8081)


def test_flags_beat_environment_beat_dotenv(tmp_path: Path) -> None:
    path = env_file(tmp_path, "API_PORT=:7000\nLOG_FILE=from-dotenv.log\nMATCH_ENGINE_ENDPOINT=http://dotenv:1\n")
    s = load_settings({}, environ={}, env_file=path)
    assert (s.api_port, s.log_file, s.match_engine_endpoint) == (7000, "from-dotenv.log", "http://dotenv:1")
    s = load_settings({}, environ={"API_PORT": "7100", "LOG_FILE": "from-env.log"}, env_file=path)
    assert (s.api_port, s.log_file, s.match_engine_endpoint) == (7100, "from-env.log", "http://dotenv:1")
    s = load_settings(
        {"api_port": ":7200", "log": "from-flag.log", "http": "http://flag:2"},
        environ={"API_PORT": "7100", "LOG_FILE": "from-env.log"},
        env_file=path,
    )
    assert (s.api_port, s.log_file, s.match_engine_endpoint) == (7200, "from-flag.log", "http://flag:2")


def test_no_db_keys_means_sqlite_and_db_flag_wins(tmp_path: Path) -> None:
    assert load_settings({}, environ={}, env_file=None).database_url == "sqlite:///mmframe.sqlite"
    assert load_settings({"sqlite": "/tmp/x.db"}, environ={}, env_file=None).database_url == "sqlite:////tmp/x.db"
    s = load_settings({"db": "sqlite:///flag.db"}, environ={"DB_HOST": "h", "DB_DATABASE": "d"}, env_file=None)
    assert s.database_url == "sqlite:///flag.db"


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("8081", "127.0.0.1", 8081),
        (":9090", "127.0.0.1", 9090),
        ("0.0.0.0:8081", "0.0.0.0", 8081),
        ("0", "127.0.0.1", 0),
    ],
)
def test_api_port_forms(value: str, host: str, port: int) -> None:
    s = load_settings({"api_port": value}, environ={}, env_file=None)
    assert (s.api_host, s.api_port) == (host, port)
    assert s.api_is_loopback is (host == "127.0.0.1")


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        ({"api_port": "eighty"}, {}, "API_PORT must be a port"),
        ({"api_port": "99999"}, {}, "not a port number"),
        ({}, {"DB_HOST": "db"}, "DB_DATABASE is required"),
        ({}, {"DB_HOST": "db", "DB_DATABASE": "x", "DB_PORT": "abc"}, "DB_PORT must be an integer"),
        ({"nonsense": 1}, {}, "unknown setting"),
    ],
)
def test_bad_settings_say_which_key(flags: dict[str, object], environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(flags, environ=environ, env_file=None)


def test_secrets_are_masked_everywhere(tmp_path: Path) -> None:
    s = load_settings(
        {}, environ={"MMFRAME_API_TOKEN": "tok-123", "DB_PASSWORD": "p@ss:w/rd"}, env_file=env_file(tmp_path, SEED_ENV)
    )
    assert s.api_token == "tok-123"
    text = repr(s) + str(s.describe())
    for secret in ("tok-123", "p@ss:w/rd", "p%40ss", "yourpassword"):
        assert secret not in text
    assert "***" in s.describe()["database"]
    assert mask_url("mysql+pymysql://u:secret@h:1/db") == "mysql+pymysql://u:***@h:1/db"


def test_dotenv_parsing() -> None:
    values = parse_dotenv(
        "# c\n\nexport A=1\nB = \"two words\"\nC=x # trailing\nD='#not a comment'\nE='x #1'  # a comment\n"
    )
    assert values == {"A": "1", "B": "two words", "C": "x", "D": "#not a comment", "E": "x #1"}
    with pytest.raises(ConfigError, match="line 1"):
        parse_dotenv("not a pair")


def test_sink_config_is_a_json_object() -> None:
    s = load_settings({}, environ={"MMFRAME_SINK_CONFIG": '{"account": "desk2", "rate_limit": 50}'}, env_file=None)
    assert s.sink_config == {"account": "desk2", "rate_limit": 50}
    for bad in ("[1]", "{nope"):
        with pytest.raises(ConfigError, match="MMFRAME_SINK_CONFIG must be a JSON object"):
            load_settings({}, environ={"MMFRAME_SINK_CONFIG": bad}, env_file=None)


def test_an_empty_value_keeps_mmframe_s_default(tmp_path) -> None:
    """docs/operators.md: an empty value counts as not set; the default exchange (defaults.env) stands."""
    env_file = tmp_path / ".env"
    env_file.write_text("MMFRAME_EXCHANGE=\n")
    assert load_settings(environ={}, env_file=env_file).exchange == "binance"
    assert load_settings(environ={"MMFRAME_EXCHANGE": ""}, env_file=None).exchange == "binance"
    assert load_settings(environ={"MMFRAME_EXCHANGE": "okex"}, env_file=env_file).exchange == "okex"
    assert load_settings(environ={}, env_file=None).describe()["exchange"] == "binance"


def test_an_empty_environment_value_leaves_the_env_file_standing(tmp_path) -> None:
    """A compose pass-through (``MMFRAME_EXCHANGE=`` in the environment) must not hide what .env says: following
    binance when .env says okex, or the paper book when .env names a match engine, would quote off the wrong index
    or nowhere real."""
    env_file = tmp_path / ".env"
    env_file.write_text("MMFRAME_EXCHANGE=okex\nMATCH_ENGINE_ENDPOINT=http://engine:8080\n")
    settings = load_settings(environ={"MMFRAME_EXCHANGE": "", "MATCH_ENGINE_ENDPOINT": ""}, env_file=env_file)
    assert settings.exchange == "okex" and settings.match_engine_endpoint == "http://engine:8080"


def test_the_cluster_settings() -> None:
    plain = load_settings({}, environ={}, env_file=None)
    assert plain.cluster_redis is None and plain.workers is None  # no cluster unless asked: serve as before
    url = load_settings({"cluster": "redis://:s%40cret@cache:6390/3"}, environ={}, env_file=None)
    assert (url.cluster_redis.host, url.cluster_redis.port, url.cluster_redis.db) == ("cache", 6390, 3)
    assert url.cluster_redis.password == "s@cret"
    assert "s@cret" not in str(url.describe()) and "s%40cret" not in str(url.describe())
    seeds = load_settings({}, environ={"MMFRAME_CLUSTER_REDIS": "default", **parse_dotenv(SEED_ENV)}, env_file=None)
    assert (seeds.cluster_redis.host, seeds.cluster_redis.port) == ("192.168.1.12", 6380)  # the seed's REDIS_*
    named = load_settings({}, environ={"MMFRAME_CLUSTER_REDIS": "redis://r", "MMFRAME_CLUSTER_NAME": "eu-1",
                                       "MMFRAME_LEASE_TTL": "15", "MMFRAME_WORKERS": "auto"}, env_file=None)
    assert (named.cluster_name, named.lease_ttl, named.workers) == ("eu-1", 15.0, "auto")
    assert load_settings({}, environ={"MMFRAME_CLUSTER_REDIS": "off"}, env_file=None).cluster_redis is None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MMFRAME_CLUSTER_REDIS": "http://cache:6379"}, "MMFRAME_CLUSTER_REDIS must be a redis://"),
        ({"MMFRAME_CLUSTER_REDIS": "redis://cache:port"}, "bad port"),
        ({"MMFRAME_CLUSTER_REDIS": "redis://cache/x"}, "bad port or database"),
        ({"MMFRAME_CLUSTER_NAME": "a b"}, "MMFRAME_CLUSTER_NAME"),
        ({"MMFRAME_CLUSTER_NAME": "a:b"}, "MMFRAME_CLUSTER_NAME"),
        ({"MMFRAME_LEASE_TTL": "0.5"}, "between 1 and 3600"),
        ({"MMFRAME_LEASE_TTL": "nan"}, "between 1 and 3600"),
        ({"MMFRAME_LEASE_TTL": "ten"}, "number of seconds"),
    ],
)
def test_bad_cluster_settings_say_which_key(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({}, environ=environ, env_file=None)


def test_a_lease_too_short_for_the_sinks_timeout_is_refused() -> None:
    from mmframe._service.cluster import ClusterOptions
    from mmframe._settings import RedisSettings

    assert ClusterOptions(RedisSettings(), ttl=10, request_timeout=2).margin == 2.5
    ClusterOptions(RedisSettings(), ttl=10, request_timeout=2).check()
    ClusterOptions(RedisSettings(), ttl=6, request_timeout=2).check()
    with pytest.raises(MMFrameError, match="at least three times"):  # two rounds between renewal and watchdog
        ClusterOptions(RedisSettings(), ttl=5, request_timeout=2).check()
