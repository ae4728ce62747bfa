"""The deployment files in ``contrib/`` are kept honest: the Grafana dashboard and the alert rules name only metrics
a running mmframe exports, the systemd units, the compose file and the Dockerfile carry the settings that matter
(user, restart policy, stop timeout, healthchecks, the environment keys mmframe reads), and their healthchecks
call endpoints that answer. ``systemd-analyze``, ``promtool`` and ``docker compose`` check the files too where they
are installed; where not, those tests skip and say so."""

from __future__ import annotations

import configparser
import fnmatch
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from mmframe._cli import choose_sink
from mmframe._control.metrics import METRIC_NAMES, STATES, sink_metrics
from mmframe._plugins import ALLOW_LIST_ENV, get_sinks
from mmframe._settings import load_settings, parse_dotenv
from mmframe.sinktools import LatencyHistogram

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib"
SYSTEMD = CONTRIB / "systemd"
DOCKER = CONTRIB / "docker"
PROMETHEUS = CONTRIB / "prometheus"
DASHBOARD = CONTRIB / "grafana" / "mmframe.json"
RULES = PROMETHEUS / "rules" / "mmframe.rules.yml"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"

DEMO_INSTALLED = any(ep.name == "external_index_follow" for ep in importlib.metadata.entry_points(group="mmframe"))
# Series Prometheus makes itself for every target; everything else must come from mmframe.
PROMETHEUS_SERIES = {"up"}
TARGET_LABELS = {"instance", "job"}
MMFRAME_IMAGE_SERVICES = ("mmframe", "match-engine", "publisher")


# ---- what mmframe reads and exports ------------------------------------------------------------------------------


def settings_keys() -> set[str]:
    """Every environment key ``mmframe/_settings.py`` reads (plus the plugin allow-list, read in plugins.py)."""
    source = (ROOT / "mmframe" / "_settings.py").read_text(encoding="utf-8")
    literals = set(re.findall(r'"([A-Z][A-Z0-9_]*)"', source))
    prefixes = {literal for literal in literals if literal.endswith("_")}  # _redis(values, "MARKET_REDIS_")
    suffixes = set(re.findall(r'f"\{prefix\}([A-Z][A-Z0-9_]*)"', source))
    return (literals - prefixes) | {p + s for p in prefixes for s in suffixes} | {ALLOW_LIST_ENV}


def test_settings_keys_are_found() -> None:
    keys = settings_keys()
    assert {"DB_HOST", "DB_PASSWORD", "API_PORT", "LOG_FILE", "MATCH_ENGINE_ENDPOINT", "MMFRAME_API_TOKEN",
            "MMFRAME_API_HOST", "MMFRAME_SINK_CONFIG", "REDIS_AUTH", "MARKET_REDIS_HOST", "MARKET_REDIS_DB"} <= keys
    assert "MARKET_REDIS_" not in keys and "MMFRAME_NOPE" not in keys


class Exposition:
    """The metric families of a ``/metrics`` page (from its ``# TYPE`` lines, so a family without samples counts)
    and the label names and values seen on each family's samples."""

    def __init__(self, text: str) -> None:
        self.types: dict[str, str] = {}
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
            if kind == "counter" and not name.endswith("_total"):
                name += "_total"  # OpenMetrics-style TYPE lines name a counter without its suffix
            self.types[name] = kind
        self.labels: dict[str, dict[str, set[str]]] = {}
        for line in text.splitlines():
            match = re.match(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s", line)
            if not match or line.startswith("#"):
                continue
            family = self.family(match.group(1))
            assert family is not None, f"a sample of no declared family: {line}"
            seen = self.labels.setdefault(family, {})
            for label, value in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""):
                seen.setdefault(label, set()).add(value)

    def family(self, series: str) -> str | None:
        """The family a series name belongs to: itself (a counter, gauge or summary), or a histogram's or
        summary's ``_bucket``/``_sum``/``_count`` series; ``None`` for a name mmframe does not export."""
        if series in self.types and self.types[series] != "histogram":  # a histogram has no bare series
            return series
        for suffix, kinds in (("_bucket", {"histogram"}), ("_sum", {"histogram", "summary"}),
                              ("_count", {"histogram", "summary"})):
            base = series.removesuffix(suffix)
            if base != series and self.types.get(base) in kinds:
                return base
        return None

    def label_names(self) -> set[str]:
        return {label for labels in self.labels.values() for label in labels}


# ---- PromQL: the metric and label names an expression uses -------------------------------------------------------

PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                   "offset", "inf", "nan", "atan2"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR_BODY = re.compile(r"\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"")


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)


