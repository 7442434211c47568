"""`miner backtest` and `MinerClient.backtest` against the in-memory fake service: what is sent (the strategy file as it
is, only the flags given), what is shown, and one stderr line with exit 2 for every bad file, flag or refusal."""

from __future__ import annotations

import json

import pytest

from client import MinerClient
from client import models as wire
from client.cli import main
from client.export import SCHEMA
from client.models import JobStatus
from schema.errors import ExitCode

from .fake_service import GENOME, METRICS, add_ended_early

DAY = 86_400


@pytest.fixture
def miner(fake):
    def run(*argv: str) -> int:
        return main(list(argv), transport=fake.transport, open_stream=fake.open_stream)

    return run


@pytest.fixture
def genome_file(tmp_path):
    path = tmp_path / "genome.json"
    path.write_text(json.dumps(GENOME))
    return str(path)


def sent(fake) -> list[dict]:
    return [json.loads(r.content) for r in fake.requests if (r.method, r.url.path) == ("POST", "/v1/backtests")]


def test_a_genome_file_is_sent_as_it_is_with_only_the_flags_given(miner, fake, genome_file, capsys):
    assert miner("backtest", genome_file, "--dataset", "synthetic", "--start", "1970-01-01T01:00:00Z",
                 "--fee-bps", "25") == ExitCode.OK
    assert sent(fake) == [{"strategy": GENOME, "dataset": "synthetic", "start": "1970-01-01T01:00:00Z",
                           "costs": {"fee_bps": 25.0}}]
    captured = capsys.readouterr()
    assert captured.err == ""
    out = captured.out
    assert "strategy: LONG when close > sma(20)" in out
    assert ("synthetic (f1): 988 bars from 1970-01-01 01:00:00 to 1970-01-04 11:15:00 UTC; fee 25 bps, slippage 5 bps, "
            "cash 10,000.00") in out
    assert "net_pnl" in out and "+120.50" in out and "55.0%" in out and "0 trades" in out  # result's formats


def test_the_file_miner_export_writes_is_taken_as_it_is(miner, fake, tmp_path, capsys):
    job = fake.add_job(JobStatus.FINISHED)
    path = tmp_path / "strategy.json"
    assert miner("export", job, "--out", str(path)) == ExitCode.OK
    assert miner("backtest", str(path), "--dataset", "synthetic", "--json") == ExitCode.OK
    (request,) = sent(fake)
    assert request["strategy"] == json.loads(path.read_text()) and request["strategy"]["schema"] == SCHEMA
    tested = wire.BacktestResult.model_validate_json(capsys.readouterr().out.split("\n", 1)[1])
    assert tested.metrics == METRICS and tested.costs == wire.Costs() and tested.bars == 1000


def test_a_job_and_its_rank_give_the_strategy_miner_export_would(miner, fake, capsys):
    job = add_ended_early(fake, JobStatus.CANCELLED)
    assert miner("backtest", job[:4], "--rank", "2", "--dataset", "synthetic") == ExitCode.OK
    (request,) = sent(fake)
    assert request["strategy"]["rank"] == 2
    assert request["strategy"]["genome"] == fake.results[job].hall_of_fame[1].genome
    assert miner("backtest", job, "--rank", "9", "--dataset", "synthetic") == ExitCode.USAGE
    assert capsys.readouterr().err == f"error: --rank 9: job {job} kept 3 strategies: --rank 1 to 3\n"


@pytest.mark.parametrize(("content", "words"), [
    ("{not json", "is not JSON (Expecting property name"),
    ("", "is not JSON (Expecting value"),
    ("[1, 2]", "holds a JSON list, not an object"),
    ('"a genome"', "holds a JSON str, not an object"),
    ("\udcff", "cannot read"),
])
def test_a_file_that_is_no_json_object_is_refused_before_sending(miner, fake, tmp_path, capsys, content, words):
    path = tmp_path / "bad.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    assert miner("backtest", str(path), "--dataset", "synthetic") == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") or err.startswith(f"error: cannot read {path}")
    assert words in err and err.count("\n") == 1
    assert sent(fake) == []


