"""``mmframe backtest``: the strategies we ship, unchanged, on a recorded file and on the synthetic model; results
that depend on the seed alone; a bad recording refused with its line and nothing written."""

from __future__ import annotations

import gzip
import json
import math
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

from mmframe import ConfigError, DepthSnapshot, Market, PriceTick, Quote, Side, Strategy, Trade
from mmframe._backtest.exchange import ExchangeConfig
from mmframe._backtest.record import RecordWriter
from mmframe._backtest.run import BacktestError, SyntheticModel, run_replay, run_synthetic
from mmframe._cli import cli
from mmframe._engine.risk import RiskLimits
from mmframe._engine.spec import MarketSpec

START = 1_700_000_000.0


def write_recording(path: Path, seconds: int = 120, seed: int = 3) -> int:
    """A BTC-like recording: every 100 ms a depth snapshot (5 levels) and 2 trades at the touch, every second an
    index tick of a random walk of 1 bp steps."""
    rng = random.Random(seed)
    mid = 30_000.0
    count = 0
    with RecordWriter(path, source="test") as writer:
        for step in range(seconds * 10):
            t = START + step * 0.1
            if step % 10 == 0:
                mid *= math.exp(rng.choice((-1e-4, 1e-4)))
                writer.write(PriceTick("binance", "BTCUSDT", Decimal(f"{mid:.2f}"), t), t)
                count += 1
            bid = math.floor(mid * 10 - 1) / 10
            ask = bid + 0.2
            writer.write(DepthSnapshot(
                "binance", "BTCUSDT",
                bids=[(Decimal(f"{bid - i * 0.1:.1f}"), Decimal(f"{rng.uniform(0.1, 2):.3f}")) for i in range(5)],
                asks=[(Decimal(f"{ask + i * 0.1:.1f}"), Decimal(f"{rng.uniform(0.1, 2):.3f}")) for i in range(5)],
                timestamp=t), t)
            count += 1
            for n in range(2):
                side = Side.BUY if rng.random() < 0.5 else Side.SELL
                # now and then a trade far through the touch: a sweep
                depth = rng.choice((0, 0, 0, 0, 5, 15)) * 0.1
                price = ask + depth if side is Side.BUY else bid - depth
                when = t + 0.03 * (n + 1)
                writer.write(Trade("binance", "BTCUSDT", Decimal(f"{price:.1f}"),
                                   Decimal(f"{rng.uniform(0.01, 1):.3f}"), side, when), when)
                count += 1
    return count


BTC = Market("BTC/USDT", tick_size="0.1", price_precision=1, quantity_precision=3, min_quantity="0.001")


def follow_spec() -> MarketSpec:
    return MarketSpec(market=BTC, strategy="external_index_follow", index_symbol="BTCUSDT",
                      strategy_config={"base_quantity": "0.5", "depth_levels": 3, "spread_percent": "0.00005"})


def grid_spec() -> MarketSpec:
    return MarketSpec(market=BTC, strategy="grid_trading", index_symbol="BTCUSDT",
                      strategy_config={"price_interval": "1", "order_quantity": "0.2", "grid_levels": 4})


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "btc.jsonl.gz"
    write_recording(path)
    return path


@pytest.mark.parametrize("spec", [follow_spec, grid_spec], ids=["external_index_follow", "grid_trading"])
def test_our_strategies_run_unchanged_on_a_recording(recording: Path, spec: Any) -> None:
    figures, series, info = run_replay([spec()], recording, ExchangeConfig())
    (figure,) = figures
    assert info["events"] == 120 + 1200 * 3
    assert figure.orders_placed > 10 and figure.messages >= figure.orders_placed
    assert figure.fills > 0  # the sweeps and the queue reach our quotes
    assert series is not None and len(series["t"]) > 100
    assert all(b is None or a is None or b < a for b, a in zip(series["bid"], series["ask"], strict=True))