def promql_metrics(expr: str) -> set[str]:
    """The metric names *expr* selects: not functions, keywords, label names, durations, numbers or Grafana
    variables (``$market``, ``${datasource}``, ``$__rate_interval``)."""
    text = re.sub(r"\$\{?\w+(?::\w+)?\}?", " ", _strip_strings(expr))
    text = SELECTOR_BODY.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = GROUPING.sub(" ", text)
    names = re.findall(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", text)
    return {name for name in names if name.lower() not in PROMQL_KEYWORDS}


def promql_matchers(expr: str) -> list[tuple[str | None, str, str, str]]:
    """``(metric or None, label, operator, value)`` for every label matcher in *expr*."""
    found: list[tuple[str | None, str, str, str]] = []
    for match in re.finditer(r'([a-zA-Z_:][\w:]*)?\s*\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}', expr):
        metric = match.group(1)
        for label, op, value in MATCHER.findall(match.group(2)):
            found.append((metric, label, op, value))
    return found


def promql_grouping_labels(expr: str) -> set[str]:
    """The label names in ``by (...)``, ``without (...)``, ``on (...)``, ``ignoring (...)``, ``group_left (...)``."""
    return {label.strip() for _, body in GROUPING.findall(_strip_strings(expr)) for label in body.split(",")
            if label.strip()}


def test_the_promql_reader_finds_metrics_and_ignores_everything_else() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, market) (rate(mmframe_quote_latency_seconds_bucket{market=~"$market",'
        ' state="a{b}"}[$__rate_interval]))) / on (market) group_left mmframe_pnl offset 5m'
        " and rate(mmframe_fills_count[1m]) > bool 1e3 or vector(0) unless count(up{job='mmframe'}) > inf"
    )
    assert promql_metrics(expr) == {"mmframe_quote_latency_seconds_bucket", "mmframe_pnl", "mmframe_fills_count",
                                    "up"}
    assert promql_grouping_labels(expr) == {"le", "market"}
    assert ("mmframe_quote_latency_seconds_bucket", "state", "=", "a{b}") in promql_matchers(expr)
    exposition = Exposition(
        "# TYPE mmframe_quote_latency_seconds histogram\n# TYPE mmframe_fills_total counter\n"
        "# TYPE mmframe_pnl gauge\n# TYPE mmframe_fills counter\n"
    )
    assert exposition.family("mmframe_quote_latency_seconds_bucket") == "mmframe_quote_latency_seconds"
    assert exposition.family("mmframe_quote_latency_seconds_sum") == "mmframe_quote_latency_seconds"
    assert exposition.family("mmframe_quote_latency_seconds") is None  # a histogram has no bare series
    assert exposition.family("mmframe_fills_count") is None  # a counter has no _count series
    assert exposition.family("mmframe_fills_total") == "mmframe_fills_total"
    assert exposition.family("mmframe_pnl_sum") is None


# ---- the dashboard and the rules, as PromQL -----------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [node for node in _walk(board.get("panels", [])) if "targets" in node]


def dashboard_expressions(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template variable queries (the metric of
    ``label_values(metric, label)``)."""
    exprs = [target["expr"] for panel in panels(board) for target in panel["targets"]]
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query)
        assert match, f"variable {variable['name']}: not a label_values(metric, label) query: {query}"
        exprs.append(match.group(1))
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_every_alert_the_issue_asks_for_is_there() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    wanted = {
        "MmframeMarketHalted": "mmframe_market_state",
        "MmframeFeedStale": "mmframe_feed_staleness_seconds",
        "MmframeSinkCircuitOpen": "mmframe_sink_circuit_open",
        "MmframeRejectionRateHigh": "mmframe_orders_rejected_total",
    }
    for name, metric in wanted.items():
        assert name in rules, f"no alert {name} in {RULES.relative_to(ROOT)}"
        assert metric in promql_metrics(rules[name]["expr"]), (name, rules[name]["expr"])
    assert ("mmframe_market_state", "state", "=", "halted") in promql_matchers(rules["MmframeMarketHalted"]["expr"])
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert re.fullmatch(r"(\d+[smh])+", rule.get("for", "0s")), rule["alert"]


def test_the_dashboard_has_the_panels_the_issue_lists() -> None:
    board = dashboard()
    by_metric: dict[str, list[str]] = {}
    for panel in panels(board):
        for target in panel["targets"]:
            for metric in promql_metrics(target["expr"]):
                by_metric.setdefault(metric, []).append(target["expr"])

    def uses(metric: str, *, inside: str = "") -> bool:
        return any(inside in expr for expr in by_metric.get(metric, []))

    assert uses("mmframe_market_state"), "quoting state"
    assert uses("strategy_active_orders"), "active orders"
    for counter in ("strategy_orders_total", "mmframe_orders_cancelled_total", "mmframe_orders_rejected_total"):
        assert uses(counter, inside="rate("), f"placed / cancelled / rejected rates: {counter}"
    assert uses("mmframe_fills_total") and uses("mmframe_volume_total"), "fills and volume"
    assert uses("mmframe_inventory") and uses("mmframe_pnl"), "inventory and PnL"
    assert uses("mmframe_quote_latency_seconds_bucket", inside="histogram_quantile("), "quote latency quantiles"
    assert uses("mmframe_feed_staleness_seconds"), "feed staleness"
    assert uses("mmframe_sink_request_seconds_bucket", inside="histogram_quantile("), "sink latency"
    assert uses("mmframe_sink_circuit_open"), "circuit state"
    titles = [panel["title"] for panel in panels(board)]
    assert len(titles) == len(set(titles)), "two panels share a title"
    assert board["uid"] == "mmframe"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "market"} <= variables
    for panel in panels(board):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


# ---- the demo service --------------------------------------------------------------------------------------------


def reporting_sink_exposition() -> Exposition:
    """mmframe's sink metrics from a sink that reports everything: the labels of the families the demo's paper
    sink leaves without samples (it makes no HTTP requests and keeps no counters)."""

    class ReportingSink:
        name = "match-engine"
        degraded = True
        circuit_open = True
        request_latency = LatencyHistogram()
        statistics = {"requests": 1, "retries": 0}

    class Collector:
        def collect(self) -> Iterator[Any]:
            yield from sink_metrics(ReportingSink())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())  # type: ignore[arg-type]
    return Exposition(generate_latest(registry).decode())


class Demo:
    def __init__(self, port: int, metrics: str) -> None:
        self.port = port
        self.metrics = metrics
        self.exposition = Exposition(metrics)
        for family, labels in reporting_sink_exposition().labels.items():
            if family in self.exposition.types and not self.exposition.labels.get(family):
                self.exposition.labels[family] = labels


def _get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``mmframe serve --demo`` on a free port, scraped once both markets run and their feeds report."""
    if not DEMO_INSTALLED:
        pytest.skip("the demo strategy's plugin (plugins/mmframe-external-index-follow) is not installed")
    cwd = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MMFRAME_", "DB_", "API_PORT", "MARKET_REDIS_", "REDIS_", "MATCH_ENGINE_"))}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmframe", "serve", "--demo", "--api-port", "0", "--status-interval", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        port = None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"HTTP API server listening on 127\.0\.0\.1:(\d+)", "".join(lines))
            port = int(found.group(1)) if found else None
            time.sleep(0.05)
        assert port is not None, "".join(lines)
        metrics = ""
        while time.monotonic() < deadline:
            _, metrics = _get(f"http://127.0.0.1:{port}/metrics")
            running = len(re.findall(r'^mmframe_market_state\{[^}]*state="running"[^}]*\} 1\.0$', metrics, re.M))
            if running == 2 and re.search(r"^mmframe_feed_messages_total\{", metrics, re.M):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the demo markets did not run within 20 s:\n{''.join(lines)}\n{metrics}")
        yield Demo(port, metrics)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=2)


def test_the_demo_exports_every_documented_family(demo: Demo) -> None:
    assert set(METRIC_NAMES) <= set(demo.exposition.types), set(METRIC_NAMES) - set(demo.exposition.types)
    # the families without samples in the demo (a paper sink makes no HTTP requests) count all the same
    assert "mmframe_sink_request_seconds" in demo.exposition.types
    assert demo.exposition.labels["mmframe_market_state"]["state"] == set(STATES)


def _check_promql(expr: str, where: str, exposition: Exposition, extra_labels: set[str]) -> list[str]:
    problems = []
    for name in sorted(promql_metrics(expr)):
        if name not in PROMETHEUS_SERIES and exposition.family(name) is None:
            problems.append(f"{where}: {name} is not a series mmframe exports")
    known_labels = exposition.label_names() | TARGET_LABELS | extra_labels | {"le", "__name__"}
    for label in sorted(promql_grouping_labels(expr) - known_labels):
        problems.append(f"{where}: groups by the label {label}, which no metric has")
    for metric, label, op, value in promql_matchers(expr):
        family = exposition.family(metric) if metric else None
        labels = exposition.labels.get(family or "", {})
        if labels and label not in labels and label not in TARGET_LABELS | extra_labels:
            problems.append(f"{where}: {metric} has no label {label}")
        if label in labels and op == "=" and "$" not in value and value not in labels[label]:
            problems.append(f"{where}: {metric} has no {label}={value!r} (it has {sorted(labels[label])})")
        if label == "state" and op in {"=", "=~"}:
            unknown = set(value.split("|")) - set(STATES)
            if unknown:
                problems.append(f"{where}: no market state {sorted(unknown)}")
    return problems


def scrape_labels() -> set[str]:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    return {label for job in config["scrape_configs"] for static in job.get("static_configs", [])
            for label in static.get("labels", {})}


def test_the_dashboard_and_the_rules_name_only_exported_metrics(demo: Demo) -> None:
    """The rot test: a renamed or dropped metric, or a typo in a query, fails here, not on an operator's screen."""
    extra = scrape_labels()
    problems = []
    exprs = dashboard_expressions(dashboard())
    for expr in exprs:
        problems += _check_promql(expr, f"dashboard {expr[:60]!r}", demo.exposition, extra)
    for rule in alert_rules():
        problems += _check_promql(rule["expr"], f"alert {rule['alert']}", demo.exposition, extra)
    assert not problems, "\n".join(problems)
    referenced = {name for expr in exprs for name in promql_metrics(expr)}
    families = {demo.exposition.family(name) for name in referenced}
    assert len(families - {None}) >= 20, "the dashboard covers few of the metrics"
    per_market = {f for f, labels in demo.exposition.labels.items() if "market" in labels}
    for panel in panels(dashboard()):
        for target in panel["targets"]:
            if {demo.exposition.family(n) for n in promql_metrics(target["expr"])} & per_market:
                assert 'market=~"$market"' in target["expr"], f"{panel['title']} ignores the market variable"


def test_the_rot_test_catches_a_wrong_name(demo: Demo) -> None:
    for expr in ("rate(mmframe_orders_placed_total[5m])", "mmframe_quote_latency_seconds",
                 "histogram_quantile(0.9, rate(mmframe_sink_request_seconds_bukket[5m]))",
                 'mmframe_market_state{state="paused"}', "sum by (markte) (mmframe_pnl)", 'mmframe_pnl{sink="x"}'):
        assert _check_promql(expr, "x", demo.exposition, set()), expr


# ---- healthchecks that run -----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_check(argv: list[str], env: dict[str, str] | None = None) -> int:
    assert argv[0] == "CMD", argv
    command = [sys.executable if argv[1] == "python" else argv[1], *argv[2:]]
    return subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, timeout=20).returncode