@pytest.mark.parametrize(("strategy", "words"), [
    ({"direction": "up"}, ": direction: Input should be 'long' or 'short'"),
    ({"schema": "strategy-miner/strategy/9", "genome": GENOME}, ": schema: a strategy document's schema is"),
    ({"schema": SCHEMA}, ": genome.direction: Input should be"),
])
def test_a_file_of_the_wrong_schema_is_refused_by_the_service_naming_the_file(miner, fake, tmp_path, capsys,
                                                                               strategy, words):
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(strategy))
    assert miner("backtest", str(path), "--dataset", "synthetic") == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}{words}") and err.count("\n") == 1


@pytest.mark.parametrize(("flags", "words"), [
    (["--start", "yesterday"], "error: --start yesterday: not a date or time: give an ISO-8601 date or time"),
    (["--start", "1970-01-02", "--end", "1970-01-01"], "error: --end 1970-01-01: must be after --start 1970-01-02"),
    (["--fee-bps", "-1"], "error: --fee-bps -1.0: must be between 0 and 1000"),
    (["--initial-cash", "0"], "error: --initial-cash 0.0: must be between 1 and 1e+12"),
    (["--slippage-bps", "cheap"], "error: --slippage-bps: cheap is not a number"),
    (["--dataset", ""], "error: --dataset '': must be 1 to 200 characters"),
    (["--rank", "0"], "error: --rank 0: must be at least 1"),
])
def test_a_bad_flag_is_refused_in_its_own_words_before_sending(miner, fake, genome_file, capsys, flags, words):
    assert miner("backtest", genome_file, "--dataset", "synthetic", *flags) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith(words) and err.count("\n") == 1, err
    assert sent(fake) == []


@pytest.mark.parametrize(("flags", "words"), [
    (["--start", "1990-01-01"], "error: --start 1990-01-01: is outside the data"),
    (["--end", "1970-01-01T01:00"], "error: --end 1970-01-01T01:00: the window holds 12 bars"),
    (["--dataset", "nope"], "error: unknown dataset 'nope'; available: synthetic"),
])
def test_a_refusal_of_the_service_names_the_flag(miner, genome_file, capsys, flags, words):
    assert miner("backtest", genome_file, "--dataset", "synthetic", *flags) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith(words) and err.count("\n") == 1, err


@pytest.mark.parametrize(("argv", "words"), [
    (["missing.json"], "error: cannot read missing.json: No such file or directory"),
    (["nojob"], "error: no job 'nojob': no job id is or starts with it (miner jobs lists them); nor is 'nojob' a "
                "strategy file"),
    ([""], "error: STRATEGY is empty"),
])
def test_a_strategy_that_is_neither_a_file_nor_a_job(miner, fake, capsys, argv, words):
    assert miner("backtest", *argv, "--dataset", "synthetic") == ExitCode.USAGE
    assert capsys.readouterr().err.startswith(words)
    assert sent(fake) == []


def test_rank_is_for_a_job_and_dataset_is_required(miner, genome_file, capsys):
    assert miner("backtest", genome_file, "--rank", "2", "--dataset", "synthetic") == ExitCode.USAGE
    assert "--rank 2: picks from a job's best strategies" in capsys.readouterr().err
    assert miner("backtest", genome_file) == ExitCode.USAGE
    assert capsys.readouterr().err == "error: the following arguments are required: --dataset\n"


def test_help_shows_the_costs_as_the_service_s_default(miner, capsys):
    assert miner("backtest", "--help") == ExitCode.OK
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--fee-bps", "--slippage-bps", "--initial-cash", "--start", "--end", "--rank", "--json"):
        assert flag in out
    assert out.count("(default: the service's default)") == 3


def test_the_client_sends_only_what_is_given(fake):
    with MinerClient(fake.url, fake.token, transport=fake.transport) as client:
        tested = client.backtest(strategy=GENOME, dataset="synthetic", end=DAY, costs={"initial_cash": 500})
    assert sent(fake) == [{"strategy": GENOME, "dataset": "synthetic", "end": "1970-01-02T00:00:00Z",
                           "costs": {"initial_cash": 500.0}}]
    assert tested.costs == wire.Costs(initial_cash=500) and tested.bars == 288