def test_a_replay_twice_gives_identical_results(recording: Path) -> None:
    config = ExchangeConfig(queue_model="power:2", entry_latency={"dist": "exponential", "mean": "20ms"},
                            response_latency="5ms", maker_fee="0.0001", seed=4)
    first = run_replay([follow_spec()], recording, config)
    second = run_replay([follow_spec()], recording, config)
    assert first[0] == second[0] and first[1] == second[1]
    assert first[0][0].fills > 0 and first[0][0].fees > 0


def test_latency_changes_what_fills(recording: Path) -> None:
    instant = run_replay([follow_spec()], recording, ExchangeConfig())[0][0]
    slow = run_replay([follow_spec()], recording, ExchangeConfig(entry_latency="400ms"))[0][0]
    assert (instant.fills, instant.pnl) != (slow.fills, slow.pnl)


def _corrupt(source: Path, target: Path, line: int, text: str) -> None:
    with gzip.open(source, "rt") as f:
        lines = f.read().splitlines()
    t = json.loads(lines[line - 1])["t"]
    lines[line - 1] = text.replace("T", repr(t))
    with gzip.open(target, "wt") as f:
        f.write("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"t": T, "kind": "tick", "exchange": "binance", "symbol": "BTCUSDT", "price": ', "line 200"),
        ('{"t": T, "kind": "tick", "exchange": "binance", "symbol": "BTCUSDT"}', "price"),
        ('{"t": 1600000000.0, "kind": "tick", "exchange": "binance", "symbol": "BTCUSDT", "price": "1"}', "earlier"),
    ],
    ids=["corrupt", "missing-field", "out-of-order"],
)
def test_a_bad_recording_names_its_line_and_nothing_is_written(
    recording: Path, tmp_path: Path, text: str, message: str
) -> None:
    bad = tmp_path / "bad.jsonl.gz"
    _corrupt(recording, bad, 200, text)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"market": {"symbol": "BTC/USDT", "tick_size": "0.1", "price_precision": 1,
                                           "quantity_precision": 3}, "strategy": "external_index_follow",
                                "strategy_config": {"base_quantity": "0.5", "depth_levels": 3,
                                                    "spread_percent": "0.00005"}, "index_symbol": "BTCUSDT"}))
    out, report = tmp_path / "out.json", tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["backtest", "--spec", str(spec), "--data", str(bad), "--out", str(out),
                                      "--report", str(report)])
    assert result.exit_code == 1, result.output
    assert "line 200" in result.output and message in result.output
    assert "Nothing was written" in result.output
    assert not out.exists() and not report.exists()
    assert list(tmp_path.iterdir()) == sorted([bad, spec]) or set(tmp_path.iterdir()) == {bad, spec}