def test_the_dockerfile_healthcheck_calls_health_and_it_answers(demo: Demo) -> None:
    instruction = next(args for op, args in dockerfile_instructions() if op == "HEALTHCHECK")
    argv = json.loads(instruction[instruction.index("CMD"):].removeprefix("CMD").strip())
    assert "/health" in argv[-1]
    status, body = _get(f"http://127.0.0.1:{demo.port}/health")
    assert status == 200 and json.loads(body)["status"] == "healthy"
    assert _run_check(["CMD", *argv], {"API_PORT": str(demo.port)}) == 0
    assert _run_check(["CMD", *argv], {"API_PORT": f":{demo.port}"}) == 0
    assert _run_check(["CMD", *argv], {"API_PORT": str(_free_port())}) != 0


def test_the_compose_healthcheck_of_mmframe_answers(demo: Demo) -> None:
    test = compose()["services"]["mmframe"]["healthcheck"]["test"]
    assert "127.0.0.1:8081/health" in test[-1]
    assert _run_check([*test[:-1], test[-1].replace(":8081/", f":{demo.port}/")]) == 0
    assert _run_check([*test[:-1], test[-1].replace(":8081/", f":{_free_port()}/")]) != 0


def test_the_match_engine_healthcheck_path_is_a_route_of_the_engine() -> None:
    server = pytest.importorskip("mmframe_match_engine.server", reason="plugins/mmframe-match-engine is not installed")
    test = compose()["services"]["match-engine"]["healthcheck"]["test"]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", test[-1])
    assert url, test
    command = compose()["services"]["match-engine"]["command"]
    assert command[command.index("--port") + 1] == url.group(1)
    app = server.create_app(server.Engine())
    assert any(route.path == url.group(2) and "GET" in route.methods for route in app.routes), url.group(2)


