"""The `miner` CLI against the real service: output, exit codes, messages."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings

from client.cli import main
from client.errors import ServiceError
from client.models import ENDED, JobStatus
from schema.errors import ExitCode

from .test_cli_properties import submit_case


@pytest.fixture
def miner(service, monkeypatch, tmp_path):
    monkeypatch.setenv("MINER_URL", service.url)
    monkeypatch.setenv("MINER_TOKEN", service.token)
    monkeypatch.setenv("MINER_HOME", str(tmp_path / "home"))

    def run(*argv):
        return main(list(argv))

    return run


def test_submit_follow_prints_rising_progress_and_ends_with_the_result(miner, capsys):
    assert miner("submit", "--dataset", "synthetic", "--population", "12", "--generations", "4", "--risk", "low",
                 "--seed", "7", "--permutations", "3", "--follow") == ExitCode.OK
    out = capsys.readouterr().out
    validation = re.findall(r"^validation (\d)/4 +(random baseline|shuffled copy \d): best fitness", out, flags=re.M)
    assert sorted(done for done, _ in validation) == ["1", "2", "3", "4"]
    # the verdict first, in words, then the strategy, the folds and the baselines
    verdict = re.search(r"^VERDICT: no evidence of an edge: p = [\d.]+ over 3 shuffled copies .*strategies tried$",
                        out, flags=re.M)
    assert verdict and verdict.start() < out.index("best strategy:") < out.index("folds: ") < out.index("buy and hold")
    generations = [int(g) for g in re.findall(r"^generation (\d+)/4", out, flags=re.M)]
    assert generations == [1, 2, 3, 4]
    evaluations = [int(e.replace(",", "")) for e in re.findall(r"(\d[\d,]*) evaluations", out)]
    assert evaluations == sorted(evaluations) and evaluations[-1] == 48  # the GA's; validation's come after
    assert "best strategy:" in out and "holdout" in out and "net_pnl" in out
    progress = [line for line in out.splitlines() if line.startswith("generation ")]
    assert all(re.search(r"best so far [+-]\d+\.\d{3}$", line) for line in progress)  # whole lines, never wrapped


def test_jobs_show_result_json_cluster_datasets(miner, capsys, client):
    job = client.submit(dataset="synthetic", population=8, generations=2, seed=3)
    client.wait(job.id)
    capsys.readouterr()
    assert miner("jobs") == ExitCode.OK and job.id in capsys.readouterr().out
    assert miner("show", job.id) == ExitCode.OK and "finished" in capsys.readouterr().out
    assert miner("result", job.id, "--json") == ExitCode.OK
    assert f'"job_id": "{job.id}"' in capsys.readouterr().out
    assert miner("cluster") == ExitCode.OK and "3 workers ready" in capsys.readouterr().out
    assert miner("datasets") == ExitCode.OK and "BTC-USD_FIVE_MINUTE" in capsys.readouterr().out


def test_plot_writes_a_png(miner, client, tmp_path, capsys):
    job = client.submit(dataset="synthetic", population=8, generations=2, seed=4)
    client.wait(job.id)
    target = tmp_path / "equity.png"
    assert miner("result", job.id, "--plot", str(target)) == ExitCode.OK
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_upload_through_the_cli(miner, tmp_path, capsys):
    from tests.serve_app.test_service import csv_bytes

    path = tmp_path / "cli_upload.csv"
    path.write_bytes(csv_bytes(seed=12))
    assert miner("datasets", "upload", str(path)) == ExitCode.OK
    assert "cli_upload" in capsys.readouterr().out
    assert miner("datasets", "upload", str(tmp_path / "missing.csv")) == ExitCode.USAGE
    assert "no such file" in capsys.readouterr().err.lower()


def test_a_cancelled_job_exits_4(miner, client, capsys):
    job = client.submit(dataset="BTC-USD_FIVE_MINUTE", population=300, generations=40, seed=2)
    for event in client.events(job.id):
        if event.type == "batch_evaluated":
            assert miner("cancel", job.id) == ExitCode.OK
            break
    assert miner("follow", job.id) == ExitCode.JOB_FAILED
    assert "cancelled" in capsys.readouterr().out


def test_wrong_token_unknown_job_unreachable_url_bad_usage(miner, service, capsys):
    assert miner("--token", "wrong", "jobs") == ExitCode.USAGE
    assert "missing or wrong token" in capsys.readouterr().err
    assert miner("show", "nope") == ExitCode.USAGE
    assert "no job 'nope'" in capsys.readouterr().err
    assert miner("follow", "nope") == ExitCode.USAGE
    assert "no job 'nope'" in capsys.readouterr().err
    assert miner("--url", "http://127.0.0.1:9", "jobs") == ExitCode.SERVICE
    err = capsys.readouterr().err
    assert "cannot reach the miner service at http://127.0.0.1:9" in err and "Traceback" not in err
    assert miner("submit", "--dataset", "synthetic", "--population", "1") == ExitCode.USAGE
    assert "--population" in capsys.readouterr().err
    assert miner("submit", "--dataset", "nope") == ExitCode.USAGE
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert miner("submit") == ExitCode.USAGE  # --dataset is required
    assert "--dataset" in capsys.readouterr().err


def test_export_then_backtest_gives_the_job_s_own_metrics(miner, client, tmp_path, capsys):
    job = client.submit(dataset="synthetic", population=8, generations=2, seed=6, permutations=0)
    client.wait(job.id)
    result = client.result(job.id)
    path = tmp_path / "strategy.json"
    assert miner("export", job.id[:6], "--out", str(path)) == ExitCode.OK
    capsys.readouterr()
    # the job left its costs to the service, and so does this backtest; the training bars end where the holdout starts
    assert miner("backtest", str(path), "--dataset", "synthetic", "--end", str(result.holdout.equity.time[0]),
                 "--json") == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["metrics"] == result.train.metrics
    assert miner("backtest", job.id, "--dataset", "synthetic", "--start", "2030-01-01") == ExitCode.USAGE
    assert capsys.readouterr().err.startswith("error: --start 2030-01-01: is outside the data: dataset 'synthetic'")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=submit_case())
def test_generated_submissions_against_the_live_service_end_with_their_exit_code_and_one_line(miner, client, capsys,
                                                                                               case):
    """The property of test_cli_properties.py, on the real service (few examples: each one is a real request); every
    job a case creates is cancelled before the next."""
    argv, expected, bad_flags = case
    argv = [word for word in argv if word != "--follow"]  # a job is created, never waited for
    capsys.readouterr()
    try:
        code = main(argv)  # no exception may escape
        err = capsys.readouterr().err
        short_data = code == ExitCode.USAGE and "dataset 'synthetic'" in err  # folds x holdout too long for it
        assert code == expected or (expected == ExitCode.OK and short_data), (argv, err)
        if code == ExitCode.OK:
            assert err == ""
        else:
            assert err.count("\n") == 1 and err.startswith("error: "), (argv, err)
            if bad_flags:
                assert any(flag in err for flag in bad_flags), (argv, err)
    finally:
        for job in client.jobs():
            if job.status not in ENDED and job.status != JobStatus.CANCELLING:
                try:
                    client.cancel(job.id)
                except ServiceError as exc:  # it ended, or its cancel began, meanwhile
                    assert exc.status == 409, exc