def test_the_cli_replays_a_market_of_the_store(recording: Path, tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    runner = CliRunner()
    seeded = runner.invoke(cli, ["db", "seed-demo", "--sqlite", str(db), "--env-file", str(tmp_path / "none")])
    assert seeded.exit_code == 0, seeded.output
    out = tmp_path / "summary.json"
    result = runner.invoke(cli, ["backtest", "--market", "BTC/USDT", "--sqlite", str(db), "--env-file",
                                 str(tmp_path / "none"), "--data", str(recording), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["mode"] == "replay" and summary["strategy"] == "external_index_follow"
    assert summary["source"]["events"] == 120 + 1200 * 3
    assert summary["per_path"][0]["messages"] > 0
    assert "pnl" in result.output


# ---------------------------------------------------------------------------------------------------------------
# The synthetic model
# ---------------------------------------------------------------------------------------------------------------

AS_MARKET = Market("AS/USD", tick_size="0.0001", price_precision=4, quantity_precision=0, min_quantity="1")


def as_spec(**config: Any) -> MarketSpec:
    return MarketSpec(market=AS_MARKET, strategy="avellaneda_stoikov", risk=RiskLimits(price_band=None),
                      strategy_config={"gamma": 0.1, "sigma": 2, "A": 140, "k": 1.5, "horizon": 1,
                                       "horizon_mode": "finite", "quantity": 1, **config})


def test_the_results_depend_on_the_seed_alone_not_on_the_workers() -> None:
    model = SyntheticModel(horizon=0.2)
    one, series_one = run_synthetic(as_spec(), model, ExchangeConfig(), paths=6, seed=9, jobs=1, batch=2)
    two, series_two = run_synthetic(as_spec(), model, ExchangeConfig(), paths=6, seed=9, jobs=2, batch=3)
    assert one == two and series_one == series_two
    other, _ = run_synthetic(as_spec(), model, ExchangeConfig(), paths=6, seed=10, jobs=1)
    assert [f.pnl for f in other] != [f.pnl for f in one]


def test_the_inventory_strategy_holds_less_risk_than_the_symmetric_one() -> None:
    """The paper's robust claim, at a small path count: quoting around the reservation price keeps the final
    inventory and the profit far less dispersed than the symmetric strategy with the same average spread."""
    model = SyntheticModel()
    inventory, _ = run_synthetic(as_spec(), model, ExchangeConfig(), paths=60, seed=1, jobs=2)
    symmetric, _ = run_synthetic(as_spec(mode="symmetric"), model, ExchangeConfig(), paths=60, seed=1, jobs=2)

    def std(values: list[float]) -> float:
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))

    assert std([f.pnl for f in inventory]) < 0.7 * std([f.pnl for f in symmetric])
    assert std([f.final_inventory for f in inventory]) < 0.6 * std([f.final_inventory for f in symmetric])
    spread = [f.average_spread for f in inventory]
    # gamma sigma^2 T / 2 + (2 / gamma) ln(1 + gamma / k), bids down and asks up to the tick
    assert spread[0] == pytest.approx(1.49, abs=0.01)
    assert symmetric[0].average_spread == pytest.approx(spread[0], abs=0.01)
    assert 55 < sum(f.pnl for f in inventory) / 60 < 72  # the paper: 62.94


@pytest.mark.parametrize(
    ("strategy", "config"),
    [
        ("external_index_follow", {"base_quantity": "1", "depth_levels": 3, "spread_percent": "0.004"}),
        ("grid_trading", {"price_interval": "0.2", "order_quantity": "1", "grid_levels": 5}),
    ],
)
def test_our_strategies_run_unchanged_on_the_synthetic_model(strategy: str, config: dict[str, Any]) -> None:
    market = Market("AS/USD", tick_size="0.01", price_precision=2, quantity_precision=0, min_quantity="1")
    spec = MarketSpec(market=market, strategy=strategy, strategy_config=config, risk=RiskLimits(price_band=None))
    figures, series = run_synthetic(spec, SyntheticModel(), ExchangeConfig(), paths=3, seed=2, jobs=1)
    assert len(figures) == 3 and all(f.fills > 0 and f.messages > 0 for f in figures)
    assert series is not None and len(series["t"]) == 200


def test_the_cli_runs_the_model_and_writes_the_summary_and_the_report(tmp_path: Path) -> None:
    out, report = tmp_path / "s.json", tmp_path / "r.html"
    config = json.dumps({"gamma": 0.1, "sigma": 2, "A": 140, "k": 1.5, "horizon": 1, "quantity": 1,
                         "horizon_mode": "finite"})
    result = CliRunner().invoke(cli, ["backtest", "--model", "avellaneda-stoikov", "--strategy",
                                      "avellaneda_stoikov", "--config", config, "--paths", "4", "--jobs", "1",
                                      "--out", str(out), "--report", str(report)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["paths"] == 4 and len(summary["per_path"]) == 4
    assert summary["model"]["A"] == 140 and summary["mode"] == "synthetic"
    assert set(summary["figures"]) >= {"pnl", "final_inventory", "fills", "volume", "messages", "fill_ratio",
                                        "max_drawdown", "average_spread"}
    assert len(summary["series"]["t"]) == 200
    assert "<svg" in report.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "grid_trading"], "--data FILE"),
        (["--model", "avellaneda-stoikov", "--strategy", "nope"], "nope"),
        (["--model", "avellaneda-stoikov", "--strategy", "avellaneda_stoikov", "--config",
          '{"gamma": -1, "quantity": 1, "horizon": 1}'], "gamma"),
        (["--model", "avellaneda-stoikov", "--strategy", "avellaneda_stoikov", "--config",
          '{"gamma": 0.1, "quantity": 1, "horizon": 1}', "--model-config", '{"sigma": 2, "drift": 1}'], "drift"),
        (["--model", "avellaneda-stoikov", "--strategy", "avellaneda_stoikov", "--config",
          '{"gamma": 0.1, "quantity": 1, "horizon": 1}', "--exchange", '{"queue_model": "lifo"}'], "queue_model"),
        (["--model", "avellaneda-stoikov", "--strategy", "avellaneda_stoikov", "--config",
          '{"gamma": 0.1, "quantity": 1, "horizon": 1}', "--exchange", '{"latency": 1}'], "latency"),
    ],
)
def test_bad_arguments_are_refused_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "s.json"
    result = CliRunner().invoke(cli, ["backtest", *args, "--out", str(out)])
    assert result.exit_code != 0 and message in result.output, result.output
    assert not out.exists()