def test_the_publisher_healthcheck_sees_prices_on_the_bus() -> None:
    redis = pytest.importorskip("redis")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        if os.environ.get("MMFRAME_REQUIRE_SERVICES") == "1":
            pytest.fail("Redis is required (MMFRAME_REQUIRE_SERVICES=1) but unreachable at 127.0.0.1:6379")
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    service = compose()["services"]["publisher"]
    symbol = service["command"][service["command"].index("--symbols") + 1].split(",")[0]
    channel = f"price:update:binance:{symbol}"
    assert channel in service["healthcheck"]["test"][-1]
    client = redis.Redis(host="127.0.0.1", port=6379)
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            client.publish(channel, json.dumps({"exchange": "binance", "symbol": symbol, "price": "1", "timestamp": 1}))
            stop.wait(0.1)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        env = {"MARKET_REDIS_HOST": "127.0.0.1", "MARKET_REDIS_PORT": "6379"}
        assert _run_check(service["healthcheck"]["test"], env) == 0
    finally:
        stop.set()
        publisher.join()
        client.close()


# ---- systemd -----------------------------------------------------------------------------------------------------

UNITS = {
    "mmframe.service": (["serve"], "mmframe.env.example"),
    "mmframe-feed-publisher.service": (["feed", "publish"], "mmframe-feed-publisher.env.example"),
}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((SYSTEMD / name).read_text(encoding="utf-8"))
    return parser


