"""`miner export`'s two formats: the strategy document round-trips into the engine's Genome, and the standalone Python
file, run on the shipped BTC file, reproduces the engine's trades and metrics (engine.backtester.LocalBacktester)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from client import export
from client import models as wire
from client.cli import main
from engine.backtester import LocalBacktester, Window, split_windows
from engine.candles import load_candles
from engine.genome import Genome, encode
from engine.planted import PLANTED_RULE
from engine.settings import Costs

from .fake_service import hall_of_fame, job_result

DATA = Path(__file__).resolve().parents[2] / "data" / "BTC-USD_FIVE_MINUTE.csv.gz"


def rule(left: dict, op: str, right: dict) -> dict:
    return {"left": left, "op": op, "right": right}


def ind(name: str, period: int) -> dict:
    return {"indicator": name, "period": period}


CLOSE, OPEN, HIGH, LOW, VOLUME = ({"field": name} for name in ("close", "open", "high", "low", "volume"))

# (genome, costs, the exported file's window flags, the same window for the engine over the candles)
CASES = {
    "planted rule, all bars": (
        PLANTED_RULE, wire.Costs(), [], lambda c: Window(0, len(c))),
    "short with a trailing stop and no fixed stop, holdout": (
        Genome(direction="short", entry=[rule(ind("rsi", 14), ">", {"constant": 70}), rule(CLOSE, ">", ind("ema", 50))],
               stop_loss=None, take_profit=0.02, trailing_stop=0.01),
        wire.Costs(), ["--part", "holdout"], lambda c: split_windows(len(c), 0.2)[1]),
    "crosses, four entry rules, an exit cross against a constant, a time window ending in a trade": (
        Genome(direction="long", entry=[rule(ind("ema", 12), "crosses_above", ind("sma", 48)),
                                        rule(CLOSE, ">=", ind("sma", 200)), rule(VOLUME, ">", ind("volume_sma", 20)),
                                        rule(OPEN, "<=", HIGH)],
               exit=[rule(ind("macd_hist", 12), "crosses_below", {"constant": 0})], stop_loss=0.02),
        wire.Costs(), ["--start", "2025-09-01", "--end", "2025-12-02T02:40:00Z"],
        lambda c: Window(*map(int, c.timestamp.searchsorted([1756684800, 1764643200])))),
    "two exit rules, no stop or target, half size at 2x leverage, other costs": (
        Genome(direction="long", entry=[rule(ind("bb_pctb", 20), "<=", {"constant": 0.05}),
                                        rule(ind("atr", 14), ">", {"constant": 30})],
               exit=[rule(ind("bb_pctb", 20), ">=", {"constant": 0.8}), rule(ind("rsi", 7), ">", {"constant": 55})],
               stop_loss=0, size=0.5, leverage=2.0),
        wire.Costs(fee_bps=10, slippage_bps=2, initial_cash=5000), [], lambda c: Window(0, len(c))),
    "short on crosses below with every risk exit, train": (
        Genome(direction="short", entry=[rule(CLOSE, "crosses_below", ind("sma", 30)),
                                         rule(ind("roc", 5), "<", {"constant": -0.2}),
                                         rule(HIGH, "<=", ind("ema", 100))],
               exit=[rule(LOW, "crosses_above", ind("ema", 30))], stop_loss=0.015, take_profit=0.03,
               trailing_stop=0.02),
        wire.Costs(), ["--part", "train"], lambda c: split_windows(len(c), 0.2)[0]),
    "macd at an odd period, close crossing above a constant": (
        Genome(direction="long", entry=[rule(ind("macd_hist", 7), "crosses_above", {"constant": 0}),
                                        rule(ind("rsi", 30), "<", {"constant": 50})],
               exit=[rule(CLOSE, "crosses_below", ind("ema", 9))], stop_loss=0.01, take_profit=0.015),
        wire.Costs(), [], lambda c: Window(0, len(c))),
}


@pytest.fixture(scope="module")
def candles():
    return load_candles(DATA)


def document(genome: Genome, costs: wire.Costs) -> dict:
    spec = wire.JobSpec(dataset="BTC-USD_FIVE_MINUTE", costs=costs)
    job = wire.JobInfo(id="job1", status=wire.JobStatus.FINISHED, spec=spec, created_at=1.7e9,
                       evaluator_version="balanced@1", progress=wire.Progress(generations=1, population=4))
    result = job_result("job1", spec).model_copy(update={"genome": genome.model_dump(mode="json"),
                                                         "strategy": genome.describe()})
    return export.strategy_document(job, result)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_exported_python_file_reproduces_the_engine_s_trades(candles, tmp_path, case):
    genome, costs, flags, engine_window = CASES[case]
    script = tmp_path / "strategy.py"
    script.write_text(export.to_python(document(genome, costs)))
    run = subprocess.run([sys.executable, str(script), str(DATA), "--json", *flags], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    exported = json.loads(run.stdout)

    window = engine_window(candles)
    assert (exported["start_bar"], exported["end_bar"]) == (window.start, window.end)
    engine_costs = Costs(**costs.model_dump())
    report = LocalBacktester(candles, engine_costs).report(encode(genome), window)
    assert len(report.trades) >= 5, "a case that trades too little proves little"
    assert len(exported["trades"]) == len(report.trades)
    bar = {int(t): i for i, t in enumerate(candles.timestamp)}
    for mine, theirs in zip(exported["trades"], report.trades, strict=True):
        assert (mine["entry_bar"], mine["exit_bar"], mine["exit_reason"]) == (
            bar[theirs["entry_time"]], bar[theirs["exit_time"]], theirs["exit_reason"])
        assert (mine["entry_time"], mine["exit_time"]) == (theirs["entry_time"], theirs["exit_time"])
        for key in ("entry_price", "exit_price", "units", "pnl"):
            assert close(mine[key], theirs[key]), (key, mine, theirs)
    assert set(exported["metrics"]) == set(report.metrics)
    for name, value in report.metrics.items():
        assert close(exported["metrics"][name], value), (name, exported["metrics"][name], value)


def test_the_cases_use_every_indicator_operator_and_exit_reason(candles):
    indicators, operators, fields = set(), set(), set()
    for genome, *_ in CASES.values():
        for r in [*genome.entry, *genome.exit]:
            operators.add(r.op)
            for side in (r.left, r.right):
                indicators.add(getattr(side, "indicator", None))
                fields.add(getattr(side, "field", None))
    assert indicators - {None} == {"sma", "ema", "rsi", "atr", "bb_pctb", "macd_hist", "roc", "volume_sma"}
    assert fields - {None} == {"open", "high", "low", "close", "volume"}
    assert operators == {">", ">=", "<", "<=", "crosses_above", "crosses_below"}
    reasons = set()
    for genome, costs, _, engine_window in CASES.values():
        report = LocalBacktester(candles, Costs(**costs.model_dump())).report(encode(genome), engine_window(candles))
        reasons |= {trade["exit_reason"] for trade in report.trades}
    assert reasons == {"signal", "stop_loss", "take_profit", "trailing_stop", "end_of_data"}


def test_the_output_for_people_lists_trades_and_metrics(tmp_path):
    script = tmp_path / "strategy.py"
    script.write_text(export.to_python(document(PLANTED_RULE, wire.Costs())))
    run = subprocess.run([sys.executable, str(script), str(DATA), "--part", "holdout"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == PLANTED_RULE.describe()
    assert "fee 60 bps, slippage 5 bps, cash 10,000.00" in lines[1]
    assert lines[2].split() == ["entry", "(UTC)", "exit", "(UTC)", "entry", "price", "exit", "price", "pnl", "reason"]
    assert any(line.startswith("net_pnl ") for line in lines) and any(line.startswith("bar_z ") for line in lines)
    empty = subprocess.run([sys.executable, str(script), str(DATA), "--start", "2030-01-01"], capture_output=True,
                           text=True, timeout=300)
    assert empty.returncode == 1 and empty.stderr == "error: the window holds no bars\n"
    # | head -1: the reader leaves after a line, quietly
    piped = subprocess.run(f"{sys.executable} {script} {DATA} | head -1", shell=True, capture_output=True, text=True,
                           timeout=300, executable="/bin/bash")
    assert piped.stdout == lines[0] + "\n" and piped.stderr == ""


def test_the_json_document_round_trips_into_the_genome():
    genome = CASES["two exit rules, no stop or target, half size at 2x leverage, other costs"][0]
    doc = json.loads(export.to_json(document(genome, wire.Costs(fee_bps=10, slippage_bps=2, initial_cash=5000))))
    assert Genome.model_validate(doc["genome"]) == genome
    assert doc["schema"] == export.SCHEMA and doc["job_id"] == "job1" and doc["rank"] == 1
    assert doc["costs"] == {"fee_bps": 10.0, "slippage_bps": 2.0, "initial_cash": 5000.0}
    assert doc["strategy"] == genome.describe() and doc["dataset"] == "BTC-USD_FIVE_MINUTE"
    assert (doc["evaluator_version"], doc["holdout_fraction"]) == ("balanced@1", 0.2)
    assert set(doc["metrics"]) == {"train", "holdout"} and doc["metrics"]["train"]["trades"] == 40.0


def test_rank_k_is_the_k_th_of_the_hall_of_fame():
    plain = job_result("job1", wire.JobSpec(dataset="synthetic"))
    with pytest.raises(export.RankError, match="kept no hall of fame\\): only --rank 1 exists"):
        export.ranked(plain, 2)
    fame = plain.model_copy(update={"hall_of_fame": hall_of_fame(3)})
    assert export.ranked(fame, 1)["genome"] == plain.genome
    second = export.ranked(fame, 2)
    assert second == {"strategy": fame.hall_of_fame[1].strategy, "genome": fame.hall_of_fame[1].genome,
                      "fitness": fame.hall_of_fame[1].fitness,
                      "metrics": {"train": fame.hall_of_fame[1].train_metrics,
                                  "holdout": fame.hall_of_fame[1].holdout_metrics}}
    with pytest.raises(export.RankError, match="kept 3 strategies: --rank 1 to 3"):
        export.ranked(fame, 4)


def test_miner_export_writes_a_py_file_that_runs(fake, capsys, tmp_path):
    job = fake.add_job(wire.JobStatus.FINISHED)
    rsi = Genome(direction="long", entry=[rule(ind("rsi", 5), "<", {"constant": 40})], stop_loss=0.01, take_profit=0.01)
    fake.results[job] = fake.results[job].model_copy(update={"genome": rsi.model_dump(mode="json"),
                                                             "strategy": rsi.describe()})
    script = tmp_path / "strategy.py"
    assert main(["export", job, "--out", str(script)], transport=fake.transport) == 0  # .py: python by default
    assert capsys.readouterr().out == (f"wrote {script}: rank 1 of job {job}: {rsi.describe()}; run it: python "
                                       f"{script} CANDLES.csv\n")
    candles = tmp_path / "candles.csv"
    closes = [100 + 5 * (-1) ** (i // 7) * (i % 7) for i in range(300)]
    candles.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"{1_700_000_000 + 300 * i},{c},{c * 1.02},{c * 0.98},{c},1\n" for i, c in enumerate(closes)))
    run = subprocess.run([sys.executable, str(script), str(candles), "--json"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["metrics"]["trades"] == len(report["trades"]) > 0
    assert (report["start_bar"], report["end_bar"]) == (0, 300)
    assert main(["export", job, "--format", "python"], transport=fake.transport) == 0
    assert capsys.readouterr().out == script.read_text()


@pytest.mark.parametrize(("row", "words"), [
    ("1700000300,100,98,99,100,1", "line 3, column 'high': high is below low"),
    ("1700000300,100,101,99,150,1", "line 3, column 'close': close is outside the bar's [low, high]"),
    ("1700000300,nan,101,99,100,1", "line 3, column 'open': value is missing, NaN or infinite"),
    ("1700000300,100,101,99,100,inf", "line 3, column 'volume': value is missing, NaN or infinite"),
    ("1700000300,-1,101,-2,100,1", "line 3, column 'open': price must be positive"),
    ("1700000300,100,101,99,100,-5", "line 3, column 'volume': volume must not be negative"),
])
def test_the_exported_file_refuses_the_bars_the_miner_refuses(tmp_path, row, words):
    """Before, it backtested them (float() reads nan, inf and a high below the low) and printed numbers that mean
    nothing; the miner's own loader refuses the same rows with the same words."""
    script = tmp_path / "strategy.py"
    script.write_text(export.to_python(document(PLANTED_RULE, wire.Costs())))
    candles = tmp_path / "candles.csv"
    candles.write_text(f"timestamp,open,high,low,close,volume\n1700000000,100,101,99,100,1\n{row}\n")
    run = subprocess.run([sys.executable, str(script), str(candles)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stderr == f"{candles}, {words}\n"
    with pytest.raises(Exception, match=words.split(": ", 1)[1].replace("[", "\\[").replace("]", "\\]")):
        load_candles(candles)  # the engine's loader: the same refusal