def test_the_reader_builds_the_models_it_checked_field_for_field() -> None:
    """The reader builds trades and depth snapshots without the models' converters (it checked every value as they
    would): a field added to a model must be added there too, and what it builds equals the model built as usual."""
    import attrs

    from mmframe._backtest import record

    assert tuple(f.name for f in attrs.fields(Trade)) == record._TRADE_FIELDS
    assert tuple(f.name for f in attrs.fields(DepthSnapshot)) == record._DEPTH_FIELDS
    values = ("binance", "BTCUSDT", Decimal("1.5"), Decimal("2"), Side.SELL, 1.0, "7")
    built = record._built(Trade, record._TRADE_FIELDS, values)
    assert built == Trade(*values) and hash(built) == hash(Trade(*values))


class JoinLastTrade(Strategy):
    """Bids at the last public trade's price: what it quotes changes at its refresh, not with any tick."""

    name = "join_last_trade"
    wake_on_depth = False

    @attrs.frozen
    class Config:
        pass

    last: Decimal | None = None

    def on_trade(self, trade: Trade, ctx: Any) -> None:
        self.last = trade.price

    def desired_orders(self, ctx: Any) -> list[Quote]:
        mid = ctx.index_price
        if mid is None:
            return []
        return [Quote(Side.BUY, self.last if self.last is not None else mid - 1, Decimal("0.5"))]