def seconds(value: str) -> float:
    """A systemd or compose time span (``30s``, ``1min 30s``, ``1m30s``, ``45``) in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h)", text)
    assert parts and "".join(f"{n}{u}" for n, u in parts) == re.sub(r"\s+", "", text), value
    return sum(float(n) * units[u] for n, u in parts)


def seed_symbols() -> list[str]:
    sql = (ROOT / "mmframe" / "_store" / "seed.sql").read_text(encoding="utf-8")
    rows = sql[sql.index("INSERT INTO strategy_currency"):]
    return re.findall(r"\(\d+,\s*'(\w+)'", rows)


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_files_have_what_matters(name: str) -> None:
    args, example = UNITS[name]
    parsed = unit(name)
    service = parsed["Service"]
    assert service["User"] == "mmframe" and service["Group"] == "mmframe"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2", "a usage error (status 2) is not retried"
    assert seconds(service["TimeoutStopSec"]) >= 10, "the graceful cancel-all needs ~4.5 s; leave room"
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] in {"mixed", "control-group"}
    assert service["EnvironmentFile"].startswith("/etc/mmframe/")
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] in {"strict", "full"}
    assert service["PrivateTmp"] == "yes"
    argv = shlex.split(service["ExecStart"])
    assert argv[0].startswith("/") and Path(argv[0]).name == "mmframe"
    assert argv[1:1 + len(args)] == args
    assert parsed["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in parsed["Unit"]["After"]
    if args == ["feed", "publish"]:
        assert argv[argv.index("--exchange") + 1] == "binance"
        assert argv[argv.index("--symbols") + 1].split(",") == seed_symbols()
    assert (SYSTEMD / example).is_file(), f"{name} reads {service['EnvironmentFile']}: ship {example}"


def _env_file_keys(path: Path) -> dict[str, str]:
    """The keys of an environment file, commented-out ones (``#KEY=...``) too."""
    keys = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            keys[match.group(1)] = match.group(2)
    return keys


@pytest.mark.parametrize("name", sorted(UNITS))
def test_environment_files_hold_only_keys_mmframe_reads(name: str) -> None:
    path = SYSTEMD / UNITS[name][1]
    text = path.read_text(encoding="utf-8")
    assert set(_env_file_keys(path)) <= settings_keys(), set(_env_file_keys(path)) - settings_keys()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            # what systemd's EnvironmentFile= and mmframe's .env reader both take the same way
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", line), f"{path.name}: {line!r}"
    values = parse_dotenv(text)
    settings = load_settings(environ=values, env_file=None)
    assert settings.market_redis is not None and settings.market_redis.host == "127.0.0.1"
    if name == "mmframe.service":
        seed_keys = {"DB_HOST", "DB_PORT", "DB_DATABASE", "DB_USERNAME", "DB_PASSWORD", "MATCH_ENGINE_ENDPOINT",
                     "API_PORT", "LOG_FILE", "MARKET_REDIS_HOST", "MMFRAME_API_TOKEN", "MMFRAME_INSTANCE_ID"}
        assert seed_keys <= set(_env_file_keys(path))
        assert settings.database_url.startswith("mysql+pymysql://mmframe:")
        assert settings.api_is_loopback and settings.api_token and choose_sink(settings, get_sinks()) == "match-engine"
        commented = parse_dotenv("\n".join(line[1:] for line in text.splitlines() if re.match(r"#[A-Z]", line)))
        load_settings(environ={**values, **commented}, env_file=None)  # the commented-out examples are valid too
    else:
        assert all(key.startswith("MARKET_REDIS_") for key in _env_file_keys(path))


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit files were only parsed, not verified")
    executable = shutil.which("mmframe") or str(Path(sys.executable).with_name("mmframe"))
    assert Path(executable).exists(), "the mmframe script is not installed"
    copies = []
    for name in UNITS:  # verify checks that ExecStart exists: point it at this machine's mmframe
        text = (SYSTEMD / name).read_text(encoding="utf-8").replace("/opt/mmframe/bin/mmframe", executable)
        (tmp_path / name).write_text(text, encoding="utf-8")
        copies.append(str(tmp_path / name))
    result = subprocess.run([analyze, "verify", "--man=no", *copies], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and str(tmp_path) not in result.stdout + result.stderr, result.stdout + result.stderr
    for copy in copies:
        security = subprocess.run([analyze, "security", "--offline=true", copy], capture_output=True, text=True,
                                  timeout=60)
        level = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", security.stdout)
        if security.returncode != 0 and level is None:
            continue  # a systemd older than 250 has no offline security review
        assert level and float(level.group(1)) <= 4.0, security.stdout[-2000:]
    sysusers = shutil.which("systemd-sysusers")
    if sysusers:
        (tmp_path / "root" / "etc").mkdir(parents=True)
        result = subprocess.run([sysusers, f"--root={tmp_path / 'root'}", "--dry-run",
                                 str(SYSTEMD / "mmframe.sysusers.conf")], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "Creating user 'mmframe'" in result.stderr, result.stderr


# ---- compose -------------------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def compose_variables() -> dict[str, str]:
    """contrib/docker/env.example: the values of the variables compose.yaml substitutes."""
    return parse_dotenv((DOCKER / "env.example").read_text(encoding="utf-8"))


def interpolate(value: Any, variables: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        assert match.group(1) in variables, f"compose.yaml uses ${{{match.group(1)}}}: env.example must set it"
        return variables[match.group(1)]

    return re.sub(r"\$\{(\w+)(?::?[-?][^}]*)?\}", replace, str(value))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(value, compose_variables()) for key, value in env.items()}


def test_compose_has_every_service_with_healthchecks_and_start_order() -> None:
    services = compose()["services"]
    assert {"mmframe", "match-engine", "mariadb", "redis", "publisher", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert service.get("restart") == "unless-stopped", name
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            if how["condition"] == "service_healthy":
                assert services[dependency].get("healthcheck"), (name, dependency)
    healthy = {name: {d for d, how in s.get("depends_on", {}).items() if how["condition"] == "service_healthy"}
               for name, s in services.items()}
    assert {"mariadb", "redis", "match-engine"} <= healthy["mmframe"]
    assert healthy["publisher"] == {"redis"}
    assert healthy["prometheus"] == {"mmframe"}
    assert healthy["grafana"] == {"prometheus"}
    assert services["mariadb"]["healthcheck"]["test"][1:] == ["healthcheck.sh", "--connect", "--innodb_initialized"]
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    for name in MMFRAME_IMAGE_SERVICES:
        service = services[name]
        assert service["build"]["dockerfile"] == "contrib/docker/Dockerfile", name
        assert (COMPOSE.parent / service["build"]["context"]).resolve() == ROOT, name
    mmframe = services["mmframe"]
    assert seconds(mmframe["stop_grace_period"]) >= 10
    assert mmframe["command"][:2] == ["sh", "-c"]
    script = mmframe["command"][2]
    assert re.fullmatch(r"mmframe db init && exec mmframe serve", script), script
    published = [port for port in mmframe["ports"] if port.endswith(":8081")]
    assert published and all(port.startswith("127.0.0.1:") for port in mmframe["ports"])


def test_compose_gives_mmframe_only_keys_it_reads_and_they_make_sense() -> None:
    services = compose()["services"]
    keys = settings_keys()
    for name in MMFRAME_IMAGE_SERVICES:
        unknown = set(environment(services[name])) - keys
        assert not unknown, f"{name}: mmframe reads no {sorted(unknown)}"
    env = environment(services["mmframe"])
    settings = load_settings(environ=env, env_file=None)
    assert settings.api_host == "0.0.0.0" and settings.api_token, "in a container: every address, and a token"
    assert settings.api_port == 8081
    assert choose_sink(settings, get_sinks()) == "match-engine"
    assert settings.market_redis is not None and settings.market_redis.host in services
    assert settings.database_url.startswith(f"mysql+pymysql://mmframe:{compose_variables()['DB_PASSWORD']}@mariadb:")
    assert env["DB_HOST"] in services
    engine = services["match-engine"]["command"]
    assert engine[:3] == ["mmframe", "match-engine", "serve"]
    assert engine[engine.index("--host") + 1] == "0.0.0.0"
    assert settings.match_engine_endpoint == f"http://match-engine:{engine[engine.index('--port') + 1]}"
    publisher = services["publisher"]
    assert publisher["command"][:3] == ["mmframe", "feed", "publish"]
    assert publisher["command"][publisher["command"].index("--exchange") + 1] == "binance"
    assert publisher["command"][publisher["command"].index("--symbols") + 1].split(",") == seed_symbols()
    assert environment(publisher)["MARKET_REDIS_HOST"] == env["MARKET_REDIS_HOST"]
    mariadb = environment(services["mariadb"])
    assert mariadb["MARIADB_DATABASE"] == env["DB_DATABASE"]
    assert mariadb["MARIADB_USER"] == env["DB_USERNAME"]
    assert mariadb["MARIADB_PASSWORD"] == env["DB_PASSWORD"]
    assert set(compose_variables()) == set(re.findall(r"\$\{(\w+)", COMPOSE.read_text(encoding="utf-8")))


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Bind mounts of *service*: container path -> the repository path."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            found[target] = (COMPOSE.parent / source).resolve()
    return found


def test_compose_mounts_files_that_exist_where_they_are_read() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for target, source in _mounts(service).items():
            assert source.exists() and ROOT in source.parents, f"{name}: {source} (for {target}) does not exist"
    mariadb = _mounts(services["mariadb"])
    seed = [target for target, source in mariadb.items() if source == ROOT / "mmframe" / "_store" / "seed.sql"]
    assert seed and seed[0].startswith("/docker-entrypoint-initdb.d/") and seed[0].endswith(".sql")
    prometheus = _mounts(services["prometheus"])
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    assert prometheus["/etc/prometheus/prometheus.yml"] == PROMETHEUS / "prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    rule_targets = [f"{target}/{path.relative_to(source)}" for target, source in prometheus.items() if source.is_dir()
                    for path in source.glob("*")]
    loaded = [t for t in rule_targets for pattern in config["rule_files"] if fnmatch.fnmatch(t, pattern)]
    assert loaded == ["/etc/prometheus/rules/mmframe.rules.yml"], (rule_targets, config["rule_files"])
    grafana = _mounts(services["grafana"])
    provisioning = grafana["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text(encoding="utf-8"))
    source = datasources["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090" and source["isDefault"]
    providers = yaml.safe_load((provisioning / "dashboards" / "mmframe.yaml").read_text(encoding="utf-8"))
    folder = providers["providers"][0]["options"]["path"]
    assert grafana[f"{folder}/mmframe.json"] == DASHBOARD
    home = environment(services["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert grafana[home] == DASHBOARD


def test_compose_config_validates_with_docker() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("docker compose is not installed (no container engine here): compose.yaml was only parsed")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--env-file", str(DOCKER / "env.example"), "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr


# ---- Prometheus ----------------------------------------------------------------------------------------------------


def test_prometheus_scrapes_mmframe_and_loads_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["mmframe"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [target for static in job["static_configs"] for target in static["targets"]]
    # every maker of the compose stack's cluster, each on its container's API port
    makers = [name for name, service in compose()["services"].items()
              if "MMFRAME_CLUSTER_REDIS" in environment(service)]
    assert makers == ["mmframe", "mmframe-2"]
    ports = [environment(compose()["services"][name])["API_PORT"] for name in makers]
    assert targets == [f"{name}:{port}" for name, port in zip(makers, ports, strict=True)] and set(ports) == {"8081"}
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]


def test_promtool_checks_the_config_the_rules_and_the_dashboard(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: the prometheus package): PromQL was only read by regex")

    def run(*args: str) -> None:
        result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=PROMETHEUS)
        assert result.returncode == 0, result.stdout + result.stderr

    run("check", "config", "--syntax-only", "prometheus.yml")
    run("check", "rules", str(RULES))
    run("test", "rules", "mmframe.rules.test.yml")
    # every dashboard query, with Grafana's variables filled in, as a recording rule: promtool parses the PromQL
    substitutions = {"$__rate_interval": "1m", "$instance": ".*", "$market": ".*"}
    rules = []
    for number, expr in enumerate(dashboard_expressions(dashboard())):
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query{number}", "expr": expr})
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run("check", "rules", str(tmp_path / "dashboard.yml"))


# ---- the Dockerfile --------------------------------------------------------------------------------------------------


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        op, _, args = (pending + line).partition(" ")
        instructions.append((op.upper(), args.strip()))
        pending = ""
    assert not pending, "a continuation line at the end"
    return instructions


def test_the_dockerfile_is_multi_stage_and_runs_as_a_user() -> None:
    instructions = dockerfile_instructions()
    starts = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    assert len(starts) >= 2, "multi-stage: a build stage and a runtime stage"
    assert all("slim" in args or "PYTHON_IMAGE" in args for op, args in instructions if op == "FROM")
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE.read_text(encoding="utf-8"))
    final = instructions[starts[-1]:]
    users = [i for i, (op, _) in enumerate(final) if op == "USER"]
    assert users, "the runtime stage sets a USER"
    user = final[users[-1]][1].split(":")[0]
    assert user not in {"root", "0"}
    after_user = final[users[-1] + 1:]
    assert not [args for op, args in after_user if op == "RUN"], "nothing runs as root, or is built, after USER"
    runs = [op for op, _ in after_user if op in {"CMD", "ENTRYPOINT"}]
    assert runs, "CMD or ENTRYPOINT comes after USER"
    cmd = json.loads(next(args for op, args in final if op == "CMD"))
    assert cmd == ["mmframe", "serve"]
    assert not any("pip" in args for op, args in final if op in {"CMD", "ENTRYPOINT", "RUN"})
    assert ("EXPOSE", "8081") in final
    assert any(op == "HEALTHCHECK" and "/health" in args for op, args in final)
    assert any(op == "COPY" and args.startswith("--from=build") for op, args in final)
    env = " ".join(args for op, args in final if op == "ENV")
    assert "MMFRAME_API_HOST=0.0.0.0" in env
    for key in re.findall(r"\b([A-Z][A-Z0-9_]*)=", env):
        assert key in settings_keys() or key in {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}, key


def test_the_dockerfile_installs_the_core_and_every_bundled_plugin() -> None:
    instructions = dockerfile_instructions()
    build = instructions[:[i for i, (op, _) in enumerate(instructions) if op == "FROM"][1]]
    install = next(args for op, args in build if op == "RUN" and "pip install" in args)
    assert 'dists="."' in install and "plugins/*/pyproject.toml" in install
    copied = {source for op, args in build if op == "COPY" for source in args.split()[:-1]}
    assert {"mmframe", "plugins", "pyproject.toml", "README.md"} <= copied
    bundled = {p.parent.name for p in ROOT.glob("plugins/*/pyproject.toml")}
    assert {"mmframe-external-index-follow", "mmframe-match-engine", "mmframe-binance", "mmframe-okex"} <= bundled


class DockerIgnore:
    """The exclusion rules of a ``.dockerignore`` (last matching pattern wins; ``!`` re-includes; ``**`` is any
    number of folders), for the paths of the build context."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = line.lstrip("!").strip("/")
            regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
            regex = re.sub(r"\\\[(.*?)\\\]", r"[\1]", regex.replace(r"\?", "[^/]"))  # [cod]: a class
            self.rules.append((negated, re.compile(regex)))

    def excluded(self, path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for negated, regex in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                result = not negated
        return result


def test_the_dockerignore_sends_what_the_build_copies_and_nothing_else() -> None:
    ignore = DockerIgnore((DOCKER / "Dockerfile.dockerignore").read_text(encoding="utf-8"))
    sources = ["pyproject.toml", "README.md", "mmframe/__init__.py", "mmframe/_store/seed.sql", "mmframe/py.typed"]
    for project in ROOT.glob("plugins/*/pyproject.toml"):
        folder = project.parent.relative_to(ROOT).as_posix()
        sources += [f"{folder}/pyproject.toml", f"{folder}/README.md"]
        sources += [p.relative_to(ROOT).as_posix() for p in project.parent.glob("mmframe_*/*")
                    if p.is_file() and p.parent.suffix != ".egg-info" and p.suffix != ".pyc"]
    for op, args in dockerfile_instructions():
        if op == "COPY" and not args.startswith("--from"):
            sources += args.split()[:-1]
    for source in sources:
        assert not ignore.excluded(source), f"the build needs {source}, but the dockerignore leaves it out"
    for left_out in (".git/config", "tests/test_cli.py", "mmframe.sqlite", ".venv/bin/python", "docs/index.md",
                     "mmframe/__pycache__/cli.cpython-311.pyc", "mmframe.egg-info/PKG-INFO",
                     "plugins/mmframe-binance/tests/test_feed.py", "plugins/mmframe-okex/build/lib/x.py"):
        assert ignore.excluded(left_out), left_out


def test_the_contrib_index_and_the_deploy_guide_link_to_files_that_exist() -> None:
    for path in (CONTRIB / "README.md", ROOT / "docs" / "deploy.md"):
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
        for target in re.findall(r"\[[^\]]*\]\(([^)\s#]+)(?:#[^)]*)?\)", text):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):
                assert (path.parent / target).exists(), f"{path.relative_to(ROOT)} links to {target}"