def test_a_market_requoting_on_its_own_timer_is_caught_up_before_a_trade(tmp_path: Path) -> None:
    """No tick after t = 0, yet the market's refresh (every second) moves its bid to the last trade's price: a
    sale at that price at t = 5 fills it, as live (the replay must not judge the trade by the quotes of t = 0)."""
    path = tmp_path / "r.jsonl.gz"
    with RecordWriter(path, source="t") as writer:
        writer.write(PriceTick("x", "BTCUSDT", Decimal("100.5"), START), START)
        writer.write(Trade("x", "BTCUSDT", Decimal("100"), Decimal("1"), Side.SELL, START + 0.5), START + 0.5)
        writer.write(Trade("x", "BTCUSDT", Decimal("101"), Decimal("1"), Side.BUY, START + 0.6), START + 0.6)
        writer.write(Trade("x", "BTCUSDT", Decimal("100"), Decimal("1"), Side.SELL, START + 5), START + 5)
    spec = MarketSpec(market=BTC, strategy="join_last_trade", index_symbol="BTCUSDT",
                      risk=RiskLimits(price_band=None), stale_after=60)
    figures, _, _ = run_replay([spec], path, ExchangeConfig(), strategies=[JoinLastTrade])
    assert figures[0].fills == 1 and figures[0].final_inventory == 0.5


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"dt": 2}, "longer than the horizon"),
        ({"dt": 0.3}, "whole number of steps"),
        ({"s0": 2}, "too close to zero"),
        ({"sigma": True}, "must be a number"),
        ({"s0": "abc"}, "must be a number"),
        ({"dt": 1e-7}, "at most"),
        ({"trade_size": "0.5"}, "quantity step"),
    ],
)
def test_a_model_that_cannot_run_as_asked_is_refused(model: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_synthetic(as_spec(), SyntheticModel.from_mapping(model), ExchangeConfig(), paths=1)


def test_the_market_fees_hold_on_every_path_and_latency_draws_are_the_paths_own() -> None:
    model = SyntheticModel(horizon=0.2)
    fees = ExchangeConfig(fees={"AS/USD": {"maker": "0.001", "taker": "0.001"}})
    figures, _ = run_synthetic(as_spec(), model, fees, paths=3, seed=2)
    assert all(f.fees > 0 for f in figures)
    late = ExchangeConfig(entry_latency={"dist": "exponential", "mean": "2ms"}, seed=5)
    few, _ = run_synthetic(as_spec(), model, late, paths=2, seed=2)
    many, _ = run_synthetic(as_spec(), model, late, paths=6, seed=2)
    assert few == many[:2]  # a path is the same whatever else runs beside it


def test_a_recording_without_the_market_s_symbol_or_with_a_huge_gap_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "eth.jsonl.gz"
    with RecordWriter(other) as writer:
        writer.write(PriceTick("x", "ETHUSDT", Decimal("2000"), START), START)
    with pytest.raises(BacktestError, match=r"no event of BTCUSDT.*ETHUSDT"):
        run_replay([follow_spec()], other, ExchangeConfig())
    gap = tmp_path / "gap.jsonl.gz"
    with RecordWriter(gap) as writer:
        writer.write(PriceTick("x", "BTCUSDT", Decimal("30000"), START), START)
        writer.write(PriceTick("x", "BTCUSDT", Decimal("30000"), START * 1000), START * 1000)  # milliseconds
    with pytest.raises(BacktestError, match=r"line 3: t jumps .* milliseconds"):
        run_replay([follow_spec()], gap, ExchangeConfig())


def test_the_cli_checks_its_outputs_and_its_store_before_running(recording: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    market = json.dumps({"symbol": "BTC/USDT", "tick_size": "0.1", "price_precision": 1, "quantity_precision": 3})
    config = json.dumps({"base_quantity": "0.5", "depth_levels": 3, "spread_percent": "0.00005"})
    args = ["backtest", "--strategy", "external_index_follow", "--config", config, "--market-json", market,
            "--data", str(recording)]
    result = runner.invoke(cli, [*args, "--out", str(tmp_path / "nodir" / "s.json")])
    assert result.exit_code == 2 and "not a writable directory" in result.output
    out, report = tmp_path / "s.json", tmp_path / "r.html"
    result = runner.invoke(cli, [*args, "--out", str(out), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["source"]["events"] == 120 + 1200 * 3 and report.exists()
    assert out.stat().st_mode & 0o044  # readable by others, as the umask allows: not a private temporary file
    missing = tmp_path / "missing.sqlite"
    result = runner.invoke(cli, ["backtest", "--market", "BTC/USDT", "--sqlite", str(missing), "--data",
                                 str(recording)])
    assert result.exit_code == 2 and "no such file" in result.output and not missing.exists()
    result = runner.invoke(cli, [*args, "--exchange", json.dumps({"fees": {"ETH/USDT": {"maker": "0"}}})])
    assert result.exit_code == 2 and "not the market's symbol" in result.output
